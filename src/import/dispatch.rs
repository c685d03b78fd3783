//! The dispatcher: takes checked rows in input order, skips those an earlier run finished,
//! journals the invalid ones, confirms rows left in doubt, marks each chunk `sent` (fsynced)
//! and only then queues it for the lanes.

use super::journal::{Done, JournalState, Outcome, Record};
use super::row::{invalid_record, Work};
use super::settle::confirm_doubtful;
use super::start::InputWatch;
use super::workers::{Lanes, Shared};
use crate::error::Error;
use crate::pipeline::CheckedBatch;
use crate::platform::Target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Rows in doubt from an earlier run confirmed in one pass (bulk targets).
const CONFIRM_BATCH: usize = 1000;

/// What the dispatcher saw of the input.
pub(super) struct Dispatched {
    /// Rows read in this run.
    pub rows_read: u64,
    /// The input failed to read part-way.
    pub input_error: Option<Error>,
}

/// Feeds the lanes until the input ends, fails or a stop is asked for.
pub(super) async fn dispatch<T: Target>(
    shared: &Arc<Shared<T>>,
    rows: &mut mpsc::Receiver<Result<CheckedBatch, Error>>,
    state: &JournalState,
    lanes: &Lanes,
    watch: &InputWatch,
    jsonl: bool,
    skipped: &AtomicU64,
) -> Dispatched {
    let equal = shared.only_missing.as_deref();
    let mut rows_read = 0u64;
    let mut input_error = None;
    let mut ready: Vec<Work> = Vec::with_capacity(lanes.chunk);
    let mut doubtful: Vec<Work> = Vec::new();
    'input: loop {
        let message = tokio::select! {
            m = rows.recv() => m,
            _ = shared.stop.wait() => None,
        };
        let batch = match message {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                input_error = Some(e);
                break;
            }
            None => break,
        };
        // Rows read after the file changed are not the rows the journal is for.
        if watch.changed() {
            shared.abort(watch.reason());
            break;
        }
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
            let in_doubt = state.in_doubt.contains(line);
            // `--only-missing`: the platform holds this row as it is. A row in doubt may
            // be our own create, so it is never skipped so: it is looked up as always.
            if let Some(id) = equal.and_then(|e| e.get(&line)).filter(|_| !in_doubt) {
                shared.finished_rows.fetch_add(1, Ordering::Relaxed);
                shared.journal.append(vec![Record::Done(Done {
                    line,
                    external_id: customer.external_id.clone(),
                    outcome: Outcome::Exists,
                    platform_id: Some(id.clone()).filter(|i| !i.is_empty()),
                    reason: None,
                    message: Some("equal on the platform (--only-missing): nothing sent".into()),
                    row: None,
                })]);
                continue;
            }
            let w = Work {
                line,
                customer,
                raw,
                columns: batch.columns.clone(),
                jsonl,
                in_doubt,
            };
            if w.in_doubt && lanes.bulk {
                doubtful.push(w);
                if doubtful.len() >= CONFIRM_BATCH {
                    ready.extend(
                        confirm_doubtful(shared, std::mem::take(&mut doubtful), &state.pending)
                            .await,
                    );
                }
            } else {
                ready.push(w);
            }
            if ready.len() >= lanes.chunk
                && !send_chunk(shared, &lanes.queue, std::mem::take(&mut ready)).await
            {
                break 'input;
            }
        }
    }
    if !shared.stopping() {
        ready.extend(confirm_doubtful(shared, std::mem::take(&mut doubtful), &state.pending).await);
        send_chunk(shared, &lanes.queue, std::mem::take(&mut ready)).await;
    }
    Dispatched {
        rows_read,
        input_error,
    }
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
    shared.prepare().await;
    if shared.stopping() {
        return false;
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
