//! The lanes that send rows: a pool of workers (one row at a time each, the transport
//! limiting how many are in flight) and, for Udesk creates, the bulk lane (100 rows a
//! minute in one asynchronous call). [`Shared`] is the state they, the dispatcher and the
//! settling stage share.

use super::journal::{Done, JournalWriter, Outcome, Record};
use super::row::{process, RowEnd, Work};
use super::{ImportConfig, Mode, Stop};
use crate::model::Customer;
use crate::platform::{channel_key, BulkError, CallError, MatchKey, Survey, Target};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// State shared by the dispatcher, the workers and the bulk lane.
pub(super) struct Shared<T> {
    pub target: Arc<T>,
    pub mode: Mode,
    pub journal: JournalWriter,
    pub stop: Arc<Stop>,
    /// Rows whose retries ran out in this run (journaled by the result files, not `done`).
    pub unfinished: Mutex<Vec<Done>>,
    /// Bulk-imported rows waiting to be confirmed.
    pub pending: Mutex<Vec<Work>>,
    /// Why the run stopped on its own, if it did.
    pub aborted: Mutex<Option<String>>,
    /// Rows given an outcome in this run.
    pub finished_rows: AtomicU64,
    /// External id → platform id of the customers a survey found before the first row
    /// (set by [`Shared::prepare`]; `None` inside: no survey, rows are looked up or written
    /// one by one).
    known: tokio::sync::OnceCell<Option<Survey>>,
    /// Besides the external id, what finds an existing customer (`--match`).
    match_keys: Vec<MatchKey>,
    /// `--only-missing`: lines the platform holds as they are, with their platform ids.
    pub only_missing: Option<Arc<HashMap<u64, String>>>,
    /// Rows the run expects to send (for the plan).
    rows_left: u64,
    notices: super::Notices,
    consecutive_unfinished: AtomicU64,
    max_consecutive_unfinished: u64,
    early: Mutex<Early>,
}

/// Refusals held back at the start of a journal's first run, until a row succeeds: when
/// the first [`ALIKE`] refusals say the same thing and nothing succeeded, the cause is the
/// set-up (credentials without write permission, a field the account lacks), not the rows.
#[derive(Default)]
struct Early {
    /// Whether refusals are still held (first run, nothing succeeded yet).
    holding: bool,
    held: Vec<Done>,
    /// The run stopped on identical refusals: later ones stay in doubt too.
    dropping: bool,
}

/// Identical refusals with no success that stop a journal's first run.
pub(super) const ALIKE: usize = 10;

impl<T: Target> Shared<T> {
    /// Shared state for a run writing to `journal`.
    pub fn new(
        target: Arc<T>,
        config: &ImportConfig,
        journal: JournalWriter,
        stop: Arc<Stop>,
        rows_left: u64,
        first_run: bool,
    ) -> Self {
        Shared {
            known: tokio::sync::OnceCell::new(),
            match_keys: config.match_keys.clone(),
            only_missing: config.only_missing.clone(),
            rows_left,
            notices: config.notices.clone(),
            early: Mutex::new(Early {
                holding: first_run,
                ..Early::default()
            }),
            target,
            mode: config.mode,
            journal,
            stop,
            unfinished: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            aborted: Mutex::new(None),
            finished_rows: AtomicU64::new(0),
            consecutive_unfinished: AtomicU64::new(0),
            max_consecutive_unfinished: config.max_consecutive_unfinished.max(1),
        }
    }

