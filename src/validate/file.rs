//! `deskport validate`: read → map → check (parallel) → de-duplicate (in order) → write.
//!
//! Threads joined by bounded channels so memory stays flat whatever the file size: the
//! reader cuts batches, `--threads` checking threads check whole batches, the calling thread
//! puts them back in input order and runs the duplicate index, and the writer thread writes
//! the clean and rejects files, keeps the tally and hands the spent rows back to be freed.

use crate::error::{Error, Exit};
use crate::input::{self, InputOptions, RowReader};
use crate::mapping::{Mapping, ResolvedMapping};
use crate::output::{CleanWriter, OutputError, RejectsWriter};
use crate::pipeline::{check_batches, CheckOptions, CheckedBatch};
use crate::progress::Progress;
use crate::report::{Tally, ValidateReport};
use crate::validate::diagnosis::Diagnosis;
use crate::validate::profile::Profile;
use crate::validate::Rules;
use crossbeam_channel::bounded;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Rows per batch passed between the stages.
pub const DEFAULT_BATCH_ROWS: usize = 1024;

/// Batches in flight between the checker and the writer.
const CHANNEL_BATCHES: usize = 2;

/// Everything `validate` needs, already parsed and checked.
#[derive(Debug, Clone)]
pub struct ValidateConfig {
    /// What to read.
    pub input: InputOptions,
    /// How columns map to fields.
    pub mapping: Mapping,
    /// Which rules apply.
    pub rules: Rules,
    /// Where clean rows go.
    pub out: Option<PathBuf>,
    /// Where rejected rows go.
    pub rejects: Option<PathBuf>,
    /// Where the JSON report goes.
    pub report: Option<PathBuf>,
    /// Where the HTML report goes.
    pub report_html: Option<PathBuf>,
    /// Worker threads for checking.
    pub threads: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Whether to show a progress bar (only on a terminal).
    pub progress: bool,
    /// Keep the unmapped source columns in the clean CSV, after the others.
    pub keep_unmapped: bool,
}

impl ValidateConfig {
    /// Defaults for everything but the input.
    pub fn new(input: InputOptions) -> Self {
        ValidateConfig {
            input,
            mapping: Mapping::builtin(),
            rules: Rules::default(),
            out: None,
            rejects: None,
            report: None,
            report_html: None,
            threads: crate::pipeline::default_check_threads(),
            batch_rows: DEFAULT_BATCH_ROWS,
            progress: false,
            keep_unmapped: false,
        }
    }
}

/// How many rejected rows a run may have and still exit 0 (`--max-invalid`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxInvalid {
    /// At most this many rows.
    Rows(u64),
    /// At most this share of the rows read, in percent.
    Percent(f64),
}

impl MaxInvalid {
    /// `N` rows or `P%` of the rows read.
    pub fn parse(text: &str) -> Result<MaxInvalid, String> {
        let text = text.trim();
        let bad = || {
            format!("--max-invalid takes a number of rows or a percentage (50, 2.5%), not {text:?}")
        };
        match text.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(MaxInvalid::Percent(p)),
                _ => Err(bad()),
            },
            None => text.parse().map(MaxInvalid::Rows).map_err(|_| bad()),
        }
    }

    /// Whether `rejected` of `read` rows is within the limit.
    pub fn allows(self, rejected: u64, read: u64) -> bool {
        match self {
            MaxInvalid::Rows(n) => rejected <= n,
            MaxInvalid::Percent(p) => rejected as f64 <= read as f64 * p / 100.0,
        }
    }
}

/// The exit code for a finished run: 1 when rows were rejected (beyond `max_invalid`).
pub fn exit_for(report: &ValidateReport, max_invalid: Option<MaxInvalid>) -> Exit {
    let rejected = report.tally.rejected;
    let allowed = max_invalid.map_or(rejected == 0, |m| {
        m.allows(rejected, report.tally.rows_read)
    });
    if allowed {
        Exit::Ok
    } else {
        Exit::RowsRejected
    }
}

