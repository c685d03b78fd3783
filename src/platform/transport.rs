//! The one place for how requests travel: timeouts, retries with exponential backoff and
//! full jitter, one pause shared by every worker when the platform says "slow down"
//! (HTTP 429, Udesk code 429, 503, `Retry-After`), a per-platform rate limit (governor), and
//! concurrency that adapts between 1 and a maximum ([`super::concurrency`]: windows of
//! requests, latency per endpoint class, pushback and load-driven failures).
//!
//! It also decides when the platform cannot be worked with at all ([`CallError::Unusable`]):
//! a redirect (never followed: credentials go to the origin given and nowhere else), an
//! HTML 404, a `Retry-After` longer than `give_up_after`, no successful reply for that long,
//! or no reply at all for a while. Messages the platform sends back are scrubbed of
//! signatures, nonces and the run's own credentials before anyone sees them.
//!
//! Platform clients give [`Transport::call`] a closure that builds a fresh request for every
//! attempt (so Udesk requests are signed anew, retries included) and a decoder that turns
//! the reply into a value or a [`CallError`].

use super::concurrency::{Adaptive, Signal};
use super::CallError;
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How the transport behaves.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Time allowed for one request, reply included.
    pub timeout: Duration,
    /// Attempts per call before giving up on an `Unavailable` failure.
    pub max_attempts: u32,
    /// First backoff step.
    pub backoff_base: Duration,
    /// Longest backoff (and longest pause without `Retry-After`).
    pub backoff_cap: Duration,
    /// Upper bound of the adaptive concurrency.
    pub max_concurrency: usize,
    /// Requests per second, if the platform has a budget.
    pub rate_per_second: Option<f64>,
    /// Adapt concurrency (AIMD); when false it stays at `max_concurrency`.
    pub adaptive: bool,
    /// The longest the run waits for the platform: a longer `Retry-After`, or this long
    /// without a successful reply, makes the platform [`CallError::Unusable`].
    pub give_up_after: Duration,
    /// Requests in a row that got no reply at all (timeouts, refused or cut connections)
    /// after which, with no reply for twice the timeout, the platform is unreachable.
    pub max_silent_failures: u32,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            timeout: Duration::from_secs(30),
            max_attempts: 8,
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(30),
            max_concurrency: 16,
            rate_per_second: None,
            adaptive: true,
            give_up_after: Duration::from_secs(300),
            max_silent_failures: 10,
        }
    }
}

/// Counters for the progress line and the summary.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Attempts that were retries.
    pub retries: AtomicU64,
    /// Replies that were rate or capacity refusals.
    pub throttled: AtomicU64,
    /// Shared pauses started.
    pub pauses: AtomicU64,
    /// Replies that were 5xx, cut or timed out.
    pub unavailable: AtomicU64,
}

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Safe to repeat (reads, updates): retried on every retryable failure.
    Idempotent,
    /// A create: retried only when it surely was not applied (throttled, never sent).
    NotIdempotent,
}

/// A shared pause long enough to be worth telling the operator about.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseNotice {
    /// How long nobody sends.
    pub seconds: f64,
    /// Whether the platform said how long (`Retry-After`) or the pause is a backoff.
    pub asked_by_platform: bool,
}

/// Pauses shorter than this are not reported to the observer.
pub const NOTICE_PAUSES_FROM: Duration = Duration::from_secs(2);

/// Called when a shared pause of [`NOTICE_PAUSES_FROM`] or more starts.
pub type PauseObserver = Arc<dyn Fn(&PauseNotice) + Send + Sync>;

/// The HTTP transport shared by every worker of one run.
pub struct Transport {
    client: reqwest::Client,
    config: TransportConfig,
    limiter: Option<DefaultDirectRateLimiter>,
    pause: Pause,
    concurrency: Adaptive,
    priority_waiting: AtomicUsize,
    health: Mutex<Health>,
    hidden: RwLock<Vec<String>>,
    on_pause: Option<PauseObserver>,
    /// Counters.
    pub stats: TransportStats,
}

