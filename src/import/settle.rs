//! Settling: rows whose write may have been applied without an answer — bulk-imported rows
//! (*pending* until the platform applies the import) and rows in doubt from an earlier run —
//! are confirmed by one lookup or export pass before anything is sent again.

use super::journal::{LineSet, Outcome};
use super::row::{done, Work};
use super::workers::Shared;
use crate::model::Customer;
use crate::platform::Target;
use std::sync::Arc;
use std::time::Duration;

/// Confirms bulk-imported rows: waits `settle` (doubling) between rounds; what is found is
/// created, what is still missing after the rounds is created singly (after a lookup).
pub(super) async fn settle_pending<T: Target>(
    shared: &Arc<Shared<T>>,
    settle: Duration,
    rounds: u32,
) {
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
            Err(e) if e.stops_run() => {
                shared.lock_pending().extend(rows);
                shared.abort(e.to_string());
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
        let end = shared.process(&w).await;
        shared.record(end);
    }
}

/// Rows in doubt from an earlier run (bulk targets): confirmed in one pass; those found are
/// done. A row an earlier bulk import accepted (`pending`) may still be applied by the
/// platform, so one not found yet waits with this run's pending rows for the settling
/// rounds; the others surely never reached the platform and go on as ordinary rows.
pub(super) async fn confirm_doubtful<T: Target>(
    shared: &Arc<Shared<T>>,
    rows: Vec<Work>,
    pending: &LineSet,
) -> Vec<Work> {
    if rows.is_empty() {
        return rows;
    }
    shared.prepare().await;
    if shared.stopping() {
        return Vec::new();
    }
    let refs: Vec<&Customer> = rows.iter().map(|w| &w.customer).collect();
    match shared.target.confirm(&refs).await {
        Ok(found) => {
            let mut rest = Vec::new();
            for mut w in rows {
                match found.get(&w.customer.external_id) {
                    // An accepted bulk import carried only customers the platform did not
                    // hold (the survey saw to it): found, it is ours.
                    Some(id) if pending.contains(w.line) => shared.record(done(
                        &w,
                        Outcome::Created,
                        Some(id.clone()),
                        Some("found on the platform after an interrupted run".into()),
                    )),
                    // Sent singly, or not at all: it may have been there before; the single
                    // way tells by its record.
                    Some(_) => rest.push(w),
                    None if pending.contains(w.line) => shared.lock_pending().push(w),
                    None => {
                        w.in_doubt = false;
                        rest.push(w);
                    }
                }
            }
            rest
        }
        Err(e) if e.stops_run() => {
            shared.abort(e.to_string());
            Vec::new()
        }
        // Could not confirm in one pass: each row is looked up on its own.
        Err(_) => rows,
    }
}