/// Reads just enough of the input to know its columns and renders the mapping table, with
/// whether the columns fit the account's custom fields.
pub fn print_mapping(input: &InputOptions, mapping: &Mapping) -> Result<(String, bool), Error> {
    let mut opened = input::open(input)?;
    let columns = match &mut opened.reader {
        RowReader::Csv(_) => opened.reader.columns(),
        RowReader::Jsonl(_) => match opened.reader.next_batch(DEFAULT_BATCH_ROWS)? {
            Some(batch) => batch.columns,
            None => opened.reader.columns(),
        },
    };
    let resolved = mapping.resolve(&columns);
    Ok((resolved.render(), resolved.problems.is_empty()))
}

/// Runs a validation and returns its report (already written to `--report` if asked).
pub fn run(config: &ValidateConfig) -> Result<ValidateReport, Error> {
    let started = Instant::now();
    let opened = input::open(&config.input)?;
    crate::pipeline::check_columns(&config.mapping, &opened.reader.columns(), &config.rules)?;
    let source_info = opened.info.clone();
    let bytes_read = opened.bytes_read.clone();
    let progress = Progress::new(opened.total_bytes, config.progress);
    let reader = opened.reader;
    let initial_columns = reader.columns();
    let columns_can_grow = matches!(reader, RowReader::Jsonl(_));
    let source_format = source_info.format;
    let (checked_tx, checked_rx) = bounded::<CheckedBatch>(CHANNEL_BATCHES);
    let (spent_tx, spent_rx) = crate::pipeline::spent_rows();
    // Set when checking failed: the writer then leaves files it has not created uncreated.
    let failed = std::sync::atomic::AtomicBool::new(false);

    let (tally, checked) = std::thread::scope(|scope| {
        let writer_initial = initial_columns.clone();
        let progress = &progress;
        let bytes_read = &bytes_read;
        let failed = &failed;
        let writer = scope.spawn(move || {
            write_all(
                config,
                WriterChannels {
                    batches: checked_rx,
                    spent: spent_tx,
                },
                failed,
                &writer_initial,
                columns_can_grow,
                source_format,
                |tally| {
                    let secs = started.elapsed().as_secs_f64().max(1e-9);
                    progress.update(
                        bytes_read.load(Ordering::Relaxed),
                        tally.rows_read,
                        tally.rows_read as f64 / secs,
                    );
                },
            )
        });
        let options = CheckOptions {
            mapping: &config.mapping,
            rules: &config.rules,
            threads: config.threads,
            batch_rows: config.batch_rows,
            spent: Some(&spent_rx),
        };
        // A send fails only when the writer failed; its error is reported below.
        let checked = check_batches(reader, options, |batch| checked_tx.send(batch).is_ok());
        failed.store(checked.is_err(), Ordering::SeqCst);
        drop(checked_tx);
        let written = writer
            .join()
            .map_err(|_| Error::Internal("writer thread panicked".into()));
        (written, checked)
    });
    progress.finish();
    let (tally, diagnosis, profile) = tally??;
    let checked = checked?;

    let mapping = match checked.last_mapping {
        Some(m) => m,
        None => Arc::new(config.mapping.resolve(&initial_columns)),
    };
    let elapsed = started.elapsed().as_secs_f64();
    let mut outputs = BTreeMap::new();
    for (what, path) in [
        ("clean", &config.out),
        ("rejects", &config.rejects),
        ("report", &config.report),
        ("report_html", &config.report_html),
    ] {
        if let Some(p) = path {
            outputs.insert(what, p.display().to_string());
        }
    }
    let report = ValidateReport {
        deskport_version: env!("CARGO_PKG_VERSION"),
        source: source_info,
        target: config.rules.platform.map(|p| p.name()),
        default_region: config
            .rules
            .default_region
            .map(|r| r.as_region_str().to_string()),
        mapping: mapping.entries(),
        unmapped_columns: mapping.unmapped(),
        mapping_notes: mapping.notes.clone(),
        elapsed_seconds: elapsed,
        rows_per_second: if elapsed > 0.0 {
            tally.rows_read as f64 / elapsed
        } else {
            0.0
        },
        outputs,
        duplicate_index: checked.duplicate_index,
        phone_diagnosis: diagnosis.phone_columns(&config.rules),
        country_diagnosis: diagnosis.country.clone(),
        column_profile: profile.as_ref().map(Profile::columns).unwrap_or_default(),
        tally,
    };
    if let Some(path) = &config.report {
        write_report(path, &report)?;
    }
    if let Some(path) = &config.report_html {
        write_output(path, crate::validate::html::render(&report).as_bytes())?;
    }
    Ok(report)
}

