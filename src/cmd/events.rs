//! `deskport events FILE --target omnidesk`: flags → [`EventsConfig`] →
//! [`events::run`](crate::import::events::run) → summary and the command that resumes.

use super::connect::{rerun_hint, spawn_ctrl_c, ConnectArgs};
use super::read::ReadArgs;
use super::{usage, Ui};
use crate::import::events::{self, EventsConfig};
use crate::import::{ImportError, Stop};
use crate::input::InputPath;
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `--help` text after the flags.
pub const HELP: &str = "\
Columns: external_id (or customer_id: Omnidesk's numeric id), message, source_url,
initiated_by, and optionally brand_id (else --brand-id). Each row becomes one entry on the
customer's timeline (Omnidesk externalEvent). The journal makes it exactly once: a row
sent without an answer is looked for on the timeline before anything is sent again, and
when the timeline cannot confirm it the row fails as in_doubt; --resend-in-doubt (with
--resume) sends those again. Outputs in the journal directory as for import.

Exit codes:
  0  every row is on the timeline
  1  finished, but some rows were invalid, refused or in doubt
  2  usage or configuration error (nothing was sent)
  3  aborted (credentials refused, interrupted, I/O failure); safe to resume";

/// `deskport events`' flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The CSV or JSONL file, one event a row (gzip or zstd allowed).
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand for rows without a brand_id column (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// Directory for the journal and result files (default: NAME.events after the file).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Continue the run recorded in the journal (a fresh run when there is none).
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Set an earlier journal aside (journal.jsonl.old) and start over.
    #[arg(long)]
    restart: bool,
    /// Send rows left in doubt by an earlier run again when the timeline cannot confirm
    /// them (they may then be on the timeline twice: check first).
    #[arg(long, requires = "resume")]
    resend_in_doubt: bool,
}

/// Runs `deskport events`.
pub fn run(args: EventsArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let InputPath::File(input_path) = &input.path else {
        return Err(usage(
            "events reads a file, not standard input: the journal is tied to the file's content",
        ));
    };
    let connect = &args.connect;
    connect.check()?;
    if connect.target != Platform::Omnidesk {
        return Err(usage(
            "events are Omnidesk's externalEvent; Udesk documents no call that adds a timeline entry",
        ));
    }
    let journal_dir = args
        .journal
        .clone()
        .unwrap_or_else(|| crate::import::dir_after(input_path, "events"));
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let brand = connect.omnidesk_brand(args.brand_id, false)?;
        let config = EventsConfig {
            input,
            journal_dir,
            origin: connect.origin(&base),
            brand_id: brand,
            resume: args.resume,
            restart: args.restart,
            concurrency: connect.max_concurrency,
            resend_in_doubt: args.resend_in_doubt,
        };
        let client = connect.omnidesk_client(settings, base, brand, transport);
        let stop = Arc::new(Stop::default());
        let hint = rerun_hint(&[("--journal", config.journal_dir.display().to_string())]);
        spawn_ctrl_c(
            stop.clone(),
            hint.clone(),
            ui.quiet,
            "no new rows; finishing requests in flight",
            "the journal",
        );
        let result = events::run(&config, client, stop).await;
        connection.close().await;
        let report = match result {
            Err(e @ (ImportError::Usage(_)
            | ImportError::JournalExists { .. }
            | ImportError::JournalMismatch { .. }
            | ImportError::Locked { .. }
            | ImportError::Run(crate::Error::Usage(_)))) => return Err(usage(e.to_string())),
            Err(e) => return Err(anyhow::anyhow!(e.to_string())),
            Ok(r) => r,
        };
        ui.summary(
            || match report.stopped {
                Some(_) => format!("{}safe to resume with:\n  {hint}\n", report.summary()),
                None => report.summary(),
            },
            || serde_json::json!({"level": "info", "event": "summary", "command": "events", "report": report}),
        );
        let c = &report.counts;
        Ok(if report.stopped.is_some() {
            Exit::Aborted
        } else if c.failed + c.invalid + c.unfinished > 0 {
            Exit::RowsRejected
        } else {
            Exit::Ok
        })
    })
}
