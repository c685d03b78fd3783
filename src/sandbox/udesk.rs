//! Udesk open API v1 customer endpoints, as the documents in `shared/seeds/` describe them.

use super::fields::AccountFields;
use super::store::{UdeskCustomer, UdeskStore};
use super::{Data, ScrollReplay, Shared};
use crate::platform::udesk_sign::{self as auth, sign};
use crate::validate::email;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most rows in one bulk import.
pub const MAX_IMPORT_ROWS: usize = crate::platform::documented::UDESK_BULK_MAX_ROWS;
/// Most customers in one export call.
pub const EXPORT_BATCH: usize = crate::platform::documented::UDESK_EXPORT_BATCH as usize;
/// Largest `page_size`.
pub const MAX_PAGE_SIZE: u64 = crate::platform::documented::UDESK_LIST_MAX_PAGE_SIZE;
/// Most rows the page list reaches (`page × page_size`).
pub const MAX_LIST_ROWS: u64 = crate::platform::documented::UDESK_LIST_MAX_ROWS;
/// Longest text field.
pub const MAX_CHARS: usize = crate::platform::documented::UDESK_MAX_CHARS;

type SharedState = State<Arc<Shared>>;
type JsonObject = Map<String, Value>;
type QueryMap = Query<HashMap<String, String>>;

/// A live export scroll: a snapshot of ids and where the next call starts.
#[derive(Debug, Clone)]
pub struct Scroll {
    ids: Arc<Vec<u64>>,
    position: usize,
    issued_at: Duration,
}

/// An accepted bulk import waiting to be applied.
#[derive(Debug, Clone)]
pub struct PendingImport {
    /// When (platform time) it is applied.
    pub apply_at: Duration,
    /// The validated rows.
    pub rows: Vec<UdeskCustomer>,
    /// Rows accepted unchecked (profile without `udesk_bulk_validates`): checked when the
    /// import is applied, and dropped silently when invalid.
    pub unchecked: Vec<Value>,
    /// The account's custom fields when the import was accepted.
    pub fields: Arc<AccountFields>,
}

/// The routes (lower-case; requests are lower-cased before routing).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/open_api_v1/log_in", post(log_in))
        .route("/open_api_v1/customers", get(list).post(create))
        .route("/open_api_v1/customers/get_customer", get(get_customer))
        .route(
            "/open_api_v1/customers/update_customer",
            put(update_customer),
        )
        .route(
            "/open_api_v1/customers/destroy_customer",
            delete(destroy_customer),
        )
        .route("/open_api_v1/customers/export", get(export))
        .route(
            "/open_api_v1/customers/batch_import_async",
            post(batch_import),
        )
        .route("/open_api_v1/customers/filters", get(filters))
        .route("/open_api_v1/customers/custom_fields", get(custom_fields))
        .route("/open_api_v1/customers/merge", post(merge))
}

/// An error reply: `{"code", "message", "exception": {"message"}}`.
fn reply_error(
    status: StatusCode,
    code: i64,
    message: &str,
    exception: Option<String>,
) -> Response {
    let exception = exception.map_or(Value::Null, |m| json!({"message": m}));
    (
        status,
        Json(json!({"code": code, "message": message, "exception": exception})),
    )
        .into_response()
}

/// Code 2062: "The {filter_id} or {scroll_id} parameter is incorrect" (003:1466).
fn bad_scroll() -> Response {
    reply_error(
        StatusCode::OK,
        auth::CODE_BAD_SCROLL,
        "Parameter error",
        Some("Failed to get customer information".into()),
    )
}

/// A validation failure: code 2000 with the detail.
fn invalid(detail: impl Into<String>) -> Response {
    reply_error(
        StatusCode::OK,
        auth::CODE_ERROR,
        "Unknown error",
        Some(detail.into()),
    )
}

