//! `deskport delete FILE`: deletes — or, on Omnidesk, purges with their tickets — the
//! customers a file names, by external id or (with `--match`) by email or phone. The file
//! is read with the same reader, mapping and validator as an import; each row is resolved
//! to a platform id by a read-only lookup, then deleted. Progress goes to `delete.jsonl`
//! (a line per finished row, as `undo.jsonl`), so a killed run resumes where it stopped:
//! a delete is idempotent, and one whose line was lost is answered "not found" the second
//! time (counted as gone).

use crate::error::Error;
use crate::import::undo::{read_undo_journal, record_each, UndoError, UndoRecord};
use crate::import::Stop;
use crate::input::{self, InputOptions};
use crate::mapping::Mapping;
use crate::model::Customer;
use crate::platform::{CallError, MatchKey, Target};
use crate::validate::Rules;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The progress file, a record per finished row.
pub const PROGRESS: &str = "delete.jsonl";
/// What the progress file is for (input, target, origin, purge).
pub const HEADER: &str = "delete.json";
/// Every row with what became of it, rebuilt at the end of every run.
pub const RESULTS: &str = "delete.csv";
/// The dry run's per-row list.
pub const DRY_RUN: &str = "delete-dry-run.csv";

/// Why a delete could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// Input, mapping or output problems.
    #[error(transparent)]
    Run(#[from] Error),
    /// The progress files.
    #[error(transparent)]
    Progress(#[from] UndoError),
    /// The directory holds the progress of another delete.
    #[error("{dir} holds the progress of a delete of {what}; use another --journal directory")]
    Mismatch {
        /// The directory.
        dir: PathBuf,
        /// What differs.
        what: String,
    },
    /// The credentials were refused before anything was deleted.
    #[error("{0}")]
    Refused(String),
}

/// What a delete run is asked to do.
#[derive(Debug, Clone)]
pub struct DeleteConfig {
    /// The file naming the customers.
    pub input: InputOptions,
    /// Column mapping.
    pub mapping: Mapping,
    /// Validation rules (the target platform's).
    pub rules: Rules,
    /// Checking threads.
    pub threads: usize,
    /// Where progress and results go.
    pub dir: PathBuf,
    /// `omnidesk` or `udesk`.
    pub target: String,
    /// The platform's origin.
    pub origin: String,
    /// Purge (Omnidesk `purgeData`: the customer's tickets and items too) instead of delete.
    pub purge: bool,
    /// Besides the external id, what finds a row's customer (`--match`).
    pub match_keys: Vec<MatchKey>,
    /// Calls in flight at most.
    pub concurrency: usize,
}

/// The first lines of the progress: a run continues only the same file to the same place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteHeader {
    /// The file as given.
    pub input: String,
    /// Its content's fingerprint.
    pub fingerprint: String,
    /// The platform.
    pub target: String,
    /// Its origin.
    pub origin: String,
    /// Whether customers are purged.
    pub purge: bool,
}

/// A row of the file that names a customer.
#[derive(Debug, Clone)]
pub struct Named {
    /// Source line.
    pub line: u64,
    /// Its external id and addresses (and Omnidesk brand): what finds the customer.
    pub customer: Customer,
}

/// A row that names no usable customer.
#[derive(Debug, Clone)]
pub struct Unusable {
    /// Source line.
    pub line: u64,
    /// The external id as read (may be empty).
    pub external_id: String,
    /// Why.
    pub message: String,
}

/// What the file names, and what earlier runs did.
#[derive(Debug, Clone)]
pub struct DeletePlan {
    /// Rows naming a customer, in line order.
    pub named: Vec<Named>,
    /// Rows naming none.
    pub unusable: Vec<Unusable>,
    /// What earlier runs recorded, by line.
    pub earlier: BTreeMap<u64, UndoRecord>,
}

impl DeletePlan {
    /// Rows still to do.
    pub fn to_do(&self) -> Vec<&Named> {
        self.named
            .iter()
            .filter(|n| !self.earlier.get(&n.line).is_some_and(UndoRecord::is_final))
            .collect()
    }
}

/// Whether a row's errors leave it unable to name a customer: an external id the platform
/// could not hold, or no id and (with `--match`) no email or phone either. Errors in other
/// fields do not matter: nothing of them is sent.
fn unusable(row: &crate::model::CheckedRow, keys: &[MatchKey]) -> Option<String> {
    let c = row.customer.as_ref()?;
    let id_errors: Vec<String> = row
        .issues
        .iter()
        .filter(|i| i.is_error())
        .filter(|i| {
            let code = i.code.as_str();
            code.starts_with("id.") && code != "id.duplicate" && code != "id.missing"
        })
        .map(|i| format!("{}: {}", i.code, crate::output::describe(i)))
        .collect();
    if !id_errors.is_empty() {
        return Some(id_errors.join(" | "));
    }
    let addresses = keys.iter().any(|k| !k.values(c).is_empty());
    match (c.external_id.is_empty(), keys.is_empty()) {
        (true, true) => Some(
            "no external id (--match email,phone also finds customers by their addresses)".into(),
        ),
        (true, false) if !addresses => {
            Some("no external id, and no valid email or phone to match".into())
        }
        _ => None,
    }
}

