//! `deskport fields`: the account's custom fields (key, title, type, options, required) as a
//! table or JSON, and saved for `--fields FILE` (offline `validate`, or an import whose
//! account no longer answers the definitions call).

use super::connect::{udesk_client, ConnectArgs};
use super::Ui;
use crate::validate::Platform;
use crate::{Error, Exit};
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// `--help` text after the flags.
pub const HELP: &str = "\
Udesk: GET /customers/custom_fields (one read-only call). Omnidesk publishes no field
definitions: the names its first full records show are listed, as text of unknown
requirement, and the output says so. Credentials as for import.

Exit codes:
  0  listed
  2  usage or configuration error
  3  the platform refused or failed the call";

/// `deskport fields`'s flags.
#[derive(Debug, Args)]
pub struct FieldsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// Print JSON (the form --out saves) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also save the definitions here, for `validate --fields FILE` / `import --fields FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Omnidesk: full records to read for field names.
    #[arg(long, default_value_t = 20, value_name = "N")]
    records: u64,
}

/// Runs `deskport fields`.
pub fn run(args: FieldsArgs, ui: Ui) -> anyhow::Result<Exit> {
    let connect = &args.connect;
    connect.check()?;
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let fields = runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let fields = match connect.target {
            Platform::Omnidesk => {
                let brand = connect.omnidesk_brand(args.brand_id, true)?;
                connect
                    .omnidesk_client(settings, base, brand, transport)
                    .custom_fields_seen(args.records.max(1))
                    .await
            }
            Platform::Udesk => {
                udesk_client(settings, base, transport)
                    .custom_fields()
                    .await
            }
        };
        connection.close().await;
        fields.map_err(|e| anyhow::anyhow!("reading the custom fields: {e}"))
    })?;
    let json = serde_json::to_string_pretty(&fields).context("encoding the fields")? + "\n";
    if let Some(path) = &args.out {
        crate::output::write_whole(path, json.as_bytes()).map_err(|source| {
            Error::Output(crate::output::OutputError {
                path: path.clone(),
                source,
            })
        })?;
    }
    let text = if args.json { json } else { fields.render() };
    std::io::stdout()
        .write_all(text.as_bytes())
        .context("writing the fields")?;
    Ok(Exit::Ok)
}
