//! Udesk open API v1 client. Every request is signed just before it is sent (fresh nonce,
//! current timestamp; see [`udesk_sign`](super::udesk_sign)), retries included. Creates go
//! one at a time through `POST /customers` or 100 at a time through the asynchronous
//! `POST /customers/batch_import_async`, whose rows stay *pending* until [`Target::confirm`]
//! finds them. A token can be given, or obtained once with `log_in` (and again once when the
//! platform refuses it).
//!
//! Encoding ([`create_body`], [`bulk_row`], [`signed_query`]) and decoding ([`decode`]) are
//! pure functions.

use super::transport::{Retry, Transport};
use super::udesk_sign::{self as auth, sign};
use super::{channel_key, BaseUrl, BulkError, CallError, Holder, MatchKey, Secret, Survey, Target};
use crate::fields::FieldDefs;
use crate::model::Customer;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Most rows in one `batch_import_async` call.
pub const BULK_ROWS: usize = super::documented::UDESK_BULK_MAX_ROWS;
/// Customers per export call.
pub const EXPORT_BATCH: u64 = super::documented::UDESK_EXPORT_BATCH;

/// How to authenticate.
#[derive(Debug, Clone)]
pub enum UdeskAuth {
    /// The open API token.
    Token(Secret),
    /// A password to obtain the token with `log_in`.
    Password(Secret),
}

/// The query parameters that sign one request.
pub fn signed_query(
    email: &str,
    token: &str,
    timestamp: u64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("email", email.to_string()),
        ("timestamp", timestamp.to_string()),
        ("nonce", nonce.to_string()),
        ("sign", sign(email, token, timestamp, nonce)),
        ("sign_version", auth::SIGN_VERSION.to_string()),
    ]
}

/// Custom field values: `TextField_N` is text, `SelectField_N` a list of option ids
/// (written `1;3` or `1,3` in the source).
fn custom_fields(c: &Customer) -> Map<String, Value> {
    c.custom_fields
        .iter()
        .map(|(k, v)| {
            let value = if k.starts_with("SelectField_") {
                Value::Array(
                    v.split([';', ','])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| json!(s))
                        .collect(),
                )
            } else {
                json!(v)
            };
            (k.clone(), value)
        })
        .collect()
}

/// The display name: `nick_name`, else first + last name, else the external id.
pub fn nick_name(c: &Customer) -> String {
    if let Some(n) = c.nick_name.as_deref().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    let full: Vec<&str> = [c.firstname.as_deref(), c.lastname.as_deref()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if full.is_empty() {
        c.external_id.clone()
    } else {
        full.join(" ")
    }
}

/// The `customer` object shared by create and update.
fn customer_object(c: &Customer) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("nick_name".into(), json!(nick_name(c)));
    o.insert("open_api_token".into(), json!(c.external_id));
    if let Some(e) = &c.email {
        o.insert("email".into(), json!(e));
    }
    if let Some(l) = &c.level {
        o.insert("level".into(), json!(l));
    }
    if let Some(d) = &c.description {
        o.insert("description".into(), json!(d));
    }
    if !c.custom_fields.is_empty() {
        o.insert("custom_fields".into(), Value::Object(custom_fields(c)));
    }
    o
}

/// `[id, value]` pairs of a record's list (`other_emails`, `cellphones`), read leniently:
/// pairs (003:502-505), `{id, content}` objects (003:511-520) or plain strings (no id).
pub fn held_pairs(record: &Value, key: &str) -> Vec<(Value, String)> {
    let Some(Value::Array(items)) = record.get(key) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some((Value::Null, s.clone())),
            Value::Array(pair) => {
                let value = pair.iter().rev().find_map(Value::as_str)?;
                let id = pair.iter().find(|v| v.is_number()).cloned();
                Some((id.unwrap_or(Value::Null), value.to_string()))
            }
            Value::Object(o) => {
                let value = ["content", "email", "phone", "value"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(Value::as_str))?;
                Some((
                    o.get("id").cloned().unwrap_or(Value::Null),
                    value.to_string(),
                ))
            }
            _ => None,
        })
        .collect()
}