fn ok(mut body: Value) -> Response {
    body["code"] = json!(auth::CODE_OK);
    Json(body).into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the v2 signature, the timestamp window and nonce reuse; applies due bulk imports.
fn authorize(shared: &Shared, q: &HashMap<String, String>) -> Result<(), Response> {
    let documented = shared.profile().udesk_auth_documented;
    let unauthorized = |code, message: &str| {
        if documented {
            reply_error(StatusCode::UNAUTHORIZED, code, message, None)
        } else {
            // The documents list no refusal for bad credentials: HTTP 200, a code of its own.
            reply_error(StatusCode::OK, 2099, "Permission denied", None)
        }
    };
    let (Some(email), Some(timestamp), Some(nonce), Some(signature)) = (
        q.get("email"),
        q.get("timestamp"),
        q.get("nonce"),
        q.get("sign"),
    ) else {
        return Err(unauthorized(
            auth::CODE_MISSING_AUTH,
            "Missing email, timestamp, nonce or sign",
        ));
    };
    if q.get("sign_version").map(String::as_str) != Some(auth::SIGN_VERSION) {
        return Err(unauthorized(
            auth::CODE_BAD_SIGN_VERSION,
            "sign_version must be v2",
        ));
    }
    let Ok(timestamp) = timestamp.parse::<u64>() else {
        return Err(unauthorized(
            auth::CODE_MISSING_AUTH,
            "timestamp must be Unix seconds",
        ));
    };
    if unix_now().abs_diff(timestamp) > auth::TIMESTAMP_WINDOW.as_secs() {
        return Err(unauthorized(
            auth::CODE_STALE_TIMESTAMP,
            "timestamp is more than 300 seconds from the server's clock",
        ));
    }
    let expected = sign(
        &shared.config.udesk_email,
        &shared.config.udesk_token,
        timestamp,
        nonce,
    );
    if *email != shared.config.udesk_email || !signature.eq_ignore_ascii_case(&expected) {
        return Err(unauthorized(
            auth::CODE_BAD_SIGNATURE,
            "Signature verification failed",
        ));
    }
    let now = shared.clock.now();
    let mut data = shared.data();
    if let Some(used) = data.nonces.get(nonce) {
        if now.saturating_sub(*used) < auth::NONCE_TTL {
            return Err(unauthorized(
                auth::CODE_NONCE_REUSED,
                "nonce was already used",
            ));
        }
    }
    if data.nonces.len() > 10_000 {
        data.nonces
            .retain(|_, used| now.saturating_sub(*used) < auth::NONCE_TTL);
    }
    data.nonces.insert(nonce.clone(), now);
    apply_due_imports(&mut data, now);
    Ok(())
}

/// Applies every accepted bulk import whose time has come; colliding rows are skipped and listed.
pub fn apply_due_imports(data: &mut Data, now: Duration) {
    let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut data.pending_imports)
        .into_iter()
        .partition(|p| p.apply_at <= now);
    data.pending_imports = waiting;
    for import in due {
        let mut rows = import.rows;
        for raw in import.unchecked {
            match import_row(&raw, &mut data.udesk, &import.fields) {
                Ok(row) => rows.push(row),
                Err(reason) => data
                    .import_skips
                    .push(json!({"open_api_token": raw.get("open_api_token"), "reason": reason})),
            }
        }
        for mut row in rows {
            if let Some(reason) = collision(&data.udesk, &row, None) {
                data.import_skips
                    .push(json!({"open_api_token": row.open_api_token, "reason": reason}));
                continue;
            }
            row.id = data.udesk.next_id();
            for phone in &mut row.cellphones {
                phone.0 = data.udesk.next_phone_id();
            }
            data.udesk.put(row);
        }
    }
}

