//! `deskport import`: the validated rows of a file, written to a platform with nothing lost
//! and nothing duplicated, whatever crashes, retries and resumes happen on the way.
//!
//! ```text
//! pipeline thread (read → check → de-duplicate) ─► dispatcher ─► journal `sent` (fsync)
//!     ─► work queue ─► workers (create / upsert / update, transport-limited)
//!                  └─► bulk lane (Udesk create: 100 rows per interval, poison rows split off)
//!     ─► journal `done` ─► results.csv / failures.csv / rejects.csv (rebuilt from the journal)
//! ```
//!
//! Exactly once: a row is journaled `sent` (fsynced) before any write for it leaves. A row
//! `sent` without a `done` — because the process died, or the reply was a 5xx, a cut
//! connection or a timeout — is *in doubt*, and is looked up on the platform before a create
//! is tried again. Bulk-imported rows are `pending` until a lookup or export pass confirms
//! them. Rows with a `done` record are never sent again.

pub mod dry_run;
pub mod journal;
pub mod results;

use crate::error::Error;
use crate::input::{self, Format, InputOptions, InputPath};
use crate::mapping::Mapping;
use crate::model::{CheckedRow, Customer, RawRow};
use crate::output::describe;
use crate::pipeline::spawn_checked;
use crate::progress::Progress;
use crate::target::{BulkError, CallError, Target};
use crate::validate::Rules;
use journal::{Done, JournalError, JournalState, JournalWriter, Outcome, Record, RunHeader};
use results::{Counts, ResultFiles};
use serde::Serialize;
use serde_json::{json, Value};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// What an import does with each valid row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Create customers; one that already exists is left alone (`exists`).
    Create,
    /// Update the customer with the row's external id, or create it when there is none.
    Upsert,
    /// Update existing customers only; an unknown external id is a failure, never a create.
    Update,
}

impl Mode {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Create => "create",
            Mode::Upsert => "upsert",
            Mode::Update => "update",
        }
    }
}

/// Why an import could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Input, mapping or output problems.
    #[error(transparent)]
    Run(#[from] Error),
    /// The journal could not be used.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// An earlier journal exists and neither `--resume` nor `--restart` was given.
    #[error("{dir} already holds the journal of an earlier import of this file; pass --resume to continue it, or --restart to start over (the old journal is kept as journal.jsonl.old)")]
    JournalExists {
        /// The journal directory.
        dir: PathBuf,
    },
    /// The journal belongs to a different input or settings.
    #[error("the journal in {dir} is for {what}; use another --journal directory, or --restart")]
    JournalMismatch {
        /// The journal directory.
        dir: PathBuf,
        /// What differs.
        what: String,
    },
    /// Another run holds the lock.
    #[error(
        "another deskport import is running on {dir} (lock file {dir}/lock); wait for it to finish"
    )]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },
    /// Something else about the set-up is wrong.
    #[error("{0}")]
    Usage(String),
}

impl ImportError {
    /// The process exit code for this error.
    pub fn exit(&self) -> crate::Exit {
        match self {
            ImportError::Run(e) => e.exit(),
            ImportError::Journal(_) => crate::Exit::Aborted,
            _ => crate::Exit::Usage,
        }
    }
}

/// Everything `import` needs, already parsed and checked.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// What to read (a file: the journal is keyed by its fingerprint).
    pub input: InputOptions,
    /// Column mapping.
    pub mapping: Mapping,
    /// Validation rules (with the target platform's).
    pub rules: Rules,
    /// Create, upsert or update.
    pub mode: Mode,
    /// Where the journal and results go.
    pub journal_dir: PathBuf,
    /// Continue the journal's run.
    pub resume: bool,
    /// Set the journal aside and start over.
    pub restart: bool,
    /// Worker threads for checking.
    pub threads: usize,
    /// Show a progress bar (only on a terminal).
    pub progress: bool,
    /// Concurrent row tasks (the transport adapts below this).
    pub max_concurrency: usize,
    /// Minimum time between bulk imports (Udesk: a minute).
    pub bulk_interval: Duration,
    /// First wait before confirming bulk-imported rows (doubles per round).
    pub bulk_settle: Duration,
    /// How long in-flight rows may finish after Ctrl-C.
    pub stop_grace: Duration,
    /// Stop after this many rows in a row could not be finished (the platform is down).
    pub max_consecutive_unfinished: u64,
}

