//! The `deskport` binary: flags → typed configs → library calls → output and exit code.
//! anyhow is used only here.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use deskport::cmd::validate::{self as validate_cmd, ValidateConfig};
use deskport::export::{self as export_cmd, ExportConfig, OutFormat, UdeskSource};
use deskport::import::{self as import_cmd, ImportConfig, Mode, Stop};
use deskport::input::{self, Format, InputOptions, InputPath, DEFAULT_MAX_FIELD_BYTES};
use deskport::mapping::Mapping;
use deskport::target::http::{Transport, TransportConfig};
use deskport::target::omnidesk::Omnidesk;
use deskport::target::udesk::{Udesk, UdeskAuth};
use deskport::target::{BaseUrl, Secret, Target};
use deskport::validate::first_seen::Limits as DuplicateLimits;
use deskport::validate::{phone, DuplicatePolicy, Platform, Rules};
use deskport::{Error, Exit};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// mimalloc: measured faster than the system allocator for our many small, short-lived
/// strings (see the README's benchmark section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3 option numbers (`mi_option_e` in its `mimalloc.h`; the Rust bindings name
/// only the v2 ones). `allocator_options_are_the_ones_we_mean` checks them against their
/// documented defaults, so an upgrade that renumbers them fails the tests.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc to commit arena memory only when it is used and to hand freed pages back to
/// the OS at once. Its defaults (eager commit, a 1-second purge delay) kept ~50 MB more
/// resident for no measured speed gain (README, "Where the memory goes").
///
/// The options must be set before the first allocation reserves an arena, so on Linux this
/// runs from the executable's `.init_array`, before Rust's runtime starts; elsewhere from
/// `main` (later, so less effective). Not in the test binary, whose test checks the defaults.
fn return_freed_memory_promptly() {
    // SAFETY: plain option setters of the allocator, called once before any thread is
    // spawned; they take no pointers.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
}

#[cfg(all(target_os = "linux", not(test)))]
#[used]
#[unsafe(link_section = ".init_array")]
static RETURN_FREED_MEMORY_PROMPTLY: extern "C" fn() = {
    extern "C" fn before_main() {
        return_freed_memory_promptly()
    }
    before_main
};

const EXIT_CODES: &str = "\
Exit codes:
  0  all good
  1  finished, but some rows were rejected or failed
  2  usage or configuration error (nothing was done)
  3  aborted (I/O failure, credentials refused, …)";

/// Move customer bases in and out of helpdesk platforms (Omnidesk, Udesk).
#[derive(Debug, Parser)]
#[command(name = "deskport", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bar and no summary on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Format of the summary and messages on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for schedulers and log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and normalize a customer file; write the clean rows, the rejects and a report.
    #[command(after_help = EXIT_CODES)]
    Validate(ValidateArgs),
    /// Write the valid rows of a file to Omnidesk or Udesk, with a journal so a stopped run resumes.
    #[command(after_help = IMPORT_HELP)]
    Import(ImportArgs),
    /// Export the platform's customers to CSV or JSONL, with a checkpoint so a stopped export resumes.
    #[command(after_help = EXPORT_HELP)]
    Export(ExportArgs),
    /// Check that every valid row of a file is on the platform with the same values.
    #[command(after_help = RECONCILE_HELP)]
    Reconcile(ReconcileArgs),
    /// Run the built-in emulated Omnidesk + Udesk server in the foreground.
    #[command(after_long_help = deskport::sandbox::DECISIONS)]
    Sandbox(SandboxArgs),
}

