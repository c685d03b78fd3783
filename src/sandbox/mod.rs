//! The sandbox: a local server that behaves like Omnidesk API v2 (`/api/v2`) and the Udesk
//! open API v1 (`/open_api_v1`) as their documents describe, with their auth, validation,
//! paging, limits and error replies, plus seeded fault injection.
//!
//! Every request to a platform path goes through one gate ([`gate`]): the capacity limit,
//! added latency, the platform's rate budget, then an injected fault (or none), then the
//! handler. Time windows (rate budgets, the bulk-import interval, scroll lifetime, nonce
//! memory) run on a [`Clock`] that can be sped up, so a minute of platform time can pass in a
//! second of test time. Where the documents are silent, the decisions are listed in
//! [`DECISIONS`] (shown by `deskport sandbox --help`), and the sandbox is strict rather than
//! lenient: a client that passes the sandbox should pass the platform.

// Handler helpers return ready-made error replies (`Result<_, Response>`), the usual axum
// pattern; their size is irrelevant on this path.
#![allow(clippy::result_large_err)]

pub mod fields;
mod form;
pub mod omnidesk;
mod profile;
pub mod store;
pub mod udesk;

use crate::synth::Rng;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
pub use fields::{AccountFields, FieldsAccount};
pub use profile::{CustomKeyRule, Profile, ProfileName, RecordAt, ScrollReplay};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use store::{OmniStore, UdeskStore};
use tokio::sync::Semaphore;

/// Where the documents are silent, what the sandbox does.
pub const DECISIONS: &str = "\
What the documents state (shared/seeds, file:line) and what the sandbox assumes where they
are silent. --profile chooses how the silences are answered: convenient (default, below) or
documented (only what the documents print; PUT /__sandbox/profile for finer choices).

