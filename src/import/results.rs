//! The files a user reads after an import, all rebuilt from the journal at the end of every
//! run (so they cover earlier, interrupted runs too):
//! - `results.csv`: rows on the platform (line, external id, platform id, outcome, note);
//! - `failures.csv`: rows the platform refused or that could not be finished, with the
//!   original fields, ready to be fixed and fed back (`deskport_*` columns are ignored on
//!   input);
//! - `rejects.csv`: rows the validator refused, in the same shape.
//!
//! JSONL inputs get `failures.jsonl` and `rejects.jsonl` instead, one object per row.

use super::journal::{for_each_done, Done, JournalError, Outcome, RunHeader};
use serde::Serialize;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Rows per final outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Created by this import.
    pub created: u64,
    /// Updated.
    pub updated: u64,
    /// Already there (create mode).
    pub exists: u64,
    /// Refused by the platform (or not found in update mode).
    pub failed: u64,
    /// Refused by the validator.
    pub invalid: u64,
    /// Sent but not finished in this run (retries ran out); a resume retries them.
    pub unfinished: u64,
}

impl Counts {
    /// Adds one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Created => self.created += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Exists => self.exists += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Invalid => self.invalid += 1,
        }
    }

    /// Rows with any outcome.
    pub fn total(&self) -> u64 {
        self.created + self.updated + self.exists + self.failed + self.invalid + self.unfinished
    }
}

/// Where the result files went.
#[derive(Debug, Clone, Serialize)]
pub struct ResultFiles {
    /// Rows on the platform.
    pub results: PathBuf,
    /// Rows the platform refused or that are unfinished.
    pub failures: PathBuf,
    /// Rows the validator refused.
    pub rejects: PathBuf,
}

impl ResultFiles {
    /// The file names in `dir` for an input of this format.
    pub fn in_dir(dir: &Path, jsonl: bool) -> Self {
        let ext = if jsonl { "jsonl" } else { "csv" };
        ResultFiles {
            results: dir.join("results.csv"),
            failures: dir.join(format!("failures.{ext}")),
            rejects: dir.join(format!("rejects.{ext}")),
        }
    }
}

/// A file written as `NAME.partial` and renamed into place when complete.
struct Atomic {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
}

impl Atomic {
    fn create(path: &Path) -> io::Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        Ok(Atomic {
            out: BufWriter::new(File::create(&partial)?),
            path: path.to_path_buf(),
            partial,
        })
    }

    fn finish(self) -> io::Result<()> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&self.partial, &self.path)
    }
}

fn csv_line(out: &mut impl Write, cells: &[&str]) -> io::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    w.write_record(cells).map_err(io::Error::other)?;
    out.write_all(
        &w.into_inner()
            .map_err(|e| io::Error::other(e.to_string()))?,
    )
}

/// A failures or rejects file.
struct RowFile {
    file: Atomic,
    jsonl: bool,
}

impl RowFile {
    fn create(path: &Path, header: &RunHeader, jsonl: bool) -> io::Result<Self> {
        let mut file = Atomic::create(path)?;
        if !jsonl {
            let mut cells = vec!["deskport_line", "deskport_reason", "deskport_message"];
            cells.extend(header.columns.iter().map(String::as_str));
            csv_line(&mut file.out, &cells)?;
        }
        Ok(RowFile { file, jsonl })
    }

    fn write(&mut self, d: &Done) -> io::Result<()> {
        let reason = d.reason.as_deref().unwrap_or("");
        let message = d.message.as_deref().unwrap_or("");
        if self.jsonl {
            let value = json!({
                "deskport_line": d.line,
                "deskport_reason": reason,
                "deskport_message": message,
                "row": d.row.clone().unwrap_or(Value::Null),
            });
            serde_json::to_writer(&mut self.file.out, &value)?;
            return self.file.out.write_all(b"\n");
        }
        let line = d.line.to_string();
        let mut cells: Vec<String> = vec![line, reason.into(), message.into()];
        match &d.row {
            Some(Value::Array(fields)) => cells.extend(
                fields
                    .iter()
                    .map(|f| f.as_str().map_or_else(|| f.to_string(), str::to_string)),
            ),
            Some(other) => cells.push(other.to_string()),
            None => {}
        }
        let refs: Vec<&str> = cells.iter().map(String::as_str).collect();
        csv_line(&mut self.file.out, &refs)
    }
}

/// Rebuilds the result files from the journal plus this run's unfinished rows; returns the
/// counts per outcome.
pub fn write(
    files: &ResultFiles,
    journal: &Path,
    header: &RunHeader,
    unfinished: &[Done],
) -> Result<Counts, JournalError> {
    let jsonl = header.format == "jsonl";
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| JournalError::Io { path, source }
    };
    let mut results = Atomic::create(&files.results).map_err(io_err(&files.results))?;
    csv_line(
        &mut results.out,
        &["line", "external_id", "platform_id", "outcome", "note"],
    )
    .map_err(io_err(&files.results))?;
    let mut failures =
        RowFile::create(&files.failures, header, jsonl).map_err(io_err(&files.failures))?;
    let mut rejects =
        RowFile::create(&files.rejects, header, jsonl).map_err(io_err(&files.rejects))?;
    let mut counts = Counts::default();
    for_each_done(journal, |d| {
        counts.add(d.outcome);
        match d.outcome {
            Outcome::Invalid => rejects.write(&d),
            Outcome::Failed => failures.write(&d),
            _ => csv_line(
                &mut results.out,
                &[
                    &d.line.to_string(),
                    &d.external_id,
                    d.platform_id.as_deref().unwrap_or(""),
                    d.outcome.as_str(),
                    d.message.as_deref().unwrap_or(""),
                ],
            ),
        }
    })?;
    for d in unfinished {
        counts.unfinished += 1;
        failures.write(d).map_err(io_err(&files.failures))?;
    }
    results.finish().map_err(io_err(&files.results))?;
    failures.file.finish().map_err(io_err(&files.failures))?;
    rejects.file.finish().map_err(io_err(&files.rejects))?;
    Ok(counts)
}