#[derive(Debug, Args)]
struct SandboxArgs {
    /// Port to listen on (0 for any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on; keep it on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Create this many realistic customers on both platforms at start.
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed_customers: u64,
    /// Seed for fault decisions (the same seed gives the same faults to a sequential client).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platform seconds per real second: 60 makes a platform minute last one second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Udesk calls allowed per platform minute (the published budget is 60).
    #[arg(long, default_value_t = 60)]
    udesk_calls_per_minute: u32,
    /// How Udesk refuses over-budget calls: HTTP 429, or HTTP 200 with code 429.
    #[arg(long, value_enum, default_value_t = deskport::sandbox::UdeskRateLimitStyle::Http429)]
    udesk_rate_limit_style: deskport::sandbox::UdeskRateLimitStyle,
    /// Omnidesk requests per platform second (default: unlimited, as no limit is published).
    #[arg(long, value_name = "R")]
    omnidesk_rate: Option<f64>,
    /// Platform seconds between accepted Udesk bulk imports.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    bulk_import_interval: f64,
    /// Platform seconds before an accepted bulk import is applied.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    bulk_import_delay: f64,
    /// Platform seconds a Udesk scroll id stays valid.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    scroll_ttl: f64,
    /// Fraction of requests answered 500 without being applied.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of requests applied and then answered 500.
    #[arg(long, default_value_t = 0.0)]
    apply_then_error_rate: f64,
    /// Fraction of requests whose connection is cut before the reply (not applied).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction of requests applied and then cut before the reply.
    #[arg(long, default_value_t = 0.0)]
    apply_then_drop_rate: f64,
    /// Added latency per request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Up to this much extra latency, uniformly.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Requests in flight beyond which requests queue (or get 503 with --over-capacity reject).
    #[arg(long)]
    capacity: Option<usize>,
    /// What happens beyond --capacity.
    #[arg(long, value_enum, default_value_t = deskport::sandbox::OverCapacity::Queue)]
    over_capacity: deskport::sandbox::OverCapacity,
    /// Load the store from this file at start (if it exists); POST /__sandbox/save and Ctrl-C write it.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Omnidesk apiKey the sandbox accepts (default: the demo key).
    #[arg(long, value_name = "KEY")]
    omnidesk_api_key: Option<String>,
    /// Udesk admin email (default: the demo email).
    #[arg(long, value_name = "EMAIL")]
    udesk_email: Option<String>,
    /// Udesk open API token (default: the demo token).
    #[arg(long, value_name = "TOKEN")]
    udesk_token: Option<String>,
    /// Udesk password for log_in (default: the demo password).
    #[arg(long, value_name = "PASSWORD")]
    udesk_password: Option<String>,
}

/// How the input is read, mapped and checked; shared by `validate` and `import`.
#[derive(Debug, Args)]
struct ReadArgs {
    /// Input format; by default from the extension (.jsonl/.ndjson/.json → jsonl, else csv).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Input encoding (utf-8, windows-1252, iso-8859-1, utf-16le, …); by default detected.
    #[arg(long)]
    encoding: Option<String>,
    /// CSV delimiter (, ; | or \t); by default sniffed.
    #[arg(long)]
    delimiter: Option<String>,
    /// TOML mapping file: [columns] "Source column" = "field" | "custom.<name>" | "ignore".
    #[arg(long, value_name = "FILE")]
    map: Option<PathBuf>,
    /// Region (ISO code, e.g. NL) for phone numbers without +country code when the row has no country.
    #[arg(long, value_name = "CC")]
    default_region: Option<String>,
    /// Emails and phones already used by an earlier row: warn (keep), error (reject) or off.
    #[arg(long, value_enum, default_value_t = DuplicatePolicy::Warn)]
    duplicates: DuplicatePolicy,
    /// Keys (ids, emails, phones) the duplicate check keeps in memory, 16 bytes each, before it
    /// spills sorted runs to a temporary directory under TMPDIR. More is faster on huge files.
    #[arg(long, default_value_t = DuplicateLimits::default().memory_keys(), value_name = "KEYS")]
    duplicate_memory_keys: usize,
    /// Reject rows with a field larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FIELD_BYTES, value_name = "BYTES")]
    max_field_bytes: usize,
    /// Worker threads for checking (default: all cores).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

impl ReadArgs {
    fn input(&self, input: &str) -> anyhow::Result<InputOptions> {
        input_options(
            input,
            self.format,
            self.encoding.as_deref(),
            self.delimiter.as_deref(),
            self.max_field_bytes,
        )
    }

    fn mapping(&self) -> anyhow::Result<Mapping> {
        Ok(match &self.map {
            Some(path) => Mapping::from_file(path).map_err(Error::from)?,
            None => Mapping::builtin(),
        })
    }

    fn rules(&self, platform: Option<Platform>) -> anyhow::Result<Rules> {
        let default_region = match &self.default_region {
            Some(code) => Some(phone::region_from_code(code).ok_or_else(|| {
                usage(format!(
                    "--default-region {code:?} is not an ISO 3166 two-letter country code"
                ))
            })?),
            None => None,
        };
        Ok(Rules {
            platform,
            default_region,
            duplicates: self.duplicates,
            duplicate_limits: DuplicateLimits::default()
                .with_memory_keys(self.duplicate_memory_keys),
        })
    }

    fn threads(&self) -> usize {
        self.threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            NonZeroUsize::get,
        )
    }
}

const IMPORT_HELP: &str = "\
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