impl ImportConfig {
    /// Defaults for everything but the input, mode and journal directory.
    pub fn new(input: InputOptions, mode: Mode, journal_dir: PathBuf) -> Self {
        ImportConfig {
            input,
            mapping: Mapping::builtin(),
            rules: Rules::default(),
            mode,
            journal_dir,
            resume: false,
            restart: false,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            progress: false,
            max_concurrency: 16,
            bulk_interval: Duration::from_secs(60),
            bulk_settle: Duration::from_secs(2),
            stop_grace: Duration::from_secs(10),
            max_consecutive_unfinished: 50,
        }
    }
}

/// The journal directory used when `--journal` is not given: `NAME.import` in the current
/// directory, after the input file's name without its extensions.
pub fn default_journal_dir(input: &Path) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "input".into());
    let stem = name
        .split('.')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("input");
    PathBuf::from(format!("{stem}.import"))
}

/// Ctrl-C: the first asks for a clean stop, a second is handled by the binary (exit now).
#[derive(Debug, Default)]
pub struct Stop {
    requested: AtomicBool,
    notify: Notify,
}

impl Stop {
    /// Asks every stage to stop taking new rows.
    pub fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// Resolves when a stop is asked for.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.requested() {
                return;
            }
            notified.await;
        }
    }
}

/// How an import ended.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The input as given.
    pub input: String,
    /// The platform.
    pub target: &'static str,
    /// The mode.
    pub mode: Mode,
    /// Rows read from the input in this run.
    pub rows_read: u64,
    /// Rows skipped because an earlier run finished them.
    pub skipped_done_earlier: u64,
    /// Rows not processed because the run stopped early.
    pub not_processed: u64,
    /// Final outcomes over all runs of this journal, plus this run's unfinished rows.
    pub counts: Counts,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// The journal directory.
    pub journal_dir: PathBuf,
    /// The result files.
    pub files: ResultFiles,
    /// Requests sent.
    pub requests: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Rate-limit refusals received.
    pub throttled: u64,
    /// Shared pauses.
    pub pauses: u64,
    /// Concurrency at the end.
    pub concurrency: usize,
    /// Wall time.
    pub elapsed_seconds: f64,
    /// Rows finished in this run per second.
    pub rows_per_second: f64,
}

impl ImportReport {
    /// Whether every row ended well.
    pub fn all_good(&self) -> bool {
        self.stopped.is_none()
            && self.not_processed == 0
            && self.counts.failed == 0
            && self.counts.invalid == 0
            && self.counts.unfinished == 0
    }

    /// The text summary printed at the end.
    pub fn summary(&self, resume_hint: &str) -> String {
        let c = &self.counts;
        let mut s = format!(
            "import {} → {} ({})\n  rows read       {:>9}\n  created         {:>9}\n  updated         {:>9}\n  already existed {:>9}\n  failed          {:>9}   {}\n  invalid         {:>9}   {}\n",
            self.input,
            self.target,
            self.mode.as_str(),
            self.rows_read,
            c.created,
            c.updated,
            c.exists,
            c.failed,
            self.files.failures.display(),
            c.invalid,
            self.files.rejects.display(),
        );
        if c.unfinished > 0 {
            s.push_str(&format!(
                "  unfinished      {:>9}   (retries ran out; --resume tries them again)\n",
                c.unfinished
            ));
        }
        if self.not_processed > 0 {
            s.push_str(&format!("  not processed   {:>9}\n", self.not_processed));
        }
        if self.skipped_done_earlier > 0 {
            s.push_str(&format!(
                "  ({} rows were finished by an earlier run and skipped)\n",
                self.skipped_done_earlier
            ));
        }
        s.push_str(&format!(
            "  requests {} · retries {} · rate-limited {} · pauses {} · concurrency {}\n  elapsed {:.1} s · {:.0} rows/s\n",
            self.requests, self.retries, self.throttled, self.pauses, self.concurrency,
            self.elapsed_seconds, self.rows_per_second
        ));
        s.push_str(&format!(
            "results: {}\njournal: {}\n",
            self.files.results.display(),
            self.journal_dir.join("journal.jsonl").display()
        ));
        if let Some(why) = &self.stopped {
            s.push_str(&format!(
                "stopped: {why}\nsafe to resume with: {resume_hint}\n"
            ));
        }
        s
    }
}

