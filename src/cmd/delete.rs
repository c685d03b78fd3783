//! `deskport delete FILE`: flags → [`DeleteConfig`] → the plan read from the file → the
//! dry run, or the confirmation and [`delete::run`](crate::delete::run) → the summary.

use super::connect::{rerun_hint, spawn_ctrl_c, udesk_client, ConnectArgs};
use super::read::ReadArgs;
use super::{usage, Ui};
use crate::delete::{self, DeleteConfig, DeleteError, DeletePlan};
use crate::import::Stop;
use crate::input::InputPath;
use crate::platform::Target;
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

/// `--help` text after the flags.
pub const HELP: &str = "\
Deletes the customers a file names: by external id, and with --match by email or phone
(a customer found by address that carries another external id is left alone, a failure).
--purge (Omnidesk) removes each customer with its tickets and items (purgeData).
Progress goes to DIR/delete.jsonl (default DIR: NAME.delete), so a stopped delete resumes
when run again; every row's outcome is in DIR/delete.csv. --dry-run looks each row up and
lists what would go in DIR/delete-dry-run.csv, deleting nothing.

Exit codes:
  0  every customer the file names is gone
  1  some rows named no customer we could use, or their delete was refused
  2  usage error, or not confirmed (nothing was deleted)
  3  aborted (credentials refused, interrupted, I/O failure); safe to run again";

/// `deskport delete`'s flags.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The CSV or JSONL file naming the customers (gzip or zstd allowed).
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand for rows without a brand_id column (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// Omnidesk: purge each customer with its tickets and items (GDPR erasure) instead of
    /// deleting the customer record.
    #[arg(long)]
    purge: bool,
    /// What finds a row's customer, in order: `id` (the external id, always first), then
    /// `email` and/or `phone` for rows whose external id finds no one (or that have none).
    #[arg(
        long = "match",
        value_name = "KEYS",
        value_delimiter = ',',
        default_value = "id"
    )]
    match_keys: Vec<String>,
    /// Directory for progress and results (default: NAME.delete after the input file).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Delete without asking (for scripts); otherwise the count is shown and a terminal
    /// must answer yes.
    #[arg(long)]
    yes: bool,
    /// Look every row up and list what would go; delete nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Runs `deskport delete`.
pub fn run(args: DeleteArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let InputPath::File(input_path) = &input.path else {
        return Err(usage(
            "delete reads a file, not standard input: its progress is tied to the file's content",
        ));
    };
    let connect = &args.connect;
    connect.check()?;
    if args.purge && connect.target != Platform::Omnidesk {
        return Err(usage(
            "--purge is Omnidesk's purgeData; Udesk documents destroy_customer only (run without --purge)",
        ));
    }
    let match_keys = super::import::match_keys(&args.match_keys)?;
    let dir = args
        .journal
        .clone()
        .unwrap_or_else(|| crate::import::dir_after(input_path, "delete"));
    let mut rules = args.read.rules(Some(connect.target))?;
    // Nothing but the ids and addresses is sent: a row is not refused for a missing name.
    rules.required_fields = false;
    let mut config = DeleteConfig {
        input,
        mapping: args.read.mapping()?,
        rules,
        threads: args.read.threads(),
        dir,
        target: connect.target.name().to_string(),
        origin: String::new(),
        purge: args.purge,
        match_keys,
        concurrency: connect.max_concurrency,
    };
    let minute = connect.minute()?;
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        config.origin = connect.origin(&base);
        let (plan, header) = delete::read(&config).await.map_err(refusal)?;
        let stop = Arc::new(Stop::default());
        let exit = match connect.target {
            Platform::Omnidesk => {
                let brand = connect.omnidesk_brand(args.brand_id, false)?;
                let client = connect.omnidesk_client(settings, base, brand, transport);
                drive(client, &args, &config, &plan, &header, stop, ui).await
            }
            Platform::Udesk => {
                let client = udesk_client(settings, base, transport);
                drive(client, &args, &config, &plan, &header, stop, ui).await
            }
        };
        connection.close().await;
        exit
    })
}

/// A configuration or usage problem exits 2; anything else aborts (3).
fn refusal(e: DeleteError) -> anyhow::Error {
    match e {
        DeleteError::Run(crate::Error::Usage(m)) => usage(m),
        e @ DeleteError::Mismatch { .. } => usage(e.to_string()),
        e => anyhow::anyhow!(e.to_string()),
    }
}

async fn drive<T: Target>(
    client: Arc<T>,
    args: &DeleteArgs,
    config: &DeleteConfig,
    plan: &DeletePlan,
    header: &delete::DeleteHeader,
    stop: Arc<Stop>,
    ui: Ui,
) -> anyhow::Result<Exit> {
    let verb = if config.purge { "purge" } else { "delete" };
    if args.dry_run {
        let report = delete::dry_run(client, config, plan)
            .await
            .map_err(refusal)?;
        ui.summary(
            || {
                format!(
                    "dry run: nothing was deleted\n  would {verb}  {:>9}\n  not found     {:>9}\n  fail          {:>9}\n  invalid       {:>9}\n  done before   {:>9}\nrow by row: {}\n",
                    report.would_delete,
                    report.not_found,
                    report.failed,
                    report.unusable,
                    report.done_before,
                    report.file.display()
                )
            },
            || serde_json::json!({"level": "info", "event": "summary", "command": "delete", "dry_run": report}),
        );
        return Ok(Exit::Ok);
    }
    let todo = plan.to_do().len();
    let describe = format!(
        "up to {todo} customers named by {} ({} rows done by an earlier run; {} rows name no customer)",
        header.input,
        plan.named.len() - todo,
        plan.unusable.len()
    );
    let question = format!("{verb} {describe} from {}?", config.origin);
    let unasked = "delete removes customers: confirm with --yes (standard input is not a terminal to ask on); --dry-run lists what would go";
    if todo > 0 && !super::confirm(args.yes, &question, unasked)? {
        return Err(usage(format!("not confirmed: nothing was {verb}d")));
    }
    let hint = rerun_hint(&[("--journal", config.dir.display().to_string())]);
    spawn_ctrl_c(
        stop.clone(),
        hint.clone(),
        ui.quiet,
        "no new deletes; finishing those in flight",
        "delete.jsonl",
    );
    let report = delete::run(client, config, plan, header, stop)
        .await
        .map_err(refusal)?;
    ui.summary(
        || match report.stopped {
            Some(_) => format!("{}continue with:\n  {hint}\n", report.summary(&config.dir)),
            None => report.summary(&config.dir),
        },
        || serde_json::json!({"level": "info", "event": "summary", "command": "delete", "report": report}),
    );
    Ok(if report.stopped.is_some() {
        Exit::Aborted
    } else if report.failed > 0 || report.unusable > 0 {
        Exit::RowsRejected
    } else {
        Exit::Ok
    })
}
