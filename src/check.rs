//! `deskport check`: a few read-only calls against an account before a migration, each
//! reported as what deskport understood of the reply (its keys and value types, never a
//! value) and whether every field deskport relies on was there; plus how the account
//! stores phone numbers. Like an Airbyte connector's `check`.

use crate::platform::omnidesk::{self, Omnidesk};
use crate::platform::udesk::{self, ListFilter, Udesk};
use crate::platform::CallError;
use serde::Serialize;
use serde_json::Value;

/// One call and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// What was asked (method and path, no credentials).
    pub call: String,
    /// The reply's shape (keys and types), or the error.
    pub shape: String,
    /// Each field deskport relies on here, and whether it was there.
    pub relied_on: Vec<(String, bool)>,
    /// A remark (where the record was, why a call was skipped).
    pub note: Option<String>,
}

impl Probe {
    /// Whether deskport can work with this reply.
    pub fn ok(&self) -> bool {
        self.relied_on.iter().all(|(_, there)| *there) && !self.shape.starts_with("error:")
    }
}

/// How the phone numbers seen are written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhoneStyle {
    /// Numbers with a leading `+` (E.164).
    pub international: u64,
    /// Numbers without one (national: the documents' Udesk examples are all `131…`).
    pub national: u64,
}

/// Everything `check` saw.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// `omnidesk` or `udesk`.
    pub platform: &'static str,
    /// The calls in order.
    pub probes: Vec<Probe>,
    /// Phone numbers seen in the customers read.
    pub phones: PhoneStyle,
    /// What deskport will send where the documents disagree or are silent, and how to change it.
    pub settings: Vec<String>,
}

impl CheckReport {
    /// Whether deskport can work with what it saw.
    pub fn ok(&self) -> bool {
        self.probes.iter().all(Probe::ok)
    }

    /// The text for people.
    pub fn summary(&self) -> String {
        let mut s = format!("check {}\n", self.platform);
        for p in &self.probes {
            s.push_str(&format!(
                "  {} {}\n      reply: {}\n",
                if p.ok() { "ok  " } else { "FAIL" },
                p.call,
                p.shape
            ));
            if !p.relied_on.is_empty() {
                let fields: Vec<String> = p
                    .relied_on
                    .iter()
                    .map(|(f, there)| format!("{f} {}", if *there { "✓" } else { "MISSING" }))
                    .collect();
                s.push_str(&format!("      relied on: {}\n", fields.join(", ")));
            }
            if let Some(n) = &p.note {
                s.push_str(&format!("      {n}\n"));
            }
        }
        let PhoneStyle {
            international,
            national,
        } = self.phones;
        s.push_str(&format!(
            "  phones seen: {international} international (+…), {national} national{}\n",
            if national > 0 {
                " — give --default-region so a file's +… numbers and the platform's national ones compare equal"
            } else {
                ""
            }
        ));
        for setting in &self.settings {
            s.push_str(&format!("  {setting}\n"));
        }
        s.push_str(if self.ok() {
            "deskport can work with this account\n"
        } else {
            "deskport cannot rely on what it saw: see FAIL above\n"
        });
        s
    }
}