/// The writer's ends of its channels: checked batches in, their spent rows back to the
/// checking thread ([`crate::pipeline::spent_rows`]).
struct WriterChannels {
    batches: crossbeam_channel::Receiver<CheckedBatch>,
    spent: crossbeam_channel::Sender<Vec<crate::model::CheckedRow>>,
}

/// The writer stage: creates the output files on the first batch, writes every row to
/// exactly one of them, and counts.
fn write_all(
    config: &ValidateConfig,
    channels: WriterChannels,
    failed: &std::sync::atomic::AtomicBool,
    initial_columns: &Arc<Vec<String>>,
    columns_can_grow: bool,
    source_format: input::Format,
    on_batch: impl Fn(&Tally),
) -> Result<(Tally, Diagnosis, Option<Profile>), Error> {
    let mut tally = Tally::default();
    let mut diagnosis = Diagnosis::default();
    // Built here, where the rows are at hand and no other stage waits for it.
    let mut profile =
        (config.report.is_some() || config.report_html.is_some()).then(Profile::default);
    let mut clean: Option<CleanWriter> = None;
    let mut rejects: Option<RejectsWriter> = None;
    let open = |mapping: &ResolvedMapping,
                columns: &[String],
                clean: &mut Option<CleanWriter>,
                rejects: &mut Option<RejectsWriter>|
     -> Result<(), OutputError> {
        if let (Some(path), None) = (&config.out, &clean) {
            *clean = Some(CleanWriter::create(
                path,
                mapping,
                columns_can_grow,
                config.keep_unmapped,
            )?);
        }
        if let (Some(path), None) = (&config.rejects, &rejects) {
            *rejects = Some(RejectsWriter::create(path, columns, source_format)?);
        }
        Ok(())
    };
    let WriterChannels { batches, spent } = channels;
    for batch in batches.iter() {
        open(&batch.mapping, &batch.columns, &mut clean, &mut rejects)?;
        if let Some(p) = profile.as_mut() {
            p.add(&batch.rows, &batch.columns, &batch.mapping);
        }
        for row in &batch.rows {
            tally.add(row);
            diagnosis.add(row, &batch.mapping, &config.rules);
            if row.is_clean() {
                if let (Some(w), Some(c)) = (clean.as_mut(), row.customer.as_ref()) {
                    w.write(c, &row.raw)?;
                }
            } else if let Some(w) = rejects.as_mut() {
                w.write(row, &batch.columns)?;
            }
        }
        on_batch(&tally);
        // Freed where they were made; when the checker is behind, here.
        spent.try_send(batch.rows).ok();
    }
    if failed.load(Ordering::SeqCst) {
        return Ok((tally, diagnosis, profile));
    }
    let mapping = config.mapping.resolve(initial_columns);
    open(&mapping, initial_columns, &mut clean, &mut rejects)?;
    if let Some(w) = clean {
        w.finish()?;
    }
    if let Some(w) = rejects {
        w.finish()?;
    }
    Ok((tally, diagnosis, profile))
}

fn write_report(path: &Path, report: &ValidateReport) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(report).map_err(|e| Error::Internal(e.to_string()))?;
    write_output(path, (text + "\n").as_bytes())
}

fn write_output(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    crate::output::write_whole(path, bytes).map_err(|source| {
        Error::Output(OutputError {
            path: path.to_path_buf(),
            source,
        })
    })
}
