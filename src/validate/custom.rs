//! Custom field values: checked against the account's definitions when they are known
//! (type, options, required; see [`crate::fields`]), else kept as text with the Udesk key
//! rule; and `custom_fields_json` cells, a JSON object of fields.

use super::{Platform, Rules};
use crate::fields::FieldDefs;
use crate::mapping::{is_udesk_custom_key, squash, ResolvedMapping, Target};
use crate::model::{Customer, Issue, IssueCode, RawRow};
use serde_json::Value;

/// Checks one custom field value (by the account's definition when known) and keeps it.
pub fn put(
    customer: &mut Customer,
    issues: &mut Vec<Issue>,
    mapping: &ResolvedMapping,
    rules: &Rules,
    key: &str,
    column: &str,
    value: &str,
) {
    if let Some(fields) = &mapping.fields {
        match fields.get(key) {
            Some(def) => match def.check(value, rules.date_order) {
                Ok(v) if v.is_empty() => {}
                Ok(v) => {
                    customer.custom_fields.insert(key.to_string(), v);
                }
                Err(e) => issues.push(
                    Issue::error(
                        IssueCode::CustomValue,
                        // The column already names the field when it is headed by its title.
                        if squash(column) == squash(&def.title) {
                            format!("{}: {}", def.key, e.expected)
                        } else {
                            format!("{}: {}", def.label(), e.expected)
                        },
                    )
                    .in_column(column)
                    .with_value(value),
                ),
            },
            None => issues.push(
                Issue::error(
                    IssueCode::CustomKey,
                    format!(
                        "the account has no custom field {key:?}; `deskport fields` lists them"
                    ),
                )
                .in_column(column),
            ),
        }
        return;
    }
    if rules.platform == Some(Platform::Udesk) && !is_udesk_custom_key(key) {
        issues.push(
            Issue::error(
                IssueCode::CustomKey,
                format!("Udesk custom field keys look like TextField_N or SelectField_N, not {key:?}; map the column with --map"),
            )
            .in_column(column),
        );
    }
    customer
        .custom_fields
        .insert(key.to_string(), value.to_string());
}

/// Required custom fields that the row leaves empty (a field that holds a bad value already
/// has its own issue).
pub fn check_required(
    fields: &FieldDefs,
    mapping: &ResolvedMapping,
    raw: &RawRow,
    customer: &Customer,
    rules: &Rules,
    issues: &mut Vec<Issue>,
) {
    for def in fields.required() {
        let column = mapping
            .targets
            .iter()
            .position(|t| matches!(t, Target::Custom(k) if *k == def.key));
        let filled = customer.custom_fields.contains_key(&def.key)
            || column.is_some_and(|i| !raw.record.get(i).unwrap_or("").trim().is_empty());
        if filled {
            continue;
        }
        let text = format!(
            "the account requires custom field {}, and the row leaves it empty",
            def.label()
        );
        let issue = if rules.required_fields {
            Issue::error(IssueCode::CustomRequired, text)
        } else {
            Issue::warning(IssueCode::CustomRequired, text)
        };
        issues.push(match column {
            Some(i) => issue.in_column(&mapping.columns[i]),
            None => issue,
        });
    }
}

/// A `custom_fields_json` cell: each field of the object as [`put`] takes it (lists joined
/// with `;`, nulls and empty values skipped).
pub fn put_json(
    customer: &mut Customer,
    issues: &mut Vec<Issue>,
    mapping: &ResolvedMapping,
    rules: &Rules,
    column: &str,
    value: &str,
) {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(value) else {
        issues.push(
            Issue::error(
                IssueCode::CustomValue,
                "expected a JSON object of custom fields, e.g. {\"TextField_1\": \"gold\"}",
            )
            .in_column(column)
            .with_value(value),
        );
        return;
    };
    for (key, v) in &fields {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(";"),
            Value::Null => continue,
            other => other.to_string(),
        };
        if !text.trim().is_empty() {
            put(customer, issues, mapping, rules, key, column, text.trim());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::Mapping;
    use std::sync::Arc;

    fn mapping(columns: &[&str]) -> ResolvedMapping {
        let reply = serde_json::json!({"custom_fields": [
            {"custom_field_name": "TextField_3", "title": "Signup date", "content_type": "date", "agent_permission": 1},
            {"custom_field_name": "SelectField_1", "title": "Tier", "content_type": "droplist", "options": [{"0": "gold"}, {"1": "silver"}]},
        ]});
        let fields = Arc::new(FieldDefs::from_udesk_reply(&reply, "test"));
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        Mapping::builtin().with_fields(fields).resolve(&columns)
    }

    fn row(values: &[&str]) -> RawRow {
        RawRow {
            line: 2,
            record: csv::StringRecord::from(values.to_vec()),
            read_issue: None,
            raw_text: None,
        }
    }

    #[test]
    fn a_json_cell_is_checked_field_by_field() {
        let m = mapping(&["external_id", "custom_fields_json"]);
        let (c, issues) = crate::validate::normalize(
            &row(&[
                "1",
                r#"{"TextField_3": "2024-4-2", "SelectField_1": ["silver"], "nope": "x"}"#,
            ]),
            &m,
            &Rules::default(),
        );
        assert_eq!(c.custom_fields["TextField_3"], "2024-04-02");
        assert_eq!(c.custom_fields["SelectField_1"], "1");
        let codes: Vec<&str> = issues.iter().map(|i| i.code.as_str()).collect();
        assert_eq!(codes, ["custom.key"]);
        let (_, issues) =
            crate::validate::normalize(&row(&["1", "not json"]), &m, &Rules::default());
        assert_eq!(issues[0].code, IssueCode::CustomValue);
    }

    #[test]
    fn an_empty_required_field_is_an_error_or_with_updates_only_a_warning() {
        let m = mapping(&["external_id", "Signup date", "Tier"]);
        let (_, issues) =
            crate::validate::normalize(&row(&["1", " ", "gold"]), &m, &Rules::default());
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].code, IssueCode::CustomRequired);
        assert!(issues[0].is_error());
        let rules = Rules {
            required_fields: false,
            ..Rules::default()
        };
        let (_, issues) = crate::validate::normalize(&row(&["1", "", "gold"]), &m, &rules);
        assert!(!issues[0].is_error());
        // A bad value is its own issue, not also "required".
        let (_, issues) =
            crate::validate::normalize(&row(&["1", "soon", "gold"]), &m, &Rules::default());
        let codes: Vec<&str> = issues.iter().map(|i| i.code.as_str()).collect();
        assert_eq!(codes, ["custom.value"]);
    }
}