#[derive(Debug, Args)]
struct ImportArgs {
    /// The CSV or JSONL file (gzip allowed).
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    connect: ConnectArgs,
    /// Omnidesk brand for rows without a brand_id column (with --sandbox: 1).
    #[arg(long, value_name = "N")]
    brand_id: Option<u64>,
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

/// Which platform, where, with which credentials file, and how politely: shared by
/// `import`, `export` and `reconcile`.
#[derive(Debug, Args)]
struct ConnectArgs {
    /// The platform.
    #[arg(long, value_enum)]
    target: Platform,
    /// Start the built-in sandbox on a loopback port with demo credentials and use it.
    #[arg(long)]
    sandbox: bool,
    /// Platform seconds per real second for --sandbox (60 makes Udesk's minute last a second).
    #[arg(long, default_value_t = 1.0, value_name = "X", requires = "sandbox")]
    sandbox_time_scale: f64,
    /// Customers the --sandbox starts with (deterministic demo data).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "sandbox")]
    sandbox_customers: u64,
    /// The platform's origin, e.g. https://ACCOUNT.omnidesk.com or https://SUBDOMAIN.udesk.cn.
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// TOML file with [omnidesk] api_key / base_url and [udesk] email / token / password / base_url.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Most requests in flight; the actual number adapts between 1 and this.
    #[arg(long, default_value_t = 16, value_name = "N")]
    max_concurrency: usize,
    /// Keep --max-concurrency requests in flight instead of adapting (for measuring).
    #[arg(long)]
    fixed_concurrency: bool,
    /// Requests per second at most (Udesk default: its budget of 60 a minute).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Udesk calls per platform minute (the published budget is 60).
    #[arg(long, default_value_t = 60, value_name = "N")]
    udesk_calls_per_minute: u32,
    /// Length of Udesk's budget minute in seconds (shorter only against a sped-up sandbox).
    #[arg(long, value_name = "SECS")]
    udesk_minute: Option<f64>,
    /// Seconds allowed for one request.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    timeout: f64,
    /// Attempts per request before giving up on it.
    #[arg(long, default_value_t = 8, value_name = "N")]
    max_attempts: u32,
}

const EXPORT_HELP: &str = "\
Credentials and base URL as for import (environment or --config, never flags).
The file appears only when complete: rows go to OUT.partial, a checkpoint to
OUT.checkpoint after every fsynced group of pages, and OUT.partial is renamed to OUT
at the end. --resume continues from the checkpoint (a fresh export when there is none).

Exit codes:
  0  the export is complete
  2  usage or configuration error, or the checkpoint is for another export
  3  aborted (credentials refused, platform down, interrupted); safe to --resume";

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The file to write; it appears only when the export is complete.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// csv or jsonl (default: from the extension of --out, else csv).
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
}

const RECONCILE_HELP: &str = "\
Statuses in the report: equal, different (fields and both values), missing, invalid
(the row does not pass validation), extra (on the platform, not in the input; only when
the platform is read by export). Credentials as for import.

Exit codes:
  0  nothing is missing or different
  1  some rows are missing or different
  2  usage or configuration error
  3  aborted (credentials refused, platform down)";

#[derive(Debug, Args)]
struct ReconcileArgs {
    /// The CSV or JSONL file that was imported (gzip allowed).
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
    #[arg(long, value_enum, default_value_t = deskport::reconcile::Via::Auto)]
    via: deskport::reconcile::Via,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The CSV or JSONL file (gzip allowed), or - for standard input.
    input: String,
    #[command(flatten)]
    read: ReadArgs,
    /// Print the column mapping that would be used, then exit.
    #[arg(long)]
    print_mapping: bool,
    /// Apply this platform's rules too (names, lengths, levels, custom field keys).
    #[arg(long, value_enum)]
    target: Option<Platform>,
    /// Write the clean, normalized rows here (.jsonl → JSONL, else CSV).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the rejected rows here, with line numbers and reasons (.jsonl → JSONL, else CSV).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    if cfg!(not(target_os = "linux")) {
        return_freed_memory_promptly();
    }
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(err) => {
            if is_broken_pipe(&err) {
                return Exit::Ok.into();
            }
            let exit = err
                .downcast_ref::<Error>()
                .map_or(Exit::Aborted, Error::exit);
            match log_format {
                LogFormat::Text => eprintln!("error: {err:#}"),
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({"level": "error", "message": format!("{err:#}"), "exit_code": exit as u8})
                ),
            }
            exit.into()
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Validate(args) => validate(args, cli.quiet, cli.log_format),
        Command::Import(args) => import(args, cli.quiet, cli.log_format),
        Command::Export(args) => export(args, cli.quiet, cli.log_format),
        Command::Reconcile(args) => reconcile(args, cli.quiet, cli.log_format),
        Command::Sandbox(args) => sandbox(args),
    }
}