/// Hash and size of the input file (the journal belongs to exactly this content), and its
/// number of line breaks (an estimate of the rows, for the progress bar).
pub fn fingerprint(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((
        format!("xxh3-128:{:032x}:{size}", hasher.digest128()),
        lines,
    ))
}

/// Holds the journal directory's lock until dropped (released by the OS if we die).
#[derive(Debug)]
pub struct RunLock(#[allow(dead_code)] File);

/// Takes the run lock on `dir` (created if missing).
pub fn lock(dir: &Path) -> Result<RunLock, ImportError> {
    std::fs::create_dir_all(dir).map_err(|source| {
        ImportError::Journal(JournalError::Io {
            path: dir.to_path_buf(),
            source,
        })
    })?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ImportError::Journal(JournalError::Io { path, source }))?;
    match file.try_lock() {
        Ok(()) => Ok(RunLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(ImportError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(ImportError::Journal(JournalError::Io {
            path: dir.join("lock"),
            source,
        })),
    }
}

/// A row on its way to the platform. The source fields travel along (moved, not copied)
/// and are turned into the journal's form only if the row fails.
#[derive(Debug)]
struct Work {
    line: u64,
    customer: Customer,
    raw: RawRow,
    columns: Arc<Vec<String>>,
    jsonl: bool,
    in_doubt: bool,
}

/// The original fields of a row as the journal keeps them for failures: a list for CSV
/// sources, an object (or `{"raw": text}`) for JSONL.
fn row_value(raw: &RawRow, columns: &[String], jsonl: bool) -> Value {
    if let Some(text) = &raw.raw_text {
        return json!({ "raw": text });
    }
    if jsonl {
        Value::Object(
            columns
                .iter()
                .zip(raw.record.iter())
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| (c.clone(), json!(v)))
                .collect(),
        )
    } else {
        Value::Array(raw.record.iter().map(|f| json!(f)).collect())
    }
}

/// The `done` record of a row the validator refused.
fn invalid_record(row: &CheckedRow, columns: &[String], jsonl: bool) -> Done {
    let errors: Vec<_> = row.issues.iter().filter(|i| i.is_error()).collect();
    Done {
        line: row.raw.line,
        external_id: row
            .customer
            .as_ref()
            .map(|c| c.external_id.clone())
            .unwrap_or_default(),
        outcome: Outcome::Invalid,
        platform_id: None,
        reason: Some(
            errors
                .iter()
                .map(|i| i.code.as_str())
                .collect::<Vec<_>>()
                .join(";"),
        ),
        message: Some(
            errors
                .iter()
                .map(|i| describe(i))
                .collect::<Vec<_>>()
                .join(" | "),
        ),
        row: Some(row_value(&row.raw, columns, jsonl)),
    }
}

/// What became of one row in this run.
enum RowEnd {
    /// Final: journal it.
    Done(Done),
    /// Retries ran out; stays in doubt for a resume.
    Unfinished(Done),
    /// The credentials were refused: stop the run.
    Abort(String),
}

fn done(w: &Work, outcome: Outcome, platform_id: Option<String>, note: Option<String>) -> RowEnd {
    RowEnd::Done(Done {
        line: w.line,
        external_id: w.customer.external_id.clone(),
        outcome,
        platform_id: platform_id.filter(|p| !p.is_empty()),
        reason: None,
        message: note,
        row: None,
    })
}

/// Maps a call failure (retries already spent) to the row's end.
fn failed(w: &Work, e: CallError) -> RowEnd {
    let record = |reason: &str, message: String| Done {
        line: w.line,
        external_id: w.customer.external_id.clone(),
        outcome: Outcome::Failed,
        platform_id: None,
        reason: Some(reason.to_string()),
        message: Some(message),
        row: Some(row_value(&w.raw, &w.columns, w.jsonl)),
    };
    match e {
        CallError::Auth { message } => RowEnd::Abort(message),
        CallError::NotFound => RowEnd::Done(record(
            "not_found",
            "no customer with this external id (update mode never creates)".into(),
        )),
        CallError::Rejected { message } | CallError::Expired { message } => {
            RowEnd::Done(record("platform_rejected", message))
        }
        CallError::Conflict { message, .. } => RowEnd::Done(record("platform_rejected", message)),
        e @ (CallError::Throttled { .. } | CallError::Unavailable { .. }) => {
            RowEnd::Unfinished(record("unfinished", format!("retries ran out: {e}")))
        }
    }
}

/// Creates a row exactly once: a row in doubt is looked up first; an unanswered create puts
/// it in doubt; an existing customer is left alone.
async fn create_row<T: Target>(t: &T, w: &Work, mut in_doubt: bool) -> RowEnd {
    let c = &w.customer;
    let mut failures = 0;
    loop {
        if in_doubt {
            match t.lookup(c).await {
                Ok(Some(id)) => {
                    return match t.complete(c, &id).await {
                        Ok(()) => done(
                            w,
                            Outcome::Created,
                            Some(id),
                            Some("confirmed by lookup after an unanswered attempt".into()),
                        ),
                        Err(e) => failed(w, e),
                    };
                }
                Ok(None) => {}
                Err(e) => return failed(w, e),
            }
        }
        match t.create(c).await {
            Ok(id) => {
                return match t.complete(c, &id).await {
                    Ok(()) => done(w, Outcome::Created, Some(id), None),
                    Err(e) => failed(w, e),
                }
            }
            Err(CallError::Conflict { platform_id, .. }) if in_doubt => {
                let id = platform_id.unwrap_or_default();
                return match t.complete(c, &id).await {
                    Ok(()) => done(
                        w,
                        Outcome::Created,
                        Some(id),
                        Some("an unanswered attempt had created it".into()),
                    ),
                    Err(e) => failed(w, e),
                };
            }
            Err(CallError::Conflict {
                platform_id,
                message,
            }) => return done(w, Outcome::Exists, platform_id, Some(message)),
            Err(e @ CallError::Unavailable { .. }) => {
                failures += 1;
                if failures >= t.transport().max_attempts() {
                    return failed(w, e);
                }
                in_doubt = true;
                tokio::time::sleep(t.transport().backoff(failures)).await;
            }
            Err(e) => return failed(w, e),
        }
    }
}

/// One row in the run's mode.
async fn process<T: Target>(t: &T, mode: Mode, w: &Work) -> RowEnd {
    match mode {
        Mode::Create => create_row(t, w, w.in_doubt).await,
        Mode::Update => match t.update(&w.customer).await {
            Ok(id) => done(w, Outcome::Updated, Some(id), None),
            Err(e) => failed(w, e),
        },
        Mode::Upsert => match t.update(&w.customer).await {
            Ok(id) => done(w, Outcome::Updated, Some(id), None),
            Err(CallError::NotFound) => create_row(t, w, w.in_doubt).await,
            Err(e) => failed(w, e),
        },
    }
}

/// State shared by the dispatcher, the workers and the bulk lane.
struct Shared<T> {
    target: Arc<T>,
    mode: Mode,
    journal: JournalWriter,
    stop: Arc<Stop>,
    unfinished: Mutex<Vec<Done>>,
    pending: Mutex<Vec<Work>>,
    aborted: Mutex<Option<String>>,
    finished_rows: AtomicU64,
    consecutive_unfinished: AtomicU64,
    max_consecutive_unfinished: u64,
}

impl<T: Target> Shared<T> {
    fn record(&self, end: RowEnd) {
        match end {
            RowEnd::Done(d) => {
                self.consecutive_unfinished.store(0, Ordering::Relaxed);
                self.finished_rows.fetch_add(1, Ordering::Relaxed);
                self.journal.append(vec![Record::Done(d)]);
            }
            RowEnd::Unfinished(d) => {
                let n = self.consecutive_unfinished.fetch_add(1, Ordering::Relaxed) + 1;
                self.finished_rows.fetch_add(1, Ordering::Relaxed);
                self.lock_unfinished().push(d);
                if n >= self.max_consecutive_unfinished {
                    self.abort(format!(
                        "{n} rows in a row could not be finished; the platform seems unavailable"
                    ));
                }
            }
            RowEnd::Abort(message) => self.abort(format!("credentials refused: {message}")),
        }
    }

    fn lock_unfinished(&self) -> std::sync::MutexGuard<'_, Vec<Done>> {
        self.unfinished.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Work>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn abort(&self, why: String) {
        let mut a = self.aborted.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() {
            *a = Some(why);
        }
        drop(a);
        self.stop.request();
    }

    fn stopping(&self) -> bool {
        self.stop.requested()
    }
}

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Work>>>;

/// A worker: takes rows off the queue until it closes; after a stop, hands back the rows it
/// takes without sending them.
async fn worker<T: Target>(shared: Arc<Shared<T>>, queue: Queue, unsent: Arc<Mutex<Vec<u64>>>) {
    loop {
        let next = queue.lock().await.recv().await;
        let Some(w) = next else { break };
        if shared.stopping() {
            unsent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(w.line);
            continue;
        }
        let end = process(shared.target.as_ref(), shared.mode, &w).await;
        shared.record(end);
    }
}

/// The bulk lane (Udesk create): every interval, up to `bulk_rows` queued rows go in one
/// asynchronous bulk import; a refused call loses its poison row (created singly, to get the
/// platform's verdict) and is sent again at once.
async fn bulk_lane<T: Target>(
    shared: Arc<Shared<T>>,
    queue: Queue,
    interval: Duration,
    unsent: Arc<Mutex<Vec<u64>>>,
) {
    let size = shared.target.bulk_rows();
    let mut next_slot = Instant::now();
    let mut singles = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_slot.into()) => {}
            _ = shared.stop.wait() => break,
        }
        let mut rows: Vec<Work> = Vec::with_capacity(size);
        {
            let mut rx = queue.lock().await;
            let first = tokio::select! {
                w = rx.recv() => w,
                _ = shared.stop.wait() => None,
            };
            let Some(first) = first else { break };
            rows.push(first);
            // A bulk slot is worth `size` rows: give the dispatcher a moment to fill it.
            let deadline =
                tokio::time::Instant::now() + (interval / 10).min(Duration::from_millis(500));
            while rows.len() < size {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(w)) => rows.push(w),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if shared.stopping() {
            unsent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(rows.iter().map(|w| w.line));
            break;
        }
        // Rows in doubt need a lookup first: they go the single way.
        let (doubtful, mut batch): (Vec<Work>, Vec<Work>) =
            rows.into_iter().partition(|w| w.in_doubt);
        for w in doubtful {
            let s = shared.clone();
            singles.spawn(async move {
                let end = process(s.target.as_ref(), s.mode, &w).await;
                s.record(end);
            });
        }
        while !batch.is_empty() {
            let refs: Vec<&Customer> = batch.iter().map(|w| &w.customer).collect();
            let result = shared.target.bulk_create(&refs).await;
            match result {
                Ok(()) => {
                    next_slot = Instant::now() + interval + interval / 50;
                    shared.journal.append(vec![Record::Pending {
                        lines: batch.iter().map(|w| w.line).collect(),
                    }]);
                    shared.lock_pending().append(&mut batch);
                }
                Err(BulkError::Poison { index, .. }) => {
                    let poison = batch.remove(index);
                    let s = shared.clone();
                    singles.spawn(async move {
                        let end = process(s.target.as_ref(), s.mode, &poison).await;
                        s.record(end);
                    });
                }
                Err(BulkError::Call(CallError::Auth { message })) => {
                    shared.abort(format!("credentials refused: {message}"));
                    break;
                }
                Err(BulkError::Call(CallError::Unavailable { .. })) => {
                    // It may have been accepted: confirm before creating any of them.
                    next_slot = Instant::now() + interval + interval / 50;
                    for w in &mut batch {
                        w.in_doubt = true;
                    }
                    shared.lock_pending().append(&mut batch);
                }
                Err(BulkError::Call(_)) => {
                    // Refused without naming a row, or throttled for too long: go single.
                    for w in batch.drain(..) {
                        let s = shared.clone();
                        singles.spawn(async move {
                            let end = process(s.target.as_ref(), s.mode, &w).await;
                            s.record(end);
                        });
                    }
                }
            }
        }
    }
    while singles.join_next().await.is_some() {}
}

