//! The call plan of a run: whether one pass over the platform's customers (Udesk's scroll
//! export, 1,000 a call) is cheaper than looking rows up one by one, and what the run then
//! does with new and existing customers. Shown at the start and in the dry run.

use super::{ImportError, Mode};
use crate::platform::{CallError, Survey, Target};
use std::collections::HashMap;

/// One read-only call before any row: refused credentials (whatever code carries the
/// refusal) stop the run there, as one clear error, instead of failing every row alike.
/// Returns why the run must stop. Anything else (throttled, unavailable, unusable) is left
/// to the rows, which meet it with their own retries and stops.
pub async fn probe<T: Target>(target: &T) -> Result<(), String> {
    match target.probe().await {
        Err(e @ (CallError::Auth { .. } | CallError::Rejected { .. })) => Err(format!(
            "the platform refused a read-only call before any row was sent ({e}); check the credentials and the base URL"
        )),
        _ => Ok(()),
    }
}

/// Runs the survey when the target has one and it pays off; returns what it found and the
/// plan in words. A survey that fails for a passing reason leaves the run row by row.
pub async fn survey<T: Target>(
    target: &T,
    mode: Mode,
    rows: u64,
) -> Result<(Option<HashMap<String, String>>, String), ImportError> {
    if mode == Mode::Update || target.bulk_rows() == 0 || rows == 0 {
        return Ok((None, describe(target.name(), mode, rows, None)));
    }
    match target.survey(rows).await {
        Ok(found) => {
            let plan = describe(target.name(), mode, rows, found.as_ref());
            Ok((found.map(|s| s.existing), plan))
        }
        Err(e) if e.stops_run() => Err(ImportError::Refused(e)),
        Err(e) => Ok((
            None,
            format!(
                "{} (the survey of existing customers failed: {e})",
                describe(target.name(), mode, rows, None)
            ),
        )),
    }
}

/// The plan in words (pure).
pub fn describe(platform: &str, mode: Mode, rows: u64, survey: Option<&Survey>) -> String {
    let Some(s) = survey else {
        let how = match mode {
            Mode::Create => {
                "each row is created with one call (an existing customer is reported as such)"
            }
            Mode::Update => "each row is updated with one call",
            Mode::Upsert => {
                "each row is updated, or created when the platform has no such customer"
            }
        };
        return format!("plan: {rows} rows to {platform}, row by row: {how}");
    };
    let existing = match mode {
        Mode::Create => "rows whose customer exists are reported as existing without a call",
        _ => "rows whose customer exists are updated one by one",
    };
    format!(
        "plan: {rows} rows to {platform}; one export pass over its {} customers ({} calls) found {} external ids; new customers go in bulk imports (confirmed by export), {existing}",
        s.platform_total,
        s.calls,
        s.existing.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_names_the_pass_and_what_happens_to_existing_rows() {
        let s = Survey {
            existing: HashMap::from([("A".to_string(), "1".to_string())]),
            platform_total: 3000,
            calls: 4,
        };
        let text = describe("udesk", Mode::Upsert, 500, Some(&s));
        assert!(
            text.contains("3000 customers (4 calls) found 1 external ids"),
            "{text}"
        );
        assert!(text.contains("updated one by one"), "{text}");
        assert!(describe("udesk", Mode::Create, 5, None).contains("row by row"));
    }
}