fn usage(message: impl Into<String>) -> anyhow::Error {
    Error::Usage(message.into()).into()
}

fn input_options(
    input: &str,
    format: Option<Format>,
    encoding: Option<&str>,
    delimiter: Option<&str>,
    max_field_bytes: usize,
) -> anyhow::Result<InputOptions> {
    let mut options = InputOptions::new(InputPath::parse(input));
    options.format = format;
    options.encoding = encoding
        .map(input::parse_encoding)
        .transpose()
        .map_err(Error::from)?;
    options.delimiter = delimiter
        .map(input::parse_delimiter)
        .transpose()
        .map_err(Error::from)?;
    if max_field_bytes == 0 {
        return Err(usage("--max-field-bytes must be greater than zero"));
    }
    options.max_field_bytes = max_field_bytes;
    Ok(options)
}

fn validate(args: ValidateArgs, quiet: bool, log_format: LogFormat) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let mapping = args.read.mapping()?;
    if args.print_mapping {
        let table = validate_cmd::print_mapping(&input, &mapping)?;
        std::io::stdout()
            .write_all(table.as_bytes())
            .context("writing the mapping")?;
        return Ok(Exit::Ok);
    }
    let mut config = ValidateConfig::new(input);
    config.mapping = mapping;
    config.rules = args.read.rules(args.target)?;
    config.threads = args.read.threads();
    config.out = args.out;
    config.rejects = args.rejects;
    config.report = args.report;
    config.progress = !quiet && log_format == LogFormat::Text;
    let report = validate_cmd::run(&config)?;
    if !quiet {
        match log_format {
            LogFormat::Text => eprint!("{}", report.summary()),
            LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({
                    "level": "info",
                    "event": "summary",
                    "command": "validate",
                    "input": report.source.input,
                    "rows_read": report.tally.rows_read,
                    "clean": report.tally.clean,
                    "rejected": report.tally.rejected,
                    "clean_with_warnings": report.tally.clean_with_warnings,
                    "elapsed_seconds": report.elapsed_seconds,
                    "rows_per_second": report.rows_per_second,
                })
            ),
        }
    }
    Ok(validate_cmd::exit_for(&report))
}

fn seconds(name: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("{name} must be a non-negative number of seconds")))
}

fn sandbox(args: SandboxArgs) -> anyhow::Result<Exit> {
    use deskport::sandbox::{self, Faults, SandboxConfig};
    for (name, rate) in [
        ("--error-rate", args.error_rate),
        ("--apply-then-error-rate", args.apply_then_error_rate),
        ("--drop-rate", args.drop_rate),
        ("--apply-then-drop-rate", args.apply_then_drop_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(usage(format!("{name} must be between 0 and 1")));
        }
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(usage("--time-scale must be a positive number"));
    }
    let defaults = SandboxConfig::default();
    let custom_credentials = args.omnidesk_api_key.is_some()
        || args.udesk_token.is_some()
        || args.udesk_password.is_some();
    let config = SandboxConfig {
        omnidesk_api_key: args.omnidesk_api_key.unwrap_or(defaults.omnidesk_api_key),
        udesk_email: args.udesk_email.unwrap_or(defaults.udesk_email),
        udesk_token: args.udesk_token.unwrap_or(defaults.udesk_token),
        udesk_password: args.udesk_password.unwrap_or(defaults.udesk_password),
        time_scale: args.time_scale,
        udesk_calls_per_minute: args.udesk_calls_per_minute,
        udesk_rate_limit_style: args.udesk_rate_limit_style,
        omnidesk_rate_per_second: args.omnidesk_rate,
        bulk_import_interval: seconds("--bulk-import-interval", args.bulk_import_interval)?,
        bulk_import_delay: seconds("--bulk-import-delay", args.bulk_import_delay)?,
        scroll_ttl: seconds("--scroll-ttl", args.scroll_ttl)?,
        faults: Faults {
            error_rate: args.error_rate,
            apply_then_error_rate: args.apply_then_error_rate,
            drop_rate: args.drop_rate,
            apply_then_drop_rate: args.apply_then_drop_rate,
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            capacity: args.capacity,
            over_capacity: args.over_capacity,
        },
        seed: args.seed,
        seed_customers: args.seed_customers,
        state_file: args.state_file,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(args.bind, args.port);
        let server = sandbox::spawn(config.clone(), addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let base = server.base_url();
        println!("deskport sandbox listening on {base}");
        println!("  Omnidesk API v2:     {base}/api/v2/customer");
        println!("  Udesk open API v1:   {base}/open_api_v1/customers");
        println!(
            "  inspect / control:   {base}/__sandbox/state, /__sandbox/reset, /__sandbox/faults"
        );
        if custom_credentials {
            println!("  credentials: as given on the command line");
        } else {
            println!("  demo credentials (sandbox only):");
            println!("    DESKPORT_OMNIDESK_API_KEY={}", config.omnidesk_api_key);
            println!("    DESKPORT_UDESK_EMAIL={}", config.udesk_email);
            println!(
                "    DESKPORT_UDESK_TOKEN={}   (or DESKPORT_UDESK_PASSWORD={})",
                config.udesk_token, config.udesk_password
            );
        }
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        if let Some(path) = sandbox::save(&server.shared).context("saving the sandbox state")? {
            eprintln!("state saved to {}", path.display());
        }
        server.shutdown().await;
        Ok(Exit::Ok)
    })
}