Omnidesk — stated
  - List: GET /api/v2/customer with itemStart/itemLimit (1..=99), itemTotal, items (000:114-129).
  - Create replies {\"type\":\"result\",\"message\":\"User created and channel linked.\"} with no id
    (002:27); updateCustomer \"Customer updated.\" (002:53); addChannelOnly \"Channel added to the
    customer.\" (002:79); PUT item (000:424-427). The documented profile answers exactly so.
Omnidesk — assumed
  - Errors {\"type\":\"error\",\"message\":…}: 400 invalid field, 401 apiKey missing or wrong.
    Convenient: 404 no such customer, 409 primary_id taken (naming the id), create replies
    carry customer_id. Documented: not-found 200 with an empty result, duplicate 400 (no id);
    either can be 200, 400, 404 or 409 through the profile.
  - GET item and both searches (\"No content\" in 000): the record under \"message\"
    (convenient) or at the top level (documented), or under item, items[0], customer, data.
  - primary_id and brand_id are required on create; brands 1 and 2 exist. Bodies must be
    multipart/form-data or x-www-form-urlencoded; JSON is 415. Unknown form fields are refused
    (400) except custom_<name>. The list query takes letters, digits and spaces only.
  - Custom field keys (the documents disagree: custom_<name> 000:264/342, the bare name
    001:119): convenient: create takes custom_<name>, updateCustomer either form; documented:
    create custom_<name>, updateCustomer the bare name (custom_x there is a field named
    custom_x). Each rule is a profile field (either, prefixed, bare).
Udesk — stated
  - Signature v2: email, timestamp, nonce, sign, sign_version on every call (003 examples).
  - Create/update body: customer{…}, other_emails as [id, email] pairs (null for new,
    003:441-444, 633-635), tags as text; cellphones [id, number] (003:398-401); replies give
    other_emails as pairs and cellphones as {id, content} (003:502-520). The sandbox holds the
    owner 1 in group 1, WeChat apps, and custom fields TextField_1..8, SelectField_1..3 the
    examples name (003:390-446), returns web_token, sdk_token, is_blocked, owner and
    organisation as stored, and refuses only what the error table lists (003:1436-1466).
  - batch_import_async: at most 100 rows, once a minute; code 1000 only means received
    (003:1131). Scroll export: a new scroll_id each call, expiring after a minute (003:1228-1231).
  - Errors are HTTP 200 with their code and exception.message (003:1436-1466); 429 for rate.
  - Custom fields (003:945-1121): --udesk-fields optional (default: the document's eleven
    fields with their types and options, none required), documented (the same, every one
    required as printed: agent_permission 1) or a file holding a custom_fields reply. A
    value of the wrong type or an unknown option is code 2000; a create without a required
    field is \"Missing custom field <title>\" (003:1440). Select values are arrays of option
    ids, dates YYYY-MM-DD, times HH:MM:SS, datetimes YYYY-MM-DD HH:MM (003:390-446).
Udesk — assumed
  - Required custom fields are enforced on create and bulk import, not on update; a text
    field's value must be a JSON string. GET /customers/custom_fields is marked deprecated
    (003:945): the profile field udesk_fields_endpoint=false answers it 404.
  - Convenient: bad credentials are HTTP 401 with 2059/20621-20624 (timestamp window 300 s,
    nonce reuse 15 min); documented: HTTP 200 with code 2099, which the documents do not list.
  - Rate limit: 60 calls per minute per tenant (token bucket), HTTP 429 with code 429 (or
    HTTP 200 with code 429); Retry-After (s) and Retry-After-Ms although not documented.
  - Convenient: batch_import_async checks every row and refuses the call naming the row
    (customers[i]:), a refused call keeps the once-a-minute slot; documented: always 1000, bad
    and colliding rows dropped when applied (2 s of platform time later), listed only in
    /__sandbox/state.
  - Scroll: convenient: an id works once (2062 after); documented: sent again it returns the
    next batch, as an Elasticsearch scroll does.
  - open_api_token, email, cellphone and web_token are unique; a collision is code 2000
    naming the holder. An other-email or phone id the customer does not hold adds a new one.
Faults (all platforms)
  - error: 500 without applying; apply_then_error: applied, then 500; drop: connection cut
    before a reply, not applied; apply_then_drop: applied, then cut. Decided per request in
    arrival order from the seed, so a sequential client sees the same faults every run.
  - capacity: beyond N requests in flight, further requests queue (latency grows) or, with
    over_capacity=reject, get 503 with Retry-After.";

/// Which platform a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// `/api/v2/…`
    Omnidesk,
    /// `/open_api_v1/…`
    Udesk,
}

/// How a Udesk rate-limit refusal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum UdeskRateLimitStyle {
    /// HTTP 429 with `{"code":429}`.
    Http429,
    /// HTTP 200 with `{"code":429}`.
    Code429,
}

/// What happens beyond the capacity limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum OverCapacity {
    /// Wait for a slot: latency grows with the queue.
    #[default]
    Queue,
    /// Answer 503 at once.
    Reject,
}

/// Injected faults; changeable at run time through `PUT /__sandbox/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of requests answered 500 without being applied.
    pub error_rate: f64,
    /// Fraction applied and then answered 500.
    pub apply_then_error_rate: f64,
    /// Fraction whose connection is cut before a reply, not applied.
    pub drop_rate: f64,
    /// Fraction applied and then cut before the reply.
    pub apply_then_drop_rate: f64,
    /// Added latency for every request.
    pub latency_ms: u64,
    /// Up to this much more, uniformly.
    pub jitter_ms: u64,
    /// Writes (POST, PUT, DELETE) take this many times the latency of reads, as on a real
    /// server where a create costs more than a search (0 or 1: the same).
    pub write_latency_factor: f64,
    /// Requests in flight beyond which the capacity rule applies. With `Queue`, the latency
    /// is service time spent holding one of these slots: a server with this many workers,
    /// where requests beyond them wait and latency grows with load.
    pub capacity: Option<usize>,
    /// Queue or reject beyond capacity.
    pub over_capacity: OverCapacity,
}

