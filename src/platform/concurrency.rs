//! Adaptive concurrency that learns from windows of requests, not single ones (after
//! Vector's adaptive request concurrency and the gradient idea of Netflix's
//! concurrency-limits).
//!
//! A window closes after `limit` (at least eight) requests have ended. Its latency is read
//! against a baseline *per endpoint class* (a create is slower than a search: they are never
//! mixed into one floor): each reply's latency divided by its class's baseline, averaged
//! over the window. A baseline is the unloaded latency of its class: a moving average of
//! window means that rises only with windows within the noise, or run at no more load than
//! the baseline was seen at (same load, higher latency: the platform itself got slower), so
//! the ratio says how much latency rose with load, and queueing does not raise its own
//! yardstick.
//! What counts
//! as a rise is measured too: the window-to-window change of the ratio is its noise (±50%
//! jitter averages out over a window). At the end of a window:
//!
//! - a throttle (429, 503, `Retry-After`), a timeout or a refused connection: the platform
//!   says "too much": × 0.75;
//! - failures (5xx, cut connections) well above their usual share (more than the long-run
//!   rate explains by chance: three binomial standard deviations plus one, and over 20%):
//!   failing *because* of load: × 0.75. A platform that fails 5% of requests at random is
//!   not slowed down by it;
//! - latency up on its baseline by more than three times the noise, and at least 50% (the
//!   tolerance of Netflix's gradient limiter: a small queue at the platform keeps it busy):
//!   requests queue at the platform: × 0.9;
//! - otherwise, if the window used every slot it had: one more slot (doubling in the slow
//!   start, until the first decrease).
//!
//! Fixed mode never moves from the maximum (for measuring).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// What one request's end says about load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A reply (success or a refusal of the row itself) after this long.
    Reply(Duration),
    /// The platform pushed back: a throttle, a timeout, a refused connection.
    Congested,
    /// A failed request that is not in itself a sign of load: a 5xx, a cut connection.
    Failed,
}

/// Smallest window, in requests.
const MIN_WINDOW: usize = 8;
/// Weight of a window in the moving averages of noise and failures, and of a lower window
/// mean in a baseline.
const ALPHA: f64 = 0.3;
/// Weight of a higher window mean in a baseline seen at no more load than it was set at.
const ALPHA_UP: f64 = 0.1;
/// How many times the noise of the latency ratio counts as a real rise.
const NOISE_SCALE: f64 = 3.0;
/// A rise below this is never congestion.
const MIN_RISE: f64 = 0.5;
/// Windows of noise measured before latency may lower the limit.
const NOISE_WINDOWS: u32 = 3;

/// The controller and the slots it hands out.
#[derive(Debug)]
pub struct Adaptive {
    state: Mutex<State>,
    notify: Notify,
    max: usize,
    fixed: bool,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    slow_start: bool,
    window: Window,
    /// Per endpoint class: the unloaded latency.
    baselines: HashMap<String, Baseline>,
    /// Moving average of the change of the latency ratio from one window to the next.
    noise: f64,
    /// The last window's latency ratio.
    last_ratio: Option<f64>,
    /// Windows whose ratio fed the noise estimate; latency decides nothing before a few.
    noise_windows: u32,
    /// Moving average of the failure share of windows.
    failure_rate: f64,
}

/// A class's unloaded latency (seconds) and the limit it was last lowered at.
#[derive(Debug, Clone, Copy)]
struct Baseline {
    latency: f64,
    limit: usize,
}

#[derive(Debug, Default)]
struct Window {
    ended: usize,
    ratio_sum: f64,
    replies: usize,
    failures: usize,
    congested: bool,
    used_every_slot: bool,
    /// Per class: sum of latencies (seconds) and count, for the baselines.
    classes: HashMap<String, (f64, usize)>,
}

/// A slot, given back on drop.
#[derive(Debug)]
pub struct Slot<'a>(&'a Adaptive);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

impl Adaptive {
    /// A controller starting at 2 (slow start) below `max`.
    pub fn new(max: usize) -> Self {
        Adaptive::with(max, 2.min(max.max(1)), false)
    }

