//! The `deskport` binary: flags → typed configs → library calls → output and exit code.
//! anyhow is used only here.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use deskport::cmd::validate::{self as validate_cmd, ValidateConfig};
use deskport::input::{self, Format, InputOptions, InputPath, DEFAULT_MAX_FIELD_BYTES};
use deskport::mapping::Mapping;
use deskport::validate::{phone, DuplicatePolicy, Platform, Rules};
use deskport::{Error, Exit};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: measured faster than the system allocator for our many small, short-lived
/// strings (see the README's benchmark section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The CSV or JSONL file (gzip allowed), or - for standard input.
    input: String,
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
    /// Print the column mapping that would be used, then exit.
    #[arg(long)]
    print_mapping: bool,
    /// Apply this platform's rules too (names, lengths, levels, custom field keys).
    #[arg(long, value_enum)]
    target: Option<Platform>,
    /// Region (ISO code, e.g. NL) for phone numbers without +country code when the row has no country.
    #[arg(long, value_name = "CC")]
    default_region: Option<String>,
    /// Write the clean, normalized rows here (.jsonl → JSONL, else CSV).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write the rejected rows here, with line numbers and reasons (.jsonl → JSONL, else CSV).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Emails and phones already used by an earlier row: warn (keep), error (reject) or off.
    #[arg(long, value_enum, default_value_t = DuplicatePolicy::Warn)]
    duplicates: DuplicatePolicy,
    /// Reject rows with a field larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FIELD_BYTES, value_name = "BYTES")]
    max_field_bytes: usize,
    /// Worker threads for checking (default: all cores).
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

fn main() -> ExitCode {
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
    let input = input_options(
        &args.input,
        args.format,
        args.encoding.as_deref(),
        args.delimiter.as_deref(),
        args.max_field_bytes,
    )?;
    let mapping = match &args.map {
        Some(path) => Mapping::from_file(path).map_err(Error::from)?,
        None => Mapping::builtin(),
    };
    if args.print_mapping {
        let table = validate_cmd::print_mapping(&input, &mapping)?;
        std::io::stdout()
            .write_all(table.as_bytes())
            .context("writing the mapping")?;
        return Ok(Exit::Ok);
    }
    let default_region = match &args.default_region {
        Some(code) => Some(phone::region_from_code(code).ok_or_else(|| {
            usage(format!(
                "--default-region {code:?} is not an ISO 3166 two-letter country code"
            ))
        })?),
        None => None,
    };
    let mut config = ValidateConfig::new(input);
    config.mapping = mapping;
    config.rules = Rules {
        platform: args.target,
        default_region,
        duplicates: args.duplicates,
    };
    config.out = args.out;
    config.rejects = args.rejects;
    config.report = args.report;
    if let Some(n) = args.threads {
        config.threads = n.get();
    }
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
