//! Omnidesk API v2 client: customers are created with multipart `POST /api/v2/customer`,
//! updated with form-urlencoded `PUT /api/v2/customer/updateCustomer`, found with
//! `SearchByPrimaryExternalID`, and given further channels with `addChannelOnly`.
//! Authentication is the `apiKey` header (never the query string, so keys stay out of URLs).
//!
//! Encoding ([`create_fields`], [`update_fields`], [`extra_channel_calls`]) and decoding
//! ([`decode`]) are pure functions.

use super::transport::{Retry, Transport};
use super::{BaseUrl, CallError, Holder, MatchKey, Secret, Target};
use crate::fields::FieldDefs;
use crate::model::Customer;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

/// Shortest `extra_telephone` a create accepts (longer numbers go through `addChannelOnly`).
pub const MIN_EXTRA_TELEPHONE_CHARS: usize = 12;

/// A form: ordered (name, value) pairs.
pub type Fields = Vec<(String, String)>;

fn field(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// The brand a customer goes to: its own `brand_id`, else the run's.
pub fn brand_of(customer: &Customer, default_brand: u64) -> u64 {
    customer.brand_id.unwrap_or(default_brand)
}

/// The customer's channels in order: primary email, phones, other emails.
fn channels(c: &Customer) -> (Vec<&str>, Vec<&str>) {
    let emails = c
        .email
        .iter()
        .chain(&c.other_emails)
        .map(String::as_str)
        .collect();
    let phones = c.phones.iter().map(String::as_str).collect();
    (emails, phones)
}

/// How a custom field's key is written in a form: the documents disagree (`custom_<name>`,
/// 000:264 and 000:342; the bare name, 001:119 on updateCustomer; `{{aCustomFieldName}}`,
/// 002:15), so each endpoint's form is a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KeyForm {
    /// `custom_<name>`.
    Prefixed,
    /// `<name>`.
    Bare,
}

impl KeyForm {
    /// The form key of custom field `name`.
    pub fn key(self, name: &str) -> String {
        match self {
            KeyForm::Prefixed => format!("custom_{name}"),
            KeyForm::Bare => name.to_string(),
        }
    }
}

/// The custom field key form of each endpoint deskport writes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CustomKeys {
    /// `POST /api/v2/customer` (000:264 says `custom_<name>`).
    pub create: KeyForm,
    /// `PUT /api/v2/customer/updateCustomer` (001:119 says the bare name).
    pub update: KeyForm,
}

impl Default for CustomKeys {
    /// What each endpoint's own text says.
    fn default() -> Self {
        CustomKeys {
            create: KeyForm::Prefixed,
            update: KeyForm::Bare,
        }
    }
}

impl CustomKeys {
    /// One line for `deskport check` and the docs.
    pub fn describe(&self) -> String {
        let show = |f: KeyForm| match f {
            KeyForm::Prefixed => "custom_<name>",
            KeyForm::Bare => "<name>",
        };
        format!(
            "create sends {} (000:264), updateCustomer sends {} (001:119); the documents disagree, so --omnidesk-create-keys / --omnidesk-update-keys change them",
            show(self.create),
            show(self.update)
        )
    }
}

/// The create form, and which channels it leaves for [`extra_channel_calls`]:
/// the first channel (an email, else a phone) as `channel_id` + `customer_link_channel`,
/// then one `extra_email` and one `extra_telephone` (if long enough), names, custom fields.
pub fn create_fields(c: &Customer, default_brand: u64, keys: KeyForm) -> (Fields, Vec<Fields>) {
    let brand = brand_of(c, default_brand);
    let mut form = vec![
        field("brand_id", brand.to_string()),
        field("primary_id", c.external_id.clone()),
    ];
    if let Some(f) = &c.firstname {
        form.push(field("firstname", f.clone()));
    }
    if let Some(l) = &c.lastname {
        form.push(field("lastname", l.clone()));
    }
    let (mut emails, mut phones) = channels(c);
    if !emails.is_empty() {
        form.push(field("channel_id", "email"));
        form.push(field("customer_link_channel", emails.remove(0)));
    } else if !phones.is_empty() {
        form.push(field("channel_id", "telephone"));
        form.push(field("customer_link_channel", phones.remove(0)));
    }
    if !emails.is_empty() {
        form.push(field("extra_email", emails.remove(0)));
    }
    if let Some(i) = phones
        .iter()
        .position(|p| p.len() >= MIN_EXTRA_TELEPHONE_CHARS)
    {
        form.push(field("extra_telephone", phones.remove(i)));
    }
    for (name, value) in &c.custom_fields {
        form.push(field(&keys.key(name), value.clone()));
    }
    let extras = extra_channel_calls(&c.external_id, brand, &emails, &phones);
    (form, extras)
}