/// Everything the sandbox is started with. Its `Debug` output redacts the credentials.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Omnidesk `apiKey`.
    pub omnidesk_api_key: String,
    /// Udesk super-admin email.
    pub udesk_email: String,
    /// Udesk open API token.
    pub udesk_token: String,
    /// Udesk password for `log_in`.
    pub udesk_password: String,
    /// Platform seconds per real second (1 = real time).
    pub time_scale: f64,
    /// Udesk calls per (platform) minute.
    pub udesk_calls_per_minute: u32,
    /// How Udesk refuses over-budget calls.
    pub udesk_rate_limit_style: UdeskRateLimitStyle,
    /// Omnidesk requests per (platform) second; none = unlimited.
    pub omnidesk_rate_per_second: Option<f64>,
    /// Minimum platform time between accepted bulk imports.
    pub bulk_import_interval: Duration,
    /// Platform time before an accepted bulk import is applied.
    pub bulk_import_delay: Duration,
    /// Platform time a scroll id stays valid.
    pub scroll_ttl: Duration,
    /// Faults at start.
    pub faults: Faults,
    /// Seed for fault decisions.
    pub seed: u64,
    /// Customers created at start on both platforms.
    pub seed_customers: u64,
    /// Where the store is loaded from at start and saved to on `POST /__sandbox/save`.
    pub state_file: Option<PathBuf>,
    /// How it answers where the documents are silent, at start.
    pub profile: Profile,
    /// The Udesk account's custom fields at start.
    pub udesk_fields: AccountFields,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("omnidesk_api_key", &"<redacted>")
            .field("udesk_email", &self.udesk_email)
            .field("udesk_token", &"<redacted>")
            .field("udesk_password", &"<redacted>")
            .field("time_scale", &self.time_scale)
            .field("udesk_calls_per_minute", &self.udesk_calls_per_minute)
            .field("udesk_rate_limit_style", &self.udesk_rate_limit_style)
            .field("omnidesk_rate_per_second", &self.omnidesk_rate_per_second)
            .field("bulk_import_interval", &self.bulk_import_interval)
            .field("bulk_import_delay", &self.bulk_import_delay)
            .field("scroll_ttl", &self.scroll_ttl)
            .field("faults", &self.faults)
            .field("seed", &self.seed)
            .field("seed_customers", &self.seed_customers)
            .field("state_file", &self.state_file)
            .field("profile", &self.profile)
            .field("udesk_fields", &self.udesk_fields)
            .finish()
    }
}

/// The demo Omnidesk key.
pub const DEMO_OMNIDESK_API_KEY: &str = "sandbox-omnidesk-key";
/// The demo Udesk admin email.
pub const DEMO_UDESK_EMAIL: &str = "admin@sandbox.local";
/// The demo Udesk token.
pub const DEMO_UDESK_TOKEN: &str = "sandbox-udesk-token";
/// The demo Udesk password.
pub const DEMO_UDESK_PASSWORD: &str = "sandbox-password";

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            omnidesk_api_key: DEMO_OMNIDESK_API_KEY.into(),
            udesk_email: DEMO_UDESK_EMAIL.into(),
            udesk_token: DEMO_UDESK_TOKEN.into(),
            udesk_password: DEMO_UDESK_PASSWORD.into(),
            time_scale: 1.0,
            udesk_calls_per_minute: 60,
            udesk_rate_limit_style: UdeskRateLimitStyle::Http429,
            omnidesk_rate_per_second: None,
            bulk_import_interval: crate::platform::documented::UDESK_BULK_INTERVAL,
            bulk_import_delay: Duration::from_secs(2),
            scroll_ttl: crate::platform::documented::UDESK_SCROLL_TTL,
            faults: Faults::default(),
            seed: 1,
            seed_customers: 0,
            state_file: None,
            profile: Profile::convenient(),
            udesk_fields: AccountFields::of(FieldsAccount::Optional),
        }
    }
}

/// Platform time: real time multiplied by the scale.
#[derive(Debug)]
pub struct Clock {
    start: Instant,
    scale: f64,
}