/// The first uniqueness rule a customer breaks against the store (ignoring `own` id).
fn collision(store: &UdeskStore, c: &UdeskCustomer, own: Option<u64>) -> Option<String> {
    let other = |id: Option<&u64>| id.copied().filter(|id| Some(*id) != own);
    for e in c.emails() {
        if let Some(id) = other(store.by_email.get(&e.to_lowercase())) {
            return Some(format!("Email duplicate: customer id = {id}"));
        }
    }
    for (_, p) in &c.cellphones {
        if other(store.by_phone.get(p)).is_some() {
            return Some(format!("Verification failed: Phone {p} has been used"));
        }
    }
    if let Some(t) = &c.web_token {
        if other(store.by_web_token.get(t)).is_some() {
            return Some(format!("web_token duplicate: {t}"));
        }
    }
    for (key, what) in [
        ("weixins", "WeChat information"),
        ("weixin_minis", "WeChat Mini Program information"),
    ] {
        for binding in bindings(c, key) {
            let holder = store.order.iter().copied().find(|id| {
                Some(*id) != own
                    && bindings(&store.customers[id], key).any(|b| same_binding(b, binding, key))
            });
            if let Some(id) = holder {
                return Some(format!(
                    "{what} (appid: {}, openid: {}) already exists in customer (id: {id})",
                    binding["appid"].as_str().unwrap_or_default(),
                    binding["openid"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    if let Some(t) = &c.open_api_token {
        if let Some(id) = other(store.by_token.get(t)) {
            return Some(format!("open_api_token duplicate: customer id = {id}"));
        }
    }
    None
}

fn bindings<'a>(c: &'a UdeskCustomer, key: &str) -> std::slice::Iter<'a, Value> {
    match key {
        "weixins" => c.weixins.iter(),
        "weixin_minis" => c.weixin_minis.iter(),
        _ => c.weixin_works.iter(),
    }
}

/// Whether two bindings name the same account: (appid, openid) for WeChat and Mini
/// Programs, (corpid, userid) for Enterprise WeChat.
fn same_binding(a: &Value, b: &Value, key: &str) -> bool {
    let keys: [&str; 2] = if key == "weixin_works" {
        ["corpid", "userid"]
    } else {
        ["appid", "openid"]
    };
    keys.iter().all(|k| a.get(*k) == b.get(*k))
}

fn tag_id(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes()) % 1_000_000 + 1
}

/// The documented Customer Data shape.
pub fn customer_json(c: &UdeskCustomer) -> Value {
    json!({
        "id": c.id,
        "nick_name": c.nick_name,
        "level": c.level,
        "description": c.description,
        "owner_id": c.owner_id,
        "owner_group_id": c.owner_group_id,
        "custom_fields": c.custom_fields,
        "open_api_token": c.open_api_token,
        "organization_id": c.organization_id,
        "is_blocked": c.is_blocked,
        "web_token": c.web_token,
        "sdk_token": c.sdk_token,
        "tags": c.tags.iter().map(|t| json!({"id": tag_id(t), "name": t, "company_id": 1})).collect::<Vec<_>>(),
        "rich_tags": [],
        "first_contact_at": null,
        "last_contact_at": null,
        "email": c.email,
        "other_emails": c.other_emails.iter().map(|(id, e)| json!([id, e])).collect::<Vec<_>>(),
        "cellphones": c.cellphones.iter().map(|(id, content)| json!({"id": id, "content": content})).collect::<Vec<_>>(),
        "platform": "api",
        "source_channel": c.source_channel,
        "weixins": c.weixins,
        "weixin_minis": c.weixin_minis,
        "weixin_works": c.weixin_works,
    })
}

fn text(value: &Value, field: &str) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() > MAX_CHARS => Err(format!(
            "{field} is too long (maximum is {MAX_CHARS} characters)"
        )),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("{field} must be a string")),
    }
}

fn check_email(value: &str) -> Result<String, String> {
    email::normalize(value).map_err(|_| "Verification failed: Email is invalid".to_string())
}

fn check_phone(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= 30
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || "+ -()".contains(c));
    if ok {
        Ok(value.to_string())
    } else {
        Err(format!("Verification failed: Phone {value} is invalid"))
    }
}

const CUSTOMER_KEYS: [&str; 16] = [
    "email",
    "open_api_token",
    "nick_name",
    "organization_id",
    "description",
    "owner_id",
    "owner_group_id",
    "level",
    "is_blocked",
    "cellphones",
    "weixins",
    "weixin_minis",
    "weixin_works",
    "custom_fields",
    "web_token",
    "sdk_token",
];

/// The tenant's agents as (owner_id, owner_group_id): the examples' owner 1 in group 1
/// (003:395-396), and two more.
pub const AGENTS: [(u64, u64); 3] = [(1, 1), (2, 1), (3, 2)];
/// The tenant's customer companies (`organization_id`).
pub const ORGANIZATIONS: [u64; 2] = [1, 2];

/// `owner_id` and `owner_group_id` as the error table (003:1450-1454) checks them.
fn check_owner(owner: Option<u64>, group: Option<u64>) -> Result<(), String> {
    match (owner, group) {
        (None, None) => Ok(()),
        (Some(o), _) if !AGENTS.iter().any(|(a, _)| *a == o) => {
            Err("Cannot find customer service".into())
        }
        (_, Some(g)) if !AGENTS.iter().any(|(_, ag)| *ag == g) => {
            Err("Company does not have this customer service group".into())
        }
        (Some(_), None) => {
            Err("Customer service exists but customer service group does not exist".into())
        }
        (Some(o), Some(g)) if !AGENTS.contains(&(o, g)) => {
            Err("Customer service does not belong to this customer service group".into())
        }
        _ => Ok(()),
    }
}

fn id_field(value: &Value, field: &str) -> Result<Option<u64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("Incorrect parameter format: {field}")),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("Incorrect parameter format: {field}")),
        _ => Err(format!("Incorrect parameter format: {field}")),
    }
}