/// `addChannelOnly` forms for channels a create could not carry: each call carries at most
/// one email and one phone.
pub fn extra_channel_calls(
    primary_id: &str,
    brand: u64,
    emails: &[&str],
    phones: &[&str],
) -> Vec<Fields> {
    let calls = emails.len().max(phones.len());
    (0..calls)
        .map(|i| {
            let mut form = vec![
                field("primary_id", primary_id),
                field("brand_id", brand.to_string()),
            ];
            if let Some(e) = emails.get(i) {
                form.push(field("extra_email", *e));
            }
            if let Some(p) = phones.get(i) {
                form.push(field("extra_telephone", *p));
            }
            form
        })
        .collect()
}

/// The `updateCustomer` form: names, custom fields, and every channel as
/// `customerChannelType_N` / `customerChannelValue_N`.
pub fn update_fields(c: &Customer, default_brand: u64, keys: KeyForm) -> Fields {
    let mut form = vec![
        field("externalPrimaryID", c.external_id.clone()),
        field("brandID", brand_of(c, default_brand).to_string()),
    ];
    if let Some(f) = &c.firstname {
        form.push(field("firstname", f.clone()));
    }
    if let Some(l) = &c.lastname {
        form.push(field("lastname", l.clone()));
    }
    for (name, value) in &c.custom_fields {
        form.push(field(&keys.key(name), value.clone()));
    }
    let (emails, phones) = channels(c);
    let all = emails
        .iter()
        .map(|e| ("email", *e))
        .chain(phones.iter().map(|p| ("telephone", *p)));
    for (n, (kind, value)) in all.enumerate() {
        form.push(field(&format!("customerChannelType_{n}"), kind));
        form.push(field(&format!("customerChannelValue_{n}"), value));
    }
    form
}

/// Keys that mark an object as a customer record.
const RECORD_KEYS: [&str; 5] = [
    "id",
    "customer_id",
    "external_primary_id",
    "primary_id",
    "channels",
];

/// Keys a record may carry its external id under.
const EXTERNAL_ID_KEYS: [&str; 4] = [
    "external_primary_id",
    "primary_id",
    "externalPrimaryID",
    "external_id",
];

fn is_record(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| RECORD_KEYS.iter().any(|k| m.contains_key(*k)))
}

/// The customer record in a reply, wherever a plausible shape puts it: under `message`,
/// `customer`, `item`, `data` or `result` (or the first of a list there or under `items`),
/// or the reply itself. The documents show these replies only as "No content".
pub fn record_of(body: &Value) -> Option<&Value> {
    for key in ["message", "customer", "item", "data", "result", "items"] {
        match body.get(key) {
            Some(v) if is_record(v) => return Some(v),
            Some(Value::Array(list)) => {
                if let Some(first) = list.first().filter(|v| is_record(v)) {
                    return Some(first);
                }
            }
            _ => {}
        }
    }
    is_record(body).then_some(body)
}