/// Credentials and origin for one platform, from the environment or the config file. The
/// credentials are [`Secret`]s, so even a `Debug` print of this shows none of them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlatformSettings {
    base_url: Option<String>,
    api_key: Option<Secret>,
    email: Option<String>,
    token: Option<Secret>,
    password: Option<Secret>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    omnidesk: PlatformSettings,
    #[serde(default)]
    udesk: PlatformSettings,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Environment first, then the config file.
fn settings(platform: Platform, config: Option<&PathBuf>) -> anyhow::Result<PlatformSettings> {
    let file: ConfigFile = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read --config {}: {e}", path.display())))?;
            toml::from_str(&text)
                .map_err(|e| usage(format!("--config {}: {}", path.display(), e.message())))?
        }
        None => ConfigFile::default(),
    };
    let (mut s, prefix) = match platform {
        Platform::Omnidesk => (file.omnidesk, "DESKPORT_OMNIDESK"),
        Platform::Udesk => (file.udesk, "DESKPORT_UDESK"),
    };
    let var = |name: &str| env(&format!("{prefix}_{name}"));
    let secret = |name: &str, from_file: Option<Secret>| var(name).map(Secret::new).or(from_file);
    s.base_url = var("BASE_URL").or(s.base_url.take());
    s.email = var("EMAIL").or(s.email.take());
    s.api_key = secret("API_KEY", s.api_key.take());
    s.token = secret("TOKEN", s.token.take());
    s.password = secret("PASSWORD", s.password.take());
    Ok(s)
}

/// A platform reached: the in-process sandbox (if any) and the settings to use.
struct Connection {
    sandbox: Option<deskport::sandbox::Sandbox>,
    settings: PlatformSettings,
}

impl Connection {
    async fn close(self) {
        if let Some(server) = self.sandbox {
            server.shutdown().await;
        }
    }
}

