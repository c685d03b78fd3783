//! `deskport validate`: flags → [`ValidateConfig`] → [`file::run`] → summary.

use super::read::ReadArgs;
use super::Ui;
use crate::validate::file::{self, ValidateConfig};
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// `deskport validate`'s flags.
#[derive(Debug, Args)]
pub struct ValidateArgs {
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

/// Runs `deskport validate`.
pub fn run(args: ValidateArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let mapping = args.read.mapping()?;
    if args.print_mapping {
        let table = file::print_mapping(&input, &mapping)?;
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
    config.progress = ui.progress();
    let report = file::run(&config)?;
    ui.summary(
        || report.summary(),
        || {
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
        },
    );
    Ok(file::exit_for(&report))
}