    /// Journals a row's end; stops the run when the credentials were refused or too many
    /// rows in a row could not be finished.
    pub fn record(&self, end: RowEnd) {
        match end {
            RowEnd::Done(d) => {
                self.consecutive_unfinished.store(0, Ordering::Relaxed);
                self.finished_rows.fetch_add(1, Ordering::Relaxed);
                if let Some(d) = self.hold(d) {
                    self.journal.append(vec![Record::Done(d)]);
                }
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
            RowEnd::Abort(why) => self.abort(why),
        }
    }

    /// Holds a refusal back while nothing has succeeded in a journal's first run; returns
    /// the record to journal now, if any. Ten identical refusals stop the run: the held rows
    /// stay `sent` (in doubt), so a resume looks them up and sends them again.
    fn hold(&self, d: Done) -> Option<Done> {
        let mut early = self.early.lock().unwrap_or_else(|e| e.into_inner());
        if !early.holding {
            return Some(d);
        }
        let refused =
            d.outcome == Outcome::Failed && d.reason.as_deref() == Some("platform_rejected");
        if !refused {
            if d.outcome != Outcome::Failed {
                early.holding = false;
            }
            let held = std::mem::take(&mut early.held);
            drop(early);
            self.journal
                .append(held.into_iter().map(Record::Done).collect());
            return Some(d);
        }
        early.held.push(d);
        if early.held.len() < ALIKE {
            return None;
        }
        let first = early.held[0].message.clone();
        if early.held.iter().all(|h| h.message == first) {
            // Refusals still arriving are the same set-up's: held (dropped) too.
            early.held.clear();
            early.held.shrink_to_fit();
            early.dropping = true;
            drop(early);
            self.finished_rows
                .fetch_sub(ALIKE as u64, Ordering::Relaxed);
            self.abort(format!(
                "the first {ALIKE} rows sent were all refused the same way and none succeeded: {}. That is the set-up, not the rows (credentials without write permission, a field the account lacks): fix it and --restart, or resume to record every row as refused",
                first.unwrap_or_default()
            ));
            return None;
        }
        early.holding = false;
        let held = std::mem::take(&mut early.held);
        drop(early);
        self.journal
            .append(held.into_iter().map(Record::Done).collect());
        None
    }

    /// Journals the refusals still held (the run ended before ten).
    pub fn release_held(&self) {
        let held = std::mem::take(&mut self.early.lock().unwrap_or_else(|e| e.into_inner()).held);
        if !held.is_empty() {
            self.journal
                .append(held.into_iter().map(Record::Done).collect());
        }
    }

    pub fn lock_unfinished(&self) -> std::sync::MutexGuard<'_, Vec<Done>> {
        self.unfinished.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<Work>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn abort(&self, why: String) {
        let mut a = self.aborted.lock().unwrap_or_else(|e| e.into_inner());
        if a.is_none() {
            *a = Some(why);
        }
        drop(a);
        self.stop.request();
    }

    pub fn stopping(&self) -> bool {
        self.stop.requested()
    }

    /// Before the first row is sent (once; nothing when no row is): one read-only call
    /// that stops the run when the credentials are refused, whatever code carries the
    /// refusal, and the survey of existing customers when it pays off, with the plan shown.
    pub async fn prepare(&self) {
        self.known
            .get_or_init(|| async {
                let total = match super::plan::probe(self.target.as_ref()).await {
                    Ok(total) => total,
                    Err(why) => {
                        self.abort(why);
                        return None;
                    }
                };
                let target = self.target.as_ref();
                let channels = !self.match_keys.is_empty();
                match super::plan::survey(target, self.mode, self.rows_left, total, channels).await
                {
                    Ok((known, plan)) => {
                        self.notices.say(&plan);
                        known
                    }
                    Err(e) => {
                        self.abort(e.to_string());
                        None
                    }
                }
            })
            .await;
    }

    /// What the survey found, if one ran.
    fn known(&self) -> Option<&HashMap<String, String>> {
        self.known
            .get()
            .and_then(Option::as_ref)
            .map(|s| &s.existing)
    }

    /// One row in the run's mode, with what the survey knows.
    pub async fn process(&self, w: &Work) -> RowEnd {
        let target = self.target.as_ref();
        process(target, self.mode, &self.match_keys, w, self.known()).await
    }

    /// Whether the survey found this row's customer on the platform, or (with `--match`)
    /// a customer holding one of its emails or phones: such rows are searched and written
    /// one by one, never put in a bulk import.
    fn exists(&self, w: &Work) -> bool {
        let Some(survey) = self.known.get().and_then(Option::as_ref) else {
            return false;
        };
        survey.existing.contains_key(&w.customer.external_id)
            || self.match_keys.iter().any(|&key| {
                key.values(&w.customer)
                    .into_iter()
                    .any(|v| survey.channels.contains(&channel_key(key, v)))
            })
    }
}

pub(super) type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Work>>>;

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
        let end = shared.process(&w).await;
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
    let mut singles = JoinSet::new();
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
            // Without a survey the platform may hold any of these customers: a bulk import
            // could not tell them apart, so the workers create them one by one.
            if shared.known().is_none() {
                let s = shared.clone();
                singles.spawn(async move {
                    let end = s.process(&first).await;
                    s.record(end);
                });
                break;
            }
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
        // Rows in doubt need a lookup first, and customers the survey found are updated or
        // reported as existing: they go the single way. A bulk import only ever carries
        // customers the platform did not hold, so none is reported created wrongly.
        let (doubtful, mut batch): (Vec<Work>, Vec<Work>) = rows
            .into_iter()
            .partition(|w| w.in_doubt || shared.exists(w));
        for w in doubtful {
            let s = shared.clone();
            singles.spawn(async move {
                let end = s.process(&w).await;
                s.record(end);
            });
        }
        while !batch.is_empty() {
            if shared.stopping() {
                unsent
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(batch.drain(..).map(|w| w.line));
                break;
            }
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
                        let end = s.process(&poison).await;
                        s.record(end);
                    });
                }
                Err(BulkError::Call(e)) if e.stops_run() => {
                    shared.abort(e.to_string());
                    break;
                }
                Err(BulkError::Call(CallError::Unavailable { .. })) => {
                    // It may have been accepted: confirm before creating any of them, also
                    // after a crash (journaled as pending, like an accepted import).
                    next_slot = Instant::now() + interval + interval / 50;
                    shared.journal.append(vec![Record::Pending {
                        lines: batch.iter().map(|w| w.line).collect(),
                    }]);
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
                            let end = s.process(&w).await;
                            s.record(end);
                        });
                    }
                }
            }
        }
    }
    while singles.join_next().await.is_some() {}
}

