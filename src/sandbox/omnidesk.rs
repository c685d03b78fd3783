//! Omnidesk API v2 customer endpoints, as the documents in `shared/seeds/` describe them.

use super::form::Fields;
use super::store::{OmniChannel, OmniCustomer, OmniEvent};
use super::{CustomKeyRule, RecordAt, Shared};
use crate::validate::{email, name};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Brands that exist in the sandbox tenant.
pub const BRANDS: [(u64, &str); 2] = [(1, "Sandbox brand"), (2, "Second brand")];
/// Largest `itemLimit`.
pub const MAX_ITEM_LIMIT: u64 = crate::platform::documented::OMNIDESK_MAX_ITEM_LIMIT;
/// Default `itemLimit`.
pub const DEFAULT_ITEM_LIMIT: u64 = crate::platform::documented::OMNIDESK_DEFAULT_ITEM_LIMIT;

type Shared2 = State<Arc<Shared>>;
type QueryMap = Query<HashMap<String, String>>;

/// The routes (lower-case; requests are lower-cased before routing).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v2/customer", get(list).post(create).put(update_index))
        .route(
            "/api/v2/customer/{id}",
            get(item).put(update_item).delete(delete_item),
        )
        .route("/api/v2/customer/updatecustomer", put(update_customer))
        .route(
            "/api/v2/customer/searchbyprimaryexternalid",
            post(search_by_primary),
        )
        .route(
            "/api/v2/customer/searchbycustomerchannelvalue",
            post(search_by_channel),
        )
        .route("/api/v2/customer/addchannelonly", post(add_channel_only))
        .route("/api/v2/customer/externalevent", post(external_event))
        .route(
            "/api/v2/customer/timelinebycustomerexternalid",
            get(timeline),
        )
        .route("/api/v2/customer/purgedata/{id}", delete(purge_item))
        .route("/api/v2/customer/purgedata", delete(purge_by_external_id))
        .route("/api/v2/customer/createcustomercrud", post(create_crud))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"type": "error", "message": message.into()})),
    )
        .into_response()
}

/// "No such customer" as the profile answers it: 404 or 400 with `type: error`, or 200
/// with an empty result in the place the profile puts records.
fn not_found(shared: &Shared) -> Response {
    let profile = shared.profile();
    match profile.omnidesk_not_found_status {
        200 => {
            let body = match profile.omnidesk_record_at {
                RecordAt::Items => json!({"items": []}),
                RecordAt::Item => json!({"item": null}),
                RecordAt::Customer => json!({"customer": null}),
                RecordAt::Data => json!({"data": null}),
                RecordAt::Message | RecordAt::Top => {
                    json!({"type": "result", "message": "Customer not found"})
                }
            };
            Json(body).into_response()
        }
        status => error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND),
            "Customer not found",
        ),
    }
}

/// A write's success reply: the sandbox's own words, or with `omnidesk_reply_ids` off the
/// documents' (002:27, 53, 79; 000:424-427).
fn written(shared: &Shared, ours: Value, documented: &str) -> Response {
    if shared.profile().omnidesk_reply_ids {
        Json(ours).into_response()
    } else {
        Json(json!({"type": "result", "message": documented})).into_response()
    }
}

fn result(message: Value) -> Response {
    Json(json!({"type": "result", "message": message})).into_response()
}

fn authorize(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(), Response> {
    let given = headers
        .get("apikey")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.get("apiKey").map(String::as_str));
    match given {
        Some(key) if key == shared.config.omnidesk_api_key => Ok(()),
        Some(_) => Err(error(StatusCode::UNAUTHORIZED, "Invalid API key")),
        None => Err(error(StatusCode::UNAUTHORIZED, "Missing API key")),
    }
}

fn brand_name(id: u64) -> Option<&'static str> {
    BRANDS.iter().find(|(b, _)| *b == id).map(|(_, n)| *n)
}

