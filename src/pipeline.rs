//! The shared front of every row-consuming command: read → map → check in parallel →
//! de-duplicate in order. `validate` writes what comes out; `import` sends it.
//!
//! The reader runs on its own thread, each of the checking threads takes whole batches from
//! it, and the calling thread puts the checked batches back in input order and runs the
//! duplicate check and the caller's sink. Bounded channels and a fixed number of batches in
//! flight keep memory flat whatever the file size. A sink may hand its spent rows back to be
//! freed by a checking thread, which made most of their memory ([`spent_rows`]).

use crate::error::Error;
use crate::input::{InputError, RowReader};
use crate::mapping::{Mapping, ResolvedMapping};
use crate::model::{CheckedRow, RowBatch};
use crate::validate::first_seen::SpillStats;
use crate::validate::{check_row, DuplicateIndex, Rules};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::sync::Arc;

/// Batches in flight between the reader and the checker.
const CHANNEL_BATCHES: usize = 2;

/// Checking threads when none are asked for: one per core but one. The reader, the
/// duplicate check and the writer run on threads of their own and keep about one core
/// busy between them; a checking thread on every core as well made a 1M-row `validate`
/// on two cores ~14% slower than one checking thread (interleaved medians; README).
pub fn default_check_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// One checked batch: the rows in input order with the columns and mapping they were read with.
#[derive(Debug)]
pub struct CheckedBatch {
    /// The source columns of every row in the batch.
    pub columns: Arc<Vec<String>>,
    /// The mapping resolved for those columns.
    pub mapping: Arc<ResolvedMapping>,
    /// The checked rows.
    pub rows: Vec<CheckedRow>,
}

/// How to check.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions<'a> {
    /// Column mapping.
    pub mapping: &'a Mapping,
    /// Validation rules.
    pub rules: &'a Rules,
    /// Worker threads for checking.
    pub threads: usize,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Where the sink hands back the rows it is done with ([`spent_rows`]), so that the
    /// checking thread, which made most of their memory, frees it.
    pub spent: Option<&'a Receiver<Vec<CheckedRow>>>,
}

/// Batches of spent rows waiting to be freed by the checking thread; past them the sink
/// frees its rows itself.
const SPENT_BATCHES: usize = 4;

/// The channel for [`CheckOptions::spent`]: the sink sends each batch's rows with
/// `try_send` when it is done with them. A free on the thread that allocated the memory is
/// several times cheaper in mimalloc than one from another thread (callgrind: dropping the
/// batches on the writer cost ~7% of a `validate` run's instructions).
pub fn spent_rows() -> (Sender<Vec<CheckedRow>>, Receiver<Vec<CheckedRow>>) {
    bounded(SPENT_BATCHES)
}

/// What a finished [`check_batches`] leaves behind.
#[derive(Debug)]
pub struct CheckSummary {
    /// The mapping of the last batch, if there was one.
    pub last_mapping: Option<Arc<ResolvedMapping>>,
    /// How the in-file duplicate index used memory and disk.
    pub duplicate_index: SpillStats,
}

/// Refuses columns that do not fit the account (custom columns naming no field, required
/// fields no column feeds) as one usage error, before any row is checked or sent. Columns
/// not known yet (JSONL before its first row) pass; the first batch is checked again.
pub fn check_columns(mapping: &Mapping, columns: &[String], rules: &Rules) -> Result<(), Error> {
    if columns.is_empty() {
        return Ok(());
    }
    match mapping
        .resolve(columns)
        .configuration_error(rules.required_fields)
    {
        Some(message) => Err(Error::Usage(message)),
        None => Ok(()),
    }
}

/// Reads every row of `reader`, checks it and hands the batches to `sink` in input order.
/// `sink` returns `false` to stop early.
pub fn check_batches(
    mut reader: RowReader,
    options: CheckOptions<'_>,
    mut sink: impl FnMut(CheckedBatch) -> bool,
) -> Result<CheckSummary, Error> {
    let checkers = options.threads.max(1);
    let batch_rows = options.batch_rows.max(1);
    // Batches in flight anywhere between the reader and the sink: the reader takes a permit
    // for each batch it reads and the sink's side gives it back when the batch has gone out
    // in order, so a slow batch cannot let the other checkers run ahead without bound.
    let in_flight = 2 * CHANNEL_BATCHES + checkers;
    let (permit_tx, permit_rx) = bounded::<()>(in_flight);
    for _ in 0..in_flight {
        permit_tx.send(()).ok();
    }
    let (raw_tx, raw_rx) = bounded::<(u64, Result<RowBatch, InputError>)>(CHANNEL_BATCHES);
    let (checked_tx, checked_rx) = bounded::<(u64, Result<CheckedBatch, Error>)>(in_flight);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for seq in 0u64.. {
                if permit_rx.recv().is_err() {
                    break;
                }
                let Some(message) = reader.next_batch(batch_rows).transpose() else {
                    break;
                };
                let failed = message.is_err();
                if raw_tx.send((seq, message)).is_err() || failed {
                    break;
                }
            }
        });
        // Each checking thread takes whole batches as they come; the batches are put back in
        // input order below, before the duplicate check, which needs that order.
        let workers: Vec<_> = (0..checkers)
            .map(|_| {
                let raw_rx = raw_rx.clone();
                let checked_tx = checked_tx.clone();
                scope.spawn(move || check_worker(&raw_rx, &checked_tx, options))
            })
            .collect();
        drop((raw_rx, checked_tx));
        let mut index = DuplicateIndex::new(options.rules);
        let mut last_mapping = None;
        let result = (|| {
            let mut waiting = std::collections::BTreeMap::new();
            let mut next = 0u64;
            for (seq, message) in checked_rx.iter() {
                waiting.insert(seq, message);
                while let Some(message) = waiting.remove(&next) {
                    next += 1;
                    let mut batch = message?;
                    for row in &mut batch.rows {
                        index.check(row).map_err(Error::DuplicateIndex)?;
                    }
                    last_mapping = Some(batch.mapping.clone());
                    if !sink(batch) {
                        return Ok(());
                    }
                    permit_tx.send(()).ok();
                }
            }
            Ok::<_, Error>(())
        })();
        drop((checked_rx, permit_tx));
        for worker in workers {
            worker
                .join()
                .map_err(|_| Error::Internal("checker thread panicked".into()))?;
        }
        result.map(|()| CheckSummary {
            last_mapping,
            duplicate_index: index.spill_stats(),
        })
    })
}