/// Whether a 200 reply says plainly that nothing was found: no record, and the places a
/// record would be hold a text, nothing, or an empty list.
fn says_empty(body: &Value) -> bool {
    let empty = |v: &Value| match v {
        Value::Null | Value::String(_) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    match body {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => {
            let mut places = ["message", "customer", "item", "data", "result", "items"]
                .iter()
                .filter_map(|k| m.get(*k))
                .peekable();
            places.peek().is_some() && places.all(empty)
        }
        _ => false,
    }
}

/// The external id a record carries, if it carries one.
fn external_id_of(record: &Value) -> Option<String> {
    EXTERNAL_ID_KEYS
        .iter()
        .find_map(|k| record.get(*k))
        .and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// The keys of a reply, for messages about replies deskport could not read.
fn keys_of(body: &Value) -> String {
    match body.as_object() {
        Some(m) if !m.is_empty() => m.keys().cloned().collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// What a search by external id found: the record when it is this customer's, `None` when
/// the reply says nothing was found, and an error for a reply that shows neither (never
/// "found" on a 200 alone).
pub fn searched(body: &Value, external_id: &str) -> Result<Option<Value>, CallError> {
    match record_of(body) {
        Some(record) => Ok(match external_id_of(record) {
            Some(found) if found != external_id => None,
            _ => Some(record.clone()),
        }),
        None if says_empty(body) => Ok(None),
        None => Err(CallError::Rejected {
            message: format!(
                "the search answered 200 without a customer record deskport can read (keys: {})",
                keys_of(body)
            ),
        }),
    }
}

/// Every customer record in a reply to a search that may find several: the list under
/// `items`, `data`, `customers`, `result` or `message`, or the one [`record_of`] finds.
pub fn records_of(body: &Value) -> Vec<&Value> {
    if let Value::Array(list) = body {
        return list.iter().filter(|v| is_record(v)).collect();
    }
    for key in ["items", "data", "customers", "result", "message"] {
        if let Some(Value::Array(list)) = body.get(key) {
            let records: Vec<&Value> = list.iter().filter(|v| is_record(v)).collect();
            if !records.is_empty() {
                return records;
            }
        }
    }
    record_of(body).into_iter().collect()
}

/// The addresses a record's `channels` list carries (objects with `value`, `address` or
/// `channel_value`, or plain strings); empty when the record lists none.
fn channel_values(record: &Value) -> Vec<&str> {
    let Some(Value::Array(list)) = record.get("channels") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|ch| match ch {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => ["value", "address", "channel_value", "customerChannelValue"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str)),
            _ => None,
        })
        .collect()
}

/// What a search by channel value found: every record that is not plainly someone else's
/// (a record listing its channels must list this value; one listing none is taken), `[]`
/// when the reply says nothing was found, an error for a reply that shows neither.
pub fn searched_by_channel(
    body: &Value,
    key: MatchKey,
    value: &str,
) -> Result<Vec<Holder>, CallError> {
    let records = records_of(body);
    if records.is_empty() {
        return if says_empty(body) {
            Ok(Vec::new())
        } else {
            Err(CallError::Rejected {
                message: format!(
                    "the channel search answered 200 without a customer record deskport can read (keys: {})",
                    keys_of(body)
                ),
            })
        };
    }
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let same = |held: &str| match key {
        MatchKey::Email => held.trim().eq_ignore_ascii_case(value.trim()),
        MatchKey::Phone => digits(held) == digits(value),
    };
    Ok(records
        .into_iter()
        .filter(|r| {
            let held = channel_values(r);
            held.is_empty() || held.into_iter().any(same)
        })
        .map(|r| Holder {
            platform_id: record_id(r).unwrap_or_default(),
            external_id: external_id_of(r).filter(|e| !e.is_empty()),
        })
        .filter(|h| !h.platform_id.is_empty())
        .collect())
}

/// The id in a reply's `customer_id`, or `message.id`.
fn platform_id(body: &Value) -> Option<String> {
    let id = body
        .get("customer_id")
        .or_else(|| body.get("message").and_then(|m| m.get("id")))?;
    match id {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// A record's own id (`id` or `customer_id`).
fn record_id(record: &Value) -> Option<String> {
    match record.get("id").or_else(|| record.get("customer_id"))? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn message_of(body: &Value, status: StatusCode) -> String {
    match body.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => format!("HTTP {status}"),
    }
}

/// Whether a message says the customer does not exist (the documents give no not-found
/// reply: a plausible server says so with 200, 400 or 404). A missing brand or endpoint is
/// not a missing customer.
fn says_not_found(message: &str) -> bool {
    let m = message.to_lowercase();
    (m.contains("not found") || m.contains("does not exist") || m.contains("no such"))
        && !m.contains("brand")
        && !m.contains("endpoint")
}

/// Whether a message says the primary id is taken (the documents give no duplicate reply).
fn says_taken(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("already exist")
        || m.contains("duplicate")
        || m.contains("already used")
        || m.contains("already taken")
}

/// Decodes a reply: success → the body; otherwise the kind of failure. Not-found and
/// duplicate are recognised by status (404, 409) or by what the message says, whatever the
/// status, since the documents show neither.
pub fn decode(status: StatusCode, _headers: &HeaderMap, body: &Bytes) -> Result<Value, CallError> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(CallError::Throttled { retry_after: None });
    }
    if status.is_server_error() {
        return Err(CallError::Unavailable {
            message: format!("HTTP {status}: {}", message_of(&json, status)),
            maybe_applied: true,
        });
    }
    let message = message_of(&json, status);
    let error_type = json.get("type").and_then(Value::as_str) == Some("error");
    let says_customer = message.to_lowercase().contains("customer");
    match status {
        s if s.is_success() && !error_type => {
            if json.is_null() {
                Err(CallError::Unavailable {
                    message: "the reply is not JSON".into(),
                    maybe_applied: true,
                })
            } else if json.get("message").is_some_and(Value::is_string)
                && says_customer
                && says_not_found(&message)
            {
                // {"type":"result","message":"Customer not found"}
                Err(CallError::NotFound)
            } else {
                Ok(json)
            }
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(CallError::Auth { message }),
        StatusCode::CONFLICT => Err(CallError::Conflict {
            platform_id: platform_id(&json),
            message,
        }),
        _ if says_taken(&message) => Err(CallError::Conflict {
            platform_id: platform_id(&json),
            message,
        }),
        StatusCode::NOT_FOUND
            if json.is_object()
                && !message.to_lowercase().contains("brand")
                && !message.contains("endpoint") =>
        {
            Err(CallError::NotFound)
        }
        _ if says_customer && says_not_found(&message) => Err(CallError::NotFound),
        _ => Err(CallError::Rejected {
            message: format!("HTTP {}: {message}", status.as_u16()),
        }),
    }
}

/// The Omnidesk client.
#[derive(Debug)]
pub struct Omnidesk {
    base: BaseUrl,
    api_key: Secret,
    default_brand: u64,
    transport: Transport,
    custom_keys: CustomKeys,
    /// Send `noSync` with creates and `addChannelOnly` (`--no-sync`).
    no_sync: bool,
}

impl Omnidesk {
    /// A client for `base` with this key; rows without a `brand_id` go to `default_brand`.
    pub fn new(base: BaseUrl, api_key: Secret, default_brand: u64, transport: Transport) -> Self {
        transport.hide(api_key.expose());
        Omnidesk {
            base,
            api_key,
            default_brand,
            transport,
            custom_keys: CustomKeys::default(),
            no_sync: false,
        }
    }

    /// The same client sending `noSync` with every create and `addChannelOnly` (000:292,
    /// 002:14, 002:67): the platform then does not link other tickets with the same contact
    /// address to the customer. Sent as `true` when asked and never otherwise, since 001
    /// says its presence is what counts.
    pub fn with_no_sync(mut self, no_sync: bool) -> Self {
        self.no_sync = no_sync;
        self
    }

    /// The create form and the `addChannelOnly` forms for `c`, with `noSync` when asked.
    fn create_forms(&self, c: &Customer) -> (Fields, Vec<Fields>) {
        let (mut form, mut extras) = create_fields(c, self.default_brand, self.custom_keys.create);
        if self.no_sync {
            form.push(field("noSync", "true"));
            for extra in &mut extras {
                extra.push(field("noSync", "true"));
            }
        }
        (form, extras)
    }

    /// The same client writing custom field keys in these forms.
    pub fn with_custom_keys(mut self, keys: CustomKeys) -> Self {
        self.custom_keys = keys;
        self
    }

    /// The custom field key forms in use.
    pub fn custom_keys(&self) -> CustomKeys {
        self.custom_keys
    }

    fn multipart(fields: &Fields) -> reqwest::multipart::Form {
        fields
            .iter()
            .fold(reqwest::multipart::Form::new(), |form, (k, v)| {
                form.text(k.clone(), v.clone())
            })
    }

    /// A read, safe to repeat.
    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        let url = self.base.join(path);
        self.transport
            .call(
                Retry::Idempotent,
                |client| {
                    client
                        .get(&url)
                        .header("apiKey", self.api_key.expose())
                        .query(params)
                },
                decode,
            )
            .await
    }

    async fn post_multipart(
        &self,
        path: &str,
        fields: &Fields,
        retry: Retry,
    ) -> Result<Value, CallError> {
        let url = self.base.join(path);
        self.transport
            .call(
                retry,
                |client| {
                    client
                        .post(&url)
                        .header("apiKey", self.api_key.expose())
                        .multipart(Self::multipart(fields))
                },
                decode,
            )
            .await
    }
}

/// Most customers one list page carries (`itemLimit`).
pub const MAX_ITEM_LIMIT: u64 = super::documented::OMNIDESK_MAX_ITEM_LIMIT;

/// One page of `GET /api/v2/customer`.
#[derive(Debug)]
pub struct ListPage {
    /// How many customers the list holds now (`itemTotal`).
    pub total: u64,
    /// The customers on the page (id, external id, brand name, names, channels).
    pub items: Vec<Value>,
}

impl Omnidesk {
    /// `GET /api/v2/customer?itemStart=START&itemLimit=LIMIT[&query=…]`.
    pub async fn list_page(
        &self,
        start: u64,
        limit: u64,
        query: Option<&str>,
    ) -> Result<ListPage, CallError> {
        let mut params = vec![
            ("itemStart", start.to_string()),
            ("itemLimit", limit.min(MAX_ITEM_LIMIT).to_string()),
        ];
        if let Some(q) = query {
            params.push(("query", q.to_string()));
        }
        let mut reply = self.get("/api/v2/customer", &params).await?;
        let total = reply.get("itemTotal").and_then(Value::as_u64).unwrap_or(0);
        let items = match reply.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        Ok(ListPage { total, items })
    }

    /// The full record of the customer with this external id in this brand, if there is one
    /// (`SearchByPrimaryExternalID`).
    pub async fn find(&self, external_id: &str, brand: u64) -> Result<Option<Value>, CallError> {
        let fields = vec![
            field("primary_id", external_id),
            field("brand_id", brand.to_string()),
        ];
        match self
            .post_multipart(
                "/api/v2/customer/SearchByPrimaryExternalID",
                &fields,
                Retry::Idempotent,
            )
            .await
        {
            Ok(body) => searched(&body, external_id),
            Err(CallError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A read-only call as it is answered (for `deskport check`).
    pub async fn read(&self, path: &str, params: &[(&str, String)]) -> Result<Value, CallError> {
        self.get(path, params).await
    }

    /// `SearchByPrimaryExternalID`'s reply as it is (for `deskport check`).
    pub async fn search_reply(&self, external_id: &str, brand: u64) -> Result<Value, CallError> {
        let fields = vec![
            field("primary_id", external_id),
            field("brand_id", brand.to_string()),
        ];
        self.post_multipart(
            "/api/v2/customer/SearchByPrimaryExternalID",
            &fields,
            Retry::Idempotent,
        )
        .await
    }

    /// The custom fields the first `records` customers' full records show (Omnidesk
    /// publishes no definitions): their names, as text fields of unknown requirement.
    pub async fn custom_fields_seen(&self, records: u64) -> Result<FieldDefs, CallError> {
        let page = self.list_page(0, records, None).await?;
        let mut names: Vec<String> = Vec::new();
        let mut read = 0;
        for item in &page.items {
            let Some(id) = crate::export::record::id_of(item) else {
                continue;
            };
            let record = self.customer(&id, None).await?;
            read += 1;
            let keys = record
                .get("custom_fields")
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default();
            for key in keys {
                if !names.contains(&key) {
                    names.push(key);
                }
            }
        }
        Ok(FieldDefs {
            source: format!(
                "omnidesk: the names seen on the first {read} full records (Omnidesk publishes no field definitions: types, options and required fields unknown)"
            ),
            fields: names
                .into_iter()
                .map(|key| crate::fields::FieldDef {
                    key,
                    title: String::new(),
                    content_type: "text".into(),
                    options: Vec::new(),
                    required: false,
                })
                .collect(),
        })
    }

    /// The default brand for customers without one.
    /// `POST /api/v2/customer/externalEvent` (000:572-609) with these fields; its reply is
    /// "No content", so an empty success is a success. Not idempotent: every call adds an
    /// event, so an unanswered one is never sent again by the transport.
    pub async fn external_event(&self, fields: &Fields) -> Result<(), CallError> {
        let url = self.base.join("/api/v2/customer/externalEvent");
        self.transport
            .call(
                Retry::NotIdempotent,
                |client| {
                    client
                        .post(&url)
                        .header("apiKey", self.api_key.expose())
                        .multipart(Self::multipart(fields))
                },
                |status, headers, body| {
                    if status.is_success() && body.iter().all(u8::is_ascii_whitespace) {
                        return Ok(());
                    }
                    decode(status, headers, body).map(|_| ())
                },
            )
            .await
    }

    /// `GET /api/v2/customer/timelineByCustomerExternalID` (000:188-214) as it is answered
    /// (its shape is not documented: "No content").
    pub async fn timeline(&self, brand: u64, external_id: &str) -> Result<Value, CallError> {
        self.get(
            "/api/v2/customer/timelineByCustomerExternalID",
            &[
                ("brand_id", brand.to_string()),
                ("external_id", external_id.to_string()),
            ],
        )
        .await
    }

    /// `DELETE PREFIX{id}`, an empty success being a success, and so is "not found" on the
    /// retry of an attempt that may have been applied (cut, timed out or answered 5xx).
    async fn delete_at(&self, prefix: &str, platform_id: &str) -> Result<(), CallError> {
        if platform_id.is_empty() || !platform_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CallError::Rejected {
                message: format!("{platform_id:?} is no Omnidesk customer id"),
            });
        }
        let url = self.base.join(&format!("{prefix}{platform_id}"));
        let (result, maybe_applied_before) = self
            .transport
            .call_noting(
                Retry::Idempotent,
                false,
                |client| client.delete(&url).header("apiKey", self.api_key.expose()),
                |status, headers, body| {
                    if status.is_success() && body.iter().all(u8::is_ascii_whitespace) {
                        return Ok(());
                    }
                    decode(status, headers, body).map(|_| ())
                },
            )
            .await;
        super::deleted_unless_gone_before(result, maybe_applied_before)
    }

    pub fn default_brand(&self) -> u64 {
        self.default_brand
    }

    /// The full record of one customer (`GET /api/v2/customer/{id}`), `CallError::NotFound`
    /// when it is gone.
    pub async fn customer(&self, id: &str, brand: Option<u64>) -> Result<Value, CallError> {
        let params: Vec<(&str, String)> = brand
            .map(|b| ("brandID", b.to_string()))
            .into_iter()
            .collect();
        let reply = self.get(&format!("/api/v2/customer/{id}"), &params).await?;
        match record_of(&reply) {
            Some(record) => Ok(record.clone()),
            None => Err(CallError::Unavailable {
                message: format!(
                    "customer {id}: the reply has no record deskport can read (keys: {})",
                    keys_of(&reply)
                ),
                maybe_applied: false,
            }),
        }
    }
}

impl Target for Omnidesk {
    fn name(&self) -> &'static str {
        "omnidesk"
    }

    async fn lookup(&self, c: &Customer) -> Result<Option<String>, CallError> {
        let fields = vec![
            field("primary_id", c.external_id.clone()),
            field("brand_id", brand_of(c, self.default_brand).to_string()),
        ];
        match self
            .post_multipart(
                "/api/v2/customer/SearchByPrimaryExternalID",
                &fields,
                Retry::Idempotent,
            )
            .await
        {
            Ok(body) => Ok(searched(&body, &c.external_id)?
                .map(|record| record_id(&record).unwrap_or_default())),
            Err(CallError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn probe(&self) -> Result<Option<u64>, CallError> {
        Ok(Some(self.list_page(0, 1, None).await?.total))
    }

    async fn resolve(&self, c: &Customer) -> Result<Option<(String, bool)>, CallError> {
        let Some(record) = self
            .find(&c.external_id, brand_of(c, self.default_brand))
            .await?
        else {
            return Ok(None);
        };
        let (form, _) = self.create_forms(c);
        let sent: Vec<(&str, &str)> = form
            .iter()
            .filter(|(k, _)| k == "firstname" || k == "lastname")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let ours = super::holds_what_was_sent(&record, &sent);
        Ok(Some((record_id(&record).unwrap_or_default(), ours)))
    }

    async fn create(&self, c: &Customer) -> Result<String, CallError> {
        let (form, _) = self.create_forms(c);
        let body = self
            .post_multipart("/api/v2/customer", &form, Retry::NotIdempotent)
            .await?;
        match platform_id(&body) {
            Some(id) => Ok(id),
            // The documented reply names no customer (002:27): ask which one it made. A
            // failed lookup leaves the id unknown; the create itself stands.
            None => Ok(self.lookup(c).await.ok().flatten().unwrap_or_default()),
        }
    }

    async fn complete(&self, c: &Customer, _platform_id: &str) -> Result<(), CallError> {
        let (_, extras) = self.create_forms(c);
        for form in &extras {
            self.post_multipart("/api/v2/customer/addChannelOnly", form, Retry::Idempotent)
                .await?;
        }
        Ok(())
    }

    /// `DELETE /api/v2/customer/{id}` (000:155-170, whose reply is "No content": an empty
    /// success is a success).
    async fn delete(&self, platform_id: &str) -> Result<(), CallError> {
        self.delete_at("/api/v2/customer/", platform_id).await
    }

    /// `DELETE /api/v2/customer/purgeData/{id}` (000:221-239, "No content" too).
    async fn purge(&self, platform_id: &str) -> Result<(), CallError> {
        self.delete_at("/api/v2/customer/purgeData/", platform_id)
            .await
    }

    async fn update(&self, c: &Customer) -> Result<String, CallError> {
        let form = update_fields(c, self.default_brand, self.custom_keys.update);
        let url = self.base.join("/api/v2/customer/updateCustomer");
        self.transport
            .call(
                Retry::Idempotent,
                |client| {
                    client
                        .put(&url)
                        .header("apiKey", self.api_key.expose())
                        .form(&form)
                },
                decode,
            )
            .await?;
        // updateCustomer does not say which customer it updated; the id is not needed.
        Ok(String::new())
    }

    /// `SearchByCustomerChannelValue` (000:460-489) in the row's brand.
    async fn find_by(
        &self,
        key: MatchKey,
        value: &str,
        c: &Customer,
    ) -> Result<Vec<Holder>, CallError> {
        let fields = vec![
            field("customerChannelValue", value),
            field("brand_id", brand_of(c, self.default_brand).to_string()),
        ];
        match self
            .post_multipart(
                "/api/v2/customer/SearchByCustomerChannelValue",
                &fields,
                Retry::Idempotent,
            )
            .await
        {
            Ok(body) => searched_by_channel(&body, key, value),
            Err(CallError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `PUT /api/v2/customer` with `customerID`, `primaryID` and `brandID` (000:346-378:
    /// "PrimaryID, brandID and customerID are all optional, but dependent on the presence of
    /// at least one"). Whether this *sets* the primary id is not documented: the caller's
    /// lookup tells.
    async fn link(&self, c: &Customer, platform_id: &str) -> Result<(), CallError> {
        let form = vec![
            field("customerID", platform_id),
            field("primaryID", c.external_id.clone()),
            field("brandID", brand_of(c, self.default_brand).to_string()),
        ];
        let url = self.base.join("/api/v2/customer");
        self.transport
            .call(
                Retry::Idempotent,
                |client| {
                    client
                        .put(&url)
                        .header("apiKey", self.api_key.expose())
                        .form(&form)
                },
                |status, headers, body| {
                    if status.is_success() && body.iter().all(u8::is_ascii_whitespace) {
                        return Ok(Value::Null);
                    }
                    decode(status, headers, body)
                },
            )
            .await
            .map(|_| ())
    }

    fn describe_create(&self, c: &Customer) -> String {
        let (form, extras) = self.create_forms(c);
        let mut text = format!(
            "POST {} (multipart/form-data, header apiKey: <redacted>)\n",
            self.base.join("/api/v2/customer")
        );
        for (k, v) in &form {
            text.push_str(&format!("  {k} = {v}\n"));
        }
        for extra in extras {
            text.push_str(&format!(
                "POST {} (multipart/form-data)\n",
                self.base.join("/api/v2/customer/addChannelOnly")
            ));
            for (k, v) in extra {
                text.push_str(&format!("  {k} = {v}\n"));
            }
        }
        text
    }

    fn transport(&self) -> &Transport {
        &self.transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn a_channel_search_reads_one_record_or_a_list_and_drops_plainly_other_ones() {
        let anna = json!({"id": 7, "external_primary_id": "", "channels": [{"type": "email", "value": "Anna@x.nl"}]});
        let other =
            json!({"id": 8, "external_primary_id": "B-2", "channels": [{"value": "annabel@x.nl"}]});
        let bare = json!({"id": 9, "firstname": "Anna"});
        for body in [
            json!({"items": [anna.clone()]}),
            json!({"customer": anna.clone()}),
            json!([anna.clone(), other.clone()]),
            anna.clone(),
        ] {
            let found = searched_by_channel(&body, MatchKey::Email, "anna@x.nl").unwrap();
            assert_eq!(
                found,
                [Holder {
                    platform_id: "7".into(),
                    external_id: None
                }],
                "{body}"
            );
        }
        let two = searched_by_channel(&json!({"data": [anna, bare]}), MatchKey::Email, "anna@x.nl")
            .unwrap();
        assert_eq!(two.len(), 2);
        let phone =
            json!({"items": [{"id": 3, "primary_id": "P-3", "channels": ["+31 6 12345678"]}]});
        let found = searched_by_channel(&phone, MatchKey::Phone, "+31612345678").unwrap();
        assert_eq!(found[0].external_id.as_deref(), Some("P-3"));
        assert!(
            searched_by_channel(&json!({"items": []}), MatchKey::Email, "a@b.c")
                .unwrap()
                .is_empty()
        );
        assert!(searched_by_channel(&json!({"ok": true}), MatchKey::Email, "a@b.c").is_err());
    }

    #[test]
    fn a_search_finds_a_record_in_every_plausible_shape_and_never_on_a_bare_200() {
        let record = json!({"id": 7, "external_primary_id": "C-1", "firstname": "Anna"});
        for body in [
            json!({"type": "result", "message": record}),
            json!({"customer": record}),
            json!({"item": record}),
            json!({"data": [record]}),
            json!({"items": [record]}),
            record.clone(),
        ] {
            let found = searched(&body, "C-1").unwrap().expect("found");
            assert_eq!(record_id(&found).as_deref(), Some("7"), "{body}");
        }
        for empty in [
            json!({"type": "result", "message": "Customer not found"}),
            json!({"items": []}),
            json!({"message": null}),
            json!([]),
        ] {
            assert_eq!(searched(&empty, "C-1").unwrap(), None, "{empty}");
        }
        // Another customer's record is not this one.
        let other = json!({"message": {"id": 8, "external_primary_id": "C-2"}});
        assert_eq!(searched(&other, "C-1").unwrap(), None);
        // A 200 that shows no record and no emptiness is not "found".
        let odd = json!({"type": "result", "status": "ok"});
        let err = searched(&odd, "C-1").unwrap_err();
        assert!(err.to_string().contains("keys: status, type"), "{err}");
    }

    fn customer() -> Customer {
        Customer {
            external_id: "C-1".into(),
            firstname: Some("Anna".into()),
            lastname: Some("de Vries".into()),
            email: Some("anna@example.com".into()),
            other_emails: vec!["a2@example.com".into(), "a3@example.com".into()],
            phones: vec!["+31612345678".into(), "+3120123".into()],
            custom_fields: BTreeMap::from([("plan".to_string(), "gold".to_string())]),
            ..Customer::default()
        }
    }

    fn get<'a>(form: &'a Fields, name: &str) -> Option<&'a str> {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn create_carries_the_first_channel_and_one_extra_of_each() {
        let (form, extras) = create_fields(&customer(), 7, KeyForm::Prefixed);
        assert_eq!(get(&form, "brand_id"), Some("7"));
        assert_eq!(get(&form, "primary_id"), Some("C-1"));
        assert_eq!(get(&form, "channel_id"), Some("email"));
        assert_eq!(
            get(&form, "customer_link_channel"),
            Some("anna@example.com")
        );
        assert_eq!(get(&form, "extra_email"), Some("a2@example.com"));
        assert_eq!(get(&form, "extra_telephone"), Some("+31612345678"));
        assert_eq!(get(&form, "custom_plan"), Some("gold"));
        // a3@ and the short number go through addChannelOnly, in one call.
        assert_eq!(extras.len(), 1);
        assert_eq!(get(&extras[0], "extra_email"), Some("a3@example.com"));
        assert_eq!(get(&extras[0], "extra_telephone"), Some("+3120123"));
        assert_eq!(get(&extras[0], "primary_id"), Some("C-1"));
    }

    #[test]
    fn a_phone_is_the_first_channel_when_there_is_no_email() {
        let c = Customer {
            external_id: "X".into(),
            phones: vec!["+31612345678".into()],
            brand_id: Some(2),
            ..Customer::default()
        };
        let (form, extras) = create_fields(&c, 1, KeyForm::Prefixed);
        assert_eq!(get(&form, "brand_id"), Some("2"));
        assert_eq!(get(&form, "channel_id"), Some("telephone"));
        assert_eq!(get(&form, "customer_link_channel"), Some("+31612345678"));
        assert!(extras.is_empty());
    }

    #[test]
    fn update_lists_every_channel() {
        let form = update_fields(&customer(), 1, KeyForm::Prefixed);
        assert_eq!(get(&form, "externalPrimaryID"), Some("C-1"));
        assert_eq!(get(&form, "brandID"), Some("1"));
        assert_eq!(get(&form, "customerChannelType_0"), Some("email"));
        assert_eq!(get(&form, "customerChannelValue_2"), Some("a3@example.com"));
        assert_eq!(get(&form, "customerChannelType_3"), Some("telephone"));
        assert_eq!(get(&form, "customerChannelValue_4"), Some("+3120123"));
        assert_eq!(get(&form, "custom_plan"), Some("gold"));
        let bare = update_fields(&customer(), 1, KeyForm::Bare);
        assert_eq!(get(&bare, "plan"), Some("gold"));
        assert_eq!(get(&bare, "custom_plan"), None);
    }

    #[test]
    fn replies_decode_into_kinds() {
        let h = HeaderMap::new();
        let b = |s: &str| Bytes::from(s.to_string());
        let ok = decode(
            StatusCode::OK,
            &h,
            &b(r#"{"type":"result","message":"Customer created.","customer_id":5}"#),
        )
        .unwrap();
        assert_eq!(platform_id(&ok).as_deref(), Some("5"));
        assert_eq!(
            decode(
                StatusCode::CONFLICT,
                &h,
                &b(r#"{"type":"error","message":"exists","customer_id":9}"#)
            ),
            Err(CallError::Conflict {
                platform_id: Some("9".into()),
                message: "exists".into()
            })
        );
        assert_eq!(
            decode(
                StatusCode::NOT_FOUND,
                &h,
                &b(r#"{"type":"error","message":"Customer not found"}"#)
            ),
            Err(CallError::NotFound)
        );
        assert!(matches!(
            decode(
                StatusCode::NOT_FOUND,
                &h,
                &b(r#"{"type":"error","message":"brand 9 does not exist"}"#)
            ),
            Err(CallError::Rejected { .. })
        ));
        assert!(matches!(
            decode(StatusCode::UNAUTHORIZED, &h, &b("{}")),
            Err(CallError::Auth { .. })
        ));
        assert!(matches!(
            decode(StatusCode::TOO_MANY_REQUESTS, &h, &b("")),
            Err(CallError::Throttled { .. })
        ));
        assert!(matches!(
            decode(StatusCode::INTERNAL_SERVER_ERROR, &h, &b("")),
            Err(CallError::Unavailable {
                maybe_applied: true,
                ..
            })
        ));
        assert!(matches!(
            decode(
                StatusCode::BAD_REQUEST,
                &h,
                &b(r#"{"type":"error","message":"firstname does not match"}"#)
            ),
            Err(CallError::Rejected { .. })
        ));
    }
}