/// Applies a list of bindings: `action` `new` (or none, as bulk rows send them) adds one the
/// customer does not have yet, `delete` removes it (nothing when it is not there).
fn apply_bindings(list: &mut Vec<Value>, value: &Value, key: &str) -> Result<(), String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "Incorrect parameter format: {key} must be an array"
        ));
    };
    for item in items {
        let Value::Object(o) = item else {
            return Err(format!("Incorrect parameter format: {key}"));
        };
        let mut binding = o.clone();
        let action = binding.remove("action");
        let binding = Value::Object(binding);
        match action.as_ref().and_then(Value::as_str).unwrap_or("new") {
            "new" => {
                if !list.iter().any(|b| same_binding(b, &binding, key)) {
                    list.push(binding);
                }
            }
            "delete" => list.retain(|b| !same_binding(b, &binding, key)),
            other => return Err(format!("Incorrect parameter format: {key} action {other}")),
        }
    }
    Ok(())
}

/// Applies a create/update body onto `c`. `top` holds the top-level `other_emails`/`tags`.
fn apply_customer(
    c: &mut UdeskCustomer,
    body: &Map<String, Value>,
    top: &Map<String, Value>,
    store: &mut UdeskStore,
    fields: &AccountFields,
) -> Result<(), String> {
    for key in body.keys() {
        if !CUSTOMER_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "Incorrect parameter format: unknown attribute {key}"
            ));
        }
    }
    let owner = match body.get("owner_id") {
        Some(v) => id_field(v, "owner_id")?,
        None => c.owner_id,
    };
    let group = match body.get("owner_group_id") {
        Some(v) => id_field(v, "owner_group_id")?,
        None => c.owner_group_id,
    };
    check_owner(owner, group)?;
    (c.owner_id, c.owner_group_id) = (owner, group);
    if let Some(v) = body.get("organization_id") {
        let org = id_field(v, "organization_id")?;
        if org.is_some_and(|o| !ORGANIZATIONS.contains(&o)) {
            return Err("Company id does not exist".into());
        }
        c.organization_id = org;
    }
    if let Some(v) = body.get("is_blocked") {
        c.is_blocked = v
            .as_bool()
            .ok_or("Incorrect parameter format: is_blocked is true or false")?;
    }
    if let Some(v) = body.get("weixins") {
        apply_bindings(&mut c.weixins, v, "weixins")?;
    }
    if let Some(v) = body.get("weixin_minis") {
        apply_bindings(&mut c.weixin_minis, v, "weixin_minis")?;
    }
    if let Some(v) = body.get("weixin_works") {
        apply_bindings(&mut c.weixin_works, v, "weixin_works")?;
    }
    if let Some(v) = body.get("sdk_token") {
        c.sdk_token = text(v, "sdk_token")?;
    }
    if let Some(v) = body.get("nick_name") {
        match text(v, "nick_name")? {
            Some(n) if !n.trim().is_empty() => c.nick_name = n,
            _ => return Err("Verification failed: Nick name can't be blank".into()),
        }
    }
    if let Some(v) = body.get("email") {
        c.email = text(v, "email")?.map(|e| check_email(&e)).transpose()?;
    }
    if let Some(v) = body.get("open_api_token") {
        c.open_api_token = text(v, "open_api_token")?;
    }
    if let Some(v) = body.get("description") {
        c.description = text(v, "description")?;
    }
    if let Some(v) = body.get("web_token") {
        let token = match v {
            Value::Null => None,
            Value::String(t) => Some(t.clone()),
            _ => return Err("web_token must be a string".into()),
        };
        if let Some(t) = &token {
            if t.chars().count() > MAX_CHARS
                || !t
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "@.-_".contains(ch))
            {
                return Err(format!("web_token format error: {t}"));
            }
        }
        c.web_token = token;
    }
    if let Some(v) = body.get("level") {
        let level = v.as_str().unwrap_or_default();
        if level != "normal" && level != "vip" {
            return Err(format!("'{level}' is not a valid level"));
        }
        c.level = level.to_string();
    }
    // A customer without an id is being created: required fields must come with it.
    let creating = c.id == 0;
    let given = body.get("custom_fields");
    if given.is_some() || creating {
        fields.check(given.unwrap_or(&Value::Null), creating)?;
    }
    if let Some(Value::Object(map)) = given {
        for (k, val) in map {
            c.custom_fields.insert(k.clone(), val.clone());
        }
    }
    if let Some(v) = body.get("cellphones") {
        let Value::Array(items) = v else {
            return Err("Incorrect parameter format: cellphones must be an array".into());
        };
        for item in items {
            let pair = item.as_array().filter(|p| p.len() == 2);
            let Some(pair) = pair else {
                return Err(
                    "Incorrect parameter format: each cellphone is [phone_id, phone_text]".into(),
                );
            };
            let number = check_phone(pair[1].as_str().unwrap_or_default())?;
            match &pair[0] {
                Value::Null => {
                    if !c.cellphones.iter().any(|(_, p)| *p == number) {
                        c.cellphones.push((store.next_phone_id(), number));
                    }
                }
                Value::Number(n) => {
                    let id = n.as_u64().unwrap_or(0);
                    // An id the customer does not hold is taken as a new phone: the
                    // documents do not say it is an error.
                    let held = c.cellphones.iter().position(|(pid, _)| *pid == id);
                    match held {
                        Some(i) => c.cellphones[i].1 = number,
                        None if c.cellphones.iter().any(|(_, p)| *p == number) => {}
                        None => c.cellphones.push((store.next_phone_id(), number)),
                    }
                }
                _ => {
                    return Err(
                        "Incorrect parameter format: phone_id must be null or a number".into(),
                    )
                }
            }
        }
    }
    if let Some(v) = top.get("other_emails") {
        let Value::Array(items) = v else {
            return Err("Incorrect parameter format: other_emails must be an array".into());
        };
        // `[id, email]` pairs (003:441-444, 633-635): null for a new address, the id of one
        // the customer keeps. The list given is the customer's other emails from now on.
        let mut emails: Vec<(u64, String)> = Vec::with_capacity(items.len());
        for item in items {
            let pair = item.as_array().filter(|p| p.len() == 2);
            let Some(pair) = pair else {
                return Err(
                    "Incorrect parameter format: each of other_emails is [email_id, email]".into(),
                );
            };
            let address = match &pair[1] {
                Value::String(e) => check_email(e)?,
                _ => return Err("Incorrect parameter format: other_emails".into()),
            };
            if emails.iter().any(|(_, e)| e.eq_ignore_ascii_case(&address)) {
                continue;
            }
            let kept = match &pair[0] {
                Value::Null => None,
                Value::Number(n) => n
                    .as_u64()
                    .filter(|id| c.other_emails.iter().any(|(own, _)| own == id)),
                _ => {
                    return Err(
                        "Incorrect parameter format: email_id must be null or a number".into(),
                    )
                }
            };
            let id = kept.unwrap_or_else(|| store.next_email_id());
            emails.push((id, address));
        }
        c.other_emails = emails;
    }
    if let Some(v) = top.get("tags") {
        let tags = text(v, "tags")?.unwrap_or_default();
        c.tags = tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
    }
    Ok(())
}