impl ConnectArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.max_concurrency == 0 {
            return Err(usage("--max-concurrency must be at least 1"));
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(usage(
                "--rate must be a positive number of requests per second",
            ));
        }
        if !(self.sandbox_time_scale.is_finite() && self.sandbox_time_scale > 0.0) {
            return Err(usage("--sandbox-time-scale must be a positive number"));
        }
        Ok(())
    }

    /// Udesk's budget window, shortened only against a sped-up sandbox.
    fn minute(&self) -> anyhow::Result<Duration> {
        let minute = match (self.udesk_minute, self.sandbox) {
            (Some(m), _) => seconds("--udesk-minute", m)?,
            (None, true) => Duration::from_secs_f64(60.0 / self.sandbox_time_scale),
            (None, false) => Duration::from_secs(60),
        };
        if minute.is_zero() {
            return Err(usage("--udesk-minute must be positive"));
        }
        Ok(minute)
    }

    fn transport(&self, minute: Duration) -> anyhow::Result<Transport> {
        let rate =
            match self.target {
                Platform::Omnidesk => self.rate,
                Platform::Udesk => Some(self.rate.unwrap_or(
                    f64::from(self.udesk_calls_per_minute.max(1)) / minute.as_secs_f64(),
                )),
            };
        let config = TransportConfig {
            timeout: seconds("--timeout", self.timeout)?.max(Duration::from_millis(100)),
            max_attempts: self.max_attempts.max(1),
            max_concurrency: self.max_concurrency,
            rate_per_second: rate,
            adaptive: !self.fixed_concurrency,
            ..TransportConfig::default()
        };
        Transport::new(config).context("building the HTTP client")
    }

    /// Starts the sandbox when asked, and gathers origin and credentials.
    async fn connect(&self, quiet: bool, log_format: LogFormat) -> anyhow::Result<Connection> {
        self.check()?;
        if !self.sandbox {
            let mut settings = settings(self.target, self.config.as_ref())?;
            if let Some(b) = &self.base_url {
                settings.base_url = Some(b.clone());
            }
            return Ok(Connection {
                sandbox: None,
                settings,
            });
        }
        let sandbox_config = deskport::sandbox::SandboxConfig {
            time_scale: self.sandbox_time_scale,
            seed_customers: self.sandbox_customers,
            ..Default::default()
        };
        let server = deskport::sandbox::spawn(sandbox_config, "127.0.0.1:0".parse()?)
            .await
            .context("starting the sandbox")?;
        if !quiet && log_format == LogFormat::Text {
            eprintln!(
                "sandbox: {} (in-process, demo credentials)",
                server.base_url()
            );
        }
        let settings = PlatformSettings {
            base_url: Some(server.base_url()),
            api_key: Some(Secret::new(deskport::sandbox::DEMO_OMNIDESK_API_KEY)),
            email: Some(deskport::sandbox::DEMO_UDESK_EMAIL.into()),
            token: Some(Secret::new(deskport::sandbox::DEMO_UDESK_TOKEN)),
            password: None,
        };
        Ok(Connection {
            sandbox: Some(server),
            settings,
        })
    }

    fn example_origin(&self) -> &'static str {
        match self.target {
            Platform::Omnidesk => "https://ACCOUNT.omnidesk.com",
            Platform::Udesk => "https://SUBDOMAIN.udesk.cn",
        }
    }

    fn has_credentials(&self, s: &PlatformSettings) -> bool {
        match self.target {
            Platform::Omnidesk => s.api_key.is_some(),
            Platform::Udesk => s.email.is_some() && (s.token.is_some() || s.password.is_some()),
        }
    }

    fn no_credentials(&self) -> anyhow::Error {
        usage(match self.target {
            Platform::Omnidesk => "no Omnidesk credentials: set DESKPORT_OMNIDESK_API_KEY (or [omnidesk] api_key in --config)",
            Platform::Udesk => "no Udesk credentials: set DESKPORT_UDESK_EMAIL and DESKPORT_UDESK_TOKEN (or DESKPORT_UDESK_PASSWORD), or use --config",
        })
    }

    fn no_base_url(&self) -> anyhow::Error {
        usage(format!(
            "no base URL: pass --base-url (e.g. {}), set DESKPORT_{}_BASE_URL, or use --sandbox",
            self.example_origin(),
            self.target.name().to_uppercase()
        ))
    }

    /// The origin and credentials a command that talks to the platform needs.
    fn require(&self, s: &PlatformSettings) -> anyhow::Result<BaseUrl> {
        let base = match &s.base_url {
            Some(b) => BaseUrl::parse(b).map_err(|e| usage(e.to_string()))?,
            None => return Err(self.no_base_url()),
        };
        if !self.has_credentials(s) {
            return Err(self.no_credentials());
        }
        Ok(base)
    }
}

fn omnidesk_client(
    settings: &PlatformSettings,
    base: BaseUrl,
    brand: u64,
    transport: Transport,
) -> Arc<Omnidesk> {
    let key = settings.api_key.clone().unwrap_or_else(|| Secret::new(""));
    Arc::new(Omnidesk::new(base, key, brand, transport))
}

fn udesk_client(settings: &PlatformSettings, base: BaseUrl, transport: Transport) -> Arc<Udesk> {
    let email = settings.email.clone().unwrap_or_default();
    let auth = match (settings.token.clone(), settings.password.clone()) {
        (Some(t), _) => UdeskAuth::Token(t),
        (None, Some(p)) => UdeskAuth::Password(p),
        (None, None) => UdeskAuth::Token(Secret::new("")),
    };
    Arc::new(Udesk::new(base, email, auth, transport))
}