/// Confirms bulk-imported rows: waits `settle` (doubling) between rounds; what is found is
/// created, what is still missing after the rounds is created singly (after a lookup).
async fn settle_pending<T: Target>(shared: &Arc<Shared<T>>, settle: Duration, rounds: u32) {
    let mut wait = settle;
    for _ in 0..rounds {
        if shared.lock_pending().is_empty() || shared.stopping() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.stop.wait() => return,
        }
        wait *= 2;
        let rows = std::mem::take(&mut *shared.lock_pending());
        let refs: Vec<&Customer> = rows.iter().map(|w| &w.customer).collect();
        match shared.target.confirm(&refs).await {
            Ok(found) => {
                let mut missing = Vec::new();
                for w in rows {
                    match found.get(&w.customer.external_id) {
                        Some(id) => shared.record(done(
                            &w,
                            Outcome::Created,
                            Some(id.clone()),
                            Some("bulk import confirmed".into()),
                        )),
                        None => missing.push(w),
                    }
                }
                shared.lock_pending().extend(missing);
            }
            Err(CallError::Auth { message }) => {
                shared.lock_pending().extend(rows);
                shared.abort(format!("credentials refused: {message}"));
                return;
            }
            Err(_) => shared.lock_pending().extend(rows),
        }
    }
    if shared.stopping() {
        return;
    }
    let rows = std::mem::take(&mut *shared.lock_pending());
    for mut w in rows {
        w.in_doubt = true;
        let end = process(shared.target.as_ref(), shared.mode, &w).await;
        shared.record(end);
    }
}