fn customer_json(c: &OmniCustomer) -> Value {
    json!({
        "id": c.id,
        "brand_id": c.brand_id,
        "brand_name": brand_name(c.brand_id),
        "external_primary_id": (!c.external_primary_id.is_empty()).then_some(&c.external_primary_id),
        "firstname": c.firstname,
        "lastname": c.lastname,
        "channels": c.channels,
        "custom_fields": c.custom_fields,
    })
}

/// Field checks shared by create and update.
fn check_name(field: &str, value: &str) -> Result<(), Response> {
    if value.is_empty() || !value.chars().all(name::omnidesk_allows) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{field} does not match ^[a-zA-ZÀ-ÖØ-Þß-öø-ÿŠš\\.\\-\\' ]+$"),
        ));
    }
    Ok(())
}

fn check_email(field: &str, value: &str) -> Result<(), Response> {
    email::normalize(value).map(|_| ()).map_err(|_| {
        error(
            StatusCode::BAD_REQUEST,
            format!("{field} is not a valid email address"),
        )
    })
}

fn check_telephone(field: &str, value: &str, min_len: usize) -> Result<(), Response> {
    let digits_ok =
        value.len() > 1 && value.starts_with('+') && value[1..].bytes().all(|b| b.is_ascii_digit());
    if !digits_ok || value.len() < min_len {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{field} does not match ^\\+[0-9]+$ (min {min_len} characters)"),
        ));
    }
    Ok(())
}

fn parse_brand(fields: &Fields, name: &str) -> Result<u64, Response> {
    let raw = fields
        .get(name)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, format!("{name} is required")))?;
    let id: u64 = raw
        .trim()
        .parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("{name} must be a number")))?;
    brand_name(id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("brand {id} does not exist")))?;
    Ok(id)
}

fn custom_name(field: &str) -> Option<&str> {
    field
        .strip_prefix("custom_")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Refuses fields the endpoint does not know (custom_<name> always allowed).
fn check_known(fields: &Fields, known: &[&str], indexed_prefixes: &[&str]) -> Result<(), Response> {
    for (k, _) in &fields.0 {
        let indexed = indexed_prefixes.iter().any(|p| {
            k.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if !known.contains(&k.as_str()) && custom_name(k).is_none() && !indexed {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("unknown field {k:?}"),
            ));
        }
    }
    Ok(())
}

fn channel_kind_for(channel_id: &str) -> Result<&str, Response> {
    let ok = matches!(channel_id, "email" | "telephone" | "facebook" | "twitter")
        || (!channel_id.is_empty() && channel_id.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "channel_id does not match ^([0-9]+|email|telephone|facebook|twitter)$",
        ));
    }
    Ok(channel_id)
}

fn check_channel_value(kind: &str, value: &str) -> Result<(), Response> {
    match kind {
        "email" => check_email("customer_link_channel", value),
        "telephone" => check_telephone("customer_link_channel", value, 2),
        _ => Ok(()),
    }
}

/// The custom fields of a form by the endpoint's key rule, refusing what the endpoint does
/// not know (its `known` keys and `indexed` `prefix_N` keys are not custom fields).
fn custom_of(
    fields: &Fields,
    known: &[&str],
    indexed: &[&str],
    rule: CustomKeyRule,
) -> Result<Vec<(String, String)>, Response> {
    let mut custom = Vec::new();
    for (k, v) in &fields.0 {
        let is_indexed = indexed.iter().any(|p| {
            k.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if known.contains(&k.as_str()) || is_indexed {
            continue;
        }
        let name = match (rule, custom_name(k)) {
            (CustomKeyRule::Bare, _) => k.as_str(),
            (_, Some(name)) => name,
            (CustomKeyRule::Either, None) => k.as_str(),
            (CustomKeyRule::Prefixed, None) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown field {k:?}"),
                ))
            }
        };
        custom.push((name.to_string(), v.clone()));
    }
    Ok(custom)
}

fn apply_names_and_custom(
    customer: &mut OmniCustomer,
    fields: &Fields,
    custom: &[(String, String)],
) -> Result<(), Response> {
    if let Some(v) = fields.get("firstname") {
        check_name("firstname", v)?;
        customer.firstname = v.to_string();
    }
    if let Some(v) = fields.get("lastname") {
        check_name("lastname", v)?;
        customer.lastname = v.to_string();
    }
    for (name, value) in custom {
        customer.custom_fields.insert(name.clone(), value.clone());
    }
    Ok(())
}

