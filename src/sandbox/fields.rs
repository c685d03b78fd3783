//! The sandbox Udesk account's custom fields, in the documented shape (003:945-1121), and
//! the checks the documents imply for their values: a wrong type or an unknown option is
//! refused with code 2000, and a required field left out of a create with "Missing custom
//! field <title>" (003:1440).
//!
//! Written apart from the client's reading (`crate::fields`) on purpose: the sandbox takes
//! only the documented shapes (option lists of one-key objects, `[id]` arrays for selects)
//! and the documented formats, with no respelling, so a client that gets them wrong fails
//! here.

use serde_json::{json, Value};

/// One field as the account defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountField {
    /// `id` in the reply.
    pub id: u64,
    /// `custom_field_name`: `TextField_N` or `SelectField_N`.
    pub key: String,
    /// `title`.
    pub title: String,
    /// `content_type`.
    pub content_type: String,
    /// `options` as `(id, title)`; empty for text types.
    pub options: Vec<(String, String)>,
    /// `agent_permission` 1.
    pub required: bool,
    /// `customer_permission` (0-3), shown as given.
    pub customer_permission: u64,
}

/// The account's custom fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFields {
    /// The fields in reply order.
    pub fields: Vec<AccountField>,
}

/// Which account the sandbox plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FieldsAccount {
    /// The document's eleven fields (003:1000-1121), every one optional, so a file without
    /// custom columns imports.
    #[default]
    Optional,
    /// The document's eleven fields exactly as printed: every one required
    /// (`agent_permission` 1).
    Documented,
}

impl AccountFields {
    /// The document's example fields; required as printed, or all optional.
    pub fn documented(required: bool) -> Self {
        let text = [
            (1, 2, "Single-line text field", "text"),
            (2, 1, "Multiline text field", "area_text"),
            (3, 3, "Date Field", "date"),
            (4, 3, "Time Field", "time"),
            (5, 3, "Date Time Field", "datetime"),
            (6, 3, "Link Field", "link"),
            (7, 3, "Positive integer field", "number"),
            (8, 3, "Numeric field", "numeric"),
        ];
        let select = [
            (1, "Drop List Field", "droplist", 3),
            (2, "Radio Field", "radio", 2),
            (3, "Checkbox field", "checkbox", 4),
        ];
        let mut fields: Vec<AccountField> = text
            .iter()
            .map(|&(id, perm, title, kind)| AccountField {
                id,
                key: format!("TextField_{id}"),
                title: title.into(),
                content_type: kind.into(),
                options: Vec::new(),
                required,
                customer_permission: perm,
            })
            .collect();
        fields.extend(select.iter().map(|&(id, title, kind, n)| {
            AccountField {
                id,
                key: format!("SelectField_{id}"),
                title: title.into(),
                content_type: kind.into(),
                options: (0..n)
                    .map(|o| (o.to_string(), format!("option {}", o + 1)))
                    .collect(),
                required,
                customer_permission: 2,
            }
        }));
        AccountFields { fields }
    }

    /// The named account.
    pub fn of(account: FieldsAccount) -> Self {
        AccountFields::documented(account == FieldsAccount::Documented)
    }