/// Reads the file (through the validator) and the progress of earlier runs; refuses a
/// directory holding another delete's progress.
pub async fn read(config: &DeleteConfig) -> Result<(DeletePlan, DeleteHeader), DeleteError> {
    let path = match &config.input.path {
        input::InputPath::File(p) => p.clone(),
        input::InputPath::Stdin => return Err(Error::Usage(
            "delete reads a file, not standard input: its progress is tied to the file's content"
                .into(),
        )
        .into()),
    };
    let fingerprint = crate::import::fingerprint(&path)
        .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    let header = DeleteHeader {
        input: path.display().to_string(),
        fingerprint: fingerprint.id,
        target: config.target.clone(),
        origin: config.origin.clone(),
        purge: config.purge,
    };
    if let Some(then) = read_header(&config.dir)? {
        let what = if then.fingerprint != header.fingerprint {
            Some(format!("another file ({})", then.input))
        } else if then.target != header.target || then.origin != header.origin {
            Some(format!("{} at {}", then.target, then.origin))
        } else if then.purge != header.purge {
            Some(
                if then.purge {
                    "purge"
                } else {
                    "delete without --purge"
                }
                .into(),
            )
        } else {
            None
        };
        if let Some(what) = what {
            return Err(DeleteError::Mismatch {
                dir: config.dir.clone(),
                what,
            });
        }
    }
    let opened = input::open(&config.input).map_err(Error::from)?;
    let (pipeline, mut rx) = crate::pipeline::spawn_checked(
        opened.reader,
        config.mapping.clone(),
        config.rules.clone(),
        config.threads,
        1024,
    );
    let mut plan = DeletePlan {
        named: Vec::new(),
        unusable: Vec::new(),
        earlier: read_undo_journal(&config.dir.join(PROGRESS))?,
    };
    while let Some(batch) = rx.recv().await {
        for row in batch?.rows {
            let line = row.raw.line;
            let external_id = row
                .customer
                .as_ref()
                .map(|c| c.external_id.clone())
                .unwrap_or_default();
            match (unusable(&row, &config.match_keys), row.customer) {
                (None, Some(c)) => plan.named.push(Named {
                    line,
                    customer: Customer {
                        external_id: c.external_id,
                        email: c.email,
                        other_emails: c.other_emails,
                        phones: c.phones,
                        brand_id: c.brand_id,
                        ..Customer::default()
                    },
                }),
                (why, _) => plan.unusable.push(Unusable {
                    line,
                    external_id,
                    message: why.unwrap_or_else(|| "the row could not be read".into()),
                }),
            }
        }
    }
    pipeline.join().ok();
    Ok((plan, header))
}

fn read_header(dir: &Path) -> Result<Option<DeleteHeader>, DeleteError> {
    let path = dir.join(HEADER);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DeleteError::Mismatch {
                dir: dir.to_path_buf(),
                what: format!("something deskport cannot read ({}: {e})", path.display()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UndoError::Io { path, source }.into()),
    }
}

/// Where a row's customer is: its platform id, or the row's end without one.
enum Resolved {
    /// The customer to delete, and how it was found (`None`: by external id).
    Found(String, Option<String>),
    /// Nobody holds the row's external id (nor, with `--match`, its addresses).
    Nobody,
    /// The search failed or found a conflict.
    Failed(String),
}

/// Finds the row's customer: by external id, then (with `keys`) by email or phone; a
/// customer found by address that carries another external id is not this row's.
async fn resolve<T: Target>(t: &T, keys: &[MatchKey], c: &Customer) -> Resolved {
    if !c.external_id.is_empty() {
        match t.lookup(c).await {
            Ok(Some(id)) if !id.is_empty() => return Resolved::Found(id, None),
            Ok(Some(_)) => {
                return Resolved::Failed(
                    "the platform holds this external id but its reply gave no customer id".into(),
                )
            }
            Ok(None) => {}
            Err(e) => return Resolved::Failed(format!("looking up {}: {e}", c.external_id)),
        }
    }
    if keys.is_empty() {
        return Resolved::Nobody;
    }
    use crate::import::matching::{find_holder, foreign_holder, Unmatched};
    match find_holder(t, keys, c).await {
        Ok(Some(found)) => match foreign_holder(c, &found) {
            Some(why) if !c.external_id.is_empty() => Resolved::Failed(why),
            _ => {
                let (key, value, holder) = found;
                Resolved::Found(
                    holder.platform_id,
                    Some(format!("found by {} {value}", key.name())),
                )
            }
        },
        Ok(None) => Resolved::Nobody,
        Err(Unmatched::Conflict(why)) => Resolved::Failed(why),
        Err(Unmatched::Call(e)) => Resolved::Failed(format!("searching by email or phone: {e}")),
    }
}

