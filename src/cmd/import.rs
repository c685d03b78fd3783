//! `deskport import`: flags → [`ImportConfig`] → [`import::run`](crate::import::run) (or the
//! dry run) against the chosen platform → summary and the command that resumes.

use super::connect::{rerun_hint, spawn_ctrl_c, udesk_client, ConnectArgs};
use super::read::ReadArgs;
use super::{usage, Ui};
use crate::import::{self as import_cmd, ImportConfig, Mode, Stop};
use crate::input::InputPath;
use crate::platform::{BaseUrl, MatchKey, Target};
use crate::validate::Platform;
use crate::{Error, Exit};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `--help` text after the flags.
pub const HELP: &str = "\
Credentials come from the environment (or --config), never from flags:
  Omnidesk: DESKPORT_OMNIDESK_API_KEY
  Udesk:    DESKPORT_UDESK_EMAIL and DESKPORT_UDESK_TOKEN (or DESKPORT_UDESK_PASSWORD to log in)
  Base URL: --base-url, DESKPORT_OMNIDESK_BASE_URL / DESKPORT_UDESK_BASE_URL, or the config file.
Outputs go to the journal directory: results.csv, failures.csv, rejects.csv, journal.jsonl.

Exit codes:
  0  every row is on the platform (created, updated or already there)
  1  finished, but some rows were invalid, refused or unfinished
  2  usage or configuration error (nothing was done)
  3  aborted (credentials refused, interrupted, I/O failure); safe to resume";

/// `deskport import`'s flags.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The CSV or JSONL file (gzip or zstd allowed).
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand for rows without a brand_id column (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
    /// Omnidesk: send noSync with every create and addChannelOnly, so the platform does not
    /// link other tickets with the same email or phone to the imported customers.
    #[arg(long)]
    no_sync: bool,
    /// What finds a row's existing customer, in order: `id` (the external id, always first)
    /// and then `email` and/or `phone`, which link a customer that has no external id
    /// (created by chat or phone) instead of failing on its address: the first key that
    /// finds anyone decides; two customers, or one with another external id, are a
    /// conflict in failures.csv.
    #[arg(
        long = "match",
        value_name = "KEYS",
        value_delimiter = ',',
        default_value = "id"
    )]
    match_keys: Vec<String>,
    /// Reconcile first (as `deskport reconcile` does, report in the journal directory) and
    /// send only the rows missing or different on the platform; rows it holds as they are
    /// end `exists` without a call. The delta at cut-over, in one run.
    #[arg(long, conflicts_with = "dry_run")]
    only_missing: bool,
    /// create: new customers only; upsert: update or create; update: existing customers only.
    #[arg(long, value_enum, default_value_t = Mode::Create)]
    mode: Mode,
    /// Directory for the journal and result files (default: NAME.import after the input file).
    #[arg(long, value_name = "DIR")]
    journal: Option<PathBuf>,
    /// Continue the run recorded in the journal (a fresh run when there is none).
    #[arg(long, conflicts_with = "restart")]
    resume: bool,
    /// Set an earlier journal aside (journal.jsonl.old) and start over.
    #[arg(long)]
    restart: bool,
    /// Send no writes: report per row what would happen (with lookups when credentials are given).
    #[arg(long)]
    dry_run: bool,
}

