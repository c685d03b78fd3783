//! Benchmark of `deskport import` against the sandbox (in this process, on loopback): the
//! real binary as a child, its peak RSS from wait4, the sandbox's counters for refusals.
//!
//! ```text
//! cargo bench --bench import                                    # all scenarios
//! DESKPORT_BENCH_SCENARIOS=rss DESKPORT_BENCH_RSS_ROWS=1000000 cargo bench --bench import
//! ```
//!
//! Scenarios (DESKPORT_BENCH_SCENARIOS, comma-separated; default all):
//! - `rate`: Omnidesk with 20 ms latency and a 200 requests/s limit: achieved rate and 429s,
//!   with `--rate 200` and with adaptation alone;
//! - `capacity`: 20 ms latency, 16 requests in flight at most (more queue): a sweep of fixed
//!   concurrencies against the adaptive controller;
//! - `realistic`: servers nobody tuned for us: 16 workers with 20 ms ± 50% service time
//!   (writes twice as slow), the same with 5% 500s, 5% applied-then-500 and 2% cut
//!   connections, and a 200 requests/s limit: fixed 4–64 against adaptive, as a ratio;
//! - `udesk`: Udesk's budget (60 calls and one bulk import of 100 rows a minute) with the
//!   minute shortened to a second: rows per window against the ceiling of 159;
//! - `udesk-upsert`: the call plan: 3,000 rows upserted into an empty account against the
//!   same rows created (target ≥ 0.95×), and upserted when all exist against the budget's 60
//!   updates a minute (target ≥ 0.95×);
//! - `rss`: peak RSS importing DESKPORT_BENCH_RSS_ROWS rows (default 1,000,000).

mod common;

