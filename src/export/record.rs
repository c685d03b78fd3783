//! One exported customer, platform-neutral, and its CSV and JSONL forms.
//!
//! The CSV columns are fixed ([`BASE_COLUMNS`]), then one `custom_<name>` column per custom
//! field known before the first row, then `custom_fields_json` for custom fields met later.
//! Lists are joined with `;`. The header names are ones `deskport import` maps by itself, so
//! an export can be imported again. JSONL lines are the platform's own objects, complete.

use crate::fields::FieldDefs;
use crate::mapping::squash;
use crate::validate::phone;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The fixed columns, in order, before the custom field columns.
pub const BASE_COLUMNS: [&str; 18] = [
    "platform_id",
    "external_id",
    "brand_id",
    "brand_name",
    "firstname",
    "lastname",
    "nick_name",
    "email",
    "other_emails",
    "phones",
    "channels",
    "level",
    "tags",
    "description",
    "created_at",
    "updated_at",
    "first_contact_at",
    "last_contact_at",
];

/// The last column: custom fields without a column of their own, as a JSON object.
pub const EXTRA_CUSTOM_COLUMN: &str = "custom_fields_json";

/// The CSV header prefix of a custom field column.
pub const CUSTOM_PREFIX: &str = "custom_";

/// A customer as the platform holds it, flattened to text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The platform's id.
    pub id: String,
    /// External id (Omnidesk `external_primary_id`, Udesk `open_api_token`).
    pub external_id: String,
    /// Omnidesk brand id.
    pub brand_id: String,
    /// Omnidesk brand name.
    pub brand_name: String,
    /// Given name.
    pub firstname: String,
    /// Family name.
    pub lastname: String,
    /// Udesk display name.
    pub nick_name: String,
    /// Primary email.
    pub email: String,
    /// Further emails.
    pub other_emails: Vec<String>,
    /// Phone numbers as the platform returns them.
    pub phones: Vec<String>,
    /// Omnidesk channels as `type:value`.
    pub channels: Vec<String>,
    /// Udesk level.
    pub level: String,
    /// Tag names.
    pub tags: Vec<String>,
    /// Description.
    pub description: String,
    /// Creation time, when the platform gives it.
    pub created_at: String,
    /// Last change, when the platform gives it.
    pub updated_at: String,
    /// Udesk first contact.
    pub first_contact_at: String,
    /// Udesk last contact.
    pub last_contact_at: String,
    /// Custom fields by name (lists joined with `;`).
    pub custom_fields: BTreeMap<String, String>,
}

/// A JSON scalar as text: strings as they are, numbers and booleans printed, null empty.
fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

fn field(o: &Map<String, Value>, name: &str) -> String {
    text(o.get(name))
}