    /// A controller that stays at `max`.
    pub fn fixed(max: usize) -> Self {
        Adaptive::with(max, max.max(1), true)
    }

    fn with(max: usize, limit: usize, fixed: bool) -> Self {
        Adaptive {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                slow_start: true,
                window: Window::default(),
                baselines: HashMap::new(),
                noise: 0.0,
                last_ratio: None,
                noise_windows: 0,
                failure_rate: 0.0,
            }),
            notify: Notify::new(),
            max: max.max(1),
            fixed,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The number of requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.lock().limit.clamp(1, self.max)
    }

    /// Waits for a slot.
    pub async fn acquire(&self) -> Slot<'_> {
        let mut waited = false;
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                let limit = s.limit.clamp(1, self.max);
                if s.in_flight < limit {
                    s.in_flight += 1;
                    if waited || s.in_flight == limit {
                        s.window.used_every_slot = true;
                    }
                    return Slot(self);
                }
            }
            waited = true;
            notified.await;
        }
    }

    fn release(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        drop(s);
        self.notify.notify_one();
    }

    /// Records how a request of endpoint `class` ended; closes the window when it is full.
    pub fn record(&self, class: &str, signal: Signal) {
        let mut s = self.lock();
        match signal {
            Signal::Reply(latency) => {
                let secs = latency.as_secs_f64().max(1e-6);
                // A class seen for the first time only starts its baseline.
                if let Some(baseline) = s.baselines.get(class) {
                    s.window.ratio_sum += secs / baseline.latency;
                    s.window.replies += 1;
                }
                let entry = s.window.classes.entry(class.to_string()).or_default();
                entry.0 += secs;
                entry.1 += 1;
            }
            Signal::Congested => s.window.congested = true,
            Signal::Failed => s.window.failures += 1,
        }
        s.window.ended += 1;
        if s.window.ended >= s.limit.max(MIN_WINDOW) {
            let grew = self.close_window(&mut s);
            drop(s);
            if grew {
                self.notify.notify_waiters();
            }
        }
    }

    /// Decides on the window that just filled; true when the limit grew.
    fn close_window(&self, s: &mut State) -> bool {
        let window = std::mem::take(&mut s.window);
        let ended = window.ended.max(1) as f64;
        let failure_share = window.failures as f64 / ended;
        let ratio = (window.replies > 0).then(|| window.ratio_sum / window.replies as f64);
        let rise_allowed = (NOISE_SCALE * s.noise).max(MIN_RISE);
        // More failures than the usual rate explains by chance (three standard deviations
        // of the binomial, plus one), and over 20%: small windows are not a trap.
        let usual = s.failure_rate.max(0.02);
        let chance = ended * usual + 3.0 * (ended * usual * (1.0 - usual)).sqrt() + 1.0;
        let failing_from_load = failure_share > 0.2 && window.failures as f64 > chance;
        let queueing =
            s.noise_windows >= NOISE_WINDOWS && ratio.is_some_and(|r| r > 1.0 + rise_allowed);
        let before = s.limit;
        if !self.fixed {
            if window.congested || failing_from_load {
                s.limit = ((s.limit as f64 * 0.75) as usize).max(1);
                s.slow_start = false;
            } else if queueing {
                s.limit = ((s.limit as f64 * 0.9) as usize).max(1);
                s.slow_start = false;
            } else if window.used_every_slot && s.limit < self.max {
                s.limit = if s.slow_start {
                    (s.limit * 2).min(self.max)
                } else {
                    s.limit + 1
                };
            }
        }
        // The long-run averages learn from every window but those that backed off for load.
        if let Some(r) = ratio {
            if let Some(last) = s.last_ratio {
                s.noise += ALPHA * ((r - last).abs() - s.noise);
                s.noise_windows += 1;
            }
            s.last_ratio = Some(r);
        }
        if !failing_from_load {
            s.failure_rate += ALPHA * (failure_share - s.failure_rate);
        }
        for (class, (sum, count)) in window.classes {
            let mean = sum / count as f64;
            let b = s.baselines.entry(class).or_insert(Baseline {
                latency: mean,
                limit: before,
            });
            if mean < b.latency {
                b.latency += ALPHA_UP * (mean - b.latency);
                b.limit = b.limit.max(before);
            } else if before <= b.limit || mean < b.latency * (1.0 + rise_allowed / 2.0) {
                // Same load and slower, or within the noise: the platform's own latency.
                b.latency += ALPHA_UP * (mean - b.latency);
            }
        }
        s.limit > before
    }
}

