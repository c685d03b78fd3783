//! `deskport undo JOURNAL_DIR`: deletes exactly the customers an import (with its resumes)
//! created — their platform ids are in its journal — and never one it updated or found
//! there already. Its own progress goes to `undo.jsonl` beside the journal, a line per
//! finished delete, so a killed undo resumes where it stopped: a delete is idempotent, and
//! one whose line was lost is answered "not found" the second time (counted as gone).

use super::journal::{self, Done, Outcome, RunHeader};
use super::Stop;
use crate::model::Customer;
use crate::platform::{CallError, Target};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The undo's own progress file, beside the import's journal.
pub const UNDO_JOURNAL: &str = "undo.jsonl";

/// The undo's results, rebuilt at the end of every run.
pub const UNDO_RESULTS: &str = "undo.csv";

/// Why an undo could not run.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    /// The directory holds no import journal.
    #[error("{0} holds no import journal (journal.jsonl)")]
    NoJournal(PathBuf),
    /// Reading the import's journal failed.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// An import or another undo is running on this journal.
    #[error("{0}")]
    Locked(String),
    /// Reading or writing the undo's own files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A customer the import created.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The source line.
    pub line: u64,
    /// Its external id.
    pub external_id: String,
    /// Its platform id, when the import learned it.
    pub platform_id: Option<String>,
}

/// What the undo's journal says of a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum UndoRecord {
    /// Deleted by this undo.
    Deleted {
        /// Source line.
        line: u64,
        /// The platform id deleted.
        platform_id: String,
    },
    /// Not there any more (deleted by an earlier, interrupted undo or by someone else).
    Gone {
        /// Source line.
        line: u64,
        /// The platform id looked for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        platform_id: Option<String>,
    },
    /// The platform refused the delete (a later run tries again).
    Failed {
        /// Source line.
        line: u64,
        /// What the platform said.
        message: String,
    },
}

impl UndoRecord {
    /// The source line the record is about.
    pub fn line(&self) -> u64 {
        match self {
            UndoRecord::Deleted { line, .. }
            | UndoRecord::Gone { line, .. }
            | UndoRecord::Failed { line, .. } => *line,
        }
    }

    /// Whether nothing is left to do for the line.
    pub fn is_final(&self) -> bool {
        !matches!(self, UndoRecord::Failed { .. })
    }
}

/// What an undo would do, read from the journals.
#[derive(Debug, Clone)]
pub struct UndoPlan {
    /// The import's first header: target, origin, brand.
    pub header: RunHeader,
    /// Every customer the import created, in line order.
    pub created: Vec<Created>,
    /// Rows the import updated: not undone (their earlier values are not known).
    pub updated: u64,
    /// Rows that existed already: left alone.
    pub existed: u64,
    /// What earlier undo runs recorded, by line.
    pub earlier: BTreeMap<u64, UndoRecord>,
}

impl UndoPlan {
    /// Reads the import's journal in `dir` and what earlier undo runs did.
    pub fn read(dir: &Path) -> Result<UndoPlan, UndoError> {
        let path = dir.join("journal.jsonl");
        let header =
            journal::first_header(&path)?.ok_or_else(|| UndoError::NoJournal(dir.into()))?;
        // The last record of a line is its outcome.
        let mut done: BTreeMap<u64, Done> = BTreeMap::new();
        journal::for_each_done(&path, |d| {
            done.insert(d.line, d);
            Ok(())
        })?;
        let (mut updated, mut existed) = (0, 0);
        let mut created = Vec::new();
        for d in done.into_values() {
            match d.outcome {
                Outcome::Created => created.push(Created {
                    line: d.line,
                    external_id: d.external_id,
                    platform_id: d.platform_id.filter(|p| !p.is_empty()),
                }),
                Outcome::Updated => updated += 1,
                Outcome::Exists => existed += 1,
                Outcome::Failed | Outcome::Invalid => {}
            }
        }
        let earlier = read_undo_journal(&dir.join(UNDO_JOURNAL))?;
        Ok(UndoPlan {
            header,
            created,
            updated,
            existed,
            earlier,
        })
    }

