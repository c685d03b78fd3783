//! `deskport undo JOURNAL_DIR`: what the import created, the confirmation, the deletes
//! ([`crate::import::undo`]), the summary.

use super::connect::{rerun_hint, spawn_ctrl_c, udesk_client, ConnectArgs};
use super::{usage, Ui};
use crate::import::undo::{self, UndoPlan};
use crate::import::Stop;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `--help` text after the flags.
pub const HELP: &str = "\
Deletes exactly the customers the import with this journal created (with its resumes),
never one it updated or found there already; --target and the origin must be the import's.
Progress goes to JOURNAL_DIR/undo.jsonl, so a stopped undo resumes when run again; the
outcome of every created row is in JOURNAL_DIR/undo.csv.

Exit codes:
  0  every customer the import created is gone
  1  some deletes were refused (run it again to retry them)
  2  usage error, or not confirmed (nothing was deleted)
  3  aborted (credentials refused, interrupted, I/O failure); safe to run again";

/// `deskport undo`'s flags.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The import's journal directory (NAME.import, or its --journal).
    journal: PathBuf,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Delete without asking (for scripts); otherwise the count is shown and a terminal
    /// must answer yes.
    #[arg(long)]
    yes: bool,
    /// Show what would be deleted; send nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `deskport undo`.
pub fn run(args: UndoArgs, ui: Ui) -> anyhow::Result<Exit> {
    let connect = &args.connect;
    connect.check()?;
    let plan = UndoPlan::read(&args.journal).map_err(|e| usage(e.to_string()))?;
    if plan.header.target != connect.target.name() {
        return Err(usage(format!(
            "this journal's import went to {}, not {}: undo with --target {}",
            plan.header.target,
            connect.target.name(),
            plan.header.target
        )));
    }
    let todo = plan.to_delete();
    let describe = format!(
        "{} customers created by the import of {} ({} already done by an earlier undo); {} updated rows cannot be undone (their earlier values are not known) and {} that existed are left alone",
        todo.len(),
        plan.header.input,
        plan.created.len() - todo.len(),
        plan.updated,
        plan.existed
    );
    if args.dry_run {
        println!("undo would delete {describe}");
        for c in todo.iter().take(20) {
            println!(
                "  line {}: {} (platform id {})",
                c.line,
                c.external_id,
                c.platform_id
                    .as_deref()
                    .unwrap_or("looked up by external id")
            );
        }
        if todo.len() > 20 {
            println!("  … and {} more", todo.len() - 20);
        }
        return Ok(Exit::Ok);
    }
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let origin = connect.origin(&base);
        if let Some(then) = &plan.header.origin {
            if *then != origin {
                return Err(usage(format!(
                    "this journal's import went to {then}, not {origin}: undo against the same account"
                )));
            }
        }
        let question = format!("delete {describe} from {origin}?");
        let refusal = "undo deletes customers: confirm with --yes (standard input is not a terminal to ask on)";
        if !super::confirm(args.yes, &question, refusal)? {
            return Err(usage("not confirmed: nothing was deleted"));
        }
        let stop = Arc::new(Stop::default());
        let hint = rerun_hint(&[]);
        spawn_ctrl_c(
            stop.clone(),
            hint.clone(),
            ui.quiet,
            "no new deletes; finishing those in flight",
            "undo.jsonl",
        );
        let dir = args.journal.clone();
        let concurrency = connect.max_concurrency;
        let report = match connect.target {
            crate::validate::Platform::Omnidesk => {
                let brand = plan.header.brand_id.unwrap_or(1);
                let client = connect.omnidesk_client(settings, base, brand, transport);
                undo::run(client, &plan, &dir, concurrency, stop).await
            }
            crate::validate::Platform::Udesk => {
                let client = udesk_client(settings, base, transport);
                undo::run(client, &plan, &dir, concurrency, stop).await
            }
        };
        connection.close().await;
        let report = match report {
            Err(e @ undo::UndoError::Locked(_)) => return Err(usage(e.to_string())),
            other => other?,
        };
        ui.summary(
            || match report.stopped {
                Some(_) => format!("{}continue with:\n  {hint}\n", report.summary(&dir)),
                None => report.summary(&dir),
            },
            || serde_json::json!({"level": "info", "event": "summary", "command": "undo", "report": report}),
        );
        Ok(if report.stopped.is_some() {
            Exit::Aborted
        } else if report.failed > 0 {
            Exit::RowsRejected
        } else {
            Exit::Ok
        })
    })
}