fn import(args: ImportArgs, quiet: bool, log_format: LogFormat) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let InputPath::File(input_path) = &input.path else {
        return Err(usage(
            "import reads a file, not standard input: the journal is tied to the file's content",
        ));
    };
    let connect = &args.connect;
    connect.check()?;
    let journal_dir = args
        .journal
        .clone()
        .unwrap_or_else(|| import_cmd::default_journal_dir(input_path));
    let mut config = ImportConfig::new(input, args.mode, journal_dir);
    config.mapping = args.read.mapping()?;
    config.rules = args.read.rules(Some(connect.target))?;
    config.threads = args.read.threads();
    config.resume = args.resume;
    config.restart = args.restart;
    config.max_concurrency = connect.max_concurrency;
    config.progress = !quiet && log_format == LogFormat::Text;
    let minute = connect.minute()?;
    config.bulk_interval = minute;
    config.bulk_settle = minute.mul_f64(2.0 / 60.0).max(Duration::from_millis(20));
    let transport = connect.transport(minute)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(quiet, log_format).await?;
        let settings = &connection.settings;
        // A dry run without an origin shows requests to a placeholder and looks nothing up.
        let lookups = connect.has_credentials(settings) && settings.base_url.is_some();
        let base = match (&settings.base_url, args.dry_run) {
            (Some(b), _) => BaseUrl::parse(b).map_err(|e| usage(e.to_string()))?,
            (None, true) => BaseUrl::parse(connect.example_origin()).map_err(|e| usage(e.to_string()))?,
            (None, false) => return Err(connect.no_base_url()),
        };
        if !connect.has_credentials(settings) && !args.dry_run {
            return Err(connect.no_credentials());
        }
        let stop = Arc::new(Stop::default());
        let hint = resume_hint(&args, &config);
        spawn_ctrl_c(stop.clone(), hint.clone(), quiet, "no new rows; finishing requests in flight", "the journal");
        let exit = match connect.target {
            Platform::Omnidesk => {
                let brand = match (args.brand_id, connect.sandbox) {
                    (Some(b), _) => b,
                    (None, true) => 1,
                    (None, false) if args.dry_run => 1,
                    (None, false) => {
                        return Err(usage("--brand-id is required for Omnidesk (rows with a brand_id column use their own)"))
                    }
                };
                let client = omnidesk_client(settings, base, brand, transport);
                drive(client, &config, &args, lookups, stop, &hint, quiet, log_format).await
            }
            Platform::Udesk => {
                let client = udesk_client(settings, base, transport);
                drive(client, &config, &args, lookups, stop, &hint, quiet, log_format).await
            }
        };
        connection.close().await;
        exit
    })
}

/// The command that continues this run.
fn resume_hint(args: &ImportArgs, config: &ImportConfig) -> String {
    let mut hint = format!(
        "deskport import {} --target {} --mode {} --journal {} --resume",
        args.input,
        args.connect.target.name(),
        args.mode.as_str(),
        config.journal_dir.display()
    );
    if let Some(b) = args.brand_id {
        hint.push_str(&format!(" --brand-id {b}"));
    }
    if args.connect.sandbox {
        hint.push_str(" --sandbox");
    }
    hint
}

/// First Ctrl-C: a clean stop. Second: exit at once (the journal stays consistent: every
/// record is one line, and a torn last line is ignored on resume).
fn spawn_ctrl_c(
    stop: Arc<Stop>,
    hint: String,
    quiet: bool,
    doing: &'static str,
    state: &'static str,
) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        stop.request();
        if !quiet {
            eprintln!("\nstopping: {doing} (Ctrl-C again to quit at once)");
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("quit at once; {state} is consistent. Safe to resume with:\n  {hint}");
            std::process::exit(Exit::Aborted as i32);
        }
    });
}

#[allow(clippy::too_many_arguments)]
async fn drive<T: Target>(
    client: Arc<T>,
    config: &ImportConfig,
    args: &ImportArgs,
    lookups: bool,
    stop: Arc<Stop>,
    hint: &str,
    quiet: bool,
    log_format: LogFormat,
) -> anyhow::Result<Exit> {
    if args.dry_run {
        let report = import_cmd::dry_run::run(config, client, lookups)
            .await
            .map_err(import_error)?;
        if !quiet {
            match log_format {
                LogFormat::Text => eprint!("{}", report.summary()),
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({"level": "info", "event": "summary", "command": "import", "dry_run": true, "report": report})
                ),
            }
        }
        return Ok(if report.reject + report.fail > 0 {
            Exit::RowsRejected
        } else {
            Exit::Ok
        });
    }
    let report = import_cmd::run(config, client, stop)
        .await
        .map_err(import_error)?;
    if !quiet {
        match log_format {
            LogFormat::Text => eprint!("{}", report.summary(hint)),
            LogFormat::Json => eprintln!(
                "{}",
                serde_json::json!({"level": "info", "event": "summary", "command": "import", "report": report, "resume": report.stopped.as_ref().map(|_| hint)})
            ),
        }
    }
    Ok(if report.stopped.is_some() {
        Exit::Aborted
    } else if report.all_good() {
        Exit::Ok
    } else {
        Exit::RowsRejected
    })
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