impl Clock {
    /// A clock running `scale` times faster than real time.
    pub fn new(scale: f64) -> Self {
        Clock {
            start: Instant::now(),
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
        }
    }

    /// Platform time since start.
    pub fn now(&self) -> Duration {
        self.start.elapsed().mul_f64(self.scale)
    }

    /// The real time that a span of platform time takes.
    pub fn to_real(&self, platform: Duration) -> Duration {
        platform.div_f64(self.scale)
    }
}

/// A token bucket over platform time.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket of `capacity` refilled at `per_second`.
    pub fn new(capacity: f64, per_second: f64) -> Self {
        TokenBucket {
            capacity,
            per_second,
            tokens: capacity,
            last: Duration::ZERO,
        }
    }

    /// Takes a token, or says how long (platform time) until one is there.
    pub fn take(&mut self, now: Duration) -> Result<(), Duration> {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

/// Counters for the state endpoint and tests.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests to platform paths.
    pub requests: AtomicU64,
    /// Refused by a rate limit.
    pub rate_limited: AtomicU64,
    /// Refused for capacity.
    pub over_capacity: AtomicU64,
    /// Injected 500s (not applied).
    pub injected_errors: AtomicU64,
    /// Applied, then 500.
    pub injected_apply_then_errors: AtomicU64,
    /// Cut, not applied.
    pub injected_drops: AtomicU64,
    /// Applied, then cut.
    pub injected_apply_then_drops: AtomicU64,
    /// Omnidesk creates and `addChannelOnly` calls that carried `noSync`.
    pub no_sync_writes: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "requests": g(&self.requests),
            "rate_limited": g(&self.rate_limited),
            "over_capacity": g(&self.over_capacity),
            "injected_errors": g(&self.injected_errors),
            "injected_apply_then_errors": g(&self.injected_apply_then_errors),
            "injected_drops": g(&self.injected_drops),
            "injected_apply_then_drops": g(&self.injected_apply_then_drops),
            "no_sync_writes": g(&self.no_sync_writes),
        })
    }
}

/// Mutable platform data, under one lock (every operation is short and never awaits).
#[derive(Debug)]
pub struct Data {
    /// Omnidesk customers.
    pub omni: OmniStore,
    /// Udesk customers.
    pub udesk: UdeskStore,
    /// Live export scrolls.
    pub scrolls: HashMap<String, udesk::Scroll>,
    /// Used nonces with the platform time they were used.
    pub nonces: HashMap<String, Duration>,
    /// Accepted bulk imports waiting to be applied.
    pub pending_imports: Vec<udesk::PendingImport>,
    /// What happened to applied bulk-import rows that could not be created.
    pub import_skips: Vec<serde_json::Value>,
    /// Platform time of the last accepted bulk import.
    pub last_bulk_import: Option<Duration>,
    /// Counter for scroll ids.
    pub scroll_counter: u64,
    omni_bucket: Option<TokenBucket>,
    udesk_bucket: TokenBucket,
}

/// State shared by all handlers.
pub struct Shared {
    /// The start configuration.
    pub config: SandboxConfig,
    /// Platform time.
    pub clock: Clock,
    data: Mutex<Data>,
    faults: Mutex<FaultState>,
    profile: Mutex<Profile>,
    udesk_fields: Mutex<Arc<AccountFields>>,
    /// Counters.
    pub stats: Stats,
}

struct FaultState {
    faults: Faults,
    rng: Rng,
    capacity: Option<Arc<Semaphore>>,
}

