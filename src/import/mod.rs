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

mod dispatch;
pub mod dry_run;
pub mod events;
pub mod journal;
pub mod matching;
pub mod plan;
pub mod results;
mod row;
mod settle;
mod start;
pub mod undo;
mod workers;

use crate::error::Error;
use crate::input::InputOptions;
use crate::mapping::Mapping;
use crate::pipeline::spawn_checked;
use crate::platform::Target;
use crate::progress::Progress;
use crate::validate::Rules;
use dispatch::dispatch;
use journal::{JournalError, Record};
use results::{Counts, ResultFiles};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use workers::{Lanes, Shared};

pub use start::{fingerprint, lock, RunLock};

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
    /// The platform refused a call the run cannot do without.
    #[error("{0}")]
    Refused(crate::platform::CallError),
}

impl ImportError {
    /// The process exit code for this error.
    pub fn exit(&self) -> crate::Exit {
        match self {
            ImportError::Run(e) => e.exit(),
            ImportError::Journal(_) | ImportError::Refused(_) => crate::Exit::Aborted,
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
    /// Where rows go: the platform's origin (`sandbox` for the in-process one). A resume to
    /// another origin is refused.
    pub origin: String,
    /// The Omnidesk brand for rows without one. A resume with another is refused.
    pub brand_id: Option<u64>,
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
    /// Where the run's plan and other start-up notices go.
    pub notices: Notices,
    /// Besides the external id, what finds a row's existing customer, in order
    /// (`--match id,email,phone`); empty: the external id alone.
    pub match_keys: Vec<crate::platform::MatchKey>,
    /// `--only-missing`: lines a reconcile found equal on the platform (with the
    /// customer's platform id); they end `exists` without a call.
    pub only_missing: Option<Arc<std::collections::HashMap<u64, String>>>,
}

/// A sink for the notices a run gives before its first row (the call plan).
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<NoticeSink>>);

type NoticeSink = dyn Fn(&str) + Send + Sync;

impl Notices {
    /// Notices go to `f`.
    pub fn to(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Notices(Some(Arc::new(f)))
    }

    /// Gives a notice (nothing without a sink).
    pub fn say(&self, text: &str) {
        if let Some(f) = &self.0 {
            f(text);
        }
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(on)"
        } else {
            "Notices(off)"
        })
    }
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
            origin: String::new(),
            brand_id: None,
            resume: false,
            restart: false,
            threads: crate::pipeline::default_check_threads(),
            progress: false,
            max_concurrency: 16,
            bulk_interval: Duration::from_secs(60),
            bulk_settle: Duration::from_secs(2),
            stop_grace: Duration::from_secs(10),
            max_consecutive_unfinished: 50,
            notices: Notices::default(),
            match_keys: Vec::new(),
            only_missing: None,
        }
    }
}

/// The journal directory used when `--journal` is not given: `NAME.import` in the current
/// directory, after the input file's name without its extensions.
pub fn default_journal_dir(input: &Path) -> PathBuf {
    dir_after(input, "import")
}

/// `NAME.SUFFIX` in the current directory, after the input file's name without its
/// extensions (`customers.csv.gz` → `customers.SUFFIX`): where a command keeps its
/// journal and results when not told.
pub fn dir_after(input: &Path, suffix: &str) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "input".into());
    let stem = name
        .split('.')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("input");
    PathBuf::from(format!("{stem}.{suffix}"))
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