/// Whether the platform is failing now: since when requests have kept failing (none
/// succeeded), since when they have got no reply at all, and how many in a row. Measured from
/// the first such request's start, never from an idle time before it (a long stretch of
/// rows that need no request is not a silence).
#[derive(Debug, Default)]
struct Health {
    failing_since: Option<Instant>,
    silent_since: Option<Instant>,
    silent_failures: u32,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .field("concurrency", &self.concurrency.limit())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A transport with rustls and the given behaviour.
    pub fn new(config: TransportConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            // An API call is never redirected; following one would send the credentials to
            // wherever the platform (or something in between) points.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("deskport/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let limiter = config.rate_per_second.and_then(rate_limiter);
        let max = config.max_concurrency.max(1);
        Ok(Transport {
            client,
            limiter,
            pause: Pause::default(),
            concurrency: if config.adaptive {
                Adaptive::new(max)
            } else {
                Adaptive::fixed(max)
            },
            priority_waiting: AtomicUsize::new(0),
            health: Mutex::new(Health::default()),
            hidden: RwLock::new(Vec::new()),
            on_pause: None,
            config,
            stats: TransportStats::default(),
        })
    }

    /// Tells the transport a credential, so it is cut out of every message the platform
    /// sends back (a reply that echoes the request).
    pub fn hide(&self, secret: &str) {
        if secret.len() >= 4 {
            self.hidden
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(secret.to_string());
        }
    }

    /// Calls `observer` whenever a shared pause of [`NOTICE_PAUSES_FROM`] or more starts.
    pub fn on_pause(&mut self, observer: PauseObserver) {
        self.on_pause = Some(observer);
    }