fn empty_customer(source: &str) -> UdeskCustomer {
    UdeskCustomer::empty(source)
}

/// Auth, JSON parsing and the body's shape, shared by create and update: returns the
/// `customer` object and the top level (`other_emails`, `tags`).
fn customer_request(
    shared: &Shared,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Result<(JsonObject, JsonObject), Response> {
    authorize(shared, q)?;
    let Value::Object(mut top) = parse_json(body)? else {
        return Err(invalid("Incorrect parameter format"));
    };
    if let Some(key) = top
        .keys()
        .find(|k| !["customer", "other_emails", "tags"].contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "Incorrect parameter format: unknown parameter {key}"
        )));
    }
    match top.remove("customer") {
        Some(Value::Object(customer)) if !customer.is_empty() => Ok((customer, top)),
        _ => Err(invalid("param is missing or the value is empty: customer")),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|_| invalid("Incorrect parameter format"))
}

async fn log_in(State(shared): SharedState, body: axum::body::Bytes) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return invalid("Incorrect parameter format");
    };
    let email = value.get("email").and_then(Value::as_str);
    let password = value.get("password").and_then(Value::as_str);
    if email == Some(shared.config.udesk_email.as_str())
        && password == Some(shared.config.udesk_password.as_str())
    {
        ok(json!({"open_api_auth_token": shared.config.udesk_token}))
    } else {
        reply_error(
            StatusCode::UNAUTHORIZED,
            auth::CODE_BAD_SIGNATURE,
            "Invalid email or password",
            None,
        )
    }
}

async fn create(
    State(shared): SharedState,
    Query(q): QueryMap,
    body: axum::body::Bytes,
) -> Response {
    let (customer_body, top) = match customer_request(&shared, &q, &body) {
        Ok(parts) => parts,
        Err(r) => return r,
    };
    if !customer_body.contains_key("nick_name") {
        return invalid("Verification failed: Nick name can't be blank");
    }
    let fields = shared.udesk_fields();
    let mut data = shared.data();
    let store = &mut data.udesk;
    let mut customer = empty_customer("api");
    if let Err(e) = apply_customer(&mut customer, &customer_body, &top, store, &fields) {
        return invalid(e);
    }
    if let Some(reason) = collision(store, &customer, None) {
        return invalid(reason);
    }
    customer.id = store.next_id();
    let reply = customer_json(&customer);
    store.put(customer);
    ok(json!({"customer": reply}))
}