impl Shared {
    fn new(config: SandboxConfig) -> std::io::Result<Self> {
        let (mut omni, mut udesk_store) = match &config.state_file {
            Some(path) => load_state(path)?,
            None => (OmniStore::default(), UdeskStore::default()),
        };
        if omni.customers.is_empty() && udesk_store.customers.is_empty() {
            store::seed(&mut omni, &mut udesk_store, config.seed_customers, 1);
        }
        let per_minute = f64::from(config.udesk_calls_per_minute.max(1));
        let data = Data {
            omni,
            udesk: udesk_store,
            scrolls: HashMap::new(),
            nonces: HashMap::new(),
            pending_imports: Vec::new(),
            import_skips: Vec::new(),
            last_bulk_import: None,
            scroll_counter: 0,
            omni_bucket: config
                .omnidesk_rate_per_second
                .map(|r| TokenBucket::new(r.max(1.0), r)),
            udesk_bucket: TokenBucket::new(per_minute, per_minute / 60.0),
        };
        let faults = FaultState {
            capacity: config
                .faults
                .capacity
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            faults: config.faults.clone(),
            rng: Rng(config.seed),
        };
        Ok(Shared {
            profile: Mutex::new(config.profile.clone()),
            udesk_fields: Mutex::new(Arc::new(config.udesk_fields.clone())),
            clock: Clock::new(config.time_scale),
            config,
            data: Mutex::new(data),
            faults: Mutex::new(faults),
            stats: Stats::default(),
        })
    }

    /// Locks the platform data (a poisoned lock is taken over: the data stays usable).
    pub fn data(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault_state(&self) -> MutexGuard<'_, FaultState> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.fault_state().faults.clone()
    }

    /// The reply profile in force.
    pub fn profile(&self) -> Profile {
        self.profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The Udesk account's custom fields in force.
    pub fn udesk_fields(&self) -> Arc<AccountFields> {
        self.udesk_fields
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the Udesk account's custom fields.
    pub fn set_udesk_fields(&self, fields: AccountFields) {
        *self.udesk_fields.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(fields);
    }

    /// Replaces the reply profile.
    pub fn set_profile(&self, profile: Profile) {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = profile;
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.fault_state();
        state.capacity = faults.capacity.map(|n| Arc::new(Semaphore::new(n.max(1))));
        state.faults = faults;
    }
}

/// Loads a saved store; a missing file is an empty store, a broken one an error (so a later
/// save cannot overwrite the user's file with an empty store).
fn load_state(path: &std::path::Path) -> std::io::Result<(OmniStore, UdeskStore)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let saved: SavedState = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "sandbox state file {} is not a saved state: {e}",
                path.display()
            ),
        )
    })?;
    let mut omni = saved.omnidesk;
    omni.rebuild_index();
    Ok((omni, saved.udesk))
}

/// The persisted part of the state.
#[derive(Deserialize)]
struct SavedState {
    omnidesk: OmniStore,
    udesk: UdeskStore,
}

/// The persisted part of the state, borrowed for writing.
#[derive(Serialize)]
struct SavedStateRef<'a> {
    omnidesk: &'a OmniStore,
    udesk: &'a UdeskStore,
}

/// One decided fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Error,
    ApplyThenError,
    Drop,
    ApplyThenDrop,
}

fn roll(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn decide_fault(state: &mut FaultState) -> (Option<Fault>, Duration) {
    let f = &state.faults;
    let (e, ae, d, ad) = (
        f.error_rate,
        f.apply_then_error_rate,
        f.drop_rate,
        f.apply_then_drop_rate,
    );
    let latency = Duration::from_millis(f.latency_ms);
    let jitter_ms = f.jitter_ms;
    let r = roll(&mut state.rng);
    let jitter = if jitter_ms > 0 {
        Duration::from_millis(state.rng.below(jitter_ms + 1))
    } else {
        Duration::ZERO
    };
    let fault = if r < e {
        Some(Fault::Error)
    } else if r < e + ae {
        Some(Fault::ApplyThenError)
    } else if r < e + ae + d {
        Some(Fault::Drop)
    } else if r < e + ae + d + ad {
        Some(Fault::ApplyThenDrop)
    } else {
        None
    };
    (fault, latency + jitter)
}

/// A reply whose connection is cut before a complete response reaches the client.
fn dropped() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("sandbox: connection dropped"))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert("content-length", HeaderValue::from_static("1024"));
    response
}