    /// `message` without signatures, nonces, tokens or this run's credentials.
    pub fn scrub(&self, message: &str) -> String {
        let mut text = super::redact(message);
        for secret in self.hidden.read().unwrap_or_else(|e| e.into_inner()).iter() {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "<redacted>");
            }
        }
        text
    }

    /// The client-side rate limit (requests a second), if one is set.
    pub fn rate_per_second(&self) -> Option<f64> {
        self.config.rate_per_second
    }

    /// The concurrency the controller allows now.
    pub fn concurrency(&self) -> usize {
        self.concurrency.limit()
    }

    /// Whether the shared pause is in force.
    pub fn paused(&self) -> bool {
        self.pause.remaining().is_some()
    }

    /// The backoff before attempt `attempt` (1-based count of failures so far): full jitter,
    /// uniformly in `[0, min(cap, base × 2^attempt))`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            self.config.backoff_base,
            self.config.backoff_cap,
            attempt,
            fastrand::f64(),
        )
    }

    /// The configured attempts per call.
    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts.max(1)
    }

    /// One request: waits for the pause, a concurrency slot and the rate limit, sends, and
    /// decodes. Throttles start the shared pause; timings feed the concurrency controller.
    /// A `priority` request takes the next rate slot before any ordinary one.
    pub async fn attempt<T>(
        &self,
        build: &(impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync),
        decode: &(impl Fn(StatusCode, &HeaderMap, &Bytes) -> Result<T, CallError> + Sync),
        priority: bool,
    ) -> Result<T, CallError> {
        self.pause.wait().await;
        let _slot = if priority {
            None
        } else {
            Some(self.concurrency.acquire().await)
        };
        if let Some(l) = &self.limiter {
            if priority {
                self.priority_waiting.fetch_add(1, Ordering::SeqCst);
                l.until_ready().await;
                self.priority_waiting.fetch_sub(1, Ordering::SeqCst);
            } else {
                // Take a slot only when it is free now and no priority request waits for it.
                let clock = governor::clock::DefaultClock::default();
                loop {
                    while self.priority_waiting.load(Ordering::SeqCst) > 0 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    match l.check() {
                        Ok(()) => break,
                        Err(not_until) => {
                            use governor::clock::Clock;
                            tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
                        }
                    }
                }
            }
        }
        self.pause.wait().await;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let request = match build(&self.client).build() {
            Ok(r) => r,
            Err(e) => {
                return Err(CallError::Unavailable {
                    message: describe(&e),
                    maybe_applied: false,
                })
            }
        };
        let class = super::concurrency::class_of(request.url().path());
        let started = Instant::now();
        let mut replied = false;
        // Set when the request got no reply: whether that was pushback or a failure.
        let mut silence: Option<Signal> = None;
        let result = match self.client.execute(request).await {
            Ok(response) => {
                replied = true;
                let status = response.status();
                let headers = response.headers().clone();
                if status.is_redirection() {
                    Err(redirected(status, &headers))
                } else {
                    match response.bytes().await {
                        Ok(body) => match not_an_api_reply(status, &headers, &body) {
                            Some(e) => Err(e),
                            None => decode(status, &headers, &body).map_err(|e| match e {
                                CallError::Throttled { retry_after: None } => {
                                    CallError::Throttled {
                                        retry_after: retry_after(&headers),
                                    }
                                }
                                other => other,
                            }),
                        },
                        Err(e) => {
                            replied = false;
                            silence = Some(Signal::Failed);
                            Err(CallError::Unavailable {
                                message: format!("reply cut off: {}", e.without_url()),
                                maybe_applied: true,
                            })
                        }
                    }
                }
            }
            Err(e) => {
                // A timeout or a refused connection is pushback; anything else a failure.
                silence = Some(if e.is_timeout() || e.is_connect() {
                    Signal::Congested
                } else {
                    Signal::Failed
                });
                Err(CallError::Unavailable {
                    maybe_applied: !e.is_connect(),
                    message: describe(&e),
                })
            }
        };
        let latency = started.elapsed();
        let result = match result {
            Err(CallError::Throttled { retry_after }) => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                self.concurrency.record(&class, Signal::Congested);
                self.throttled(retry_after)
            }
            Err(e @ CallError::Unavailable { .. }) => {
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                self.concurrency
                    .record(&class, silence.unwrap_or(Signal::Failed));
                Err(e)
            }
            other => {
                self.pause.reset_consecutive();
                if other.as_ref().is_err_and(|e| e.stops_run()) {
                    other
                } else {
                    self.concurrency.record(&class, Signal::Reply(latency));
                    self.lock_health().failing_since = None;
                    other
                }
            }
        };
        let result = self.watch(started, replied, result);
        result.map_err(|e| self.scrubbed(e))
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A throttle: starts (or extends) the shared pause, or gives up on a platform that asks
    /// for a longer wait than the run allows.
    fn throttled<T>(&self, asked: Option<Duration>) -> Result<T, CallError> {
        let wait = match asked {
            // `Retry-After: 0` still waits a little: an immediate retry hammers the platform.
            Some(d) => d.max(self.config.backoff_base),
            None => self
                .backoff(self.pause.consecutive().saturating_add(1))
                .max(self.config.backoff_base),
        };
        if wait > self.config.give_up_after {
            return Err(CallError::Unusable {
                message: format!(
                    "the platform asked to wait {:.0} s before the next request (Retry-After), longer than the {:.0} s a run waits (--give-up-after); try again later",
                    wait.as_secs_f64(),
                    self.config.give_up_after.as_secs_f64()
                ),
            });
        }
        if self.pause.extend(wait) {
            self.stats.pauses.fetch_add(1, Ordering::Relaxed);
            if wait >= NOTICE_PAUSES_FROM {
                if let Some(observer) = &self.on_pause {
                    observer(&PauseNotice {
                        seconds: wait.as_secs_f64(),
                        asked_by_platform: asked.is_some(),
                    });
                }
            }
        }
        Err(CallError::Throttled { retry_after: asked })
    }

    /// Keeps track of replies and successes; a platform that has not answered for a while,
    /// or not successfully for `give_up_after`, becomes [`CallError::Unusable`].
    fn watch<T>(
        &self,
        started: Instant,
        replied: bool,
        result: Result<T, CallError>,
    ) -> Result<T, CallError> {
        let mut h = self.lock_health();
        if replied {
            h.silent_since = None;
            h.silent_failures = 0;
        } else if result.is_err() {
            h.silent_failures = h.silent_failures.saturating_add(1);
            h.silent_since.get_or_insert(started);
        }
        let retryable = matches!(
            result,
            Err(CallError::Throttled { .. } | CallError::Unavailable { .. })
        );
        if !retryable {
            return result;
        }
        let failing = h.failing_since.get_or_insert(started).elapsed();
        let silent = h.silent_since.map_or(Duration::ZERO, |t| t.elapsed());
        let silence = (self.config.timeout * 2).max(Duration::from_secs(10));
        if h.silent_failures >= self.config.max_silent_failures.max(1) && silent >= silence {
            return Err(CallError::Unusable {
                message: format!(
                    "{} requests in a row got no reply (timeouts, refused or cut connections) and nothing has answered for {:.0} s: the platform seems unreachable",
                    h.silent_failures,
                    silent.as_secs_f64()
                ),
            });
        }
        if failing >= self.config.give_up_after {
            return Err(CallError::Unusable {
                message: format!(
                    "no request has succeeded for {:.0} s (--give-up-after): the platform seems unavailable",
                    failing.as_secs_f64()
                ),
            });
        }
        result
    }

    /// The error with its message scrubbed ([`Transport::scrub`]).
    fn scrubbed(&self, e: CallError) -> CallError {
        match e {
            CallError::Conflict {
                platform_id,
                message,
            } => CallError::Conflict {
                platform_id,
                message: self.scrub(&message),
            },
            CallError::Rejected { message } => CallError::Rejected {
                message: self.scrub(&message),
            },
            CallError::Auth { message } => CallError::Auth {
                message: self.scrub(&message),
            },
            CallError::Expired { message } => CallError::Expired {
                message: self.scrub(&message),
            },
            CallError::Unusable { message } => CallError::Unusable {
                message: self.scrub(&message),
            },
            CallError::Unavailable {
                message,
                maybe_applied,
            } => CallError::Unavailable {
                message: self.scrub(&message),
                maybe_applied,
            },
            other @ (CallError::NotFound | CallError::Throttled { .. }) => other,
        }
    }

    /// A call with retries: throttles are always retried after the shared pause; other
    /// retryable failures with backoff, for a non-idempotent request only when it surely
    /// was not applied. The last error is returned when attempts run out.
    pub async fn call<T>(
        &self,
        retry: Retry,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync,
        decode: impl Fn(StatusCode, &HeaderMap, &Bytes) -> Result<T, CallError> + Sync,
    ) -> Result<T, CallError> {
        self.call_noting(retry, false, build, decode).await.0
    }

    /// [`Transport::call`], also telling whether an earlier attempt may have been applied
    /// (sent, then cut, timed out or answered 5xx). A delete needs this: "not found" on the
    /// retry of such an attempt is most likely that attempt's success. A `priority` request
    /// does not wait behind ordinary ones for its rate slot (the once-a-minute Udesk bulk
    /// import).
    pub async fn call_noting<T>(
        &self,
        retry: Retry,
        priority: bool,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Sync,
        decode: impl Fn(StatusCode, &HeaderMap, &Bytes) -> Result<T, CallError> + Sync,
    ) -> (Result<T, CallError>, bool) {
        let mut failures = 0u32;
        let mut throttles = 0u32;
        let mut maybe_applied_before = false;
        loop {
            match self.attempt(&build, &decode, priority).await {
                Err(CallError::Throttled { retry_after }) => {
                    throttles += 1;
                    // Throttles cost nothing on the platform; allow many, but not forever.
                    if throttles > self.max_attempts() * 8 {
                        let e = CallError::Throttled { retry_after };
                        return (Err(e), maybe_applied_before);
                    }
                }
                Err(e @ CallError::Unavailable { maybe_applied, .. }) => {
                    failures += 1;
                    let may_repeat = retry == Retry::Idempotent || !maybe_applied;
                    if !may_repeat || failures >= self.max_attempts() {
                        return (Err(e), maybe_applied_before);
                    }
                    maybe_applied_before |= maybe_applied;
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                other => return (other, maybe_applied_before),
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A 3xx reply: never followed. Names the host it points to (never its path or query).
fn redirected(status: StatusCode, headers: &HeaderMap) -> CallError {
    let target = headers
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(|location| match reqwest::Url::parse(location) {
            Ok(url) => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
            Err(_) => "another path on the same host".to_string(),
        })
        .unwrap_or_else(|| "nowhere (no Location)".to_string());
    CallError::Unusable {
        message: format!(
            "the platform answered {status} redirecting to {target}; API calls are never redirected and nothing was followed: check --base-url"
        ),
    }
}

/// A reply that no API sends: an HTML page for a 404 (a wrong path, a proxy, a login page).
fn not_an_api_reply(status: StatusCode, headers: &HeaderMap, body: &Bytes) -> Option<CallError> {
    if status != StatusCode::NOT_FOUND {
        return None;
    }
    let html_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().contains("html"));
    let html_body = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
    (html_type || html_body).then(|| CallError::Unusable {
        message: "the platform answered 404 with a web page, not an API reply: the path does not exist there; check --base-url".into(),
    })
}

/// A reqwest error without its URL (Udesk URLs carry the signature and email).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "request failed"
    } else {
        "connection failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After-Ms` (the sandbox) or `Retry-After` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    read("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| read("retry-after").map(Duration::from_secs_f64))
}

/// Full-jitter exponential backoff: `unit` in `[0, 1)` picks the point in the window.
pub fn backoff(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let window = base
        .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
        .min(cap);
    window.mul_f64(unit.clamp(0.0, 1.0))
}

fn rate_limiter(per_second: f64) -> Option<DefaultDirectRateLimiter> {
    if !(per_second.is_finite() && per_second > 0.0) {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
    // Timers wake a millisecond or so late; a burst of 50 ms worth of slots (at least one)
    // lets the limiter catch up instead of losing those slots for good.
    let burst =
        NonZeroU32::new((per_second * 0.05).clamp(1.0, 20.0) as u32).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period).map(|q| RateLimiter::direct(q.allow_burst(burst)))
}

/// One pause shared by every worker: when any request is told to slow down, nobody sends
/// until the pause is over.
#[derive(Debug, Default)]
struct Pause {
    state: Mutex<PauseState>,
}

#[derive(Debug, Default)]
struct PauseState {
    until: Option<Instant>,
    consecutive: u32,
}

impl Pause {
    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Extends the pause to at least `wait` from now; true when a new pause started.
    fn extend(&self, wait: Duration) -> bool {
        let mut s = self.lock();
        let now = Instant::now();
        let until = now + wait;
        let started = s.until.is_none_or(|u| u <= now);
        s.consecutive = s.consecutive.saturating_add(1);
        if s.until.is_none_or(|u| u < until) {
            s.until = Some(until);
        }
        started
    }

    fn consecutive(&self) -> u32 {
        self.lock().consecutive
    }

    fn reset_consecutive(&self) {
        self.lock().consecutive = 0;
    }

    fn remaining(&self) -> Option<Duration> {
        let s = self.lock();
        s.until
            .and_then(|u| u.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    async fn wait(&self) {
        while let Some(d) = self.remaining() {
            tokio::time::sleep(d).await;
        }
    }
}

/// Runs `f` at most `n` at a time over `items` (used for lookups on resume).
pub async fn for_each_bounded<I, F, Fut>(items: I, n: usize, f: F)
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items)
        .for_each_concurrent(n.max(1), f)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        assert_eq!(backoff(base, cap, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff(base, cap, 1, 0.5), Duration::from_millis(100));
        assert_eq!(backoff(base, cap, 3, 0.999_999).as_millis(), 799);
        assert!(backoff(base, cap, 30, 0.999) <= cap);
        assert!(backoff(base, cap, u32::MAX, 1.0) <= cap);
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_after_zero_still_pauses_and_an_absurd_one_gives_up() {
        let t = Transport::new(TransportConfig::default()).unwrap();
        assert!(matches!(
            t.throttled::<()>(Some(Duration::ZERO)),
            Err(CallError::Throttled { .. })
        ));
        assert!(t.paused(), "Retry-After: 0 still waits the base backoff");
        let e = t
            .throttled::<()>(Some(Duration::from_secs(100_000)))
            .unwrap_err();
        assert!(matches!(e, CallError::Unusable { .. }), "{e}");
        assert!(e.stops_run());
    }

    #[test]
    fn an_idle_stretch_before_a_failure_is_not_a_silence() {
        let t = Transport::new(TransportConfig {
            give_up_after: Duration::from_millis(50),
            ..TransportConfig::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(80));
        let failed = || -> Result<(), CallError> {
            Err(CallError::Unavailable {
                message: "HTTP 500".into(),
                maybe_applied: true,
            })
        };
        // The first failure after an idle time is an ordinary failure…
        assert!(matches!(
            t.watch(Instant::now(), true, failed()),
            Err(CallError::Unavailable { .. })
        ));
        // …failing on for longer than --give-up-after is not.
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(
            t.watch(Instant::now(), true, failed()),
            Err(CallError::Unusable { .. })
        ));
        // A success ends the streak.
        t.lock_health().failing_since = None;
        assert!(t
            .watch(Instant::now(), true, failed())
            .is_err_and(|e| !e.stops_run()));
    }

    #[test]
    fn credentials_are_cut_out_of_messages() {
        let t = Transport::new(TransportConfig::default()).unwrap();
        t.hide("s3cr3t-value");
        assert_eq!(
            t.scrub("refused key s3cr3t-value for /x?sign=abcdef&page=2"),
            "refused key <redacted> for /x?sign=<redacted>&page=2"
        );
    }

    #[tokio::test]
    async fn pause_is_shared_and_waited_for() {
        let p = Pause::default();
        assert!(p.extend(Duration::from_millis(30)));
        assert!(!p.extend(Duration::from_millis(10)), "already paused");
        let t = Instant::now();
        p.wait().await;
        assert!(t.elapsed() >= Duration::from_millis(25));
        assert!(p.remaining().is_none());
    }
}