/// Finds the customer named by `type` and `content`.
fn lookup(store: &UdeskStore, q: &HashMap<String, String>) -> Result<u64, Response> {
    let kinds = [
        "id",
        "email",
        "cellphone",
        "token",
        "weixin_open_id",
        "weixin_mini_openid",
        "weixin_work_identifier",
        "weibo_id",
        "sdk_token",
        "web_token",
    ];
    let Some(kind) = q.get("type").filter(|t| kinds.contains(&t.as_str())) else {
        return Err(reply_error(
            StatusCode::OK,
            auth::CODE_BAD_TYPE,
            "Invalid unique identifier type",
            Some("Invalid unique identifier type".into()),
        ));
    };
    let content = q.get("content").map(String::as_str).unwrap_or("");
    store.find(kind, content).ok_or_else(|| {
        reply_error(
            StatusCode::OK,
            auth::CODE_NOT_FOUND,
            "The resource was not found",
            Some("Couldn't find Customer".into()),
        )
    })
}

async fn get_customer(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let data = shared.data();
    match lookup(&data.udesk, &q) {
        Ok(id) => ok(json!({"customer": customer_json(&data.udesk.customers[&id])})),
        Err(r) => r,
    }
}

async fn update_customer(
    State(shared): SharedState,
    Query(q): QueryMap,
    body: axum::body::Bytes,
) -> Response {
    let (customer_body, top) = match customer_request(&shared, &q, &body) {
        Ok(parts) => parts,
        Err(r) => return r,
    };
    let fields = shared.udesk_fields();
    let mut data = shared.data();
    let store = &mut data.udesk;
    let id = match lookup(store, &q) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let mut customer = store.customers[&id].clone();
    if let Err(e) = apply_customer(&mut customer, &customer_body, &top, store, &fields) {
        return invalid(e);
    }
    if let Some(reason) = collision(store, &customer, Some(id)) {
        return invalid(reason);
    }
    let reply = customer_json(&customer);
    store.put(customer);
    ok(json!({"customer": reply}))
}

async fn destroy_customer(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let mut data = shared.data();
    match lookup(&data.udesk, &q) {
        Ok(id) => {
            data.udesk.remove(id);
            ok(json!({"customer_id": id}))
        }
        Err(r) => r,
    }
}

/// Ids matching `filter_id` / `query`, in id order.
fn matching_ids(store: &UdeskStore, q: &HashMap<String, String>) -> Result<Vec<u64>, Response> {
    let filter = match q.get("filter_id") {
        None => None,
        Some(f) => match f.parse::<u64>() {
            Ok(id @ (1 | 2)) => Some(id),
            _ => return Err(bad_scroll()),
        },
    };
    let query = q
        .get("query")
        .map(|s| s.to_lowercase())
        .filter(|s| !s.is_empty());
    Ok(store
        .order
        .iter()
        .filter(|id| {
            let c = &store.customers[*id];
            let by_filter = filter != Some(2) || c.level == "vip";
            let by_query = query.as_ref().is_none_or(|needle| {
                c.nick_name.to_lowercase().contains(needle)
                    || c.email
                        .as_ref()
                        .is_some_and(|e| e.to_lowercase().contains(needle))
                    || c.open_api_token
                        .as_ref()
                        .is_some_and(|t| t.to_lowercase().contains(needle))
                    || c.cellphones
                        .iter()
                        .any(|(_, p)| p.contains(needle.as_str()))
            });
            by_filter && by_query
        })
        .copied()
        .collect())
}