/// The items of a list field; objects give their `key` member (or the first that is there),
/// `[id, value]` pairs (Udesk's other emails, 003:502-505) their value.
fn list(o: &Map<String, Value>, name: &str, keys: &[&str]) -> Vec<String> {
    let Some(Value::Array(items)) = o.get(name) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Object(inner) => keys
                .iter()
                .find_map(|k| inner.get(*k))
                .map(|v| text(Some(v))),
            Value::Null => None,
            Value::Array(pair) => pair
                .iter()
                .rev()
                .find(|v| v.is_string())
                .map(|v| text(Some(v))),
            other => Some(text(Some(other))),
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn custom_fields(o: &Map<String, Value>) -> BTreeMap<String, String> {
    match o.get("custom_fields") {
        Some(Value::Object(fields)) => fields
            .iter()
            .map(|(k, v)| (k.clone(), text(Some(v))))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The platform id of a record as returned (`id`), as text.
pub fn id_of(value: &Value) -> Option<String> {
    match value.get("id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

impl Record {
    /// An Omnidesk list item or full record (`GET /api/v2/customer/{id}`).
    pub fn from_omnidesk(value: &Value) -> Record {
        let empty = Map::new();
        let o = value.as_object().unwrap_or(&empty);
        let mut r = Record {
            id: id_of(value).unwrap_or_default(),
            external_id: field(o, "external_primary_id"),
            brand_id: field(o, "brand_id"),
            brand_name: field(o, "brand_name"),
            firstname: field(o, "firstname"),
            lastname: field(o, "lastname"),
            created_at: field(o, "created_at"),
            updated_at: field(o, "updated_at"),
            custom_fields: custom_fields(o),
            ..Record::default()
        };
        if let Some(Value::Array(channels)) = o.get("channels") {
            for ch in channels {
                let kind = text(ch.get("type"));
                let value = text(ch.get("value"));
                if value.is_empty() {
                    continue;
                }
                match kind.as_str() {
                    "email" if r.email.is_empty() => r.email = value.clone(),
                    "email" => r.other_emails.push(value.clone()),
                    "telephone" | "phone" | "mobile" => r.phones.push(value.clone()),
                    _ => {}
                }
                r.channels.push(format!("{kind}:{value}"));
            }
        }
        r
    }

    /// A Udesk Customer Data object (export, list or lookup).
    pub fn from_udesk(value: &Value) -> Record {
        let empty = Map::new();
        let o = value.as_object().unwrap_or(&empty);
        Record {
            id: id_of(value).unwrap_or_default(),
            external_id: field(o, "open_api_token"),
            nick_name: field(o, "nick_name"),
            email: field(o, "email"),
            other_emails: list(o, "other_emails", &["email", "content"]),
            phones: list(o, "cellphones", &["content", "phone"]),
            level: field(o, "level"),
            tags: list(o, "tags", &["name"]),
            description: field(o, "description"),
            created_at: field(o, "created_at"),
            updated_at: field(o, "updated_at"),
            first_contact_at: field(o, "first_contact_at"),
            last_contact_at: field(o, "last_contact_at"),
            custom_fields: custom_fields(o),
            ..Record::default()
        }
    }

    /// The cells in the order of [`header`]`(custom)`.
    pub fn cells(&self, custom: &[String]) -> Vec<String> {
        let mut cells = vec![
            self.id.clone(),
            self.external_id.clone(),
            self.brand_id.clone(),
            self.brand_name.clone(),
            self.firstname.clone(),
            self.lastname.clone(),
            self.nick_name.clone(),
            self.email.clone(),
            self.other_emails.join(";"),
            self.phones.join(";"),
            self.channels.join(";"),
            self.level.clone(),
            self.tags.join(";"),
            self.description.clone(),
            self.created_at.clone(),
            self.updated_at.clone(),
            self.first_contact_at.clone(),
            self.last_contact_at.clone(),
        ];
        for name in custom {
            cells.push(self.custom_fields.get(name).cloned().unwrap_or_default());
        }
        let extra: Map<String, Value> = self
            .custom_fields
            .iter()
            .filter(|(k, _)| !custom.contains(k))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        cells.push(if extra.is_empty() {
            String::new()
        } else {
            Value::Object(extra).to_string()
        });
        cells
    }
}

/// The CSV header for these custom field columns: `custom_<key>`, or with `titles` the
/// field's title where that reads back as the same field (not empty, not a standard
/// column's name, not twice).
pub fn header(custom: &[String], titles: Option<&FieldDefs>) -> Vec<String> {
    let mut names: Vec<String> = BASE_COLUMNS.iter().map(|c| c.to_string()).collect();
    for key in custom {
        let title = titles
            .and_then(|f| f.get(key))
            .map(|f| f.title.trim().to_string())
            .filter(|t| {
                !t.is_empty()
                    && crate::mapping::Field::parse(t).is_none()
                    && !names.iter().any(|n| squash(n) == squash(t))
            });
        names.push(title.unwrap_or_else(|| format!("{CUSTOM_PREFIX}{key}")));
    }
    names.push(EXTRA_CUSTOM_COLUMN.to_string());
    names
}

/// Select field values (option ids joined by `;`) as their titles, for `--labels`; ids the
/// field does not list stay ids.
pub fn label_options(record: &mut Record, fields: &FieldDefs) {
    for (key, value) in record.custom_fields.iter_mut() {
        let Some(def) = fields.get(key).filter(|d| d.field_type().is_select()) else {
            continue;
        };
        let titles: Vec<&str> = value
            .split(';')
            .map(|id| def.option_title(id.trim()).unwrap_or(id))
            .collect();
        *value = titles.join(";");
    }
}

/// Spreadsheet formula guard: a cell that a spreadsheet would run as a formula (it starts
/// with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`, unless it is a phone number in
/// E.164 form (or a `;`-list of them), which stays as it is.
pub fn guard(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => {
            if cell.starts_with('+') && cell.split(';').all(phone::is_e164) {
                Cow::Borrowed(cell)
            } else {
                Cow::Owned(format!("'{cell}"))
            }
        }
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formula_guard_cases() {
        assert_eq!(guard("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(guard("@SUM(A1:A9)"), "'@SUM(A1:A9)");
        assert_eq!(guard("-2+3"), "'-2+3");
        assert_eq!(guard("+2+3"), "'+2+3");
        assert_eq!(guard("\tx"), "'\tx");
        assert_eq!(guard("\rx"), "'\rx");
        assert_eq!(guard("+31612345678"), "+31612345678");
        assert_eq!(
            guard("+31612345678;+4915123456789"),
            "+31612345678;+4915123456789"
        );
        assert_eq!(guard("+31612345678;=1"), "'+31612345678;=1");
        assert_eq!(guard("Anna"), "Anna");
        assert_eq!(guard(""), "");
    }

    #[test]
    fn omnidesk_channels_split_into_email_phones_and_the_rest() {
        let r = Record::from_omnidesk(&json!({
            "id": 7, "external_primary_id": "C-1", "brand_id": 1, "brand_name": "Main",
            "firstname": "Anna", "lastname": "Berg",
            "channels": [
                {"id": 8, "type": "email", "value": "a@example.com"},
                {"id": 9, "type": "telephone", "value": "+31612345678"},
                {"id": 10, "type": "email", "value": "b@example.com"},
                {"id": 11, "type": "telegram", "value": "anna"}
            ],
            "custom_fields": {"tier": "gold"}
        }));
        assert_eq!(r.id, "7");
        assert_eq!(r.brand_id, "1");
        assert_eq!(r.email, "a@example.com");
        assert_eq!(r.other_emails, vec!["b@example.com"]);
        assert_eq!(r.phones, vec!["+31612345678"]);
        assert_eq!(r.channels.len(), 4);
        assert_eq!(r.channels[3], "telegram:anna");
        assert_eq!(r.custom_fields["tier"], "gold");
    }

    #[test]
    fn udesk_lists_and_custom_fields_flatten() {
        let r = Record::from_udesk(&json!({
            "id": 12, "nick_name": "Anna Berg", "open_api_token": "C-1", "level": "vip",
            "email": "a@example.com", "other_emails": [[3, "b@example.com"]],
            "cellphones": [{"id": 1, "content": "+31612345678"}],
            "tags": [{"id": 3, "name": "gold"}, {"id": 4, "name": "nl"}],
            "custom_fields": {"TextField_1": "x", "SelectField_1": ["0", "2"]},
            "first_contact_at": null
        }));
        assert_eq!(r.external_id, "C-1");
        assert_eq!(r.phones, vec!["+31612345678"]);
        assert_eq!(r.tags, vec!["gold", "nl"]);
        assert_eq!(r.custom_fields["SelectField_1"], "0;2");
        assert_eq!(r.first_contact_at, "");
    }

    #[test]
    fn later_custom_fields_go_to_the_json_column() {
        let mut r = Record::default();
        r.custom_fields.insert("a".into(), "1".into());
        r.custom_fields.insert("b".into(), "2".into());
        let custom = vec!["a".to_string()];
        let cells = r.cells(&custom);
        let head = header(&custom, None);
        assert_eq!(cells.len(), head.len());
        assert_eq!(head[BASE_COLUMNS.len()], "custom_a");
        assert_eq!(cells[BASE_COLUMNS.len()], "1");
        assert_eq!(cells.last().unwrap(), r#"{"b":"2"}"#);
    }
}
