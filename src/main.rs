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