    /// `optional`, `documented`, or a file holding a `custom_fields` reply (the flag's value).
    pub fn from_arg(arg: &str) -> Result<Self, String> {
        match arg {
            "optional" => Ok(AccountFields::of(FieldsAccount::Optional)),
            "documented" => Ok(AccountFields::of(FieldsAccount::Documented)),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("{path}: not `optional`, `documented` or a readable file ({e})")
                })?;
                let value: Value =
                    serde_json::from_str(&text).map_err(|e| format!("{path}: not JSON: {e}"))?;
                AccountFields::from_reply(&value).map_err(|e| format!("{path}: {e}"))
            }
        }
    }

    /// Reads a `custom_fields` reply in the documented shape (what `GET
    /// /customers/custom_fields` returns), to play another account.
    pub fn from_reply(reply: &Value) -> Result<Self, String> {
        let items = reply
            .get("custom_fields")
            .and_then(Value::as_array)
            .ok_or("expected {\"custom_fields\": [...]} as GET /customers/custom_fields returns")?;
        let mut fields = Vec::new();
        for (i, f) in items.iter().enumerate() {
            let text = |k: &str| f.get(k).and_then(Value::as_str).map(str::to_string);
            let key = text("custom_field_name")
                .ok_or(format!("custom_fields[{i}]: no custom_field_name"))?;
            let options = match f.get("options") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|o| {
                        o.as_object()
                            .filter(|o| o.len() == 1)
                            .and_then(|o| o.iter().next())
                            .and_then(|(id, t)| Some((id.clone(), t.as_str()?.to_string())))
                            .ok_or(format!(
                                "custom_fields[{i}]: options are one-key objects {{\"0\": \"option 1\"}}"
                            ))
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(format!("custom_fields[{i}]: options is a list or null")),
            };
            fields.push(AccountField {
                id: f.get("id").and_then(Value::as_u64).unwrap_or(i as u64 + 1),
                key,
                title: text("title").unwrap_or_default(),
                content_type: text("content_type").unwrap_or_else(|| "text".into()),
                options,
                required: f.get("agent_permission").and_then(Value::as_u64) == Some(1),
                customer_permission: f
                    .get("customer_permission")
                    .and_then(Value::as_u64)
                    .unwrap_or(2),
            });
        }
        Ok(AccountFields { fields })
    }

    /// The `custom_fields` list as the reply prints it.
    pub fn reply(&self) -> Value {
        let list: Vec<Value> = self
            .fields
            .iter()
            .map(|f| {
                let options = if f.options.is_empty() {
                    Value::Null
                } else {
                    Value::Array(f.options.iter().map(|(id, t)| json!({ id: t })).collect())
                };
                json!({
                    "id": f.id,
                    "agent_permission": if f.required { 1 } else { 2 },
                    "customer_permission": f.customer_permission,
                    "title": f.title,
                    // As printed: "" on text fields, null on select fields.
                    "comment": if f.options.is_empty() { json!("") } else { Value::Null },
                    "content_type": f.content_type,
                    "custom_field_name": f.key,
                    "options": options,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Checks a `custom_fields` object; on a create (`creating`), a required field missing
    /// or empty is refused too. Returns the error message of code 2000.
    pub fn check(&self, value: &Value, creating: bool) -> Result<(), String> {
        let empty = serde_json::Map::new();
        let map = match value {
            Value::Object(map) => map,
            Value::Null => &empty,
            other => return Err(format!("undefined method `each' for {other}:String")),
        };
        for (key, v) in map {
            let Some(field) = self.fields.iter().find(|f| f.key == *key) else {
                return Err(format!(
                    "Incorrect parameter format: unknown custom field {key}"
                ));
            };
            check_value(field, v)?;
        }
        if creating {
            for f in self.fields.iter().filter(|f| f.required) {
                let filled = match map.get(&f.key) {
                    Some(Value::String(s)) => !s.trim().is_empty(),
                    Some(Value::Array(a)) => !a.is_empty(),
                    Some(Value::Null) | None => false,
                    Some(_) => true,
                };
                if !filled {
                    return Err(format!("Missing custom field {}", f.title));
                }
            }
        }
        Ok(())
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`, a real day.
fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (1..=12).contains(&m) && d >= 1 && d <= days[(m - 1) as usize]
}

/// `HH:MM:SS`, or `HH:MM` when `seconds` is false.
fn is_time(s: &str, seconds: bool) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = |p: &str, max: u32| digits(p, 2).is_some_and(|n| n <= max);
    match (parts.as_slice(), seconds) {
        ([h, m, sec], true) => ok(h, 23) && ok(m, 59) && ok(sec, 59),
        ([h, m], false) => ok(h, 23) && ok(m, 59),
        _ => false,
    }
}

fn check_value(field: &AccountField, v: &Value) -> Result<(), String> {
    let bad = |what: &str| Err(format!("{} {what}", field.title));
    if field.key.starts_with("SelectField_") || !field.options.is_empty() {
        let Value::Array(ids) = v else {
            return bad("must be an array of option ids");
        };
        let known = |id: &Value| {
            id.as_str()
                .is_some_and(|id| field.options.iter().any(|(o, _)| o == id))
        };
        if let Some(unknown) = ids.iter().find(|id| !known(id)) {
            return bad(&format!("has no option {unknown}"));
        }
        if field.content_type != "checkbox" && ids.len() > 1 {
            return bad("takes one option");
        }
        return Ok(());
    }
    let Value::String(s) = v else {
        return bad("must be a string");
    };
    if s.chars().count() > super::udesk::MAX_CHARS {
        return Err(format!(
            "{} is too long (maximum is {} characters)",
            field.key,
            super::udesk::MAX_CHARS
        ));
    }
    if s.is_empty() {
        return Ok(());
    }
    let ok = match field.content_type.as_str() {
        "date" => is_date(s),
        "time" => is_time(s, true),
        "datetime" => s
            .split_once(' ')
            .is_some_and(|(d, t)| is_date(d) && is_time(t, false)),
        "link" => {
            (s.starts_with("http://") || s.starts_with("https://"))
                && s.len() > "https://".len()
                && !s.contains(char::is_whitespace)
        }
        "number" => s.bytes().all(|b| b.is_ascii_digit()),
        "numeric" => {
            let body = s.strip_prefix('-').unwrap_or(s);
            let mut parts = body.split('.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
                && parts.next().is_none()
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        bad(&format!("is not a valid {}: {s}", field.content_type))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_values_fit_the_documented_fields() {
        let account = AccountFields::documented(true);
        let values = json!({"TextField_1": "Plain text content", "TextField_2": "a\r\nb", "TextField_3": "2016-08-11",
            "TextField_4": "14:44:36", "TextField_5": "2017-05-03 14:44", "TextField_6": "https://www.sample.com",
            "TextField_7": "13", "TextField_8": "13.33", "SelectField_1": ["0"], "SelectField_2": ["0"], "SelectField_3": ["0", "3"]});
        account.check(&values, true).unwrap();
        let reread = AccountFields::from_reply(&json!({"custom_fields": account.reply()})).unwrap();
        assert_eq!(reread, account);
    }

    #[test]
    fn wrong_types_unknown_options_and_missing_required_fields_are_refused() {
        let account = AccountFields::documented(true);
        let one =
            |k: &str, v: Value| AccountFields::documented(false).check(&json!({ k: v }), true);
        assert!(one("TextField_3", json!("not a date")).is_err());
        assert!(one("TextField_3", json!("2016-8-11")).is_err());
        assert!(one("TextField_4", json!("14:44")).is_err());
        assert!(one("TextField_5", json!("2017-05-03 14:44:00")).is_err());
        assert!(one("TextField_6", json!("www.sample.com")).is_err());
        assert!(one("TextField_7", json!("-1")).is_err());
        assert!(one("TextField_8", json!("1,5")).is_err());
        assert!(one("SelectField_1", json!(["3"])).is_err());
        assert!(one("SelectField_1", json!(["0", "1"])).is_err());
        assert!(one("SelectField_1", json!("0")).is_err());
        assert!(one("SelectField_3", json!(["0", "1", "2"])).is_ok());
        assert!(one("TextField_99", json!("x")).is_err());
        let e = account
            .check(&json!({"TextField_1": "x"}), true)
            .unwrap_err();
        assert_eq!(e, "Missing custom field Multiline text field");
        // An update may leave them out.
        account.check(&json!({"TextField_1": "x"}), false).unwrap();
    }
}