fn add_channel(
    shared_next_id: &mut impl FnMut() -> u64,
    customer: &mut OmniCustomer,
    kind: &str,
    value: &str,
) {
    if !customer
        .channels
        .iter()
        .any(|c| c.kind == kind && c.value.eq_ignore_ascii_case(value))
    {
        customer.channels.push(OmniChannel {
            id: shared_next_id(),
            kind: kind.to_string(),
            value: value.to_string(),
        });
    }
}

async fn list(State(shared): Shared2, headers: HeaderMap, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let number = |name: &str, default: u64| -> Result<u64, Response> {
        match q.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| error(StatusCode::BAD_REQUEST, format!("{name} must be a number"))),
        }
    };
    let start = match number("itemStart", 0) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let limit = match number("itemLimit", DEFAULT_ITEM_LIMIT) {
        Ok(v) if (1..=MAX_ITEM_LIMIT).contains(&v) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("itemLimit must be between 1 and {MAX_ITEM_LIMIT}"),
            )
        }
        Err(r) => return r,
    };
    let query = q.get("query").map(String::as_str).unwrap_or("");
    if q.contains_key("query")
        && (query.is_empty()
            || !query
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' '))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "query does not match ^[0-9a-zA-Z ]+$",
        );
    }
    let data = shared.data();
    let store = &data.omni;
    let list_item = |c: &OmniCustomer| {
        json!({
            "id": c.id,
            "external_primary_id": c.external_primary_id,
            "brand_name": brand_name(c.brand_id),
            "firstname": c.firstname,
            "lastname": c.lastname,
            "channels": c.channels,
        })
    };
    let (total, items): (usize, Vec<Value>) = if query.is_empty() {
        let items = store
            .order
            .iter()
            .skip(start as usize)
            .take(limit as usize)
            .filter_map(|id| store.customers.get(id))
            .map(list_item)
            .collect();
        (store.order.len(), items)
    } else {
        let needle = query.to_lowercase();
        let matching: Vec<&OmniCustomer> = store
            .order
            .iter()
            .filter_map(|id| store.customers.get(id))
            .filter(|c| {
                format!("{} {} {}", c.firstname, c.lastname, c.external_primary_id)
                    .to_lowercase()
                    .contains(&needle)
            })
            .collect();
        let items = matching
            .iter()
            .skip(start as usize)
            .take(limit as usize)
            .map(|c| list_item(c))
            .collect();
        (matching.len(), items)
    };
    Json(json!({
        "type": "result",
        "itemStart": start,
        "itemTotal": total,
        "itemLimit": limit,
        "items": items,
    }))
    .into_response()
}

async fn create(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let known = [
        "channel_id",
        "customer_link_channel",
        "search_customer_channel_value",
        "brand_id",
        "primary_id",
        "noSync",
        "firstname",
        "lastname",
        "ticket_id",
        "extra_email",
        "extra_telephone",
    ];
    if fields.get("noSync").is_some() {
        shared.stats.no_sync_writes.fetch_add(1, Ordering::Relaxed);
    }
    match create_from(&shared, &fields, &known, "brand_id", "primary_id") {
        Ok(id) => written(
            &shared,
            json!({"type": "result", "message": "Customer created.", "customer_id": id}),
            "User created and channel linked.",
        ),
        Err(r) => r,
    }
}

async fn create_crud(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    match create_from(
        &shared,
        &fields,
        &["primaryID", "brandID", "firstname", "lastname"],
        "brandID",
        "primaryID",
    ) {
        Ok(id) => written(
            &shared,
            json!({"type": "result", "message": "Customer created.", "customer_id": id}),
            "User created and channel linked.",
        ),
        Err(r) => r,
    }
}

