//! `deskport reconcile`: flags → [`ReconcileConfig`] → [`reconcile::run`] → summary.

use super::connect::{udesk_client, ConnectArgs};
use super::read::ReadArgs;
use super::{usage, Ui};
use crate::export as export_cmd;
use crate::input::InputPath;
use crate::reconcile::{self, ReconcileConfig};
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// `--help` text after the flags.
pub const HELP: &str = "\
Statuses in the report: equal, different (fields and both values), missing, invalid
(the row does not pass validation), extra (on the platform, not in the input; only when
the platform is read by export). Credentials as for import.

Exit codes:
  0  nothing is missing or different
  1  some rows are missing or different
  2  usage or configuration error
  3  aborted (credentials refused, platform down)";

/// `deskport reconcile`'s flags.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The CSV or JSONL file that was imported (gzip or zstd allowed).
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand for rows without a brand_id column (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// The report (CSV); default: NAME.reconcile.csv beside the input.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Read the platform by export (finds extra customers too) or by a lookup per row;
    /// auto picks whichever needs fewer calls.
    #[arg(long, value_enum, default_value_t = crate::reconcile::Via::Auto)]
    via: crate::reconcile::Via,
    /// Also write the rows that are missing or different on the platform to FILE (CSV, the
    /// values as checked), a delta `deskport import` takes as it is.
    #[arg(long, value_name = "FILE")]
    write_missing: Option<PathBuf>,
}

/// Runs `deskport reconcile`.
pub fn run(args: ReconcileArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let InputPath::File(input_path) = &input.path else {
        return Err(usage("reconcile reads a file, not standard input"));
    };
    let connect = &args.connect;
    connect.check()?;
    let out = args.out.clone().unwrap_or_else(|| {
        let name = input_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "input".into());
        let stem = name.split('.').next().unwrap_or("input").to_string();
        input_path.with_file_name(format!("{stem}.reconcile.csv"))
    });
    let config = ReconcileConfig {
        mapping: args.read.mapping()?,
        rules: args.read.rules(Some(connect.target))?,
        threads: args.read.threads(),
        input,
        out,
        via: args.via,
        concurrency: connect.max_concurrency,
        write_missing: args.write_missing.clone(),
    };
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    // An events file (deskport events' columns): look for the events on the timelines.
    let columns = crate::input::open(&config.input)
        .map(|o| o.reader.columns().to_vec())
        .unwrap_or_default();
    if crate::import::events::is_events_file(&columns) {
        if connect.target != Platform::Omnidesk || args.write_missing.is_some() {
            return Err(usage(
                "this is an events file (message, source_url, initiated_by): it reconciles against Omnidesk timelines, without --write-missing",
            ));
        }
        return runtime.block_on(async {
            let connection = connect.connect(ui).await?;
            let settings = &connection.settings;
            let base = connect.require(settings)?;
            let brand = connect.omnidesk_brand(args.brand_id, false)?;
            let client = connect.omnidesk_client(settings, base, brand, transport);
            let result =
                crate::import::events::reconcile(&config.input, &config.out, brand, client).await;
            connection.close().await;
            let report = result.map_err(|e| super::failure(e.exit(), e))?;
            ui.summary(
                || report.summary(),
                || serde_json::json!({"level": "info", "event": "summary", "command": "reconcile", "events": report}),
            );
            Ok(if report.all_good() {
                Exit::Ok
            } else {
                Exit::RowsRejected
            })
        });
    }
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let client = match connect.target {
            Platform::Omnidesk => {
                let brand = connect.omnidesk_brand(args.brand_id, false)?;
                export_cmd::Client::Omnidesk(connect.omnidesk_client(settings, base, brand, transport))
            }
            Platform::Udesk => export_cmd::Client::Udesk(udesk_client(settings, base, transport)),
        };
        let result = reconcile::run(&config, client).await;
        connection.close().await;
        let report = result.map_err(|e| super::failure(e.exit(), e))?;
        ui.summary(
            || report.summary(),
            || serde_json::json!({"level": "info", "event": "summary", "command": "reconcile", "report": report}),
        );
        Ok(if report.all_good() {
            Exit::Ok
        } else {
            Exit::RowsRejected
        })
    })
}