fn retry_after_headers(response: &mut Response, clock: &Clock, wait: Duration) {
    let real = clock.to_real(wait);
    let secs = real.as_secs() + u64::from(real.subsec_nanos() > 0);
    let headers = response.headers_mut();
    headers.insert("retry-after", HeaderValue::from(secs.max(1)));
    headers.insert(
        "retry-after-ms",
        HeaderValue::from((real.as_millis() as u64).max(1)),
    );
}

fn rate_limited(shared: &Shared, platform: Platform, wait: Duration) -> Response {
    let mut response = match platform {
        Platform::Omnidesk => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"type": "error", "message": "Too many requests"})),
        )
            .into_response(),
        Platform::Udesk => {
            let status = match shared.config.udesk_rate_limit_style {
                UdeskRateLimitStyle::Http429 => StatusCode::TOO_MANY_REQUESTS,
                UdeskRateLimitStyle::Code429 => StatusCode::OK,
            };
            (
                status,
                Json(json!({"code": 429, "message": "API interface exceeds request limit", "exception": null})),
            )
                .into_response()
        }
    };
    retry_after_headers(&mut response, &shared.clock, wait);
    response
}

fn server_error(platform: Platform) -> Response {
    let body = match platform {
        Platform::Omnidesk => json!({"type": "error", "message": "Internal server error"}),
        Platform::Udesk => json!({"code": 500, "message": "Internal server error"}),
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// The gate every platform request passes: capacity, latency, rate budget, fault, handler.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_ascii_lowercase();
    let platform = if path.starts_with("/api/v2/") || path == "/api/v2" {
        Platform::Omnidesk
    } else if path.starts_with("/open_api_v1/") {
        Platform::Udesk
    } else {
        return next.run(request).await;
    };
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (capacity, over) = {
        let state = shared.fault_state();
        (state.capacity.clone(), state.faults.over_capacity)
    };
    let _permit = match capacity {
        Some(semaphore) => match over {
            OverCapacity::Queue => semaphore.acquire_owned().await.ok(),
            OverCapacity::Reject => match semaphore.try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    shared.stats.over_capacity.fetch_add(1, Ordering::Relaxed);
                    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "over capacity").into_response();
                    retry_after_headers(&mut r, &Clock::new(1.0), Duration::from_millis(100));
                    return r;
                }
            },
        },
        None => None,
    };
    let (fault, delay, write_factor) = {
        let mut state = shared.fault_state();
        let factor = state.faults.write_latency_factor;
        let (fault, delay) = decide_fault(&mut state);
        (fault, delay, factor)
    };
    let writes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let delay = if writes && write_factor > 0.0 && write_factor.is_finite() {
        delay.mul_f64(write_factor)
    } else {
        delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let now = shared.clock.now();
    let limited = {
        let mut data = shared.data();
        match platform {
            Platform::Omnidesk => data.omni_bucket.as_mut().map_or(Ok(()), |b| b.take(now)),
            Platform::Udesk => data.udesk_bucket.take(now),
        }
    };
    if let Err(wait) = limited {
        shared.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        return rate_limited(&shared, platform, wait);
    }
    match fault {
        None => next.run(request).await,
        Some(Fault::Error) => {
            shared.stats.injected_errors.fetch_add(1, Ordering::Relaxed);
            server_error(platform)
        }
        Some(Fault::Drop) => {
            shared.stats.injected_drops.fetch_add(1, Ordering::Relaxed);
            dropped()
        }
        Some(Fault::ApplyThenError) => {
            shared
                .stats
                .injected_apply_then_errors
                .fetch_add(1, Ordering::Relaxed);
            let _applied = next.run(request).await;
            server_error(platform)
        }
        Some(Fault::ApplyThenDrop) => {
            shared
                .stats
                .injected_apply_then_drops
                .fetch_add(1, Ordering::Relaxed);
            let _applied = next.run(request).await;
            dropped()
        }
    }
}

#[derive(Deserialize)]
struct StateQuery {
    #[serde(default)]
    summary: bool,
}