/// One checking thread: checks the batches it takes from `raw` and sends them on with their
/// sequence numbers, until the input ends, fails, or nobody listens. Frees the spent rows the
/// sink hands back before each batch.
fn check_worker(
    raw: &Receiver<(u64, Result<RowBatch, InputError>)>,
    checked: &Sender<(u64, Result<CheckedBatch, Error>)>,
    options: CheckOptions<'_>,
) {
    let mut current: Option<(Arc<Vec<String>>, Arc<ResolvedMapping>)> = None;
    for (seq, message) in raw.iter() {
        options
            .spent
            .into_iter()
            .flat_map(Receiver::try_iter)
            .for_each(drop);
        let batch = match message {
            Ok(batch) => batch,
            Err(e) => {
                checked.send((seq, Err(e.into()))).ok();
                break;
            }
        };
        let mapping = match &current {
            Some((cols, m)) if Arc::ptr_eq(cols, &batch.columns) => m.clone(),
            _ => {
                let m = Arc::new(options.mapping.resolve(&batch.columns));
                // The file's first batch decides whether its columns fit the account.
                if seq == 0 {
                    if let Some(e) = m.configuration_error(options.rules.required_fields) {
                        checked.send((seq, Err(Error::Usage(e)))).ok();
                        break;
                    }
                }
                current = Some((batch.columns.clone(), m.clone()));
                m
            }
        };
        // A panic must not lose the batch silently: the rows after it would wait for it.
        let rows = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch
                .rows
                .into_iter()
                .map(|raw| check_row(raw, &mapping, options.rules))
                .collect::<Vec<CheckedRow>>()
        }));
        let Ok(rows) = rows else {
            let failure = Error::Internal("a checking thread panicked".into());
            checked.send((seq, Err(failure))).ok();
            break;
        };
        let checked_batch = CheckedBatch {
            columns: batch.columns,
            mapping,
            rows,
        };
        if checked.send((seq, Ok(checked_batch))).is_err() {
            break;
        }
    }
}

/// Runs [`check_batches`] on a thread of its own and hands the batches to async code in input
/// order; an error ends the stream as its last item. Dropping the receiver stops the reading.
pub fn spawn_checked(
    reader: RowReader,
    mapping: Mapping,
    rules: Rules,
    threads: usize,
    batch_rows: usize,
) -> (
    std::thread::JoinHandle<()>,
    tokio::sync::mpsc::Receiver<Result<CheckedBatch, Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let thread = std::thread::spawn(move || {
        let options = CheckOptions {
            mapping: &mapping,
            rules: &rules,
            threads,
            batch_rows,
            spent: None,
        };
        if let Err(e) = check_batches(reader, options, |b| tx.blocking_send(Ok(b)).is_ok()) {
            tx.blocking_send(Err(e)).ok();
        }
    });
    (thread, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{open_stream, InputOptions, InputPath};

    /// A CSV of `rows` customers whose rows cost very different times to check (some with
    /// several phone numbers, some with none), so that checking threads finish out of order.
    fn reader(rows: usize) -> RowReader {
        let mut csv = String::from("External ID,First Name,Email,Phone\n");
        for i in 0..rows {
            let phones = match i % 5 {
                0 => "+31612345678;+31201234567;+4915123456789;+12025550173".to_string(),
                1 => String::new(),
                _ => format!("06{:08}", i % 100_000_000),
            };
            csv.push_str(&format!("c{i},Name{i},user{i}@example.com,\"{phones}\"\n"));
        }
        let options = InputOptions::new(InputPath::Stdin);
        open_stream(Box::new(std::io::Cursor::new(csv.into_bytes())), &options)
            .expect("opens")
            .reader
    }

    fn options<'a>(mapping: &'a Mapping, rules: &'a Rules, threads: usize) -> CheckOptions<'a> {
        CheckOptions {
            mapping,
            rules,
            threads,
            batch_rows: 3,
            spent: None,
        }
    }

    #[test]
    fn batches_reach_the_sink_in_input_order_whatever_the_thread_count() {
        let (mapping, rules) = (Mapping::builtin(), Rules::default());
        for threads in [1, 2, 4] {
            let mut lines = Vec::new();
            check_batches(reader(900), options(&mapping, &rules, threads), |batch| {
                lines.extend(batch.rows.iter().map(|r| r.raw.line));
                true
            })
            .expect("checks");
            let expected: Vec<u64> = (2..902).collect();
            assert_eq!(lines, expected, "{threads} threads");
        }
    }

    #[test]
    fn a_sink_that_stops_stops_the_run() {
        let (mapping, rules) = (Mapping::builtin(), Rules::default());
        let mut batches = 0;
        check_batches(reader(3000), options(&mapping, &rules, 4), |_| {
            batches += 1;
            batches < 5
        })
        .expect("stops cleanly");
        assert_eq!(batches, 5);
    }
}
