//! `deskport validate`: flags → [`ValidateConfig`] → [`file::run`] → summary.

use super::connect::{udesk_client, ConnectArgs};
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
    /// The CSV or JSONL file (gzip or zstd allowed), or - for standard input.
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
    /// Write the report as one self-contained HTML page here (summary, diagnosis, column
    /// profile, sample rows per issue).
    #[arg(long, value_name = "FILE")]
    report_html: Option<PathBuf>,
    /// Keep the columns no rule maps in the clean CSV, in their order, after the others.
    #[arg(long)]
    keep_unmapped: bool,
    /// Read the custom field definitions from the --target account at this origin (Udesk;
    /// credentials as for import) instead of --fields FILE.
    #[arg(
        long,
        value_name = "URL",
        requires = "target",
        conflicts_with = "sandbox"
    )]
    base_url: Option<String>,
    /// Read the custom field definitions from the built-in sandbox's --target account.
    #[arg(long, requires = "target")]
    sandbox: bool,
    /// Exit 0 while at most this many rows (N) or this share of the rows read (P%) are
    /// rejected; by default any rejected row makes the exit code 1.
    #[arg(long, value_name = "N|P%", value_parser = parse_max_invalid)]
    max_invalid: Option<file::MaxInvalid>,
    /// Credentials file for --base-url, as for import.
    #[arg(long, value_name = "FILE", requires = "base_url")]
    config: Option<PathBuf>,
}

fn parse_max_invalid(text: &str) -> Result<file::MaxInvalid, String> {
    file::MaxInvalid::parse(text)
}

/// The target account's custom field definitions (Udesk publishes them; Omnidesk does not).
fn account_fields(
    target: Platform,
    args: &ValidateArgs,
    ui: Ui,
) -> anyhow::Result<Option<crate::fields::FieldDefs>> {
    if target != Platform::Udesk {
        return Ok(None);
    }
    let connect = ConnectArgs::for_reads(
        target,
        args.sandbox,
        args.base_url.clone(),
        args.config.clone(),
    );
    let transport = connect.transport(connect.minute()?, ui)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let connection = connect.connect(Ui { quiet: true, ..ui }).await?;
        let base = connect.require(&connection.settings)?;
        let fields = udesk_client(&connection.settings, base, transport)
            .custom_fields()
            .await;
        connection.close().await;
        fields
            .map(Some)
            .map_err(|e| anyhow::anyhow!("reading the account's custom fields: {e}"))
    })
}

/// Runs `deskport validate`.
pub fn run(args: ValidateArgs, ui: Ui) -> anyhow::Result<Exit> {
    let input = args.read.input(&args.input)?;
    let mut mapping = args.read.mapping()?;
    if let (Some(target), None, true) = (
        args.target,
        mapping.fields(),
        args.sandbox || args.base_url.is_some(),
    ) {
        if let Some(fields) = account_fields(target, &args, ui)? {
            mapping = mapping.with_fields(std::sync::Arc::new(fields));
        }
    }
    if args.print_mapping {
        let (table, fits) = file::print_mapping(&input, &mapping)?;
        std::io::stdout()
            .write_all(table.as_bytes())
            .context("writing the mapping")?;
        return Ok(if fits { Exit::Ok } else { Exit::Usage });
    }
    let mut config = ValidateConfig::new(input);
    config.mapping = mapping;
    config.rules = args.read.rules(args.target)?;
    config.threads = args.read.threads();
    config.out = args.out;
    config.rejects = args.rejects;
    config.report = args.report;
    config.report_html = args.report_html;
    config.keep_unmapped = args.keep_unmapped;
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
    let exit = file::exit_for(&report, args.max_invalid);
    if let (Some(limit), false) = (args.max_invalid, ui.quiet) {
        let within = exit == Exit::Ok;
        eprintln!(
            "{} rejected of {} read: {} --max-invalid {}",
            report.tally.rejected,
            report.tally.rows_read,
            if within { "within" } else { "over" },
            match limit {
                file::MaxInvalid::Rows(n) => n.to_string(),
                file::MaxInvalid::Percent(p) => format!("{p}%"),
            }
        );
    }
    Ok(exit)
}
