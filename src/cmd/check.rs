//! `deskport check`: flags → read-only calls against the account → what deskport understood
//! of each reply (keys and shapes, never values) → exit 0 when it can work with it.

use super::connect::{udesk_client, ConnectArgs};
use super::Ui;
use crate::check;
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;

/// `--help` text after the flags.
pub const HELP: &str = "\
Read-only: lists one customer, reads one in full, searches one by external id, and (Udesk)
reads the custom field definitions and one scroll page. Prints each reply's keys and value
types, never a value, and whether every field deskport relies on was there, and how the
account writes phone numbers. Credentials as for import.

Exit codes:
  0  deskport can work with what it saw
  1  a call failed or a field deskport relies on was missing (named above)
  2  usage or configuration error";

/// `deskport check`'s flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand to search in (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
}

/// Runs `deskport check`.
pub fn run(args: CheckArgs, ui: Ui) -> anyhow::Result<Exit> {
    let connect = &args.connect;
    connect.check()?;
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let report = match connect.target {
            Platform::Omnidesk => {
                let brand = connect.omnidesk_brand(args.brand_id, false)?;
                let client = connect.omnidesk_client(settings, base, brand, transport);
                check::omnidesk(&client, brand).await
            }
            Platform::Udesk => check::udesk(&udesk_client(settings, base, transport)).await,
        };
        connection.close().await;
        // The report is the point of the command: printed even with --quiet.
        let ui = Ui { quiet: false, ..ui };
        ui.summary(
            || report.summary(),
            || serde_json::json!({"level": "info", "event": "summary", "command": "check", "ok": report.ok(), "report": report}),
        );
        Ok(if report.ok() { Exit::Ok } else { Exit::RowsRejected })
    })
}