async fn list(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let page = match q.get("page").map(|p| p.parse::<u64>()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => {
            return reply_error(
                StatusCode::OK,
                auth::CODE_BAD_PAGE,
                "Parameter page is invalid",
                None,
            )
        }
    };
    let page_size = match q.get("page_size").map(|p| p.parse::<u64>()) {
        None => 20,
        Some(Ok(s)) if (1..=MAX_PAGE_SIZE).contains(&s) => s,
        _ => {
            return reply_error(
                StatusCode::OK,
                auth::CODE_BAD_PAGE_SIZE,
                "Parameter page_size is invalid",
                None,
            )
        }
    };
    if page * page_size > MAX_LIST_ROWS {
        return reply_error(
            StatusCode::OK,
            auth::CODE_BAD_PAGE,
            "Parameter page is invalid",
            None,
        );
    }
    let data = shared.data();
    let ids = match matching_ids(&data.udesk, &q) {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let total = ids.len() as u64;
    let customers: Vec<Value> = ids
        .iter()
        .skip(((page - 1) * page_size) as usize)
        .take(page_size as usize)
        .map(|id| customer_json(&data.udesk.customers[id]))
        .collect();
    ok(json!({
        "meta": {"current_page": page, "total_pages": total.div_ceil(page_size), "total_count": total},
        "customers": customers,
        "wechat": [],
        "weibo": [],
    }))
}

async fn export(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let now = shared.clock.now();
    let ttl = shared.config.scroll_ttl;
    let mut data = shared.data();
    let replay = shared.profile().udesk_scroll_replay;
    let scroll = match q.get("scroll_id") {
        Some(id) => {
            // An Elasticsearch scroll id moves on with each call: sent again, the next
            // batch. Otherwise an id works once.
            let found = match replay {
                ScrollReplay::NextBatch => data.scrolls.get(id).cloned(),
                ScrollReplay::Refused => data.scrolls.remove(id),
            };
            match found {
                Some(s) if now.saturating_sub(s.issued_at) <= ttl => s,
                _ => return bad_scroll(),
            }
        }
        None => match matching_ids(&data.udesk, &q) {
            Ok(ids) => Scroll {
                ids: Arc::new(ids),
                position: 0,
                issued_at: now,
            },
            Err(r) => return r,
        },
    };
    let end = (scroll.position + EXPORT_BATCH).min(scroll.ids.len());
    let customers: Vec<Value> = scroll.ids[scroll.position..end]
        .iter()
        .filter_map(|id| data.udesk.customers.get(id))
        .map(customer_json)
        .collect();
    data.scroll_counter += 1;
    let scroll_id = format!(
        "DnF1ZXJ5{:016x}{:08x}",
        data.scroll_counter, shared.config.seed as u32
    );
    let total = scroll.ids.len();
    data.scrolls
        .retain(|_, s| now.saturating_sub(s.issued_at) <= ttl);
    if replay == ScrollReplay::NextBatch {
        // Every id of the chain points at the chain's new position.
        for s in data.scrolls.values_mut() {
            if Arc::ptr_eq(&s.ids, &scroll.ids) {
                s.position = end;
                s.issued_at = now;
            }
        }
    }
    data.scrolls.insert(
        scroll_id.clone(),
        Scroll {
            ids: scroll.ids,
            position: end,
            issued_at: now,
        },
    );
    ok(json!({"scroll_id": scroll_id, "total": total, "customers": customers}))
}

/// Validates one bulk-import row into a customer (ids are given when it is applied).
fn import_row(
    row: &Value,
    store: &mut UdeskStore,
    fields: &AccountFields,
) -> Result<UdeskCustomer, String> {
    let Some(obj) = row.as_object() else {
        return Err("Incorrect parameter format".into());
    };
    let allowed = [
        "nick_name",
        "description",
        "emails",
        "cellphones",
        "organization_id",
        "owner_id",
        "owner_group_id",
        "level",
        "custom_fields",
        "tags",
        "open_api_token",
        "weixins",
        "weixin_minis",
    ];
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(format!(
                "Incorrect parameter format: unknown attribute {key}"
            ));
        }
    }
    let mut customer_body = Map::new();
    let mut top = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "emails" => {
                let emails = v
                    .as_array()
                    .ok_or("Incorrect parameter format: emails must be an array")?;
                if let Some(first) = emails.first() {
                    customer_body.insert("email".into(), first.clone());
                }
                top.insert(
                    "other_emails".into(),
                    Value::Array(emails.iter().skip(1).map(|e| json!([null, e])).collect()),
                );
            }
            "cellphones" => {
                let phones = v
                    .as_array()
                    .ok_or("Incorrect parameter format: cellphones must be an array")?;
                customer_body.insert(
                    "cellphones".into(),
                    Value::Array(phones.iter().map(|p| json!([null, p])).collect()),
                );
            }
            "tags" => {
                top.insert("tags".into(), v.clone());
            }
            _ => {
                customer_body.insert(k.clone(), v.clone());
            }
        }
    }
    if !customer_body.contains_key("nick_name") {
        return Err("Verification failed: Nick name can't be blank".into());
    }
    let mut customer = empty_customer("import");
    apply_customer(&mut customer, &customer_body, &top, store, fields)?;
    Ok(customer)
}