/// The running lanes: the queue they take rows from, and the rows they handed back unsent
/// after a stop.
pub(super) struct Lanes {
    tasks: JoinSet<()>,
    /// Where the dispatcher puts rows.
    pub queue: mpsc::Sender<Work>,
    /// Lines taken off the queue after a stop and not sent.
    pub unsent: Arc<Mutex<Vec<u64>>>,
    /// Whether the bulk lane runs (Udesk create).
    pub bulk: bool,
    /// Rows the dispatcher journals `sent` and queues at a time.
    pub chunk: usize,
}

impl Lanes {
    /// Starts `max_concurrency` workers and, for bulk targets creating or upserting, the
    /// bulk lane (which stands down when no survey of what exists ran).
    pub fn spawn<T: Target>(shared: &Arc<Shared<T>>, config: &ImportConfig) -> Lanes {
        let bulk_rows = shared.target.bulk_rows();
        let bulk = config.mode != Mode::Update && bulk_rows > 0;
        let workers = config.max_concurrency.max(1);
        let (queue_len, chunk) = if bulk {
            (bulk_rows + workers, bulk_rows)
        } else {
            (workers * 2, workers)
        };
        let (queue, queue_rx) = mpsc::channel::<Work>(queue_len);
        let queue_rx: Queue = Arc::new(tokio::sync::Mutex::new(queue_rx));
        let unsent = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = JoinSet::new();
        for _ in 0..workers {
            tasks.spawn(worker(shared.clone(), queue_rx.clone(), unsent.clone()));
        }
        if bulk {
            tasks.spawn(bulk_lane(
                shared.clone(),
                queue_rx,
                config.bulk_interval,
                unsent.clone(),
            ));
        }
        Lanes {
            tasks,
            queue,
            unsent,
            bulk,
            chunk,
        }
    }

    /// Waits for the lanes to empty the (closed) queue; after a stop, rows in flight get
    /// `grace` to finish and are then abandoned (they stay `sent`, in doubt, for a resume).
    pub async fn finish(mut self, stop: &Stop, grace: Duration) -> Vec<u64> {
        drop(self.queue);
        let grace_over = async {
            stop.wait().await;
            tokio::time::sleep(grace).await
        };
        tokio::pin!(grace_over);
        loop {
            tokio::select! {
                next = self.tasks.join_next() => if next.is_none() { break },
                _ = &mut grace_over => {
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