    /// The created customers an undo still has to delete.
    pub fn to_delete(&self) -> Vec<&Created> {
        self.created
            .iter()
            .filter(|c| !self.earlier.get(&c.line).is_some_and(UndoRecord::is_final))
            .collect()
    }
}

/// The records of a progress file (`undo.jsonl`, `delete.jsonl`) by line; the last one of
/// a line counts. No file: none.
pub fn read_undo_journal(path: &Path) -> Result<BTreeMap<u64, UndoRecord>, UndoError> {
    let mut records = BTreeMap::new();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(records),
        Err(source) => {
            return Err(UndoError::Io {
                path: path.into(),
                source,
            })
        }
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|source| UndoError::Io {
            path: path.into(),
            source,
        })?;
        // A torn last line (a kill mid-write) is a delete to try again.
        if let Ok(record) = serde_json::from_slice::<UndoRecord>(&line) {
            records.insert(record.line(), record);
        }
    }
    Ok(records)
}

/// How an undo ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UndoReport {
    /// Customers the import created.
    pub created_by_import: u64,
    /// Deleted by this run.
    pub deleted: u64,
    /// Deleted by earlier runs of the undo.
    pub deleted_before: u64,
    /// Not there any more when this undo looked.
    pub already_gone: u64,
    /// Refused by the platform (run the undo again to retry).
    pub failed: u64,
    /// Updated by the import: not undone.
    pub updated_not_undone: u64,
    /// Existed before the import: left alone.
    pub existed_left_alone: u64,
    /// Requests sent.
    pub requests: u64,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Set when the run stopped early (Ctrl-C).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl UndoReport {
    /// The human summary.
    pub fn summary(&self, dir: &Path) -> String {
        format!(
            "undo: {} created by the import: {} deleted now, {} by earlier runs, {} already gone, {} failed; {} updated rows not undone, {} existing left alone ({:.1} s)\nresults: {}\n",
            self.created_by_import,
            self.deleted,
            self.deleted_before,
            self.already_gone,
            self.failed,
            self.updated_not_undone,
            self.existed_left_alone,
            self.elapsed_seconds,
            dir.join(UNDO_RESULTS).display()
        )
    }
}