/// The keys and value types of a reply, two levels deep, never a value.
pub fn shape_of(value: &Value) -> String {
    fn kind(v: &Value, depth: usize) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(_) => "bool".into(),
            Value::Number(_) => "number".into(),
            Value::String(_) => "text".into(),
            Value::Array(items) => match items.first() {
                None => "[]".into(),
                Some(first) => format!("[{} ×{}]", kind(first, depth), items.len()),
            },
            Value::Object(o) if depth >= 2 => format!("{{{} keys}}", o.len()),
            Value::Object(o) => format!(
                "{{{}}}",
                o.iter()
                    .map(|(k, v)| format!("{k}: {}", kind(v, depth + 1)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    kind(value, 0)
}

fn failed(call: String, e: &CallError) -> Probe {
    Probe {
        call,
        shape: format!("error: {e}"),
        relied_on: Vec::new(),
        note: None,
    }
}

/// The first call needs nothing but valid credentials: its failure says so.
fn refused(call: String, e: &CallError) -> Probe {
    Probe {
        note: Some(
            "this call needs nothing but valid credentials: check them and the base URL".into(),
        ),
        ..failed(call, e)
    }
}

fn has(v: &Value, key: &str) -> (String, bool) {
    (key.to_string(), v.get(key).is_some_and(|x| !x.is_null()))
}

fn count_phones(phones: &mut PhoneStyle, numbers: impl IntoIterator<Item = String>) {
    for n in numbers {
        if n.trim_start().starts_with('+') {
            phones.international += 1;
        } else if !n.trim().is_empty() {
            phones.national += 1;
        }
    }
}

/// Checks an Omnidesk account: list, one customer in full, one search by external id.
pub async fn omnidesk(client: &Omnidesk, brand: u64) -> CheckReport {
    let mut probes = Vec::new();
    let mut phones = PhoneStyle::default();
    let call = "GET /api/v2/customer?itemStart=0&itemLimit=1 (credentials, list)".to_string();
    let list = match client
        .read(
            "/api/v2/customer",
            &[("itemStart", "0".into()), ("itemLimit", "1".into())],
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            probes.push(refused(call, &e));
            return CheckReport {
                platform: "omnidesk",
                probes,
                phones,
                settings: Vec::new(),
            };
        }
    };
    let first = list.get("items").and_then(|i| i.get(0)).cloned();
    probes.push(Probe {
        call,
        shape: shape_of(&list),
        relied_on: vec![has(&list, "itemTotal"), has(&list, "items")],
        note: first
            .is_none()
            .then(|| "the account has no customer: the next calls are skipped".into()),
    });
    let Some(first) = first else {
        return CheckReport {
            platform: "omnidesk",
            probes,
            phones,
            settings: Vec::new(),
        };
    };
    let id = crate::export::record::id_of(&first).unwrap_or_default();
    let call = "GET /api/v2/customer/{id} (one customer in full)".to_string();
    match client.read(&format!("/api/v2/customer/{id}"), &[]).await {
        Ok(reply) => {
            let at = where_is(&reply, omnidesk::record_of(&reply));
            let record = omnidesk::record_of(&reply).cloned();
            let rec = record.clone().unwrap_or(Value::Null);
            let r = crate::export::record::Record::from_omnidesk(&rec);
            count_phones(&mut phones, r.phones);
            probes.push(Probe {
                call,
                shape: shape_of(&reply),
                relied_on: vec![
                    ("a customer record".into(), record.is_some()),
                    has(&rec, "id"),
                    has(&rec, "external_primary_id"),
                    has(&rec, "channels"),
                ],
                note: Some(format!("record found {at}")),
            });
        }
        Err(e) => probes.push(failed(call, &e)),
    }
    let external = first
        .get("external_primary_id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    let call =
        "POST /api/v2/customer/SearchByPrimaryExternalID (one search by external id)".to_string();
    match external {
        None => probes.push(Probe {
            call,
            shape: "skipped".into(),
            relied_on: Vec::new(),
            note: Some("the first customer has no external id to search by".into()),
        }),
        Some(ext) => match client.search_reply(ext, brand).await {
            Ok(reply) => {
                let found = omnidesk::searched(&reply, ext);
                probes.push(Probe {
                    call,
                    shape: shape_of(&reply),
                    relied_on: vec![("the searched customer".into(), matches!(found, Ok(Some(_))))],
                    note: Some(format!(
                        "record found {}",
                        where_is(&reply, omnidesk::record_of(&reply))
                    )),
                });
            }
            Err(e) => probes.push(failed(call, &e)),
        },
    }
    CheckReport {
        platform: "omnidesk",
        probes,
        phones,
        settings: vec![format!(
            "custom field keys: {}",
            client.custom_keys().describe()
        )],
    }
}

/// Where in a reply its record was.
fn where_is(reply: &Value, record: Option<&Value>) -> String {
    let Some(record) = record else {
        return "nowhere".into();
    };
    if std::ptr::eq(reply, record) {
        return "at the top level".into();
    }
    for key in ["message", "customer", "item", "data", "result", "items"] {
        match reply.get(key) {
            Some(v) if std::ptr::eq(v, record) => return format!("under {key}"),
            Some(Value::Array(list)) if list.first().is_some_and(|f| std::ptr::eq(f, record)) => {
                return format!("as the first of {key}")
            }
            _ => {}
        }
    }
    "elsewhere".into()
}

/// Checks a Udesk account: list, one customer in full, one search by external id, the
/// custom field definitions and one scroll page.
pub async fn udesk(client: &Udesk) -> CheckReport {
    let mut probes = Vec::new();
    let mut phones = PhoneStyle::default();
    let call = "GET /open_api_v1/customers?page=1&page_size=1 (credentials, list)".to_string();
    let list = match client
        .read(
            "/open_api_v1/customers",
            &[("page", "1".into()), ("page_size", "1".into())],
        )
        .await
    {
        Ok(v) => v,
        Err(e) => {
            probes.push(refused(call, &e));
            return CheckReport {
                platform: "udesk",
                probes,
                phones,
                settings: Vec::new(),
            };
        }
    };
    let first = list.get("customers").and_then(|c| c.get(0)).cloned();
    probes.push(Probe {
        call,
        shape: shape_of(&list),
        relied_on: vec![
            (
                "meta.total_count".into(),
                list.pointer("/meta/total_count").is_some(),
            ),
            has(&list, "customers"),
        ],
        note: first
            .is_none()
            .then(|| "the account has no customer: the customer calls are skipped".into()),
    });
    if let Some(first) = &first {
        let id = crate::export::record::id_of(first).unwrap_or_default();
        let call =
            "GET /open_api_v1/customers/get_customer?type=id (one customer in full)".to_string();
        match client
            .read(
                "/open_api_v1/customers/get_customer",
                &[("type", "id".into()), ("content", id)],
            )
            .await
        {
            Ok(reply) => {
                let c = reply.get("customer").cloned().unwrap_or(Value::Null);
                let r = crate::export::record::Record::from_udesk(&c);
                count_phones(&mut phones, r.phones);
                let pairs_ok = c
                    .get("other_emails")
                    .and_then(Value::as_array)
                    .is_none_or(|list| udesk::held_pairs(&c, "other_emails").len() == list.len());
                probes.push(Probe {
                    call,
                    shape: shape_of(&reply),
                    relied_on: vec![
                        has(&c, "id"),
                        has(&c, "nick_name"),
                        ("other_emails readable".into(), pairs_ok),
                        has(&c, "cellphones"),
                    ],
                    note: None,
                });
            }
            Err(e) => probes.push(failed(call, &e)),
        }
        let call = "GET /open_api_v1/customers/get_customer?type=token (one search by external id)"
            .to_string();
        match first.get("open_api_token").and_then(Value::as_str) {
            None => probes.push(Probe {
                call,
                shape: "skipped".into(),
                relied_on: Vec::new(),
                note: Some("the first customer has no open_api_token to search by".into()),
            }),
            Some(token) => match client.find(token).await {
                Ok(found) => probes.push(Probe {
                    call,
                    shape: found.as_ref().map_or("no customer".into(), shape_of),
                    relied_on: vec![("the searched customer".into(), found.is_some())],
                    note: None,
                }),
                Err(e) => probes.push(failed(call, &e)),
            },
        }
    }
    let call = "GET /open_api_v1/customers/custom_fields (custom field definitions)".to_string();
    match client
        .read("/open_api_v1/customers/custom_fields", &[])
        .await
    {
        Ok(reply) => {
            let fields = reply.get("custom_fields").and_then(Value::as_array);
            let named =
                fields.is_some_and(|f| f.iter().all(|x| x.get("custom_field_name").is_some()));
            probes.push(Probe {
                call,
                shape: shape_of(&reply),
                relied_on: vec![
                    has(&reply, "custom_fields"),
                    ("custom_field_name".into(), named),
                ],
                note: fields.map(|_| {
                    let defs = crate::fields::FieldDefs::from_udesk_reply(&reply, "check");
                    let required: Vec<String> = defs.required().map(|f| f.label()).collect();
                    format!(
                        "{} custom fields defined; required: {} (`deskport fields` lists them)",
                        defs.fields.len(),
                        if required.is_empty() {
                            "none".to_string()
                        } else {
                            required.join(", ")
                        }
                    )
                }),
            });
        }
        Err(e) => probes.push(failed(call, &e)),
    }
    let call = "GET /open_api_v1/customers/export (one scroll page)".to_string();
    match client.export_page(None, &ListFilter::default()).await {
        Ok(page) => {
            for c in &page.customers {
                count_phones(
                    &mut phones,
                    crate::export::record::Record::from_udesk(c).phones,
                );
            }
            probes.push(Probe {
                call,
                shape: format!(
                    "{{scroll_id: {}, total: {}, customers: [×{}]}}",
                    if page.scroll_id.is_some() {
                        "text"
                    } else {
                        "none"
                    },
                    if page.total.is_some() {
                        "number"
                    } else {
                        "none"
                    },
                    page.customers.len()
                ),
                relied_on: vec![
                    (
                        "scroll_id".into(),
                        page.scroll_id.is_some() || page.customers.is_empty(),
                    ),
                    ("total".into(), page.total.is_some()),
                ],
                note: Some(
                    "a scroll id is never sent twice; a failed scroll call starts a new scroll"
                        .into(),
                ),
            });
        }
        Err(e) => probes.push(failed(call, &e)),
    }
    CheckReport {
        platform: "udesk",
        probes,
        phones,
        settings: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_name_keys_and_types_never_values() {
        let shape = shape_of(
            &json!({"code": 1000, "customers": [{"email": "secret@x.cn", "id": 4}], "meta": {"total_count": 3}}),
        );
        assert_eq!(shape, "{code: number, customers: [{email: text, id: number} ×1], meta: {total_count: number}}");
        assert!(!shape.contains("secret"));
    }
}