use common::{ensure_input, env_number, run_measured};
use deskport::sandbox::{self, Faults, OverCapacity, SandboxConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

struct Run {
    secs: f64,
    rss: u64,
    report: Value,
}

/// Runs the importer; returns wall time, peak RSS of the child and its JSON summary.
fn run_import(dir: &Path, args: &[String]) -> Run {
    let log = dir.join("stderr.log");
    let (secs, rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_deskport"))
            .current_dir(dir)
            .env("DESKPORT_OMNIDESK_API_KEY", sandbox::DEMO_OMNIDESK_API_KEY)
            .env("DESKPORT_UDESK_EMAIL", sandbox::DEMO_UDESK_EMAIL)
            .env("DESKPORT_UDESK_TOKEN", sandbox::DEMO_UDESK_TOKEN)
            .args(["--log-format", "json", "import"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file")),
    );
    let report = common::summary_report(&log);
    Run { secs, rss, report }
}

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    dir: PathBuf,
    runs: u64,
}

impl Bench {
    fn sandbox(&self, config: SandboxConfig) -> sandbox::Sandbox {
        self.runtime
            .block_on(sandbox::spawn(config, "127.0.0.1:0".parse().unwrap()))
            .expect("sandbox")
    }

    fn stats(&self, base: &str) -> Value {
        self.runtime.block_on(async {
            self.http
                .get(format!("{base}/__sandbox/state?summary=true"))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["stats"]
                .clone()
        })
    }

    fn reset(&self, base: &str) {
        self.runtime.block_on(async {
            self.http
                .post(format!("{base}/__sandbox/reset"))
                .send()
                .await
                .unwrap();
        });
    }

    fn import(&self, input: &Path, base: &str, target: &str, extra: &[&str]) -> Run {
        let journal = self.dir.join("journal");
        std::fs::remove_dir_all(&journal).ok();
        let mut args: Vec<String> = vec![
            input.display().to_string(),
            "--target".into(),
            target.into(),
            "--base-url".into(),
            base.into(),
            "--journal".into(),
            journal.display().to_string(),
        ];
        if target == "omnidesk" {
            args.extend(["--brand-id".into(), "1".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        run_import(&self.dir, &args)
    }

    /// Median of `runs` imports (fresh sandbox store each time) by rows/s.
    fn median_import(&self, input: &Path, base: &str, extra: &[&str]) -> (f64, Run, Value) {
        let mut results = Vec::new();
        for _ in 0..self.runs {
            self.reset(base);
            let before = self.stats(base);
            let run = self.import(input, base, "omnidesk", extra);
            let after = self.stats(base);
            let sent = n(&run.report["counts"]["created"]) + n(&run.report["counts"]["exists"]);
            let delta = serde_json::json!({
                "requests": n(&after["requests"]) - n(&before["requests"]),
                "rate_limited": n(&after["rate_limited"]) - n(&before["rate_limited"]),
            });
            results.push((sent / run.secs, run, delta));
        }
        results.sort_by(|a, b| a.0.total_cmp(&b.0));
        results.swap_remove(results.len() / 2)
    }
}

fn rate(b: &Bench) {
    let server = b.sandbox(SandboxConfig {
        omnidesk_rate_per_second: Some(200.0),
        faults: Faults {
            latency_ms: 20,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    });
    let base = server.base_url();
    let input = ensure_input(&b.dir, 3000, 7);
    for (label, extra) in [
        (
            "--rate 200",
            vec!["--rate", "200", "--max-concurrency", "16"],
        ),
        ("adaptive only", vec!["--max-concurrency", "16"]),
    ] {
        let (_, run, delta) = b.median_import(&input, &base, &extra);
        let requests = n(&delta["requests"]);
        let refused = n(&delta["rate_limited"]);
        println!(
            "rate  R=200/s, 20 ms latency, {label:<14}: achieved {:.1} requests/s ({:.1}% of R), 429s {:.2}% of requests, {:.1} s",
            requests / run.secs,
            requests / run.secs / 2.0,
            100.0 * refused / requests.max(1.0),
            run.secs
        );
    }
    b.runtime.block_on(server.shutdown());
}

fn capacity(b: &Bench) {
    let server = b.sandbox(SandboxConfig {
        faults: Faults {
            latency_ms: 20,
            capacity: Some(16),
            over_capacity: OverCapacity::Queue,
            ..Faults::default()
        },
        ..SandboxConfig::default()
    });
    let base = server.base_url();
    let input = ensure_input(&b.dir, 3000, 7);
    let mut best: (f64, usize) = (0.0, 0);
    for c in [4usize, 8, 16, 24, 32, 64] {
        let cs = c.to_string();
        let (rows_per_sec, _, _) = b.median_import(
            &input,
            &base,
            &["--fixed-concurrency", "--max-concurrency", &cs],
        );
        println!("capacity 16, 20 ms: fixed concurrency {c:>2}: {rows_per_sec:.0} rows/s");
        if rows_per_sec > best.0 {
            best = (rows_per_sec, c);
        }
    }
    let (adaptive, run, _) = b.median_import(&input, &base, &["--max-concurrency", "64"]);
    println!(
        "capacity 16, 20 ms: adaptive (max 64): {adaptive:.0} rows/s = {:.1}% of the best fixed ({} at {}), ended at concurrency {}",
        100.0 * adaptive / best.0,
        best.0.round(),
        best.1,
        run.report["concurrency"]
    );
    b.runtime.block_on(server.shutdown());
}

/// A sweep of fixed concurrencies 4–64 against the adaptive controller on one server
/// behaviour; prints the table row and returns adaptive / best fixed.
fn sweep(b: &Bench, name: &str, config: SandboxConfig, extra: &[&str]) -> f64 {
    let server = b.sandbox(config);
    let base = server.base_url();
    let input = ensure_input(&b.dir, env_number("DESKPORT_BENCH_SWEEP_ROWS", 2000), 7);
    let mut best: (f64, usize) = (0.0, 0);
    let mut cells = Vec::new();
    for c in [4usize, 8, 16, 32, 64] {
        let cs = c.to_string();
        let mut args = vec!["--fixed-concurrency", "--max-concurrency", &cs];
        args.extend_from_slice(extra);
        let (rows_per_sec, _, _) = b.median_import(&input, &base, &args);
        cells.push(format!("{rows_per_sec:.0}"));
        if rows_per_sec > best.0 {
            best = (rows_per_sec, c);
        }
    }
    let mut args = vec!["--max-concurrency", "64"];
    args.extend_from_slice(extra);
    let (adaptive, run, delta) = b.median_import(&input, &base, &args);
    let refused = n(&delta["rate_limited"]) / n(&delta["requests"]).max(1.0);
    let ratio = adaptive / best.0;
    println!(
        "| {name} | {} | {adaptive:.0} (ended at {}) | {:.2} | {:.2}% |",
        cells.join(" / "),
        run.report["concurrency"],
        ratio,
        100.0 * refused
    );
    b.runtime.block_on(server.shutdown());
    ratio
}

/// Servers that behave like real ones: service time on 16 workers (more wait), ±50%
/// jitter, writes twice as slow as reads, random failures, a rate limit.
fn realistic(b: &Bench) {
    let workers = |faults: Faults| SandboxConfig {
        faults: Faults {
            latency_ms: 10,
            jitter_ms: 20,
            write_latency_factor: 2.0,
            capacity: Some(16),
            over_capacity: OverCapacity::Queue,
            ..faults
        },
        ..SandboxConfig::default()
    };
    println!("| server | fixed 4 / 8 / 16 / 32 / 64 (rows/s) | adaptive (max 64) | adaptive / best | refused |");
    println!("|---|---|---|---|---|");
    sweep(
        b,
        "16 workers, 20 ms ± 50%, writes 2×",
        workers(Faults::default()),
        &[],
    );
    sweep(
        b,
        "same, 5% 500s, 5% applied-then-500, 2% cut connections",
        workers(Faults {
            error_rate: 0.05,
            apply_then_error_rate: 0.05,
            drop_rate: 0.02,
            ..Faults::default()
        }),
        &["--max-attempts", "12"],
    );
    sweep(
        b,
        "200 requests/s limit, 20 ms ± 50%, `--rate 200`",
        SandboxConfig {
            omnidesk_rate_per_second: Some(200.0),
            faults: Faults {
                latency_ms: 10,
                jitter_ms: 20,
                write_latency_factor: 2.0,
                ..Faults::default()
            },
            ..SandboxConfig::default()
        },
        &["--rate", "200"],
    );
}

/// The mapping that puts the generated loyalty column in Udesk's first text field.
fn udesk_map(b: &Bench) -> String {
    let map = b.dir.join("udesk_mapping.toml");
    std::fs::write(
        &map,
        "[columns]\n\"custom_loyalty\" = \"custom.TextField_1\"\n",
    )
    .unwrap();
    map.display().to_string()
}

fn udesk(b: &Bench) {
    let server = b.sandbox(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    });
    let base = server.base_url();
    let map = udesk_map(b);
    let ceiling = 100.0 + 59.0;
    // Two sizes: the difference removes start-up and the final confirmation, leaving the
    // steady rate; the larger run alone gives the rate with them.
    let mut points = Vec::new();
    for rows in [1250, 2500] {
        b.reset(&base);
        let input = ensure_input(&b.dir, rows, 7);
        let run = b.import(
            &input,
            &base,
            "udesk",
            &["--udesk-minute", "1", "--map", &map],
        );
        let created = n(&run.report["counts"]["created"]);
        let windows = run.secs; // one platform minute per second
        println!(
            "udesk budget (60 calls + 1 bulk of 100 per minute; minute = 1 s), {rows} rows: {created} created in {windows:.1} windows = {:.1} rows/window = {:.1}% of the ceiling ({ceiling}) including start and final confirmation; requests {}, rate-limited {}",
            created / windows,
            100.0 * created / windows / ceiling,
            run.report["requests"],
            run.report["throttled"]
        );
        points.push((created, windows));
    }
    let marginal = (points[1].0 - points[0].0) / (points[1].1 - points[0].1);
    println!(
        "udesk budget, steady state (difference of the two runs): {marginal:.1} rows/window = {:.1}% of the ceiling",
        100.0 * marginal / ceiling
    );
    b.runtime.block_on(server.shutdown());
}

/// Udesk call planning: 3,000 rows upserted into an empty account against the same rows
/// created, and upserted again when all exist against 60 updates a minute (the budget).
/// Interleaved trials; medians.
fn udesk_upsert(b: &Bench) {
    let server = b.sandbox(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    });
    let base = server.base_url();
    let input = ensure_input(&b.dir, 3000, 11);
    let map = udesk_map(b);
    let args = |mode: &'static str| -> Vec<String> {
        ["--udesk-minute", "1", "--map", &map, "--mode", mode]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut create, mut upsert_new, mut upsert_existing) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..b.runs {
        for (mode, into) in [("create", &mut create), ("upsert", &mut upsert_new)] {
            b.reset(&base);
            let extra = args(mode);
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            let run = b.import(&input, &base, "udesk", &extra);
            let written = n(&run.report["counts"]["created"]) + n(&run.report["counts"]["updated"]);
            into.push(written / run.secs);
        }
        let extra = args("upsert");
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let run = b.import(&input, &base, "udesk", &extra);
        upsert_existing.push(n(&run.report["counts"]["updated"]) / run.secs);
    }
    let (c, u, e) = (median(create), median(upsert_new), median(upsert_existing));
    println!(
        "udesk upsert, 3000 rows, none existing: {u:.1} rows/budget-minute vs create {c:.1} = {:.3}× (target ≥ 0.95)",
        u / c
    );
    println!(
        "udesk upsert, 3000 rows, all existing: {e:.1} updates/budget-minute vs the budget's 60 = {:.3}× (target ≥ 0.95)",
        e / 60.0
    );
    b.runtime.block_on(server.shutdown());
}

fn rss(b: &Bench) {
    let rows = env_number("DESKPORT_BENCH_RSS_ROWS", 1_000_000);
    let server = b.sandbox(SandboxConfig::default());
    let base = server.base_url();
    let input = ensure_input(&b.dir, rows, 7);
    let run = b.import(&input, &base, "omnidesk", &["--max-concurrency", "16"]);
    println!(
        "rss   {rows} rows into Omnidesk (no latency): peak RSS {:.1} MiB, {:.0} rows/s, {:.1} s",
        run.rss as f64 / (1 << 20) as f64,
        rows as f64 / run.secs,
        run.secs
    );
    b.runtime.block_on(server.shutdown());
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp/bench-import");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let bench = Bench {
        runtime: tokio::runtime::Runtime::new().expect("runtime"),
        http: reqwest::Client::new(),
        dir,
        runs: env_number("DESKPORT_BENCH_RUNS", 3),
    };
    let wanted = std::env::var("DESKPORT_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "rate,capacity,realistic,udesk,udesk-upsert,rss".into());
    for scenario in wanted.split(',') {
        match scenario.trim() {
            "rate" => rate(&bench),
            "capacity" => capacity(&bench),
            "realistic" => realistic(&bench),
            "udesk" => udesk(&bench),
            "udesk-upsert" => udesk_upsert(&bench),
            "rss" => rss(&bench),
            other => eprintln!("unknown scenario {other:?}"),
        }
    }
}