/// Runs an import to the end (or to a stop) and rebuilds the result files: start (lock,
/// fingerprint, journal) → lanes → dispatcher → lanes drained → settling → finish.
pub async fn run<T: Target>(
    config: &ImportConfig,
    target: Arc<T>,
    stop: Arc<Stop>,
) -> Result<ImportReport, ImportError> {
    let started = Instant::now();
    let run = start::start(config, target.name(), config.mode.as_str()).await?;
    // Line feeds of the decompressed content, less a CSV header.
    let lines = run.print.line_feeds.saturating_sub(u64::from(!run.jsonl));
    let estimate = Some(lines);
    let rows_left = lines.saturating_sub(run.state.finals.len() as u64);
    let shared = Arc::new(Shared::new(
        target.clone(),
        config,
        run.journal,
        stop.clone(),
        rows_left,
        run.state.finals.is_empty(),
    ));
    let lanes = Lanes::spawn(&shared, config);
    let progress = Arc::new(Progress::rows(estimate, config.progress));
    let skipped = Arc::new(AtomicU64::new(0));
    let ticker = spawn_ticker(progress.clone(), shared.clone(), skipped.clone(), started);
    let (pipeline, mut rows) = spawn_checked(
        run.opened.reader,
        config.mapping.clone(),
        config.rules.clone(),
        config.threads,
        256,
    );
    let dispatched = dispatch(
        &shared, &mut rows, &run.state, &lanes, &run.watch, run.jsonl, &skipped,
    )
    .await;
    drop(rows);
    pipeline.join().ok();
    let bulk = lanes.bulk;
    let unsent = lanes.finish(&stop, config.stop_grace).await;
    if bulk && !stop.requested() {
        settle::settle_pending(&shared, config.bulk_settle, 5).await;
    }
    ticker.abort();
    ticker.await.ok();
    progress.finish();
    if !unsent.is_empty() {
        shared
            .journal
            .append(vec![Record::Unsent { lines: unsent }]);
    }
    // The file was read to its end: its content must still be what was fingerprinted.
    if !stop.requested() && dispatched.input_error.is_none() {
        let unchanged = match &config.input.path {
            crate::input::InputPath::File(p) => {
                !run.watch.changed() && start::fingerprint(p).is_ok_and(|f| f.id == run.print.id)
            }
            crate::input::InputPath::Stdin => true,
        };
        if !unchanged {
            shared.abort(run.watch.reason());
        }
    }
    // Tasks aborted after a stop (the bulk lane's single rows) let go of the shared state
    // as the runtime drops them: give them a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&shared) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let files = ResultFiles::in_dir(&run.dir, run.jsonl);
    let ran = Ran {
        started,
        dir: run.dir,
        journal_path: run.journal_path,
        header: run.header,
        files,
        dispatched,
        skipped: skipped.load(Ordering::Relaxed),
    };
    finish(config, shared, ran)
}

/// Shows rows done, the rate, the concurrency and pauses, four times a second.
fn spawn_ticker<T: Target>(
    progress: Arc<Progress>,
    shared: Arc<Shared<T>>,
    skipped: Arc<AtomicU64>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let here = shared.finished_rows.load(Ordering::Relaxed);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let t = shared.target.transport();
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
}

/// What a run did, handed from the stages to [`finish`].
struct Ran {
    started: Instant,
    dir: PathBuf,
    journal_path: PathBuf,
    header: journal::RunHeader,
    files: ResultFiles,
    dispatched: dispatch::Dispatched,
    skipped: u64,
}

/// Closes the journal, rebuilds the result files from it and counts every row.
fn finish<T: Target>(
    config: &ImportConfig,
    shared: Arc<Shared<T>>,
    ran: Ran,
) -> Result<ImportReport, ImportError> {
    shared.release_held();
    let unfinished = std::mem::take(&mut *shared.lock_unfinished());
    let aborted = shared
        .aborted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let target = shared.target.clone();
    let stop = shared.stop.clone();
    let transport = target.transport();
    let stats = &transport.stats;
    let (requests, retries, throttled, pauses) = (
        stats.requests.load(Ordering::Relaxed),
        stats.retries.load(Ordering::Relaxed),
        stats.throttled.load(Ordering::Relaxed),
        stats.pauses.load(Ordering::Relaxed),
    );
    let concurrency = transport.concurrency();
    let shared = Arc::try_unwrap(shared)
        .map_err(|_| Error::Internal("import tasks still running".into()))?;
    shared.journal.close()?;
    if let Some(e) = ran.dispatched.input_error {
        return Err(e.into());
    }
    let counts = results::write(&ran.files, &ran.journal_path, &ran.header, &unfinished)?;
    // Every row read was skipped (done earlier), finished here, or not reached by a stop.
    let finished_here = shared.finished_rows.load(Ordering::Relaxed);
    let not_processed = ran
        .dispatched
        .rows_read
        .saturating_sub(ran.skipped + finished_here);
    let stopped = aborted.or_else(|| stop.requested().then(|| "interrupted (Ctrl-C)".to_string()));
    let elapsed = ran.started.elapsed().as_secs_f64();
    Ok(ImportReport {
        input: config.input.path.display(),
        target: target.name(),
        mode: config.mode,
        rows_read: ran.dispatched.rows_read,
        skipped_done_earlier: ran.skipped,
        not_processed,
        counts,
        stopped,
        journal_dir: ran.dir,
        files: ran.files,
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
