//! The shared front of every row-consuming command: read → map → check in parallel →
//! de-duplicate in order. `validate` writes what comes out; `import` sends it.
//!
//! The reader runs on its own thread, checking runs on a second thread (on a rayon pool it
//! drives when more than one checking thread is asked for), and the duplicate check and the
//! caller's sink run on the calling thread, a batch behind, in input order. Bounded channels keep memory flat whatever the file size.

use crate::error::Error;
use crate::input::{InputError, RowReader};
use crate::mapping::{Mapping, ResolvedMapping};
use crate::model::{CheckedRow, RowBatch};
use crate::validate::first_seen::SpillStats;
use crate::validate::{check_row, DuplicateIndex, Rules};
use crossbeam_channel::{bounded, Receiver, Sender};
use rayon::prelude::*;
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
    // One checking thread checks on the checker thread itself: a pool of one would only add
    // a hand-off per batch and a worker spinning for work on a core the reader and the
    // writer need.
    let pool = match options.threads {
        0 | 1 => None,
        n => Some(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))?,
        ),
    };
    let batch_rows = options.batch_rows.max(1);
    let (raw_tx, raw_rx) = bounded::<Result<RowBatch, InputError>>(CHANNEL_BATCHES);
    let (checked_tx, checked_rx) = bounded::<Result<CheckedBatch, Error>>(CHANNEL_BATCHES);
    std::thread::scope(|scope| {
        scope.spawn(move || loop {
            let next = reader.next_batch(batch_rows).transpose();
            let Some(message) = next else { break };
            let failed = message.is_err();
            if raw_tx.send(message).is_err() || failed {
                break;
            }
        });
        // Checking runs a batch ahead of the duplicate check, which needs input order.
        let checker = scope.spawn(move || {
            let mut current: Option<(Arc<Vec<String>>, Arc<ResolvedMapping>)> = None;
            let free_spent = || {
                for rows in options.spent.into_iter().flat_map(Receiver::try_iter) {
                    drop(rows);
                }
            };
            for message in raw_rx.iter() {
                free_spent();
                let batch = match message {
                    Ok(batch) => batch,
                    Err(e) => {
                        checked_tx.send(Err(e.into())).ok();
                        break;
                    }
                };
                let mapping = match &current {
                    Some((cols, m)) if Arc::ptr_eq(cols, &batch.columns) => m.clone(),
                    _ => {
                        let m = Arc::new(options.mapping.resolve(&batch.columns));
                        if current.is_none() {
                            if let Some(e) = m.configuration_error(options.rules.required_fields) {
                                checked_tx.send(Err(Error::Usage(e))).ok();
                                break;
                            }
                        }
                        current = Some((batch.columns.clone(), m.clone()));
                        m
                    }
                };
                let rules = options.rules;
                let check = |raw| check_row(raw, &mapping, rules);
                let rows: Vec<CheckedRow> = match &pool {
                    Some(pool) => pool.install(|| {
                        batch
                            .rows
                            .into_par_iter()
                            .with_min_len(256)
                            .map(check)
                            .collect()
                    }),
                    None => batch.rows.into_iter().map(check).collect(),
                };
                let checked = CheckedBatch {
                    columns: batch.columns,
                    mapping,
                    rows,
                };
                if checked_tx.send(Ok(checked)).is_err() {
                    break;
                }
            }
        });
        let mut index = DuplicateIndex::new(options.rules);
        let mut last_mapping = None;
        let result = (|| {
            for message in checked_rx.iter() {
                let mut batch = message?;
                for row in &mut batch.rows {
                    index.check(row).map_err(Error::DuplicateIndex)?;
                }
                last_mapping = Some(batch.mapping.clone());
                if !sink(batch) {
                    break;
                }
            }
            Ok::<_, Error>(())
        })();
        drop(checked_rx);
        checker
            .join()
            .map_err(|_| Error::Internal("checker thread panicked".into()))?;
        result.map(|()| CheckSummary {
            last_mapping,
            duplicate_index: index.spill_stats(),
        })
    })
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