/// Runs an import to the end (or to a stop) and rebuilds the result files.
pub async fn run<T: Target>(
    config: &ImportConfig,
    target: Arc<T>,
    stop: Arc<Stop>,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let InputPath::File(input_path) = &config.input.path else {
        return Err(ImportError::Usage(
            "import reads a file, not standard input: the journal is tied to the file's content so a resume can check it".into(),
        ));
    };
    let dir = config.journal_dir.clone();
    let _lock = lock(&dir)?;
    let journal_path = dir.join("journal.jsonl");
    let (fingerprint, line_breaks) = fingerprint(input_path).map_err(|source| {
        Error::Input(input::InputError::Open {
            path: input_path.clone(),
            source,
        })
    })?;
    let opened = input::open(&config.input).map_err(Error::from)?;
    let jsonl = opened.info.format == Format::Jsonl;
    let header = RunHeader {
        v: journal::VERSION,
        fingerprint,
        input: config.input.path.display(),
        target: target.name().to_string(),
        mode: config.mode.as_str().to_string(),
        format: if jsonl { "jsonl" } else { "csv" }.into(),
        columns: if jsonl {
            Vec::new()
        } else {
            opened.reader.columns().to_vec()
        },
    };
    if config.restart && journal_path.exists() {
        std::fs::rename(&journal_path, dir.join("journal.jsonl.old")).map_err(|source| {
            JournalError::Io {
                path: journal_path.clone(),
                source,
            }
        })?;
    }
    let state = match journal::load(&journal_path)? {
        None => JournalState::default(),
        Some(_) if !config.resume => return Err(ImportError::JournalExists { dir }),
        Some(state) => {
            if let Some(h) = &state.header {
                let what = if h.fingerprint != header.fingerprint {
                    Some(format!(
                        "a different input ({}, {})",
                        h.input, h.fingerprint
                    ))
                } else if h.target != header.target || h.mode != header.mode {
                    Some(format!("--target {} --mode {}", h.target, h.mode))
                } else {
                    None
                };
                if let Some(what) = what {
                    return Err(ImportError::JournalMismatch { dir, what });
                }
            }
            state
        }
    };
    let files = ResultFiles::in_dir(&dir, jsonl);
    let journal = JournalWriter::open(&journal_path)?;
    journal
        .append_durable(vec![Record::Run(header.clone())])
        .await
        .map_err(|e| JournalError::Io {
            path: journal_path.clone(),
            source: std::io::Error::other(e),
        })?;

    let shared = Arc::new(Shared {
        target: target.clone(),
        mode: config.mode,
        journal,
        stop: stop.clone(),
        unfinished: Mutex::new(Vec::new()),
        pending: Mutex::new(Vec::new()),
        aborted: Mutex::new(None),
        finished_rows: AtomicU64::new(0),
        consecutive_unfinished: AtomicU64::new(0),
        max_consecutive_unfinished: config.max_consecutive_unfinished.max(1),
    });
    let use_bulk = config.mode == Mode::Create && target.bulk_rows() > 0;
    let workers = config.max_concurrency.max(1);
    let queue_len = if use_bulk {
        target.bulk_rows() + workers
    } else {
        workers * 2
    };
    let chunk = if use_bulk {
        target.bulk_rows()
    } else {
        workers
    };
    let (queue_tx, queue_rx) = mpsc::channel::<Work>(queue_len);
    let queue: Queue = Arc::new(tokio::sync::Mutex::new(queue_rx));
    let unsent = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        tasks.spawn(worker(shared.clone(), queue.clone(), unsent.clone()));
    }
    if use_bulk {
        tasks.spawn(bulk_lane(
            shared.clone(),
            queue.clone(),
            config.bulk_interval,
            unsent.clone(),
        ));
    }

    // Gzip input has no useful line count: a spinner then.
    let estimate = (!opened.info.gzip).then_some(line_breaks.saturating_sub(u64::from(!jsonl)));
    let progress = Arc::new(Progress::rows(estimate, config.progress));
    let skipped = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (progress, shared, skipped, target) = (
            progress.clone(),
            shared.clone(),
            skipped.clone(),
            target.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let here = shared.finished_rows.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                let t = target.transport();
                progress.set(
                    here + skipped.load(Ordering::Relaxed),
                    format!(
                        "{:.0} rows/s · concurrency {}{}",
                        here as f64 / secs,
                        t.concurrency(),
                        if t.paused() {
                            " · paused (rate limit)"
                        } else {
                            ""
                        }
                    ),
                );
            }
        })
    };
    let (pipeline, mut rows_rx) = spawn_checked(
        opened.reader,
        config.mapping.clone(),
        config.rules.clone(),
        config.threads,
        256,
    );

    // Dispatch: skip what is done, journal the invalid, mark `sent` per chunk, queue.
    let mut rows_read = 0u64;
    let mut input_error = None;
    let mut ready: Vec<Work> = Vec::with_capacity(chunk);
    let mut doubtful: Vec<Work> = Vec::new();
    let confirm_batch = 1000;
    'input: loop {
        let message = tokio::select! {
            m = rows_rx.recv() => m,
            _ = stop.wait() => None,
        };
        let batch = match message {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                input_error = Some(e);
                break;
            }
            None => break,
        };
        for row in batch.rows {
            rows_read += 1;
            let line = row.raw.line;
            if state.finals.contains(line) {
                skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (raw, customer) = match row.into_clean() {
                Ok(clean) => clean,
                Err(rejected) => {
                    shared.finished_rows.fetch_add(1, Ordering::Relaxed);
                    let record = invalid_record(&rejected, &batch.columns, jsonl);
                    shared.journal.append(vec![Record::Done(record)]);
                    continue;
                }
            };
            let w = Work {
                line,
                customer,
                raw,
                columns: batch.columns.clone(),
                jsonl,
                in_doubt: state.in_doubt.contains(line),
            };
            if w.in_doubt && use_bulk {
                doubtful.push(w);
                if doubtful.len() >= confirm_batch {
                    ready.extend(confirm_doubtful(&shared, std::mem::take(&mut doubtful)).await);
                }
            } else {
                ready.push(w);
            }
            if ready.len() >= chunk
                && !send_chunk(&shared, &queue_tx, std::mem::take(&mut ready)).await
            {
                break 'input;
            }
        }
    }
    if !stop.requested() {
        ready.extend(confirm_doubtful(&shared, std::mem::take(&mut doubtful)).await);
        send_chunk(&shared, &queue_tx, std::mem::take(&mut ready)).await;
    }
    drop(queue_tx);
    drop(rows_rx);
    pipeline.join().ok();

    // Let the workers finish; after a stop, give in-flight rows a grace period.
    let grace_over = async {
        stop.wait().await;
        tokio::time::sleep(config.stop_grace).await
    };
    tokio::pin!(grace_over);
    loop {
        tokio::select! {
            next = tasks.join_next() => if next.is_none() { break },
            _ = &mut grace_over => {
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                break;
            }
        }
    }
    if use_bulk && !stop.requested() {
        settle_pending(&shared, config.bulk_settle, 5).await;
    }
    ticker.abort();
    ticker.await.ok();
    progress.finish();
    let unsent_lines = std::mem::take(&mut *unsent.lock().unwrap_or_else(|e| e.into_inner()));
    if !unsent_lines.is_empty() {
        shared.journal.append(vec![Record::Unsent {
            lines: unsent_lines,
        }]);
    }
    let unfinished = std::mem::take(&mut *shared.lock_unfinished());
    let aborted = shared
        .aborted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let transport = target.transport();
    let stats = &transport.stats;
    let (requests, retries, throttled, pauses) = (
        stats.requests.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.throttled.load(Ordering::Relaxed),
        stats.pauses.load(Ordering::Relaxed),
    );
    let concurrency = transport.concurrency();
    drop(tasks);
    let shared = Arc::try_unwrap(shared)
        .map_err(|_| Error::Internal("import tasks still running".into()))?;
    shared.journal.close()?;
    if let Some(e) = input_error {
        return Err(e.into());
    }
    let counts = results::write(&files, &journal_path, &header, &unfinished)?;
    // Every row read was skipped (done earlier), finished here, or not reached by a stop.
    let skipped = skipped.load(Ordering::Relaxed);
    let finished_here = shared.finished_rows.load(Ordering::Relaxed);
    let not_processed = rows_read.saturating_sub(skipped + finished_here);
    let stopped = aborted.or_else(|| stop.requested().then(|| "interrupted (Ctrl-C)".to_string()));
    let elapsed = started.elapsed().as_secs_f64();
    Ok(ImportReport {
        input: config.input.path.display(),
        target: target.name(),
        mode: config.mode,
        rows_read,
        skipped_done_earlier: skipped,
        not_processed,
        counts,
        stopped,
        journal_dir: dir,
        files,
        requests,
        retries,
        throttled,
        pauses,
        concurrency,
        elapsed_seconds: elapsed,
        rows_per_second: if elapsed > 0.0 {
            finished_here as f64 / elapsed
        } else {
            0.0
        },
    })
}

