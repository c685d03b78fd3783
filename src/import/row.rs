//! One row, exactly once: create, update or upsert it, look it up first when an earlier
//! attempt may have been applied, and turn the platform's answer into the row's outcome.

use super::journal::{Done, Outcome};
use super::matching::{find_holder, foreign_holder, Found, Unmatched};
use super::Mode;
use crate::model::{CheckedRow, Customer, RawRow};
use crate::output::describe;
use crate::platform::{CallError, MatchKey, Target};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// A row on its way to the platform. The source fields travel along (moved, not copied)
/// and are turned into the journal's form only if the row fails.
#[derive(Debug)]
pub(super) struct Work {
    pub line: u64,
    pub customer: Customer,
    pub raw: RawRow,
    pub columns: Arc<Vec<String>>,
    pub jsonl: bool,
    pub in_doubt: bool,
}

/// The original fields of a row as the journal keeps them for failures: a list for CSV
/// sources, an object (or `{"raw": text}`) for JSONL.
pub(super) fn row_value(raw: &RawRow, columns: &[String], jsonl: bool) -> Value {
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
pub(super) fn invalid_record(row: &CheckedRow, columns: &[String], jsonl: bool) -> Done {
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
pub(super) enum RowEnd {
    /// Final: journal it.
    Done(Done),
    /// Retries ran out; stays in doubt for a resume.
    Unfinished(Done),
    /// The credentials were refused or the platform is unusable: stop the run (why).
    Abort(String),
}

pub(super) fn done(
    w: &Work,
    outcome: Outcome,
    platform_id: Option<String>,
    note: Option<String>,
) -> RowEnd {
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

/// A failed row's record.
fn failure(w: &Work, reason: &str, message: String) -> Done {
    Done {
        line: w.line,
        external_id: w.customer.external_id.clone(),
        outcome: Outcome::Failed,
        platform_id: None,
        reason: Some(reason.to_string()),
        message: Some(message),
        row: Some(row_value(&w.raw, &w.columns, w.jsonl)),
    }
}

/// Whether a refusal says another customer holds one of the row's addresses (Udesk: "Email
/// duplicate: customer id = 12", "Phone … has been used", 003:1442-1449).
fn says_address_taken(message: &str) -> bool {
    let m = message.to_lowercase();
    (m.contains("email") || m.contains("phone"))
        && (m.contains("duplicate") || m.contains("has been used"))
}

/// Maps a call failure (retries already spent) to the row's end.
fn failed(w: &Work, e: CallError) -> RowEnd {
    let record = |reason: &str, message: String| failure(w, reason, message);
    match e {
        e @ (CallError::Auth { .. } | CallError::Unusable { .. }) => RowEnd::Abort(e.to_string()),
        CallError::NotFound => RowEnd::Done(record(
            "not_found",
            "no customer with this external id (update mode never creates)".into(),
        )),
        CallError::Rejected { message } if says_address_taken(&message) => RowEnd::Done(record(
            "platform_rejected",
            format!(
                "{message} (a customer without this external id holds the address: import --match id,email,phone links it instead)"
            ),
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

/// The end of a row in doubt whose customer the platform holds: created (and completed)
/// when the record holds what the create sent, else existing — it was there before this
/// run, and an unanswered attempt of ours cannot have made it.
async fn found_in_doubt<T: Target>(
    t: &T,
    w: &Work,
    id: String,
    ours: bool,
    note: String,
) -> RowEnd {
    if !ours {
        return done(
            w,
            Outcome::Exists,
            Some(id),
            Some("the platform held this external id with other data before this run".into()),
        );
    }
    match t.complete(&w.customer, &id).await {
        Ok(()) => done(w, Outcome::Created, Some(id), Some(note)),
        Err(e) => failed(w, e),
    }
}

/// A row whose external id found no customer but whose `key` (`value`) found `holder`:
/// a holder with another external id is a conflict; one without is given the row's (and
/// checked by a lookup), then reported existing (create) or updated (upsert).
async fn link_row<T: Target>(t: &T, mode: Mode, w: &Work, (key, value, holder): Found) -> RowEnd {
    let c = &w.customer;
    if let Some(why) = foreign_holder(c, &(key, value.clone(), holder.clone())) {
        return RowEnd::Done(failure(w, "match_conflict", why));
    }
    let pid = holder.platform_id;
    let how = format!("{} {value}", key.name());
    let linked = holder.external_id.is_none();
    match holder.external_id {
        Some(_) => {}
        None => {
            if let Err(e) = t.link(c, &pid).await {
                return failed(w, e);
            }
            match t.lookup(c).await {
                Ok(Some(id)) if id == pid || id.is_empty() => {}
                Ok(found) => {
                    return RowEnd::Done(failure(
                        w,
                        "link_failed",
                        format!(
                            "the {how} belongs to customer {pid}, which has no external id; the platform accepted setting it, but a lookup by external id {}; nothing else was changed",
                            match found {
                                Some(id) => format!("finds customer {id}"),
                                None => "finds no customer".into(),
                            }
                        ),
                    ));
                }
                Err(e) => return failed(w, e),
            }
        }
    }
    let note = match (mode, linked) {
        (Mode::Create, true) => format!(
            "linked by {how}: customer {pid} existed without an external id and now carries this one; its other fields were left as they were"
        ),
        (Mode::Create, false) => format!("found by {how}: customer {pid} holds this external id"),
        (_, true) => format!("linked by {how} to customer {pid}, then updated"),
        (_, false) => format!("found by {how}: customer {pid} holds this external id; updated"),
    };
    match mode {
        Mode::Create => done(w, Outcome::Exists, Some(pid), Some(note)),
        _ => match t.update(c).await {
            Ok(_) => done(w, Outcome::Updated, Some(pid), Some(note)),
            Err(e) => failed(w, e),
        },
    }
}

/// Creates a row exactly once: a row in doubt is looked up first; an unanswered create puts
/// it in doubt; an existing customer is left alone; with `keys`, a customer one of the
/// row's emails or phones finds is linked instead of created.
async fn create_row<T: Target>(
    t: &T,
    mode: Mode,
    keys: &[MatchKey],
    w: &Work,
    mut in_doubt: bool,
) -> RowEnd {
    let c = &w.customer;
    let mut failures = 0;
    let mut searched = keys.is_empty();
    loop {
        if in_doubt {
            match t.resolve(c).await {
                Ok(Some((id, ours))) => {
                    return found_in_doubt(
                        t,
                        w,
                        id,
                        ours,
                        "confirmed by lookup after an unanswered attempt".into(),
                    )
                    .await;
                }
                Ok(None) => {}
                Err(e) => return failed(w, e),
            }
        }
        if !searched {
            searched = true;
            match find_holder(t, keys, c).await {
                Ok(Some(found)) => return link_row(t, mode, w, found).await,
                Ok(None) => {}
                Err(Unmatched::Call(e)) => return failed(w, e),
                Err(Unmatched::Conflict(why)) => {
                    return RowEnd::Done(failure(w, "match_conflict", why))
                }
            }
        }
        match t.create(c).await {
            Ok(id) => {
                // The documented Omnidesk reply names no customer and the lookup that
                // should find it can fail: the results say the id is unknown.
                let note = id.is_empty().then(|| {
                    "created; the platform's reply gave no id and a lookup found none".to_string()
                });
                return match t.complete(c, &id).await {
                    Ok(()) => done(w, Outcome::Created, Some(id), note),
                    Err(e) => failed(w, e),
                };
            }
            // A create is never "not found": the endpoint is (a wrong base URL or path).
            Err(CallError::NotFound) => {
                return failed(
                    w,
                    CallError::Rejected {
                        message: "the platform answered \"not found\" to a create".into(),
                    },
                )
            }
            // A row in doubt may collide with itself (Udesk also on any unique field: "Email
            // duplicate"): an earlier attempt may have been applied in the meantime.
            Err(CallError::Conflict { message, .. } | CallError::Rejected { message })
                if in_doubt =>
            {
                return match t.resolve(c).await {
                    Ok(Some((id, ours))) => {
                        let note = format!(
                            "an earlier unanswered attempt had created it (a second create was refused: {message})"
                        );
                        found_in_doubt(t, w, id, ours, note).await
                    }
                    Ok(None) => failed(w, CallError::Rejected { message }),
                    Err(e) => failed(w, e),
                };
            }
            Err(CallError::Conflict {
                platform_id,
                message,
            }) => {
                // A refusal that does not name the holder: one lookup finds its id.
                let id = match platform_id {
                    Some(id) => Some(id),
                    None => t.lookup(c).await.ok().flatten(),
                };
                return done(w, Outcome::Exists, id, Some(message));
            }
            // A refusal the platform does not word as a duplicate may still be one (Udesk
            // lists no error for a taken open_api_token): a customer that turns out to
            // exist is reported as existing, not as refused.
            Err(CallError::Rejected { message }) => {
                return match t.lookup(c).await {
                    Ok(Some(id)) => done(
                        w,
                        Outcome::Exists,
                        Some(id),
                        Some(format!(
                            "the platform refused a create ({message}) and holds this external id"
                        )),
                    ),
                    _ => failed(w, CallError::Rejected { message }),
                };
            }
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

/// One row in the run's mode. `known` is what a survey found on the platform before the
/// run (external id → platform id): a customer in it exists, one not in it did not then.
pub(super) async fn process<T: Target>(
    t: &T,
    mode: Mode,
    keys: &[MatchKey],
    w: &Work,
    known: Option<&HashMap<String, String>>,
) -> RowEnd {
    let found = known.map(|k| k.get(&w.customer.external_id));
    match (mode, found) {
        // Rows in doubt may have been created by this journal's earlier run: look them up.
        (Mode::Create, Some(Some(id))) if !w.in_doubt => done(
            w,
            Outcome::Exists,
            Some(id.clone()),
            Some("already on the platform before this run".into()),
        ),
        (Mode::Upsert, Some(None)) if !w.in_doubt => create_row(t, mode, keys, w, false).await,
        (mode, _) => process_row(t, mode, keys, w).await,
    }
}

async fn process_row<T: Target>(t: &T, mode: Mode, keys: &[MatchKey], w: &Work) -> RowEnd {
    match mode {
        Mode::Create => create_row(t, mode, keys, w, w.in_doubt).await,
        Mode::Update => match t.update(&w.customer).await {
            Ok(id) => done(w, Outcome::Updated, Some(id), None),
            Err(e) => failed(w, e),
        },
        Mode::Upsert => match t.update(&w.customer).await {
            Ok(id) => done(w, Outcome::Updated, Some(id), None),
            Err(CallError::NotFound) => create_row(t, mode, keys, w, w.in_doubt).await,
            Err(e) => failed(w, e),
        },
    }
}