async fn control_state(State(shared): State<Arc<Shared>>, Query(q): Query<StateQuery>) -> Response {
    let now = shared.clock.now();
    let mut data = shared.data();
    udesk::apply_due_imports(&mut data, now);
    let omni: Vec<_> = if q.summary {
        Vec::new()
    } else {
        data.omni
            .order
            .iter()
            .filter_map(|id| data.omni.customers.get(id))
            .collect()
    };
    let udesk_customers: Vec<_> = if q.summary {
        Vec::new()
    } else {
        data.udesk
            .order
            .iter()
            .filter_map(|id| data.udesk.customers.get(id))
            .collect()
    };
    Json(json!({
        "omnidesk": {"count": data.omni.customers.len(), "customers": omni},
        "udesk": {
            "count": data.udesk.customers.len(),
            "customers": udesk_customers,
            "pending_imports": data.pending_imports.iter().map(|p| p.rows.len()).sum::<usize>(),
            "import_skips": data.import_skips,
        },
        "stats": shared.stats.snapshot(),
        "faults": shared.faults(),
    }))
    .into_response()
}

async fn control_reset(State(shared): State<Arc<Shared>>) -> Response {
    let mut data = shared.data();
    data.omni = OmniStore::default();
    data.udesk = UdeskStore::default();
    data.scrolls.clear();
    data.pending_imports.clear();
    data.import_skips.clear();
    data.last_bulk_import = None;
    Json(json!({"reset": true})).into_response()
}

async fn control_get_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults()).into_response()
}

async fn control_put_faults(
    State(shared): State<Arc<Shared>>,
    Json(faults): Json<Faults>,
) -> Response {
    shared.set_faults(faults.clone());
    Json(faults).into_response()
}

async fn control_get_profile(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.profile()).into_response()
}

/// `PUT /__sandbox/profile`: a whole profile (fields left out are the convenient profile's),
/// or `{"name": "documented"}` for a named one.
async fn control_put_profile(
    State(shared): State<Arc<Shared>>,
    Json(value): Json<serde_json::Value>,
) -> Response {
    let named = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("name"))
        .and_then(serde_json::Value::as_str)
        .and_then(Profile::named);
    let profile = match named {
        Some(p) => p,
        None => match serde_json::from_value::<Profile>(value) {
            Ok(p) => p,
            Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
        },
    };
    shared.set_profile(profile.clone());
    Json(profile).into_response()
}

/// `PUT /__sandbox/udesk_fields`: `{"account": "optional" | "documented"}`, or a
/// `custom_fields` reply in the documented shape for another account.
async fn control_put_udesk_fields(
    State(shared): State<Arc<Shared>>,
    Json(value): Json<serde_json::Value>,
) -> Response {
    let fields = match value.get("account").and_then(serde_json::Value::as_str) {
        Some("optional") => AccountFields::of(FieldsAccount::Optional),
        Some("documented") => AccountFields::of(FieldsAccount::Documented),
        Some(other) => {
            return (StatusCode::BAD_REQUEST, format!("no account {other:?}")).into_response()
        }
        None => match AccountFields::from_reply(&value) {
            Ok(f) => f,
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        },
    };
    shared.set_udesk_fields(fields);
    Json(json!({"custom_fields": shared.udesk_fields().reply()})).into_response()
}

async fn control_get_udesk_fields(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"custom_fields": shared.udesk_fields().reply()})).into_response()
}

async fn control_apply_imports(State(shared): State<Arc<Shared>>) -> Response {
    let mut data = shared.data();
    udesk::apply_due_imports(&mut data, Duration::MAX);
    Json(json!({"applied": true})).into_response()
}

