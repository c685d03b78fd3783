//! `deskport export`: flags → [`ExportConfig`] → [`export::run`](crate::export::run) →
//! summary and, when stopped, the command that continues.

use super::connect::{rerun_hint, spawn_ctrl_c, udesk_client, ConnectArgs};
use super::{seconds, usage, Ui};
use crate::export::changes::{self, default_changes_path, Baseline, ChangesConfig};
use crate::export::{self as export_cmd, ExportConfig, OutFormat, UdeskSource};
use crate::import::Stop;
use crate::validate::Platform;
use crate::{Error, Exit};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `--help` text after the flags.
pub const HELP: &str = "\
Credentials and base URL as for import (environment or --config, never flags).
The file appears only when complete: rows go to OUT.partial, a checkpoint to
OUT.checkpoint after every fsynced group of pages, and OUT.partial is renamed to OUT
at the end. --resume continues from the checkpoint (a fresh export when there is none).
--changes-since PREVIOUS or --state DIR also write OUT.changes.EXT: one insert, update
(with the fields) or delete row per customer changed since then.

Exit codes:
  0  the export is complete
  1  finished, but the file has fewer customers than the platform reported
  2  usage or configuration error, or the checkpoint is for another export
  3  aborted (credentials refused, platform down, interrupted); safe to --resume";

/// `deskport export`'s flags.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The file to write; it appears only when the export is complete. A name ending in
    /// .gz or .zst is compressed (gzip, Zstandard), resumable like a plain one.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// csv, jsonl or parquet (default: from the extension of --out, else csv).
    #[arg(long, value_enum)]
    format: Option<OutFormat>,
    /// Only customers matching this search keyword (Omnidesk: letters, digits and spaces).
    #[arg(long, value_name = "Q")]
    query: Option<String>,
    /// Udesk: only the customers of this customer filter.
    #[arg(long, value_name = "N")]
    filter_id: Option<u64>,
    /// Omnidesk: only this brand's customers (fetches each full record, like --details).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// Omnidesk: fetch each customer's full record (all channels and custom fields).
    #[arg(long)]
    details: bool,
    /// The checkpoint file (default: OUT.checkpoint).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Continue the export recorded in the checkpoint (a fresh export when there is none).
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Discard an earlier checkpoint and partial file and start over.
    #[arg(long)]
    restart: bool,
    /// No spreadsheet formula guard: cells exactly as the platform holds them.
    #[arg(long)]
    raw: bool,
    /// Udesk: the scroll export (1,000 a call) or the customer list (100 a call, 10,000 at most).
    #[arg(long, value_enum, default_value_t = UdeskSource::Scroll)]
    udesk_source: UdeskSource,
    /// Udesk: seconds a scroll id stays valid (60 on the platform).
    #[arg(long, value_name = "SECS")]
    udesk_scroll_ttl: Option<f64>,
    /// Udesk CSV: select fields by option title instead of id (ids re-import as they are;
    /// titles re-import too when the import reads the account's fields).
    #[arg(long)]
    labels: bool,
    /// Udesk CSV: head the custom columns with the field keys (custom_TextField_1) or the
    /// field titles, for people who open the file in a spreadsheet (import maps both back).
    #[arg(long, value_enum, default_value_t = Headers::Keys)]
    headers: Headers,
    /// Also write what changed since PREVIOUS, an earlier export of the same target and
    /// format: one row per customer inserted, updated (with the fields) or deleted, in
    /// OUT with .changes before its extension (or --changes).
    #[arg(long, value_name = "PREVIOUS", conflicts_with = "state")]
    changes_since: Option<PathBuf>,
    /// Keep this snapshot's digest in DIR and write the changes since the last export run
    /// with the same DIR (on the first, every customer is an insert): a cron line needs
    /// no file juggling.
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Where --changes-since/--state write the changes (.gz/.zst compress).
    #[arg(long, value_name = "FILE")]
    changes: Option<PathBuf>,
    /// CSV with --changes-since/--state: drop the columns of custom fields the platform no
    /// longer has (by default they stay, empty, so loads downstream do not break).
    #[arg(long)]
    drop_removed_columns: bool,
    /// Write parts of N customers each instead of one file: OUT-00001.csv, OUT-00002.csv, …
    /// (each CSV part with the header), all appearing when the export is complete.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    split_rows: Option<u64>,
}

/// How the custom columns of an export are headed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Headers {
    /// `custom_<key>`.
    Keys,
    /// The field's title.
    Titles,
}