/// The keys of `--match` beyond the external id, checked: `id` first when given, each once.
pub fn match_keys(given: &[String]) -> anyhow::Result<Vec<MatchKey>> {
    let mut keys = Vec::new();
    for (i, raw) in given.iter().enumerate() {
        let key = match raw.trim().to_ascii_lowercase().as_str() {
            "id" if i == 0 => continue,
            "id" => {
                return Err(usage(
                    "--match: id comes first (rows are written by external id; email and phone find customers that have none)",
                ))
            }
            "email" => MatchKey::Email,
            "phone" => MatchKey::Phone,
            other => {
                return Err(usage(format!(
                    "--match: {other:?} is not a key (id, email, phone)"
                )))
            }
        };
        if keys.contains(&key) {
            return Err(usage(format!("--match names {} twice", key.name())));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Runs `deskport import`.
pub fn run(args: ImportArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let InputPath::File(input_path) = &input.path else {
        return Err(usage(
            "import reads a file, not standard input: the journal is tied to the file's content",
        ));
    };
    let connect = &args.connect;
    connect.check()?;
    if args.no_sync && connect.target != Platform::Omnidesk {
        return Err(usage(
            "--no-sync is Omnidesk's noSync; Udesk links no tickets to an imported customer",
        ));
    }
    let match_keys = match_keys(&args.match_keys)?;
    if !match_keys.is_empty() && args.mode == Mode::Update {
        return Err(usage(
            "--match email/phone links customers that have no external id, for create and upsert; --mode update only writes to customers found by external id",
        ));
    }
    let journal_dir = args
        .journal
        .clone()
        .unwrap_or_else(|| import_cmd::default_journal_dir(input_path));
    let mut config = ImportConfig::new(input, args.mode, journal_dir);
    config.mapping = args.read.mapping()?;
    config.rules = args.read.rules(Some(connect.target))?;
    // Rows that only update existing customers cannot be refused for a missing required field.
    config.rules.required_fields = args.mode != Mode::Update;
    config.match_keys = match_keys;
    config.threads = args.read.threads();
    config.resume = args.resume;
    config.restart = args.restart;
    config.max_concurrency = connect.max_concurrency;
    config.progress = ui.progress();
    if !ui.quiet {
        let format = ui.log_format;
        config.notices = import_cmd::Notices::to(move |text| match format {
            super::LogFormat::Text => eprintln!("{text}"),
            super::LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({"level": "info", "event": "plan", "message": text})
            ),
        });
    }
    let minute = connect.minute()?;
    config.bulk_interval = minute;
    config.bulk_settle = minute.mul_f64(2.0 / 60.0).max(Duration::from_millis(20));
    let transport = connect.transport(minute, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(ui).await?;
        let settings = &connection.settings;
        // A dry run without an origin shows requests to a placeholder and looks nothing up.
        let lookups = connect.has_credentials(settings) && settings.base_url.is_some();
        let base = match (&settings.base_url, args.dry_run) {
            (Some(b), _) => BaseUrl::parse(b).map_err(|e| usage(e.to_string()))?,
            (None, true) => {
                BaseUrl::parse(connect.example_origin()).map_err(|e| usage(e.to_string()))?
            }
            (None, false) => return Err(connect.no_base_url()),
        };
        if !connect.has_credentials(settings) && !args.dry_run {
            return Err(connect.no_credentials());
        }
        let mut config = config;
        config.origin = connect.origin(&base);
        let stop = Arc::new(Stop::default());
        let hint = rerun_hint(&[("--journal", config.journal_dir.display().to_string())]);
        spawn_ctrl_c(
            stop.clone(),
            hint.clone(),
            ui.quiet,
            "no new rows; finishing requests in flight",
            "the journal",
        );
        let exit = match connect.target {
            Platform::Omnidesk => {
                let brand = connect.omnidesk_brand(args.brand_id, args.dry_run)?;
                config.brand_id = Some(brand);
                let client = Arc::new(
                    connect
                        .omnidesk(settings, base, brand, transport)
                        .with_no_sync(args.no_sync),
                );
                if args.only_missing {
                    let reading = crate::export::Client::Omnidesk(client.clone());
                    config.only_missing = Some(equal_on_platform(reading, &config).await?);
                }
                drive(client, &config, &args, lookups, stop, &hint, ui).await
            }
            Platform::Udesk => {
                let client = udesk_client(settings, base, transport);
                if args.only_missing {
                    let reading = crate::export::Client::Udesk(client.clone());
                    config.only_missing = Some(equal_on_platform(reading, &config).await?);
                }
                drive(client, &config, &args, lookups, stop, &hint, ui).await
            }
        };
        connection.close().await;
        exit
    })
}

/// `--only-missing`: a reconcile of the file against the platform (report in the journal
/// directory); the lines it found equal, with their platform ids.
async fn equal_on_platform(
    client: crate::export::Client,
    config: &ImportConfig,
) -> anyhow::Result<Arc<std::collections::HashMap<u64, String>>> {
    // A journal that needs --resume or --restart is said before the reconcile's calls.
    if !config.resume && !config.restart && config.journal_dir.join("journal.jsonl").exists() {
        let e = import_cmd::ImportError::JournalExists {
            dir: config.journal_dir.clone(),
        };
        return Err(usage(e.to_string()));
    }
    std::fs::create_dir_all(&config.journal_dir)
        .with_context(|| format!("creating {}", config.journal_dir.display()))?;
    let reconcile = crate::reconcile::ReconcileConfig {
        input: config.input.clone(),
        mapping: config.mapping.clone(),
        rules: config.rules.clone(),
        threads: config.threads,
        out: config.journal_dir.join("reconcile.csv"),
        via: crate::reconcile::Via::Auto,
        concurrency: config.max_concurrency,
        write_missing: None,
    };
    let (report, equal) = crate::reconcile::equal_lines(&reconcile, client)
        .await
        .map_err(|e| super::failure(e.exit(), e))?;
    config.notices.say(&format!(
        "only missing: the platform holds {} rows as they are (they end `exists` without a call); {} different, {} missing are sent (reconcile by {}, {} calls: {})",
        report.equal,
        report.different,
        report.missing,
        report.via,
        report.requests,
        report.out.display()
    ));
    Ok(Arc::new(equal))
}

async fn drive<T: Target>(
    client: Arc<T>,
    config: &ImportConfig,
    args: &ImportArgs,
    lookups: bool,
    stop: Arc<Stop>,
    hint: &str,
    ui: Ui,
) -> anyhow::Result<Exit> {
    let mut config = config.clone();
    if lookups && config.mapping.fields().is_none() {
        if let Some(fields) = account_fields(client.as_ref(), &config.notices).await {
            config.mapping = config.mapping.with_fields(Arc::new(fields));
        }
    }
    let config = &config;
    if args.dry_run {
        let report = import_cmd::dry_run::run(config, client, lookups)
            .await
            .map_err(import_error)?;
        ui.summary(
            || report.summary(),
            || serde_json::json!({"level": "info", "event": "summary", "command": "import", "dry_run": true, "report": report}),
        );
        return Ok(if report.reject + report.fail > 0 {
            Exit::RowsRejected
        } else {
            Exit::Ok
        });
    }
    let report = import_cmd::run(config, client, stop)
        .await
        .map_err(import_error)?;
    ui.summary(
        || report.summary(hint),
        || serde_json::json!({"level": "info", "event": "summary", "command": "import", "report": report, "resume": report.stopped.as_ref().map(|_| hint)}),
    );
    Ok(if report.stopped.is_some() {
        Exit::Aborted
    } else if report.all_good() {
        Exit::Ok
    } else {
        Exit::RowsRejected
    })
}

/// The account's custom field definitions (one read), so values are checked by type and
/// columns matched by title before any row is sent. When they cannot be read, values go as
/// written and a notice says so; refused credentials are left to the run's probe, which
/// stops it with the platform's words.
pub async fn account_fields<T: Target>(
    client: &T,
    notices: &import_cmd::Notices,
) -> Option<crate::fields::FieldDefs> {
    match client.field_definitions().await {
        Ok(fields) => fields,
        Err(e) if e.stops_run() => None,
        Err(e) => {
            notices.say(&format!(
                "custom fields: the account's definitions could not be read ({}); custom values are sent as written. Pass --fields FILE to check them",
                crate::platform::redact(&e.to_string())
            ));
            None
        }
    }
}

/// Keeps the import error's exit code through anyhow.
fn import_error(e: import_cmd::ImportError) -> anyhow::Error {
    match e {
        import_cmd::ImportError::Run(inner) => inner.into(),
        other => {
            let exit = other.exit();
            let message = other.to_string();
            match exit {
                Exit::Usage => Error::Usage(message).into(),
                _ => anyhow::anyhow!(message),
            }
        }
    }
}