async fn control_save(State(shared): State<Arc<Shared>>) -> Response {
    match save(&shared) {
        Ok(Some(path)) => Json(json!({"saved": path.display().to_string()})).into_response(),
        Ok(None) => (StatusCode::BAD_REQUEST, "no --state-file configured").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Writes the store to the state file (temp file + rename), if one is configured.
pub fn save(shared: &Shared) -> std::io::Result<Option<PathBuf>> {
    let Some(path) = shared.config.state_file.clone() else {
        return Ok(None);
    };
    let bytes = {
        let data = shared.data();
        serde_json::to_vec(&SavedStateRef {
            omnidesk: &data.omni,
            udesk: &data.udesk,
        })
        .map_err(std::io::Error::other)?
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    Ok(Some(path))
}

/// The whole router: both platforms, the gate, and the control endpoints.
pub fn router(shared: Arc<Shared>) -> Router {
    let control = Router::new()
        .route("/__sandbox/state", get(control_state))
        .route("/__sandbox/reset", post(control_reset))
        .route(
            "/__sandbox/faults",
            get(control_get_faults).put(control_put_faults),
        )
        .route(
            "/__sandbox/profile",
            get(control_get_profile).put(control_put_profile),
        )
        .route(
            "/__sandbox/udesk_fields",
            get(control_get_udesk_fields).put(control_put_udesk_fields),
        )
        .route("/__sandbox/apply_imports", post(control_apply_imports))
        .route("/__sandbox/save", post(control_save))
        .route_layer(middleware::from_fn(same_origin_only));
    Router::new()
        .merge(omnidesk::routes())
        .merge(udesk::routes())
        .merge(control)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// The control endpoints change the whole store: a web page the operator happens to have
/// open must not reach them with a "simple" cross-origin request (a form POST needs no
/// preflight). Browsers mark such requests with `Origin` or `Sec-Fetch-Site`; tools do not.
async fn same_origin_only(request: Request, next: middleware::Next) -> Response {
    let headers = request.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "same-origin" | "none"));
    let foreign_origin = headers.get("origin").is_some_and(|origin| {
        let host = headers.get("host").and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or("");
        host.is_none_or(|h| origin != format!("http://{h}"))
    });
    if cross_site || foreign_origin {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"type": "error", "message": "the sandbox's control endpoints take no cross-origin requests"})),
        )
            .into_response();
    }
    next.run(request).await
}

async fn not_found(request: Request) -> Response {
    let path = request.uri().path().to_string();
    (
        StatusCode::NOT_FOUND,
        Json(json!({"type": "error", "message": format!("no such endpoint: {path}")})),
    )
        .into_response()
}

/// Paths are matched case-insensitively (the documents disagree on case): lower-case them
/// before routing.
fn lowercase_path(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        let lowered = path.to_ascii_lowercase();
        let rebuilt = match uri.query() {
            Some(q) => format!("{lowered}?{q}"),
            None => lowered,
        };
        if let Ok(new_uri) = rebuilt.parse() {
            *request.uri_mut() = new_uri;
        }
    }
    request
}

/// A running sandbox.
pub struct Sandbox {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its state, for in-process inspection.
    pub shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Sandbox {
    /// `http://127.0.0.1:PORT`, the origin both platforms are served under.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until the server has stopped.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// How long a client may take to send a request's headers: a client that trickles them
/// (slowloris) is cut off instead of holding a connection for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stop`, serving each over HTTP/1 with a header-read timeout;
/// then lets the open connections finish.
async fn serve<S>(
    listener: tokio::net::TcpListener,
    service: S,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) where
    S: tower::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors or the like: do not spin on it.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let connection = http.serve_connection(
                    hyper_util::rt::TokioIo::new(stream),
                    hyper_util::service::TowerToHyperService::new(service.clone()),
                );
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Starts the sandbox on `addr` (port 0 for an ephemeral one) in the current tokio runtime.
pub async fn spawn(config: SandboxConfig, addr: SocketAddr) -> std::io::Result<Sandbox> {
    let shared = Arc::new(Shared::new(config)?);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let app = tower::Layer::layer(
        &tower::util::MapRequestLayer::new(lowercase_path),
        router(shared.clone()),
    );
    let service = tower::ServiceBuilder::new()
        .map_request(|r: hyper::Request<hyper::body::Incoming>| r.map(axum::body::Body::new))
        .service(app);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, service, rx));
    Ok(Sandbox {
        addr,
        shared,
        shutdown: Some(tx),
        task: Some(task),
    })
}