/// Deletes what the plan still has to, `concurrency` calls at a time, recording each
/// finished delete before the next batch; stops taking new ones on `stop`.
pub async fn run<T: Target>(
    client: Arc<T>,
    plan: &UndoPlan,
    dir: &Path,
    concurrency: usize,
    stop: Arc<Stop>,
) -> Result<UndoReport, UndoError> {
    let started = Instant::now();
    // The import's run lock: no import (or second undo) writes this journal meanwhile.
    let _lock = super::start::lock(dir).map_err(|e| UndoError::Locked(e.to_string()))?;
    let path = dir.join(UNDO_JOURNAL);
    let io = |source| UndoError::Io {
        path: path.clone(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut records = plan.earlier.clone();
    let mut report = UndoReport {
        created_by_import: plan.created.len() as u64,
        deleted_before: plan
            .earlier
            .values()
            .filter(|r| matches!(r, UndoRecord::Deleted { .. }))
            .count() as u64,
        updated_not_undone: plan.updated,
        existed_left_alone: plan.existed,
        ..UndoReport::default()
    };
    let todo = plan.to_delete();
    let client_ref = &client;
    record_each(
        todo,
        &path,
        &mut file,
        concurrency,
        &stop,
        |c| async move { delete_one(client_ref.as_ref(), c).await },
        |record| {
            match record {
                UndoRecord::Deleted { .. } => report.deleted += 1,
                UndoRecord::Gone { .. } => report.already_gone += 1,
                UndoRecord::Failed { .. } => report.failed += 1,
            }
            records.insert(record.line(), record.clone());
        },
    )
    .await?;
    if stop.requested() {
        report.stopped = Some("interrupted".into());
    }
    write_results(dir, plan, &records)?;
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs `work` on each job, `concurrency` at a time, until `stop`; appends each record it
/// gives to the progress `file` (fsynced every 64 records or 200 ms, and at the end) and
/// hands it to `seen`.
pub async fn record_each<J, F, Fut>(
    jobs: impl IntoIterator<Item = J>,
    path: &Path,
    file: &mut File,
    concurrency: usize,
    stop: &Stop,
    work: F,
    mut seen: impl FnMut(&UndoRecord),
) -> Result<(), UndoError>
where
    F: Fn(J) -> Fut,
    Fut: std::future::Future<Output = UndoRecord>,
{
    let io = |source| UndoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut results = futures_util::stream::iter(jobs)
        .take_while(|_| std::future::ready(!stop.requested()))
        .map(work)
        .buffer_unordered(concurrency.max(1));
    let mut unsynced = 0usize;
    let mut last_sync = Instant::now();
    while let Some(record) = results.next().await {
        let mut text = serde_json::to_vec(&record).expect("records serialize");
        text.push(b'\n');
        file.write_all(&text).map_err(io)?;
        unsynced += 1;
        if unsynced >= 64 || last_sync.elapsed() >= Duration::from_millis(200) {
            file.sync_data().map_err(io)?;
            unsynced = 0;
            last_sync = Instant::now();
        }
        seen(&record);
    }
    file.sync_data().map_err(io)
}

/// Deletes one created customer; looks its id up by external id when the import did not
/// learn it.
async fn delete_one<T: Target>(client: &T, c: &Created) -> UndoRecord {
    let id = match &c.platform_id {
        Some(id) => id.clone(),
        None => {
            let customer = Customer {
                external_id: c.external_id.clone(),
                ..Customer::default()
            };
            match client.lookup(&customer).await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    return UndoRecord::Gone {
                        line: c.line,
                        platform_id: None,
                    }
                }
                Err(e) => {
                    return UndoRecord::Failed {
                        line: c.line,
                        message: format!("looking up {}: {e}", c.external_id),
                    }
                }
            }
        }
    };
    match client.delete(&id).await {
        Ok(()) => UndoRecord::Deleted {
            line: c.line,
            platform_id: id,
        },
        Err(CallError::NotFound) => UndoRecord::Gone {
            line: c.line,
            platform_id: Some(id),
        },
        Err(e) => UndoRecord::Failed {
            line: c.line,
            message: e.to_string(),
        },
    }
}

/// `undo.csv`: every created row with what the undo did to it.
fn write_results(
    dir: &Path,
    plan: &UndoPlan,
    records: &BTreeMap<u64, UndoRecord>,
) -> Result<(), UndoError> {
    let path = dir.join(UNDO_RESULTS);
    let mut csv = csv::Writer::from_writer(Vec::new());
    let mut row = |cells: [&str; 5]| csv.write_record(cells).expect("writes to memory");
    row(["line", "external_id", "platform_id", "undo", "message"]);
    for c in &plan.created {
        let line = c.line.to_string();
        let known = c.platform_id.clone().unwrap_or_default();
        let (id, outcome, message) = match records.get(&c.line) {
            Some(UndoRecord::Deleted { platform_id, .. }) => (platform_id.clone(), "deleted", ""),
            Some(UndoRecord::Gone { platform_id, .. }) => {
                (platform_id.clone().unwrap_or(known), "gone", "")
            }
            Some(UndoRecord::Failed { message, .. }) => (known, "failed", message.as_str()),
            None => (known, "pending", ""),
        };
        row([&line, &c.external_id, &id, outcome, message]);
    }
    let bytes = csv.into_inner().map_err(|e| UndoError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::output::write_whole(&path, &bytes).map_err(|source| UndoError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_a_delete_to_try_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(UNDO_JOURNAL);
        std::fs::write(
            &path,
            "{\"t\":\"deleted\",\"line\":2,\"platform_id\":\"7\"}\n{\"t\":\"failed\",\"line\":3,\"message\":\"x\"}\n{\"t\":\"del",
        )
        .unwrap();
        let records = read_undo_journal(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[&2].is_final());
        assert!(!records[&3].is_final(), "a failed delete is tried again");
    }
}