fn create_from(
    shared: &Shared,
    fields: &Fields,
    known: &[&str],
    brand_field: &str,
    primary_field: &str,
) -> Result<u64, Response> {
    let custom = custom_of(
        fields,
        known,
        &[],
        shared.profile().omnidesk_create_custom_keys,
    )?;
    let brand_id = parse_brand(fields, brand_field)?;
    let primary = fields
        .get(primary_field)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{primary_field} is required"),
            )
        })?;
    let mut channels: Vec<(String, String)> = Vec::new();
    match (
        fields.get("channel_id"),
        fields.get("customer_link_channel"),
    ) {
        (Some(kind), Some(value)) => {
            let kind = channel_kind_for(kind)?;
            check_channel_value(kind, value)?;
            channels.push((kind.to_string(), value.to_string()));
        }
        (Some(_), None) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "channel_id needs customer_link_channel",
            ))
        }
        (None, Some(_)) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "customer_link_channel needs channel_id",
            ))
        }
        (None, None) => {}
    }
    if let Some(e) = fields.get("extra_email") {
        check_email("extra_email", e)?;
        channels.push(("email".into(), e.to_string()));
    }
    if let Some(t) = fields.get("extra_telephone") {
        check_telephone("extra_telephone", t, 12)?;
        channels.push(("telephone".into(), t.to_string()));
    }
    let mut data = shared.data();
    let store = &mut data.omni;
    if let Some(existing) = store.by_primary.get(&(brand_id, primary.to_string())) {
        let message = "Customer with this primary ID already exists";
        let status = shared.profile().omnidesk_duplicate_status;
        return Err(match StatusCode::from_u16(status) {
            Ok(StatusCode::CONFLICT) | Err(_) => (
                StatusCode::CONFLICT,
                Json(json!({"type": "error", "message": message, "customer_id": existing})),
            )
                .into_response(),
            Ok(status) => error(status, message),
        });
    }
    let mut customer = OmniCustomer {
        id: store.next_id(),
        brand_id,
        external_primary_id: primary.to_string(),
        firstname: String::new(),
        lastname: String::new(),
        channels: Vec::new(),
        custom_fields: BTreeMap::new(),
    };
    apply_names_and_custom(&mut customer, fields, &custom)?;
    for (kind, value) in channels {
        add_channel(&mut || store.next_id(), &mut customer, &kind, &value);
    }
    let id = customer.id;
    store.insert(customer);
    Ok(id)
}

fn parse_id(raw: &str) -> Result<u64, Response> {
    raw.parse()
        .map_err(|_| error(StatusCode::BAD_REQUEST, "id must be a number"))
}

async fn item(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let record = shared.data().omni.customers.get(&id).map(customer_json);
    found(&shared, record)
}

async fn delete_item(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let removed = shared.data().omni.remove(id);
    match removed {
        // 000:170 prints the reply as "No content".
        Some(_) if !shared.profile().omnidesk_reply_ids => StatusCode::OK.into_response(),
        Some(_) => result(json!("Customer deleted.")),
        None => not_found(&shared),
    }
}

/// The customer a request names by `customer_id` (in `brand`) or by its primary id under
/// `external_field`; `None` when there is no such customer, a 400 when it names none.
fn customer_in_brand(
    store: &super::store::OmniStore,
    fields: &Fields,
    external_field: &str,
    brand: u64,
) -> Result<Option<u64>, Response> {
    match (fields.get("customer_id"), fields.get(external_field)) {
        (Some(cid), _) => {
            let id = parse_id(cid)?;
            Ok(Some(id).filter(|id| store.customers.get(id).is_some_and(|c| c.brand_id == brand)))
        }
        (None, Some(e)) => Ok(store.by_primary.get(&(brand, e.to_string())).copied()),
        (None, None) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("customer_id or {external_field} is required"),
        )),
    }
}