/// Runs `deskport export`.
pub fn run(args: ExportArgs, ui: Ui) -> anyhow::Result<Exit> {
    let connect = &args.connect;
    connect.check()?;
    let target = connect.target;
    match target {
        Platform::Omnidesk => {
            if args.filter_id.is_some() {
                return Err(usage("--filter-id is a Udesk filter; Omnidesk has none"));
            }
            if let Some(q) = &args.query {
                if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') {
                    return Err(usage(
                        "Omnidesk's list search accepts only letters, digits and spaces (--query)",
                    ));
                }
            }
        }
        Platform::Udesk => {
            if args.brand_id.is_some() || args.details {
                return Err(usage(
                    "--brand-id and --details are for Omnidesk; Udesk's export already has every field",
                ));
            }
        }
    }
    let to_stdout = args.out == std::path::Path::new("-");
    if to_stdout && args.split_rows.is_some() {
        return Err(usage(
            "--split-rows writes part files beside --out FILE; standard output is one stream",
        ));
    }
    if to_stdout && (args.resume || args.checkpoint.is_some()) {
        return Err(usage(
            "--out - streams to standard output and keeps no checkpoint, so it cannot be resumed: write to a file (--out FILE) to resume",
        ));
    }
    let format = args
        .format
        .unwrap_or_else(|| OutFormat::from_path(&args.out));
    let baseline = match (&args.changes_since, &args.state) {
        (Some(p), _) => Some(Baseline::File(p.clone())),
        (None, Some(d)) => Some(Baseline::State(d.clone())),
        (None, None) => None,
    };
    if baseline.is_none() && (args.changes.is_some() || args.drop_removed_columns) {
        return Err(usage(
            "--changes and --drop-removed-columns go with --changes-since PREVIOUS or --state DIR",
        ));
    }
    if baseline.is_some() && to_stdout {
        return Err(usage(
            "--changes-since and --state compare the finished snapshot file, which --out - does not keep: write to a file (--out FILE)",
        ));
    }
    let compressed = crate::export::compress::Compression::from_path(&args.out)
        .as_str()
        .is_some();
    if format == OutFormat::Parquet && (to_stdout || compressed) {
        return Err(usage(
            "--format parquet writes a file of its own (compressed inside with Zstandard): not --out - and not .gz/.zst",
        ));
    }
    // A Parquet export's changes are JSONL (its snapshot is staged as JSONL).
    let changes_out = args.changes.clone().unwrap_or_else(|| match format {
        OutFormat::Parquet => default_changes_path(&args.out.with_extension("jsonl")),
        _ => default_changes_path(&args.out),
    });
    if changes_out == args.out || args.changes_since.as_ref() == Some(&changes_out) {
        return Err(usage(
            "--changes must name a file of its own, not the snapshot or PREVIOUS",
        ));
    }
    let titled = args.labels || args.headers == Headers::Titles;
    if titled && (target != Platform::Udesk || format != OutFormat::Csv) {
        return Err(usage(
            "--labels and --headers titles are for Udesk CSV exports: Omnidesk publishes no field titles or options, and JSONL lines are the platform's own objects",
        ));
    }
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let ttl = match args.udesk_scroll_ttl {
        Some(t) => seconds("--udesk-scroll-ttl", t)?,
        None => minute,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let origin = connect.origin(&base);
        let mut changes_prepared = None;
        let params = crate::export::checkpoint::Params {
            target: target.name().to_string(),
            origin,
            format: format.as_str().to_string(),
            source: match (target, args.udesk_source) {
                (Platform::Omnidesk, _) => "offset",
                (Platform::Udesk, UdeskSource::Scroll) => "scroll",
                (Platform::Udesk, UdeskSource::List) => "list",
            }
            .to_string(),
            query: args.query.clone(),
            filter_id: args.filter_id,
            brand_id: args.brand_id,
            details: args.details || args.brand_id.is_some(),
            raw: args.raw,
            labels: args.labels,
            header_titles: args.headers == Headers::Titles,
            split_rows: args.split_rows,
        };
        if let Some(baseline) = baseline {
            let prepared = changes::prepare(
                ChangesConfig {
                    baseline,
                    out: changes_out,
                    keep_removed_columns: !args.drop_removed_columns,
                    temp_dir: spill_dir(&args.out),
                    sort_budget: changes::SORT_BUDGET,
                },
                &params.target,
                &params.origin,
                format,
            )
            .map_err(|e| usage(e.to_string()))?;
            changes_prepared = Some(Arc::new(prepared));
        }
        let mut config = ExportConfig::new(args.out.clone(), params);
        config.changes = changes_prepared;
        config.format = format;
        if let Some(c) = &args.checkpoint {
            config.checkpoint = c.clone();
        }
        config.resume = args.resume;
        config.restart = args.restart;
        config.window = connect.max_concurrency;
        config.scroll_ttl = ttl;
        config.progress = ui.progress();
        let client = match target {
            Platform::Omnidesk => export_cmd::Client::Omnidesk(connect.omnidesk_client(settings, base, args.brand_id.unwrap_or(1), transport)),
            Platform::Udesk => {
                let udesk = udesk_client(settings, base, transport);
                if titled {
                    let fields = udesk.custom_fields().await.map_err(|e| {
                        anyhow::anyhow!("reading the account's custom fields for their titles: {e}")
                    })?;
                    config.fields = Some(Arc::new(fields));
                }
                export_cmd::Client::Udesk(udesk)
            }
        };
        let stop = Arc::new(Stop::default());
        let hint = rerun_hint(&[]);
        spawn_ctrl_c(
            stop.clone(),
            hint.clone(),
            ui.quiet,
            "writing the checkpoint",
            "the checkpoint",
        );
        let result = export_cmd::run(&config, client, stop).await;
        connection.close().await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let exit = e.exit();
                let resumable = matches!(exit, Exit::Aborted) && !to_stdout;
                let message = if resumable {
                    format!("{e}\nnothing written is lost; continue with:\n  {hint}")
                } else {
                    e.to_string()
                };
                return Err(match exit {
                    Exit::Usage => Error::Usage(message).into(),
                    _ => anyhow::anyhow!(message),
                });
            }
        };
        ui.summary(
            || match report.stopped {
                Some(_) if !to_stdout => format!("{}continue with:\n  {hint}\n", report.summary()),
                _ => report.summary(),
            },
            || serde_json::json!({"level": "info", "event": "summary", "command": "export", "report": report, "resume": report.stopped.as_ref().filter(|_| !to_stdout).map(|_| &hint)}),
        );
        Ok(if report.stopped.is_some() {
            Exit::Aborted
        } else if report.short.is_some() {
            Exit::RowsRejected
        } else {
            Exit::Ok
        })
    })
}

/// Where the change comparison's sorted runs spill: beside the output (a disk the export
/// already writes to, not a memory-backed /tmp).
fn spill_dir(out: &std::path::Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