/// Resolves and deletes (or purges) one row's customer.
async fn delete_one<T: Target>(t: &T, config: &DeleteConfig, n: &Named) -> UndoRecord {
    let line = n.line;
    let id = match resolve(t, &config.match_keys, &n.customer).await {
        Resolved::Found(id, _) => id,
        Resolved::Nobody => {
            return UndoRecord::Gone {
                line,
                platform_id: None,
            }
        }
        Resolved::Failed(message) => return UndoRecord::Failed { line, message },
    };
    let result = if config.purge {
        t.purge(&id).await
    } else {
        t.delete(&id).await
    };
    match result {
        Ok(()) => UndoRecord::Deleted {
            line,
            platform_id: id,
        },
        Err(CallError::NotFound) => UndoRecord::Gone {
            line,
            platform_id: Some(id),
        },
        Err(e) => UndoRecord::Failed {
            line,
            message: e.to_string(),
        },
    }
}

/// How a delete ended.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeleteReport {
    /// Rows naming a customer.
    pub named: u64,
    /// Rows naming none (see the results).
    pub unusable: u64,
    /// Deleted (or purged) by this run.
    pub deleted: u64,
    /// Deleted by earlier runs.
    pub deleted_before: u64,
    /// Not on the platform (never were, or gone already).
    pub not_found: u64,
    /// Refused or not resolved (run again to retry).
    pub failed: u64,
    /// Whether customers were purged.
    pub purge: bool,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Set when the run stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

impl DeleteReport {
    /// The human summary.
    pub fn summary(&self, dir: &Path) -> String {
        format!(
            "delete: {} rows name a customer ({} do not): {} {} now, {} by earlier runs, {} not on the platform, {} failed ({:.1} s)\nresults: {}\n",
            self.named,
            self.unusable,
            self.deleted,
            if self.purge { "purged" } else { "deleted" },
            self.deleted_before,
            self.not_found,
            self.failed,
            self.elapsed_seconds,
            dir.join(RESULTS).display()
        )
    }
}

/// Deletes what the plan still has to, after one read-only call that stops a run whose
/// credentials are refused; records each row before the next batch; stops taking new rows
/// on `stop`.
pub async fn run<T: Target>(
    client: Arc<T>,
    config: &DeleteConfig,
    plan: &DeletePlan,
    header: &DeleteHeader,
    stop: Arc<Stop>,
) -> Result<DeleteReport, DeleteError> {
    let started = Instant::now();
    let dir = &config.dir;
    let _lock = crate::import::lock(dir).map_err(|e| DeleteError::Refused(e.to_string()))?;
    if !plan.to_do().is_empty() {
        crate::import::plan::probe(client.as_ref())
            .await
            .map_err(DeleteError::Refused)?;
    }
    let header_path = dir.join(HEADER);
    let bytes = serde_json::to_vec_pretty(header).expect("headers serialize");
    crate::output::write_whole(&header_path, &bytes).map_err(|source| UndoError::Io {
        path: header_path.clone(),
        source,
    })?;
    let path = dir.join(PROGRESS);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| UndoError::Io {
            path: path.clone(),
            source,
        })?;
    let mut records = plan.earlier.clone();
    let mut report = DeleteReport {
        named: plan.named.len() as u64,
        unusable: plan.unusable.len() as u64,
        purge: config.purge,
        deleted_before: plan
            .earlier
            .values()
            .filter(|r| matches!(r, UndoRecord::Deleted { .. }))
            .count() as u64,
        not_found: plan
            .earlier
            .values()
            .filter(|r| matches!(r, UndoRecord::Gone { .. }))
            .count() as u64,
        ..DeleteReport::default()
    };
    let client = client.as_ref();
    record_each(
        plan.to_do(),
        &path,
        &mut file,
        config.concurrency,
        &stop,
        |n| delete_one(client, config, n),
        |record| {
            match record {
                UndoRecord::Deleted { .. } => report.deleted += 1,
                UndoRecord::Gone { .. } => report.not_found += 1,
                UndoRecord::Failed { .. } => report.failed += 1,
            }
            records.insert(record.line(), record.clone());
        },
    )
    .await?;
    if stop.requested() {
        report.stopped = Some("interrupted".into());
    }
    write_results(dir, plan, &records, config.purge)?;
    report.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The rows naming no customer, as result lines.