async fn batch_import(
    State(shared): SharedState,
    Query(q): QueryMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let value = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let rows = match value.get("customers") {
        Some(Value::Array(rows)) => rows,
        _ => return invalid("undefined method `each_with_index' for nil:NilClass"),
    };
    if rows.is_empty() {
        return invalid("Import data is empty");
    }
    if rows.len() > MAX_IMPORT_ROWS {
        return invalid(format!(
            "Import quantity ({}) cannot exceed {MAX_IMPORT_ROWS}",
            rows.len()
        ));
    }
    let now = shared.clock.now();
    let fields = shared.udesk_fields();
    let mut data = shared.data();
    if let Some(last) = data.last_bulk_import {
        let wait = shared
            .config
            .bulk_import_interval
            .saturating_sub(now.saturating_sub(last));
        if !wait.is_zero() {
            shared
                .stats
                .rate_limited
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return super::rate_limited(&shared, super::Platform::Udesk, wait);
        }
    }
    if !shared.profile().udesk_bulk_validates {
        // Code 1000 "only indicates that the import data has been successfully received"
        // (003:1131): rows are checked when the import is applied.
        data.last_bulk_import = Some(now);
        data.pending_imports.push(PendingImport {
            apply_at: now + shared.config.bulk_import_delay,
            rows: Vec::new(),
            unchecked: rows.clone(),
            fields,
        });
        return ok(json!({}));
    }
    let mut accepted: Vec<UdeskCustomer> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let customer = match import_row(row, &mut data.udesk, &fields) {
            Ok(c) => c,
            Err(e) => return invalid(format!("customers[{i}]: {e}")),
        };
        // Collisions with the store, with pending imports, and within this call.
        let mut probe = UdeskStore::default();
        for c in data
            .pending_imports
            .iter()
            .flat_map(|p| &p.rows)
            .chain(&accepted)
        {
            probe.put(UdeskCustomer {
                id: u64::MAX - probe.order.len() as u64,
                ..c.clone()
            });
        }
        if let Some(reason) =
            collision(&data.udesk, &customer, None).or_else(|| collision(&probe, &customer, None))
        {
            return invalid(format!("customers[{i}]: {reason}"));
        }
        accepted.push(customer);
    }
    data.last_bulk_import = Some(now);
    data.pending_imports.push(PendingImport {
        apply_at: now + shared.config.bulk_import_delay,
        rows: accepted,
        unchecked: Vec::new(),
        fields,
    });
    ok(json!({}))
}

async fn filters(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    ok(json!({"customer_filters": [
        {"id": 1, "name": "All customers", "conditions": [], "active": true},
        {"id": 2, "name": "VIP customers", "conditions": [{"field": "level", "operation": "is", "value": "vip"}], "active": true},
    ]}))
}

async fn custom_fields(State(shared): SharedState, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    if !shared.profile().udesk_fields_endpoint {
        // The document marks the endpoint deprecated: an account may no longer answer it.
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    ok(json!({"custom_fields": shared.udesk_fields().reply()}))
}

async fn merge(
    State(shared): SharedState,
    Query(q): QueryMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = authorize(&shared, &q) {
        return r;
    }
    let from_body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let param = |name: &str| -> Option<String> {
        q.get(name).cloned().or_else(|| {
            from_body
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };
    let kinds = [
        "email",
        "cellphone",
        "customer_token",
        "weixin_openid",
        "weibo_openid",
        "sdk_token",
        "web_token",
        "weixin_mini_openid",
    ];
    let mut data = shared.data();
    let store = &mut data.udesk;
    let find = |side: &str| -> Result<u64, Response> {
        let kind = param(&format!("{side}_type")).filter(|k| kinds.contains(&k.as_str()));
        let Some(kind) = kind else {
            return Err(invalid("Invalid unique identifier type"));
        };
        let content = param(&format!("{side}_content")).unwrap_or_default();
        store.find(&kind, &content).ok_or_else(|| {
            reply_error(
                StatusCode::OK,
                auth::CODE_NOT_FOUND,
                "The resource was not found",
                Some("Couldn't find Customer".into()),
            )
        })
    };
    let (from, to) = match (find("from"), find("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if from == to {
        return invalid("Merge customer failed: Cannot merge to self");
    }
    let Some(gone) = store.remove(from) else {
        return invalid("Couldn't find Customer");
    };
    let mut kept = store.customers[&to].clone();
    let gone_emails: Vec<String> = gone.emails().cloned().collect();
    for e in gone_emails {
        if !kept.emails().any(|k| k.eq_ignore_ascii_case(&e)) {
            let id = store.next_email_id();
            kept.other_emails.push((id, e));
        }
    }
    for (id, p) in gone.cellphones {
        if !kept.cellphones.iter().any(|(_, q)| *q == p) {
            kept.cellphones.push((id, p));
        }
    }
    for t in gone.tags {
        if !kept.tags.contains(&t) {
            kept.tags.push(t);
        }
    }
    if kept.open_api_token.is_none() {
        kept.open_api_token = gone.open_api_token;
    }
    store.put(kept);
    ok(json!({"id": to}))
}