/// `POST /api/v2/customer/externalEvent` (000:572-609): `brand_id`, `initiated_by`,
/// `message` and `source_url` required, the customer by `customer_id` or `external_id`.
async fn external_event(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let known = [
        "customer_id",
        "external_id",
        "brand_id",
        "initiated_by",
        "message",
        "source_url",
    ];
    let brand =
        match check_known(&fields, &known, &[]).and_then(|_| parse_brand(&fields, "brand_id")) {
            Ok(b) => b,
            Err(r) => return r,
        };
    for name in ["initiated_by", "message", "source_url"] {
        if fields.get(name).is_none_or(str::is_empty) {
            return error(StatusCode::BAD_REQUEST, format!("{name} is required"));
        }
    }
    let mut data = shared.data();
    let store = &mut data.omni;
    let id = match customer_in_brand(store, &fields, "external_id", brand) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(customer_id) = id else {
        drop(data);
        return not_found(&shared);
    };
    let event = OmniEvent {
        id: store.next_id(),
        customer_id,
        initiated_by: fields.get("initiated_by").unwrap_or_default().to_string(),
        message: fields.get("message").unwrap_or_default().to_string(),
        source_url: fields.get("source_url").unwrap_or_default().to_string(),
    };
    store.events.push(event);
    drop(data);
    // 000:609 prints the reply as "No content".
    if shared.profile().omnidesk_reply_ids {
        result(json!("Event created."))
    } else {
        StatusCode::OK.into_response()
    }
}

/// `GET /api/v2/customer/timelineByCustomerExternalID?brand_id&external_id` (000:188-214,
/// whose reply is "No content"): the customer's entries as a list where the profile puts
/// records (`items`, the top level, or `data`).
async fn timeline(State(shared): Shared2, headers: HeaderMap, Query(q): QueryMap) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let (Some(brand), Some(external_id)) = (
        q.get("brand_id").and_then(|b| b.parse::<u64>().ok()),
        q.get("external_id").filter(|e| !e.is_empty()),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "brand_id and external_id are required",
        );
    };
    let entries: Option<Vec<Value>> = {
        let data = shared.data();
        data.omni
            .by_primary
            .get(&(brand, external_id.to_string()))
            .map(|id| {
                data.omni
                    .events
                    .iter()
                    .filter(|e| e.customer_id == *id)
                    .map(|e| json!({"id": e.id, "type": "external_event", "initiated_by": e.initiated_by, "message": e.message, "source_url": e.source_url}))
                    .collect()
            })
    };
    let Some(entries) = entries else {
        return not_found(&shared);
    };
    let body = match shared.profile().omnidesk_record_at {
        RecordAt::Top => Value::Array(entries),
        RecordAt::Items | RecordAt::Message => json!({ "items": entries }),
        _ => json!({ "data": entries }),
    };
    Json(body).into_response()
}

/// Removes a customer as purged (its tickets and items too, which the sandbox does not
/// hold); the reply as `DELETE item`'s.
fn purge(shared: &Shared, id: Option<u64>) -> Response {
    let removed = {
        let mut data = shared.data();
        let removed = id.and_then(|id| data.omni.remove(id));
        if let Some(c) = &removed {
            data.omni.purged.push(c.id);
        }
        removed
    };
    match removed {
        // 000:239 and 002:98 print no reply body.
        Some(_) if !shared.profile().omnidesk_reply_ids => StatusCode::OK.into_response(),
        Some(_) => result(json!("Customer data purged.")),
        None => not_found(shared),
    }
}

/// `DELETE /api/v2/customer/purgeData/{id}` (000:221-239).
async fn purge_item(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    match parse_id(&id) {
        Ok(id) => purge(&shared, Some(id)),
        Err(r) => r,
    }
}

/// `DELETE /api/v2/customer/purgedata` with `external_id` and `brand_id` (002:85-98).
async fn purge_by_external_id(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let Some(external_id) = fields.get("external_id").filter(|e| !e.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "external_id is required");
    };
    let brand = match parse_brand(&fields, "brand_id") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let id = shared
        .data()
        .omni
        .by_primary
        .get(&(brand, external_id.to_string()))
        .copied();
    purge(&shared, id)
}

