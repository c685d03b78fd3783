//! The call plan of a run: whether one pass over the platform's customers (Udesk's scroll
//! export, 1,000 a call) is cheaper than looking rows up one by one, and what the run then
//! does with new and existing customers. Shown at the start and in the dry run.

use super::{ImportError, Mode};
use crate::platform::{CallError, Survey, Target};

/// One read-only call before any row: refused credentials (whatever code carries the
/// refusal) stop the run there, as one clear error, instead of failing every row alike.
/// A list answered "not found" means a wrong base URL. Returns the account's size when the
/// reply says, or why the run must stop. Anything else (throttled, unavailable, unusable)
/// is left to the rows, which meet it with their own retries and stops.
pub async fn probe<T: Target>(target: &T) -> Result<Option<u64>, String> {
    match target.probe().await {
        Ok(total) => Ok(total),
        Err(e @ (CallError::Auth { .. } | CallError::Rejected { .. } | CallError::NotFound)) => {
            Err(format!(
                "the platform refused a read-only call before any row was sent ({e}); check the credentials and the base URL"
            ))
        }
        Err(_) => Ok(None),
    }
}

/// Runs the survey when the target has one and it pays off (`total`: the account's size, if
/// the probe read it); returns what it found and the plan in words. A survey that fails for a passing reason leaves the run row by row.
pub async fn survey<T: Target>(
    target: &T,
    mode: Mode,
    rows: u64,
    total: Option<u64>,
    channels: bool,
) -> Result<(Option<Survey>, String), ImportError> {
    let rate = target.transport().rate_per_second();
    if mode == Mode::Update || target.bulk_rows() == 0 || rows == 0 {
        return Ok((None, describe(target.name(), mode, rows, None, rate)));
    }
    match target.survey(rows, total, channels).await {
        Ok(found) => {
            let plan = describe(target.name(), mode, rows, found.as_ref(), rate);
            Ok((found, plan))
        }
        Err(e) if e.stops_run() => Err(ImportError::Refused(e)),
        Err(e) => Ok((
            None,
            format!(
                "{} (the survey of existing customers failed: {e})",
                describe(target.name(), mode, rows, None, rate)
            ),
        )),
    }
}

/// The calls a plan needs at most, and the time a rate limit implies for them.
fn budget(calls: u64, rate: Option<f64>) -> String {
    match rate {
        Some(r) if r > 0.0 => {
            let minutes = calls as f64 / r / 60.0;
            format!(
                "; at most {calls} calls, {minutes:.0} min at {:.0} calls a minute",
                r * 60.0
            )
        }
        _ => format!("; at most {calls} calls"),
    }
}

/// The plan in words (pure): what happens to new and existing rows, the calls at most, and
/// the time the rate limit (`rate` calls a second) implies for them.
pub fn describe(
    platform: &str,
    mode: Mode,
    rows: u64,
    survey: Option<&Survey>,
    rate: Option<f64>,
) -> String {
    let Some(s) = survey else {
        let (how, calls) = match mode {
            Mode::Create => (
                "each row is created with one call (an existing customer is reported as such)",
                rows,
            ),
            Mode::Update => (
                "each row is updated with one call (Udesk: and one read for a row with phones or other emails)",
                rows * 2,
            ),
            Mode::Upsert => (
                "each row is updated, or created when the platform has no such customer",
                rows * 2,
            ),
        };
        return format!(
            "plan: up to {rows} rows to {platform}, row by row: {how}{}",
            budget(calls, rate)
        );
    };
    let existing = match mode {
        Mode::Create => "rows whose customer exists are reported as existing without a call",
        _ => "rows whose customer exists are updated one by one",
    };
    // A new row takes a bulk slot or one create, an existing one an update (upsert) or
    // nothing (create); confirming the bulk rows takes another pass.
    let calls = s.calls * 2 + rows;
    format!(
        "plan: up to {rows} rows to {platform}; one export pass over its {} customers ({} calls) found {} external ids; new customers go in bulk imports (confirmed by export), {existing}{}",
        s.platform_total,
        s.calls,
        s.existing.len(),
        budget(calls, rate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_plan_names_the_pass_and_what_happens_to_existing_rows() {
        let s = Survey {
            existing: HashMap::from([("A".to_string(), "1".to_string())]),
            platform_total: 3000,
            calls: 4,
            channels: Default::default(),
        };
        let text = describe("udesk", Mode::Upsert, 500, Some(&s), Some(1.0));
        assert!(
            text.contains("3000 customers (4 calls) found 1 external ids"),
            "{text}"
        );
        assert!(text.contains("updated one by one"), "{text}");
        assert!(
            text.contains("at most 508 calls, 8 min at 60 calls a minute"),
            "{text}"
        );
        let text = describe("udesk", Mode::Create, 5, None, None);
        assert!(
            text.contains("row by row") && text.contains("at most 5 calls"),
            "{text}"
        );
    }
}