/// The endpoint class of a request path: numeric segments (ids) become `#`, so
/// `/api/v2/customer/17` and `/api/v2/customer/42` share one baseline.
pub fn class_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "#"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` windows of replies whose latency is `latency(limit)`, each window using
    /// every slot; returns the limit after each window.
    fn drive(a: &Adaptive, windows: usize, latency: impl Fn(usize) -> f64) -> Vec<usize> {
        let mut seen = Vec::new();
        for w in 0..windows {
            let limit = a.limit();
            a.lock().window.used_every_slot = true;
            for i in 0..limit.max(MIN_WINDOW) {
                // ±50% jitter, deterministic.
                let jitter = 0.5 + ((w * 31 + i * 17) % 100) as f64 / 100.0;
                let ms = latency(limit) * jitter;
                let class = if i % 3 == 0 { "/search" } else { "/create" };
                let scale = if class == "/create" { 2.0 } else { 1.0 };
                a.record(
                    class,
                    Signal::Reply(Duration::from_secs_f64(ms * scale / 1000.0)),
                );
            }
            seen.push(a.limit());
        }
        seen
    }

    #[test]
    fn grows_to_the_maximum_when_latency_does_not_rise_despite_jitter_and_mixed_endpoints() {
        let a = Adaptive::new(64);
        let limits = drive(&a, 60, |_| 20.0);
        assert_eq!(*limits.last().unwrap(), 64, "{limits:?}");
    }

    #[test]
    fn settles_near_a_servers_worker_count() {
        // 16 workers: beyond them, requests wait and latency grows with the limit.
        let a = Adaptive::new(64);
        let limits = drive(&a, 200, |limit| 20.0 * (limit as f64 / 16.0).max(1.0));
        let tail = &limits[150..];
        let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
        assert!((12.0..=28.0).contains(&mean), "mean {mean}: {limits:?}");
    }

    #[test]
    fn random_failures_do_not_slow_it_down_but_failures_that_grow_with_load_do() {
        let a = Adaptive::new(32);
        for w in 0..200 {
            let limit = a.limit();
            a.lock().window.used_every_slot = true;
            for i in 0..limit.max(MIN_WINDOW) {
                if (w * 7 + i * 13) % 100 < 12 {
                    a.record("/c", Signal::Failed);
                } else {
                    a.record("/c", Signal::Reply(Duration::from_millis(20)));
                }
            }
        }
        assert_eq!(
            a.limit(),
            32,
            "12% random failures are retried, not backed off from"
        );
        // Now every request fails: the platform breaks under load.
        for _ in 0..10 {
            a.lock().window.used_every_slot = true;
            for _ in 0..a.limit().max(MIN_WINDOW) {
                a.record("/c", Signal::Failed);
            }
        }
        assert!(a.limit() < 16, "{}", a.limit());
    }

    #[test]
    fn a_throttle_backs_off_and_fixed_never_moves() {
        let a = Adaptive::new(32);
        drive(&a, 20, |_| 20.0);
        let before = a.limit();
        for _ in 0..before {
            a.record("/c", Signal::Congested);
        }
        assert_eq!(a.limit(), (before as f64 * 0.75) as usize);
        let f = Adaptive::fixed(8);
        for _ in 0..100 {
            f.record("/c", Signal::Congested);
        }
        drive(&f, 10, |limit| 20.0 * limit as f64);
        assert_eq!(f.limit(), 8);
    }

    #[test]
    fn endpoint_classes_fold_ids() {
        assert_eq!(class_of("/api/v2/customer/17"), "/api/v2/customer/#");
        assert_eq!(
            class_of("/api/v2/customer/SearchByPrimaryExternalID"),
            "/api/v2/customer/searchbyprimaryexternalid"
        );
    }
}