/// Applies an update's names, custom fields and `customerChannelType_N`/`Value_N` pairs.
fn update_existing(
    shared: &Shared,
    id: u64,
    fields: &Fields,
    custom: &[(String, String)],
) -> Response {
    let mut data = shared.data();
    let store = &mut data.omni;
    let Some(mut customer) = store.customers.get(&id).cloned() else {
        drop(data);
        return not_found(shared);
    };
    if let Err(r) = apply_names_and_custom(&mut customer, fields, custom) {
        return r;
    }
    let mut n = 0;
    while let Some(kind) = fields.get(&format!("customerChannelType_{n}")) {
        let Some(value) = fields.get(&format!("customerChannelValue_{n}")) else {
            return error(
                StatusCode::BAD_REQUEST,
                format!("customerChannelType_{n} needs customerChannelValue_{n}"),
            );
        };
        let kind = match channel_kind_for(kind) {
            Ok(k) => k,
            Err(r) => return r,
        };
        if let Err(r) = check_channel_value(kind, value) {
            return r;
        }
        add_channel(&mut || store.next_id(), &mut customer, kind, value);
        n += 1;
    }
    store.customers.insert(id, customer);
    drop(data);
    written(
        shared,
        json!({"type": "result", "message": "Customer updated."}),
        "Customer updated.",
    )
}

async fn update_item(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    Path(id): Path<String>,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let custom = match custom_of(
        &fields,
        &["brandID", "firstname", "lastname"],
        &["customerChannelType_", "customerChannelValue_"],
        shared.profile().omnidesk_create_custom_keys,
    )
    .and_then(|c| parse_brand(&fields, "brandID").map(|_| c))
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    update_existing(&shared, id, &fields, &custom)
}

async fn update_customer(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let known = ["externalPrimaryID", "brandID", "firstname", "lastname"];
    let (custom, brand) = match custom_of(
        &fields,
        &known,
        &["customerChannelType_", "customerChannelValue_"],
        shared.profile().omnidesk_update_custom_keys,
    )
    .and_then(|c| parse_brand(&fields, "brandID").map(|b| (c, b)))
    {
        Ok(pair) => pair,
        Err(r) => return r,
    };
    let Some(primary) = fields.get("externalPrimaryID") else {
        return error(StatusCode::BAD_REQUEST, "externalPrimaryID is required");
    };
    let id = shared
        .data()
        .omni
        .by_primary
        .get(&(brand, primary.to_string()))
        .copied();
    match id {
        Some(id) => update_existing(&shared, id, &fields, &custom),
        None => not_found(&shared),
    }
}

async fn update_index(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let custom = match custom_of(
        &fields,
        &[
            "primaryID",
            "brandID",
            "customerID",
            "firstname",
            "lastname",
        ],
        &[],
        shared.profile().omnidesk_create_custom_keys,
    ) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = if let Some(cid) = fields.get("customerID") {
        let id = match parse_id(cid) {
            Ok(id) => id,
            Err(r) => return r,
        };
        if let Some(primary) = fields
            .get("primaryID")
            .filter(|_| shared.profile().omnidesk_put_sets_primary)
        {
            if let Err(holder) = shared.data().omni.set_primary(id, primary) {
                return (
                    StatusCode::CONFLICT,
                    Json(json!({"type": "error", "message": "Customer with this primary ID already exists", "customer_id": holder})),
                )
                    .into_response();
            }
        }
        Some(id)
    } else if let Some(primary) = fields.get("primaryID") {
        let brand = match parse_brand(&fields, "brandID") {
            Ok(b) => b,
            Err(r) => return r,
        };
        shared
            .data()
            .omni
            .by_primary
            .get(&(brand, primary.to_string()))
            .copied()
    } else {
        return error(
            StatusCode::BAD_REQUEST,
            "one of customerID or primaryID with brandID is required",
        );
    };
    match id {
        Some(id) => update_existing(&shared, id, &fields, &custom),
        None => not_found(&shared),
    }
}

/// Auth, known fields and brand for the two search endpoints; returns (brand, searched value).
fn search_request<'a>(
    shared: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    fields: &'a Fields,
    value_field: &str,
) -> Result<(u64, &'a str), Response> {
    authorize(shared, headers, q)?;
    check_known(fields, &[value_field, "brand_id"], &[])?;
    let brand = parse_brand(fields, "brand_id")?;
    let value = fields
        .get(value_field)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{value_field} is required"),
            )
        })?;
    Ok((brand, value))
}