fn invalid_rows(plan: &DeletePlan) -> impl Iterator<Item = (u64, [String; 4])> + '_ {
    plan.unusable.iter().map(|u| {
        let cells = [
            u.external_id.clone(),
            String::new(),
            "invalid".into(),
            u.message.clone(),
        ];
        (u.line, cells)
    })
}

/// `delete.csv`: every row with what became of it.
fn write_results(
    dir: &Path,
    plan: &DeletePlan,
    records: &BTreeMap<u64, UndoRecord>,
    purge: bool,
) -> Result<(), DeleteError> {
    let mut rows: Vec<(u64, [String; 4])> = Vec::new();
    for n in &plan.named {
        let cells = match records.get(&n.line) {
            Some(UndoRecord::Deleted { platform_id, .. }) => [
                platform_id.clone(),
                if purge { "purged" } else { "deleted" }.into(),
                String::new(),
            ],
            Some(UndoRecord::Gone { platform_id, .. }) => [
                platform_id.clone().unwrap_or_default(),
                "not_found".into(),
                "no customer holds this external id (or the row's addresses): gone already, or never there".into(),
            ],
            Some(UndoRecord::Failed { message, .. }) => {
                [String::new(), "failed".into(), message.clone()]
            }
            None => [String::new(), "pending".into(), String::new()],
        };
        let [id, outcome, message] = cells;
        rows.push((
            n.line,
            [n.customer.external_id.clone(), id, outcome, message],
        ));
    }
    rows.extend(invalid_rows(plan));
    rows.sort_by_key(|(line, _)| *line);
    write_csv(
        &dir.join(RESULTS),
        ["line", "external_id", "platform_id", "outcome", "message"],
        rows,
    )
}

fn write_csv(
    path: &Path,
    header: [&str; 5],
    rows: Vec<(u64, [String; 4])>,
) -> Result<(), DeleteError> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(header).expect("writes to memory");
    for (line, [a, b, c, d]) in rows {
        csv.write_record([line.to_string(), a, b, c, d])
            .expect("writes to memory");
    }
    let io = |source| UndoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = csv
        .into_inner()
        .map_err(|e| io(std::io::Error::other(e.to_string())))?;
    crate::output::write_whole(path, &bytes).map_err(io)?;
    Ok(())
}

/// What a dry run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DryRun {
    /// Rows whose customer would go.
    pub would_delete: u64,
    /// Rows whose customer is not on the platform.
    pub not_found: u64,
    /// Rows the search could not resolve (conflicts, failed calls).
    pub failed: u64,
    /// Rows naming no customer.
    pub unusable: u64,
    /// Rows done by an earlier run (not looked up again).
    pub done_before: u64,
    /// The per-row list.
    pub file: PathBuf,
}

/// Resolves every row still to do with read-only calls and lists what would go in
/// `delete-dry-run.csv`; deletes nothing.
pub async fn dry_run<T: Target>(
    client: Arc<T>,
    config: &DeleteConfig,
    plan: &DeletePlan,
) -> Result<DryRun, DeleteError> {
    let client = client.as_ref();
    crate::import::plan::probe(client)
        .await
        .map_err(DeleteError::Refused)?;
    let todo = plan.to_do();
    let resolved: Vec<(u64, String, Resolved)> = {
        use futures_util::StreamExt;
        futures_util::stream::iter(todo)
            .map(|n| async move {
                let r = resolve(client, &config.match_keys, &n.customer).await;
                (n.line, n.customer.external_id.clone(), r)
            })
            .buffered(config.concurrency.max(1))
            .collect()
            .await
    };
    let mut report = DryRun {
        unusable: plan.unusable.len() as u64,
        done_before: (plan.named.len() - plan.to_do().len()) as u64,
        file: config.dir.join(DRY_RUN),
        ..DryRun::default()
    };
    let action = if config.purge { "purge" } else { "delete" };
    let mut rows: Vec<(u64, [String; 4])> = Vec::new();
    for (line, external_id, r) in resolved {
        let cells = match r {
            Resolved::Found(id, how) => {
                report.would_delete += 1;
                [
                    id,
                    action.into(),
                    how.unwrap_or_else(|| "found by external id".into()),
                ]
            }
            Resolved::Nobody => {
                report.not_found += 1;
                [String::new(), "not_found".into(), String::new()]
            }
            Resolved::Failed(why) => {
                report.failed += 1;
                [String::new(), "fail".into(), why]
            }
        };
        let [id, what, detail] = cells;
        rows.push((line, [external_id, id, what, detail]));
    }
    rows.extend(invalid_rows(plan));
    rows.sort_by_key(|(line, _)| *line);
    std::fs::create_dir_all(&config.dir).map_err(|source| UndoError::Io {
        path: config.dir.clone(),
        source,
    })?;
    write_csv(
        &report.file,
        ["line", "external_id", "platform_id", "action", "detail"],
        rows,
    )?;
    Ok(report)
}