/// Digits of a phone number, for matching `+8613100000002` with `13100000002`.
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// `[id, value]` pairs for `wanted`: the id the platform gave a value the customer already
/// holds (`held`), null for a new one.
fn pairs(wanted: &[String], held: &[(Value, String)], same: impl Fn(&str, &str) -> bool) -> Value {
    Value::Array(
        wanted
            .iter()
            .map(|w| {
                let id = held
                    .iter()
                    .find(|(_, h)| same(w, h))
                    .map_or(Value::Null, |(id, _)| id.clone());
                json!([id, w])
            })
            .collect(),
    )
}

fn same_email(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn same_phone(a: &str, b: &str) -> bool {
    let (a, b) = (digits(a), digits(b));
    a == b || (a.len() > b.len() && a.ends_with(&b)) || (b.len() > a.len() && b.ends_with(&a))
}

/// The body of `POST /customers` (`held` is `None`) and of
/// `PUT /customers/update_customer` (`held` is the customer's record on the platform):
/// other emails and phones as `[id, value]` pairs (003:410-413, 441-444, 633-635), with the
/// ids of the ones the customer keeps and null for new ones.
pub fn create_body(c: &Customer, held: Option<&Value>) -> Value {
    let held_emails = held
        .map(|r| held_pairs(r, "other_emails"))
        .unwrap_or_default();
    let held_phones = held
        .map(|r| held_pairs(r, "cellphones"))
        .unwrap_or_default();
    let mut customer = customer_object(c);
    if !c.phones.is_empty() {
        customer.insert(
            "cellphones".into(),
            pairs(&c.phones, &held_phones, same_phone),
        );
    }
    let mut body = Map::new();
    body.insert("customer".into(), Value::Object(customer));
    if !c.other_emails.is_empty() {
        body.insert(
            "other_emails".into(),
            pairs(&c.other_emails, &held_emails, same_email),
        );
    }
    if !c.tags.is_empty() {
        body.insert("tags".into(), json!(c.tags.join(",")));
    }
    Value::Object(body)
}

/// One row of `batch_import_async`: `emails` and `cellphones` are plain lists.
pub fn bulk_row(c: &Customer) -> Value {
    let mut o = Map::new();
    o.insert("nick_name".into(), json!(nick_name(c)));
    o.insert("open_api_token".into(), json!(c.external_id));
    let emails: Vec<&String> = c.email.iter().chain(&c.other_emails).collect();
    if !emails.is_empty() {
        o.insert("emails".into(), json!(emails));
    }
    if !c.phones.is_empty() {
        o.insert("cellphones".into(), json!(c.phones));
    }
    if let Some(l) = &c.level {
        o.insert("level".into(), json!(l));
    }
    if let Some(d) = &c.description {
        o.insert("description".into(), json!(d));
    }
    if !c.tags.is_empty() {
        o.insert("tags".into(), json!(c.tags.join(",")));
    }
    if !c.custom_fields.is_empty() {
        o.insert("custom_fields".into(), Value::Object(custom_fields(c)));
    }
    Value::Object(o)
}

/// The platform's message, with the `exception` detail when there is one (object or string).
fn message_of(body: &Value) -> String {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_string();
    let detail = match body.get("exception") {
        Some(Value::Object(o)) => o.get("message").and_then(Value::as_str).map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    match detail {
        Some(d) if d != message => format!("{message}: {d}"),
        _ => message,
    }
}

/// The id in "… customer id = 12".
fn named_customer_id(message: &str) -> Option<String> {
    let tail = message.split("customer id =").nth(1)?.trim();
    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
    (!digits.is_empty()).then_some(digits)
}

/// Decodes a reply: code 1000 → the body; otherwise the kind of failure. A rate refusal may
/// be HTTP 429 or HTTP 200 with code 429.
pub fn decode(status: StatusCode, _headers: &HeaderMap, body: &Bytes) -> Result<Value, CallError> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = json.get("code").and_then(Value::as_i64);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::SERVICE_UNAVAILABLE
        || code == Some(auth::CODE_RATE_LIMITED)
    {
        return Err(CallError::Throttled { retry_after: None });
    }
    if status.is_server_error() || code.is_none() {
        return Err(CallError::Unavailable {
            message: format!("HTTP {}: {}", status.as_u16(), message_of(&json)),
            maybe_applied: true,
        });
    }
    let code = code.unwrap_or_default();
    let message = message_of(&json);
    match code {
        auth::CODE_OK => Ok(json),
        c if auth::is_auth_failure(c) || status == StatusCode::UNAUTHORIZED => {
            Err(CallError::Auth {
                message: format!("code {c}: {message}"),
            })
        }
        auth::CODE_NOT_FOUND => Err(CallError::NotFound),
        auth::CODE_BAD_SCROLL => Err(CallError::Expired {
            message: format!("code {code}: {message}"),
        }),
        _ if message.contains("open_api_token duplicate") => Err(CallError::Conflict {
            platform_id: named_customer_id(&message),
            message,
        }),
        c => Err(CallError::Rejected {
            message: format!("code {c}: {message}"),
        }),
    }
}

fn customer_id(body: &Value) -> String {
    body.get("customer").map(own_id).unwrap_or_default()
}

/// A customer object's `id` as text.
fn own_id(customer: &Value) -> String {
    match customer.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The Udesk client.
#[derive(Debug)]
pub struct Udesk {
    base: BaseUrl,
    email: String,
    auth: UdeskAuth,
    token: RwLock<Option<Secret>>,
    transport: Transport,
    /// External id → `{id, other_emails, cellphones}` of customers a survey found holding
    /// emails or phones: the ids an update must send back.
    held: RwLock<HashMap<String, Value>>,
}

impl Udesk {
    /// A client for `base` as the admin `email`.
    pub fn new(base: BaseUrl, email: String, auth: UdeskAuth, transport: Transport) -> Self {
        let token = match &auth {
            UdeskAuth::Token(t) => Some(t.clone()),
            UdeskAuth::Password(_) => None,
        };
        match &auth {
            UdeskAuth::Token(t) | UdeskAuth::Password(t) => transport.hide(t.expose()),
        }
        Udesk {
            base,
            email,
            auth,
            token: RwLock::new(token),
            transport,
            held: RwLock::new(HashMap::new()),
        }
    }

    /// The record a survey kept for this external id.
    fn held_record(&self, external_id: &str) -> Option<Value> {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(external_id)
            .cloned()
    }

    fn token(&self) -> Option<Secret> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Obtains the token with `log_in` (password auth only).
    pub async fn log_in(&self) -> Result<(), CallError> {
        let UdeskAuth::Password(password) = &self.auth else {
            return Ok(());
        };
        let url = self.base.join("/open_api_v1/log_in");
        let body = json!({"email": self.email, "password": password.expose()});
        let reply = self
            .transport
            .call(
                Retry::Idempotent,
                |client| client.post(&url).json(&body),
                decode,
            )
            .await?;
        let token = reply
            .get("open_api_auth_token")
            .and_then(Value::as_str)
            .ok_or_else(|| CallError::Auth {
                message: "log_in gave no open_api_auth_token".into(),
            })?;
        self.transport.hide(token);
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(Secret::new(token));
        Ok(())
    }

    /// A signed read, safe to repeat.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CallError> {
        self.signed(reqwest::Method::GET, path, query, None, Retry::Idempotent)
            .await
    }

    /// A signed call; with password auth, a refused token is renewed once.
    async fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Value, CallError> {
        self.signed_noting(method, path, query, body, retry, false)
            .await
            .0
    }

    /// [`Udesk::signed`], ahead of ordinary calls for its rate slot when `priority`, also
    /// telling whether an attempt may have been applied (see [`Transport::call_noting`]).
    async fn signed_noting(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
        priority: bool,
    ) -> (Result<Value, CallError>, bool) {
        if self.token().is_none() {
            if let Err(e) = self.log_in().await {
                return (Err(e), false);
            }
        }
        let url = self.base.join(path);
        let mut renewed = false;
        let mut maybe_applied_before = false;
        loop {
            let token = self.token().unwrap_or_else(|| Secret::new(""));
            let (result, unanswered) = self
                .transport
                .call_noting(
                    retry,
                    priority,
                    |client| {
                        let timestamp = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        let nonce = format!("{:032x}", fastrand::u128(..));
                        let mut request = client
                            .request(method.clone(), &url)
                            .query(&signed_query(
                                &self.email,
                                token.expose(),
                                timestamp,
                                &nonce,
                            ))
                            .query(query);
                        if let Some(b) = body {
                            request = request.json(b);
                        }
                        request
                    },
                    decode,
                )
                .await;
            maybe_applied_before |= unanswered;
            match result {
                Err(CallError::Auth { .. })
                    if !renewed && matches!(self.auth, UdeskAuth::Password(_)) =>
                {
                    renewed = true;
                    if let Err(e) = self.log_in().await {
                        return (Err(e), maybe_applied_before);
                    }
                }
                other => return (other, maybe_applied_before),
            }
        }
    }

    /// Reads the customers the filter matches with the scroll export, handing each to `each`
    /// until it returns false. A scroll id is never sent twice: after a failed or unanswered
    /// call (which may have moved the scroll on) a new scroll starts and the customers
    /// already handed over (by id) are skipped. Returns the calls made.
    pub async fn scroll_all(
        &self,
        filter: &ListFilter,
        mut each: impl FnMut(&Value) -> bool + Send,
    ) -> Result<u64, CallError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut scroll: Option<String> = None;
        let (mut calls, mut restarts) = (0u64, 0u32);
        loop {
            calls += 1;
            let page = match self.export_page(scroll.as_deref(), filter).await {
                Ok(page) => page,
                Err(e) if scroll.is_some() && !e.stops_run() && restarts < MAX_SCROLL_RESTARTS => {
                    restarts += 1;
                    scroll = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if page.customers.is_empty() {
                return Ok(calls);
            }
            for c in &page.customers {
                // A customer without an id cannot be recognised again: always handed over.
                let id = own_id(c);
                let new = id.is_empty() || seen.insert(id);
                if new && !each(c) {
                    return Ok(calls);
                }
            }
            scroll = page.scroll_id;
            if scroll.is_none() {
                return Ok(calls);
            }
        }
    }

    async fn export_pass(
        &self,
        wanted: &HashSet<&str>,
    ) -> Result<HashMap<String, String>, CallError> {
        let mut found = HashMap::new();
        self.scroll_all(&ListFilter::default(), |c| {
            if let Some(t) = c.get("open_api_token").and_then(Value::as_str) {
                if wanted.contains(t) {
                    found.insert(t.to_string(), own_id(c));
                }
            }
            found.len() < wanted.len()
        })
        .await?;
        Ok(found)
    }

    /// One call of the scroll export (`GET /customers/export`): the first call (no
    /// `scroll_id`) takes a snapshot of the customers matching the filter; each call returns
    /// up to [`EXPORT_BATCH`] of them and the next scroll id (valid for a minute, usable once).
    /// `CallError::Expired` means the scroll id is no longer known: start a new scroll.
    pub async fn export_page(
        &self,
        scroll_id: Option<&str>,
        filter: &ListFilter,
    ) -> Result<ScrollPage, CallError> {
        let query: Vec<(&str, String)> = match scroll_id {
            Some(id) => vec![("scroll_id", id.to_string())],
            None => filter.query(),
        };
        // The first call only takes a snapshot: safe to repeat. A call with a scroll id may
        // move the scroll on even when its reply is lost (an Elasticsearch scroll id returns
        // the next batch each time): never repeated; the caller starts a new scroll.
        let retry = if scroll_id.is_some() {
            Retry::NotIdempotent
        } else {
            Retry::Idempotent
        };
        let reply = self
            .signed(
                reqwest::Method::GET,
                "/open_api_v1/customers/export",
                &query,
                None,
                retry,
            )
            .await;
        let reply = match (reply, scroll_id) {
            (Err(CallError::Expired { message }), None) => {
                return Err(CallError::Rejected {
                    message: format!("the export refused the filter: {message}"),
                })
            }
            (other, _) => other?,
        };
        Ok(ScrollPage {
            scroll_id: reply
                .get("scroll_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            total: reply.get("total").and_then(Value::as_u64),
            customers: take_customers(reply),
        })
    }

    /// One page of the customer list (`GET /customers`, at most [`LIST_PAGE_SIZE`] a page and
    /// [`LIST_MAX_ROWS`] rows in all), with the number of matching customers.
    pub async fn list_page(&self, page: u64, filter: &ListFilter) -> Result<ListPage, CallError> {
        let mut query = filter.query();
        query.push(("page", page.to_string()));
        query.push(("page_size", LIST_PAGE_SIZE.to_string()));
        let reply = self.get("/open_api_v1/customers", &query).await?;
        Ok(ListPage {
            total: reply.pointer("/meta/total_count").and_then(Value::as_u64),
            customers: take_customers(reply),
        })
    }

    /// The account's custom fields (`GET /customers/custom_fields`, 003:945-1121): keys
    /// (`TextField_1`, `SelectField_2`, …) in the platform's order, titles, types, options
    /// and whether each is required.
    pub async fn custom_fields(&self) -> Result<FieldDefs, CallError> {
        let reply = self
            .get("/open_api_v1/customers/custom_fields", &[])
            .await?;
        Ok(FieldDefs::from_udesk_reply(
            &reply,
            "udesk GET /customers/custom_fields",
        ))
    }

    /// The full record of the customer with this external id (`open_api_token`), if any.
    pub async fn find(&self, external_id: &str) -> Result<Option<Value>, CallError> {
        let query = [
            ("type", "token".to_string()),
            ("content", external_id.to_string()),
        ];
        match self
            .get("/open_api_v1/customers/get_customer", &query)
            .await
        {
            Ok(mut body) => Ok(body
                .get_mut("customer")
                .map(Value::take)
                .filter(Value::is_object)),
            Err(CallError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A signed read-only call as it is answered (for `deskport check`).
    pub async fn read(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CallError> {
        self.get(path, query).await
    }

    /// How many customers the account holds (one list call).
    pub async fn total_customers(&self) -> Result<u64, CallError> {
        let query = [("page", "1".to_string()), ("page_size", "1".to_string())];
        let reply = self.get("/open_api_v1/customers", &query).await?;
        Ok(reply
            .pointer("/meta/total_count")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX))
    }
}

/// New scrolls one read may start after failed scroll calls.
pub const MAX_SCROLL_RESTARTS: u32 = 5;

/// Customers per page of the list (`GET /customers`).
pub const LIST_PAGE_SIZE: u64 = super::documented::UDESK_LIST_MAX_PAGE_SIZE;
/// Most rows the list reaches (page × page_size).
pub const LIST_MAX_ROWS: u64 = super::documented::UDESK_LIST_MAX_ROWS;

/// Which customers a listing or export covers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// A customer filter's id (`filter_id`).
    pub filter_id: Option<u64>,
    /// A search keyword (`query`).
    pub query: Option<String>,
}

impl ListFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(f) = self.filter_id {
            q.push(("filter_id", f.to_string()));
        }
        if let Some(text) = &self.query {
            q.push(("query", text.clone()));
        }
        q
    }
}

/// One reply of the scroll export.
#[derive(Debug)]
pub struct ScrollPage {
    /// The id that fetches the next batch.
    pub scroll_id: Option<String>,
    /// How many customers the scroll covers.
    pub total: Option<u64>,
    /// The customers (Customer Data objects); empty at the end.
    pub customers: Vec<Value>,
}

/// One page of the customer list.
#[derive(Debug)]
pub struct ListPage {
    /// How many customers match.
    pub total: Option<u64>,
    /// The customers on this page.
    pub customers: Vec<Value>,
}

fn take_customers(mut reply: Value) -> Vec<Value> {
    match reply.get_mut("customers").map(Value::take) {
        Some(Value::Array(list)) => list,
        _ => Vec::new(),
    }
}

/// "customers[12]: …" → (12, "…").
fn poison_row(message: &str) -> Option<(usize, String)> {
    let start = message.find("customers[")? + "customers[".len();
    let rest = &message[start..];
    let end = rest.find(']')?;
    let index = rest[..end].parse().ok()?;
    let reason = rest[end + 1..].trim_start_matches(':').trim().to_string();
    Some((index, reason))
}

impl Target for Udesk {
    fn name(&self) -> &'static str {
        "udesk"
    }

    async fn lookup(&self, c: &Customer) -> Result<Option<String>, CallError> {
        let found = self.find(&c.external_id).await?;
        Ok(found.as_ref().map(own_id))
    }

    async fn create(&self, c: &Customer) -> Result<String, CallError> {
        let body = create_body(c, None);
        let reply = self
            .signed(
                reqwest::Method::POST,
                "/open_api_v1/customers",
                &[],
                Some(&body),
                Retry::NotIdempotent,
            )
            .await?;
        Ok(customer_id(&reply))
    }

    /// `DELETE /customers/destroy_customer?type=id&content=ID` (003:739-769); "not found"
    /// (code 2005, 003:1464) on the retry of an attempt that may have been applied is a
    /// success.
    async fn delete(&self, platform_id: &str) -> Result<(), CallError> {
        let query = [
            ("type", "id".to_string()),
            ("content", platform_id.to_string()),
        ];
        let (result, maybe_applied_before) = self
            .signed_noting(
                reqwest::Method::DELETE,
                "/open_api_v1/customers/destroy_customer",
                &query,
                None,
                Retry::Idempotent,
                false,
            )
            .await;
        super::deleted_unless_gone_before(result.map(|_| ()), maybe_applied_before)
    }

    async fn update(&self, c: &Customer) -> Result<String, CallError> {
        let query = [
            ("type", "token".to_string()),
            ("content", c.external_id.clone()),
        ];
        // The ids of the emails and phones the customer keeps come from its record: from
        // the survey when one ran, else from one lookup (which also answers "not found"
        // without a write).
        let held = if c.other_emails.is_empty() && c.phones.is_empty() {
            None
        } else {
            match self.held_record(&c.external_id) {
                Some(record) => Some(record),
                None => Some(
                    self.find(&c.external_id)
                        .await?
                        .ok_or(CallError::NotFound)?,
                ),
            }
        };
        let body = create_body(c, held.as_ref());
        let reply = self
            .signed(
                reqwest::Method::PUT,
                "/open_api_v1/customers/update_customer",
                &query,
                Some(&body),
                Retry::Idempotent,
            )
            .await?;
        Ok(customer_id(&reply))
    }

    fn bulk_rows(&self) -> usize {
        BULK_ROWS
    }

    async fn field_definitions(&self) -> Result<Option<FieldDefs>, CallError> {
        self.custom_fields().await.map(Some)
    }

    async fn bulk_create(&self, customers: &[&Customer]) -> Result<(), BulkError> {
        let body = json!({"customers": customers.iter().map(|c| bulk_row(c)).collect::<Vec<_>>()});
        match self
            .signed_noting(
                reqwest::Method::POST,
                "/open_api_v1/customers/batch_import_async",
                &[],
                Some(&body),
                Retry::NotIdempotent,
                true,
            )
            .await
            .0
        {
            Ok(_) => Ok(()),
            Err(CallError::Rejected { message }) | Err(CallError::Conflict { message, .. }) => {
                match poison_row(&message) {
                    Some((index, reason)) if index < customers.len() => Err(BulkError::Poison {
                        index,
                        message: reason,
                    }),
                    _ => Err(BulkError::Call(CallError::Rejected { message })),
                }
            }
            Err(e) => Err(BulkError::Call(e)),
        }
    }

    async fn confirm<'a>(
        &'a self,
        customers: &'a [&'a Customer],
    ) -> Result<HashMap<String, String>, CallError> {
        // An export pass costs one call per 1,000 customers on the platform, a lookup one
        // call per row: use whichever spends less of the budget.
        if customers.len() > 2 {
            let total = self.total_customers().await?;
            if total.div_ceil(EXPORT_BATCH) < customers.len() as u64 {
                let wanted: HashSet<&str> =
                    customers.iter().map(|c| c.external_id.as_str()).collect();
                return self.export_pass(&wanted).await;
            }
        }
        let mut found = HashMap::new();
        for c in customers {
            if let Some(id) = self.lookup(c).await? {
                found.insert(c.external_id.clone(), id);
            }
        }
        Ok(found)
    }

    async fn probe(&self) -> Result<Option<u64>, CallError> {
        Ok(Some(self.total_customers().await?).filter(|t| *t != u64::MAX))
    }

    async fn resolve(&self, c: &Customer) -> Result<Option<(String, bool)>, CallError> {
        let Some(record) = self.find(&c.external_id).await? else {
            return Ok(None);
        };
        let name = nick_name(c);
        let mut sent = vec![("nick_name", name.as_str())];
        if let Some(e) = &c.email {
            sent.push(("email", e.as_str()));
        }
        Ok(Some((
            own_id(&record),
            super::holds_what_was_sent(&record, &sent),
        )))
    }

    async fn survey(
        &self,
        rows: u64,
        total: Option<u64>,
        channels: bool,
    ) -> Result<Option<Survey>, CallError> {
        let (total, counting_call) = match total {
            Some(t) => (t, 0),
            None => (self.total_customers().await?, 1),
        };
        let pass = total.div_ceil(EXPORT_BATCH).max(1);
        // Worth it when the pass (and the export pass that confirms bulk rows later) costs
        // fewer calls than one lookup or write a row.
        if pass.saturating_mul(2) >= rows {
            return Ok(None);
        }
        let mut existing = HashMap::new();
        let mut held = HashMap::new();
        let mut addresses = HashSet::new();
        let calls = self
            .scroll_all(&ListFilter::default(), |c| {
                if channels {
                    let emails = c.get("email").and_then(Value::as_str).into_iter();
                    let others = held_pairs(c, "other_emails");
                    for e in emails.chain(others.iter().map(|(_, e)| e.as_str())) {
                        addresses.insert(channel_key(MatchKey::Email, e));
                    }
                    for (_, p) in held_pairs(c, "cellphones") {
                        addresses.insert(channel_key(MatchKey::Phone, &p));
                    }
                }
                if let Some(t) = c.get("open_api_token").and_then(Value::as_str) {
                    existing.insert(t.to_string(), own_id(c));
                    let emails = c.get("other_emails").and_then(Value::as_array);
                    let phones = c.get("cellphones").and_then(Value::as_array);
                    if emails.is_some_and(|e| !e.is_empty()) || phones.is_some_and(|p| !p.is_empty()) {
                        held.insert(
                            t.to_string(),
                            json!({"id": c.get("id"), "other_emails": emails, "cellphones": phones}),
                        );
                    }
                }
                true
            })
            .await?;
        *self.held.write().unwrap_or_else(|e| e.into_inner()) = held;
        Ok(Some(Survey {
            existing,
            platform_total: total,
            calls: calls + counting_call,
            channels: addresses,
        }))
    }

    /// `get_customer?type=email|cellphone` (003:151-167), which names one customer. A phone
    /// is asked for as the row has it (E.164) and then in its national forms, since every
    /// example holds national numbers (`13000000001`) and the documents do not say whether
    /// `+86…` finds them.
    async fn find_by(
        &self,
        key: MatchKey,
        value: &str,
        _customer: &Customer,
    ) -> Result<Vec<Holder>, CallError> {
        let (kind, forms) = match key {
            MatchKey::Email => ("email", vec![value.to_string()]),
            MatchKey::Phone => {
                let mut forms = vec![value.to_string()];
                forms.extend(crate::validate::phone::national_forms(value));
                ("cellphone", forms)
            }
        };
        for form in forms {
            let query = [("type", kind.to_string()), ("content", form)];
            match self
                .get("/open_api_v1/customers/get_customer", &query)
                .await
            {
                Ok(body) => {
                    let Some(record) = body.get("customer").filter(|c| c.is_object()) else {
                        continue;
                    };
                    let external_id = record
                        .get("open_api_token")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string);
                    return Ok(vec![Holder {
                        platform_id: own_id(record),
                        external_id,
                    }]);
                }
                Err(CallError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Vec::new())
    }

    /// `update_customer?type=id&content=ID` with only `open_api_token` in the customer
    /// (003:549-560: the body is the create's, every field optional on update).
    async fn link(&self, c: &Customer, platform_id: &str) -> Result<(), CallError> {
        let query = [
            ("type", "id".to_string()),
            ("content", platform_id.to_string()),
        ];
        let body = json!({"customer": {"open_api_token": c.external_id}});
        self.signed(
            reqwest::Method::PUT,
            "/open_api_v1/customers/update_customer",
            &query,
            Some(&body),
            Retry::Idempotent,
        )
        .await
        .map(|_| ())
    }

    fn describe_create(&self, c: &Customer) -> String {
        format!(
            "POST {}?email={}&timestamp=…&nonce=…&sign=<redacted>&sign_version=v2 (application/json)\n  {}\n",
            self.base.join("/open_api_v1/customers"),
            self.email,
            create_body(c, None)
        )
    }

    fn transport(&self) -> &Transport {
        &self.transport
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn customer() -> Customer {
        Customer {
            external_id: "U-1".into(),
            firstname: Some("Li".into()),
            lastname: Some("Wei".into()),
            email: Some("li@example.com".into()),
            other_emails: vec!["wei@example.com".into()],
            phones: vec!["+8613800000000".into()],
            level: Some("vip".into()),
            tags: vec!["a".into(), "b".into()],
            custom_fields: BTreeMap::from([
                ("TextField_1".to_string(), "x".to_string()),
                ("SelectField_2".to_string(), "1;3".to_string()),
            ]),
            ..Customer::default()
        }
    }

    #[test]
    fn create_body_follows_the_documented_shape() {
        let body = create_body(&customer(), None);
        assert_eq!(body["customer"]["nick_name"], "Li Wei");
        assert_eq!(body["customer"]["open_api_token"], "U-1");
        assert_eq!(
            body["customer"]["cellphones"],
            json!([[null, "+8613800000000"]])
        );
        assert_eq!(
            body["customer"]["custom_fields"]["SelectField_2"],
            json!(["1", "3"])
        );
        assert_eq!(body["customer"]["custom_fields"]["TextField_1"], "x");
        assert_eq!(body["other_emails"], json!([[null, "wei@example.com"]]));
        assert_eq!(body["tags"], "a,b");
    }

    #[test]
    fn an_update_sends_the_ids_of_the_addresses_the_customer_keeps() {
        let held = json!({"id": 9, "other_emails": [[3, "WEI@example.com"], [4, "old@example.com"]],
            "cellphones": [{"id": 7, "content": "13800000000"}]});
        let mut c = customer();
        c.other_emails.push("new@example.com".into());
        let body = create_body(&c, Some(&held));
        assert_eq!(
            body["other_emails"],
            json!([[3, "wei@example.com"], [null, "new@example.com"]])
        );
        assert_eq!(
            body["customer"]["cellphones"],
            json!([[7, "+8613800000000"]])
        );
    }

    #[test]
    fn held_lists_are_read_in_every_documented_shape() {
        let record =
            json!({"other_emails": [[3, "a@x.cn"], "b@x.cn", {"id": 5, "email": "c@x.cn"}, null]});
        assert_eq!(
            held_pairs(&record, "other_emails"),
            vec![
                (json!(3), "a@x.cn".to_string()),
                (Value::Null, "b@x.cn".to_string()),
                (json!(5), "c@x.cn".to_string())
            ]
        );
    }

    #[test]
    fn bulk_rows_use_plain_lists() {
        let row = bulk_row(&customer());
        assert_eq!(row["emails"], json!(["li@example.com", "wei@example.com"]));
        assert_eq!(row["cellphones"], json!(["+8613800000000"]));
        assert_eq!(row["level"], "vip");
    }

    #[test]
    fn signature_parameters() {
        let q = signed_query("a@b.c", "tok", 10, "n1");
        let get = |k: &str| q.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("sign"), Some(sign("a@b.c", "tok", 10, "n1")));
        assert_eq!(get("sign_version").as_deref(), Some("v2"));
        assert!(
            q.iter().all(|(_, v)| v != "tok"),
            "the token itself is never sent"
        );
    }

    #[test]
    fn replies_decode_into_kinds() {
        let h = HeaderMap::new();
        let b = |s: &str| Bytes::from(s.to_string());
        assert!(decode(
            StatusCode::OK,
            &h,
            &b(r#"{"code":1000,"customer":{"id":3}}"#)
        )
        .is_ok());
        assert!(matches!(
            decode(StatusCode::OK, &h, &b(r#"{"code":429}"#)),
            Err(CallError::Throttled { .. })
        ));
        assert!(matches!(
            decode(StatusCode::TOO_MANY_REQUESTS, &h, &b(r#"{"code":429}"#)),
            Err(CallError::Throttled { .. })
        ));
        assert_eq!(
            decode(StatusCode::OK, &h, &b(r#"{"code":2005,"message":"x"}"#)),
            Err(CallError::NotFound)
        );
        assert!(matches!(
            decode(
                StatusCode::UNAUTHORIZED,
                &h,
                &b(r#"{"code":2059,"message":"bad"}"#)
            ),
            Err(CallError::Auth { .. })
        ));
        assert_eq!(
            decode(
                StatusCode::OK,
                &h,
                &b(
                    r#"{"code":2000,"message":"Parameter error","exception":{"message":"open_api_token duplicate: customer id = 77"}}"#
                )
            ),
            Err(CallError::Conflict {
                platform_id: Some("77".into()),
                message: "Parameter error: open_api_token duplicate: customer id = 77".into()
            })
        );
        assert!(matches!(
            decode(StatusCode::OK, &h, &b(r#"{"code":2000,"message":"Parameter error","exception":"Email is invalid"}"#)),
            Err(CallError::Rejected { message }) if message.contains("Email is invalid")
        ));
        assert!(matches!(
            decode(StatusCode::BAD_GATEWAY, &h, &b("<html>")),
            Err(CallError::Unavailable { .. })
        ));
    }

    #[test]
    fn poison_rows_are_found_in_the_message() {
        assert_eq!(
            poison_row("Parameter error: customers[7]: Verification failed: Email is invalid"),
            Some((7, "Verification failed: Email is invalid".into()))
        );
        assert_eq!(poison_row("Import data is empty"), None);
    }
}