/// A customer record where the profile puts it, or "no such customer".
fn found(shared: &Shared, customer: Option<Value>) -> Response {
    let Some(record) = customer else {
        return not_found(shared);
    };
    let body = match shared.profile().omnidesk_record_at {
        RecordAt::Message => json!({"type": "result", "message": record}),
        RecordAt::Top => record,
        RecordAt::Item => json!({"item": record}),
        RecordAt::Items => json!({"items": [record]}),
        RecordAt::Customer => json!({"customer": record}),
        RecordAt::Data => json!({"data": record}),
    };
    Json(body).into_response()
}

async fn search_by_primary(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    let (brand, primary) = match search_request(&shared, &headers, &q, &fields, "primary_id") {
        Ok(found) => found,
        Err(r) => return r,
    };
    let record = {
        let data = shared.data();
        data.omni
            .by_primary
            .get(&(brand, primary.to_string()))
            .and_then(|id| data.omni.customers.get(id))
            .map(customer_json)
    };
    found(&shared, record)
}

async fn search_by_channel(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    let (brand, value) =
        match search_request(&shared, &headers, &q, &fields, "customerChannelValue") {
            Ok(found) => found,
            Err(r) => return r,
        };
    let records: Vec<Value> = shared
        .data()
        .omni
        .find_by_channel(brand, value)
        .into_iter()
        .map(customer_json)
        .collect();
    // A list where the profile puts lists; elsewhere the oldest holder alone.
    if shared.profile().omnidesk_record_at == RecordAt::Items && !records.is_empty() {
        return Json(json!({ "items": records })).into_response();
    }
    found(&shared, records.into_iter().next())
}

async fn add_channel_only(
    State(shared): Shared2,
    headers: HeaderMap,
    Query(q): QueryMap,
    fields: Fields,
) -> Response {
    if let Err(r) = authorize(&shared, &headers, &q) {
        return r;
    }
    let known = [
        "customer_id",
        "primary_id",
        "brand_id",
        "noSync",
        "extra_email",
        "extra_telephone",
        "extra_twitter",
        "extra_facebook",
    ];
    let brand =
        match check_known(&fields, &known, &[]).and_then(|_| parse_brand(&fields, "brand_id")) {
            Ok(b) => b,
            Err(r) => return r,
        };
    if fields.get("noSync").is_some() {
        shared.stats.no_sync_writes.fetch_add(1, Ordering::Relaxed);
    }
    let mut channels = Vec::new();
    if let Some(e) = fields.get("extra_email") {
        if let Err(r) = check_email("extra_email", e) {
            return r;
        }
        channels.push(("email", e.to_string()));
    }
    if let Some(t) = fields.get("extra_telephone") {
        if let Err(r) = check_telephone("extra_telephone", t, 2) {
            return r;
        }
        channels.push(("telephone", t.to_string()));
    }
    if let Some(t) = fields.get("extra_twitter") {
        if t.is_empty()
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b' ')
        {
            return error(
                StatusCode::BAD_REQUEST,
                "extra_twitter does not match ^[a-zA-Z0-9_ ]+$",
            );
        }
        channels.push(("twitter", t.to_string()));
    }
    if let Some(f) = fields.get("extra_facebook") {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return error(StatusCode::BAD_REQUEST, "extra_facebook must be a number");
        }
        channels.push(("facebook", f.to_string()));
    }
    if channels.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "one of extra_email, extra_telephone, extra_twitter, extra_facebook is required",
        );
    }
    let mut data = shared.data();
    let store = &mut data.omni;
    let id = match customer_in_brand(store, &fields, "primary_id", brand) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let Some(mut customer) = id.and_then(|id| store.customers.get(&id).cloned()) else {
        drop(data);
        return not_found(&shared);
    };
    for (kind, value) in channels {
        add_channel(&mut || store.next_id(), &mut customer, kind, &value);
    }
    store.customers.insert(customer.id, customer);
    drop(data);
    written(
        &shared,
        json!({"type": "result", "message": "Channel added."}),
        "Channel added to the customer.",
    )
}