/// Journals `sent` for a chunk (fsynced) and queues it; false when the run is stopping.
async fn send_chunk<T: Target>(
    shared: &Arc<Shared<T>>,
    queue: &mpsc::Sender<Work>,
    chunk: Vec<Work>,
) -> bool {
    if chunk.is_empty() {
        return !shared.stopping();
    }
    let lines = chunk.iter().map(|w| w.line).collect();
    if let Err(e) = shared
        .journal
        .append_durable(vec![Record::Sent { lines }])
        .await
    {
        shared.abort(format!("cannot write the journal: {e}"));
        return false;
    }
    let mut chunk = chunk.into_iter();
    for w in chunk.by_ref() {
        let line = w.line;
        let sent = tokio::select! {
            r = queue.send(w) => r.is_ok(),
            _ = shared.stop.wait() => false,
        };
        if !sent {
            let mut lines = vec![line];
            lines.extend(chunk.map(|w| w.line));
            shared.journal.append(vec![Record::Unsent { lines }]);
            return false;
        }
    }
    true
}

/// Rows in doubt from an earlier run (bulk targets): confirmed in one pass; those found are
/// done, the others go on as ordinary rows.
async fn confirm_doubtful<T: Target>(shared: &Arc<Shared<T>>, rows: Vec<Work>) -> Vec<Work> {
    if rows.is_empty() {
        return rows;
    }
    let refs: Vec<&Customer> = rows.iter().map(|w| &w.customer).collect();
    match shared.target.confirm(&refs).await {
        Ok(found) => {
            let mut rest = Vec::new();
            for mut w in rows {
                match found.get(&w.customer.external_id) {
                    Some(id) => shared.record(done(
                        &w,
                        Outcome::Created,
                        Some(id.clone()),
                        Some("found on the platform after an interrupted run".into()),
                    )),
                    None => {
                        w.in_doubt = false;
                        rest.push(w);
                    }
                }
            }
            rest
        }
        Err(CallError::Auth { message }) => {
            shared.abort(format!("credentials refused: {message}"));
            Vec::new()
        }
        // Could not confirm in one pass: each row is looked up on its own.
        Err(_) => rows,
    }
}