/// The command line that continues this run: the same arguments with `--resume`.
fn rerun_hint() -> String {
    let mut words: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--restart")
        .map(|a| {
            if a.is_empty()
                || a.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>*?".contains(c))
            {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a
            }
        })
        .collect();
    if !words.iter().any(|w| w == "--resume") {
        words.push("--resume".into());
    }
    format!("deskport {}", words.join(" "))
}

fn export(args: ExportArgs, quiet: bool, log_format: LogFormat) -> anyhow::Result<Exit> {
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
    let format = args
        .format
        .unwrap_or_else(|| OutFormat::from_path(&args.out));
    let minute = connect.minute()?;
    let transport = connect.transport(minute)?;
    let ttl = match args.udesk_scroll_ttl {
        Some(t) => seconds("--udesk-scroll-ttl", t)?,
        None => minute,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(quiet, log_format).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let origin = if connect.sandbox {
            "sandbox".to_string()
        } else {
            base.join("")
        };
        let params = deskport::export::checkpoint::Params {
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
        };
        let mut config = ExportConfig::new(args.out.clone(), params);
        config.format = format;
        if let Some(c) = &args.checkpoint {
            config.checkpoint = c.clone();
        }
        config.resume = args.resume;
        config.restart = args.restart;
        config.window = connect.max_concurrency;
        config.scroll_ttl = ttl;
        config.progress = !quiet && log_format == LogFormat::Text;
        let client = match target {
            Platform::Omnidesk => export_cmd::Client::Omnidesk(omnidesk_client(
                settings,
                base,
                args.brand_id.unwrap_or(1),
                transport,
            )),
            Platform::Udesk => export_cmd::Client::Udesk(udesk_client(settings, base, transport)),
        };
        let stop = Arc::new(Stop::default());
        let hint = rerun_hint();
        spawn_ctrl_c(
            stop.clone(),
            hint.clone(),
            quiet,
            "writing the checkpoint",
            "the checkpoint",
        );
        let result = export_cmd::run(&config, client, stop).await;
        connection.close().await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                let exit = e.exit();
                let resumable = matches!(exit, Exit::Aborted);
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
        if !quiet {
            match log_format {
                LogFormat::Text => {
                    eprint!("{}", report.summary());
                    if report.stopped.is_some() {
                        eprintln!("continue with:\n  {hint}");
                    }
                }
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({"level": "info", "event": "summary", "command": "export", "report": report, "resume": report.stopped.as_ref().map(|_| &hint)})
                ),
            }
        }
        Ok(if report.stopped.is_some() {
            Exit::Aborted
        } else {
            Exit::Ok
        })
    })
}

fn reconcile(args: ReconcileArgs, quiet: bool, log_format: LogFormat) -> anyhow::Result<Exit> {
    use deskport::reconcile::{self, ReconcileConfig};
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
    };
    let minute = connect.minute()?;
    let transport = connect.transport(minute)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(quiet, log_format).await?;
        let settings = &connection.settings;
        let base = connect.require(settings)?;
        let client = match connect.target {
            Platform::Omnidesk => {
                let brand = match (args.brand_id, connect.sandbox) {
                    (Some(b), _) => b,
                    (None, true) => 1,
                    (None, false) => {
                        return Err(usage("--brand-id is required for Omnidesk (rows with a brand_id column use their own)"))
                    }
                };
                export_cmd::Client::Omnidesk(omnidesk_client(settings, base, brand, transport))
            }
            Platform::Udesk => export_cmd::Client::Udesk(udesk_client(settings, base, transport)),
        };
        let result = reconcile::run(&config, client).await;
        connection.close().await;
        let report = result.map_err(|e| match e.exit() {
            Exit::Usage => Error::Usage(e.to_string()).into(),
            _ => anyhow::anyhow!(e.to_string()),
        })?;
        if !quiet {
            match log_format {
                LogFormat::Text => eprint!("{}", report.summary()),
                LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({"level": "info", "event": "summary", "command": "reconcile", "report": report})
                ),
            }
        }
        Ok(if report.all_good() {
            Exit::Ok
        } else {
            Exit::RowsRejected
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_options_are_the_ones_we_mean() {
        // The documented defaults of mimalloc v3: arena_eager_commit = 2, purge_delay = 1000 ms.
        // SAFETY: option getters with no pointers.
        let (eager, delay) = unsafe {
            (
                libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT),
                libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY),
            )
        };
        assert_eq!((eager, delay), (2, 1000));
    }
}
