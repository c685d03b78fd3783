//! Benchmark of `deskport export` against the sandbox (in this process, on loopback): the
//! real binary as a child, its wall time and peak RSS from wait4.
//!
//! ```text
//! cargo bench --bench export                                      # all scenarios
//! DESKPORT_BENCH_SCENARIOS=rss DESKPORT_BENCH_RSS_CUSTOMERS=1000000 cargo bench --bench export
//! ```
//!
//! Scenarios (DESKPORT_BENCH_SCENARIOS, comma-separated; default all):
//! - `omnidesk`: 100,000 customers, 20 ms latency: concurrency 1 against 8 (fixed and
//!   adaptive), and the same pages fetched by a bare client (8 in flight, JSON parsed,
//!   nothing written) to show what writing adds;
//! - `udesk`: 100,000 customers, 20 ms latency, the budget at 10 calls a second (a sandbox
//!   minute of 6 s): the achieved rate against the bound the budget sets;
//! - `rss`: peak RSS exporting DESKPORT_BENCH_RSS_CUSTOMERS customers (default 1,000,000)
//!   from each platform.

mod common;

use common::{env_number, run_measured};
use deskport::sandbox::{self, Faults, SandboxConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Run {
    secs: f64,
    rss: u64,
    report: Value,
}

/// Runs the exporter; returns wall time, peak RSS of the child and its JSON summary.
fn run_export(dir: &Path, args: &[String]) -> Run {
    let log = dir.join("stderr.log");
    for suffix in ["", ".partial", ".checkpoint"] {
        let _ = std::fs::remove_file(dir.join(format!("out.csv{suffix}")));
    }
    let (secs, rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_deskport"))
            .current_dir(dir)
            .env("DESKPORT_OMNIDESK_API_KEY", sandbox::DEMO_OMNIDESK_API_KEY)
            .env("DESKPORT_UDESK_EMAIL", sandbox::DEMO_UDESK_EMAIL)
            .env("DESKPORT_UDESK_TOKEN", sandbox::DEMO_UDESK_TOKEN)
            .args(["--log-format", "json", "export", "--out", "out.csv"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file")),
    );
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("\"event\":\"summary\""))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    let report = serde_json::from_str::<Value>(line).expect("json")["report"].clone();
    Run { secs, rss, report }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    dir: PathBuf,
}

impl Bench {
    fn sandbox(&self, config: SandboxConfig) -> sandbox::Sandbox {
        self.runtime
            .block_on(sandbox::spawn(config, "127.0.0.1:0".parse().unwrap()))
            .expect("sandbox")
    }

    /// Every Omnidesk page fetched by a bare client, `n` in flight, bodies parsed: the
    /// fetching alone. Returns seconds and customers.
    fn bare_omnidesk_fetch(&self, base: &str, total: u64, n: usize) -> (f64, u64) {
        use futures_util::StreamExt;
        let http = reqwest::Client::new();
        let started = Instant::now();
        let customers = self.runtime.block_on(async {
            let offsets: Vec<u64> = (0..total.div_ceil(99)).map(|p| p * 99).collect();
            futures_util::stream::iter(offsets)
                .map(|offset| {
                    let http = http.clone();
                    async move {
                        let body: Value = http
                            .get(format!("{base}/api/v2/customer"))
                            .header("apiKey", sandbox::DEMO_OMNIDESK_API_KEY)
                            .query(&[("itemStart", offset), ("itemLimit", 99)])
                            .send()
                            .await
                            .unwrap()
                            .json()
                            .await
                            .unwrap();
                        body["items"].as_array().map_or(0, Vec::len) as u64
                    }
                })
                .buffered(n)
                .fold(0u64, |a, b| async move { a + b })
                .await
        });
        (started.elapsed().as_secs_f64(), customers)
    }

    fn omnidesk(&self) {
        let customers = env_number("DESKPORT_BENCH_CUSTOMERS", 100_000);
        let server = self.sandbox(SandboxConfig {
            seed_customers: customers,
            faults: Faults {
                latency_ms: 20,
                ..Faults::default()
            },
            ..SandboxConfig::default()
        });
        let base = server.base_url();
        let common = ["--target", "omnidesk", "--base-url", &base];
        let mut runs = Vec::new();
        for (label, extra) in [
            ("concurrency 1", vec!["--max-concurrency", "1"]),
            (
                "concurrency 8 fixed",
                vec!["--max-concurrency", "8", "--fixed-concurrency"],
            ),
            ("concurrency 8 adaptive", vec!["--max-concurrency", "8"]),
        ] {
            let args = strings(&[&common[..], &extra[..]].concat());
            let run = run_export(&self.dir, &args);
            assert_eq!(run.report["rows"].as_u64(), Some(customers));
            println!(
                "omnidesk {label:<24} {:>7.2} s  {:>8.0} customers/s  peak RSS {:.0} MiB",
                run.secs,
                customers as f64 / run.secs,
                mib(run.rss)
            );
            runs.push(run.secs);
        }
        println!(
            "omnidesk speed-up at 8: fixed {:.2}x, adaptive {:.2}x (target >= 6x)",
            runs[0] / runs[1],
            runs[0] / runs[2]
        );
        let (bare, fetched) = self.bare_omnidesk_fetch(&base, customers, 8);
        assert_eq!(fetched, customers);
        println!(
            "omnidesk bare fetch, 8 in flight: {bare:.2} s; export at 8 fixed adds {:+.1}% (target < 5%)",
            (runs[1] / bare - 1.0) * 100.0
        );
        self.runtime.block_on(server.shutdown());
    }

    fn udesk(&self) {
        let customers = env_number("DESKPORT_BENCH_CUSTOMERS", 100_000);
        // A platform minute of 6 s: the budget of 60 calls is 10 calls a second.
        let server = self.sandbox(SandboxConfig {
            seed_customers: customers,
            time_scale: 10.0,
            faults: Faults {
                latency_ms: 20,
                ..Faults::default()
            },
            ..SandboxConfig::default()
        });
        let base = server.base_url();
        let args = strings(&[
            "--target",
            "udesk",
            "--base-url",
            &base,
            "--udesk-minute",
            "6",
        ]);
        let run = run_export(&self.dir, &args);
        assert_eq!(run.report["rows"].as_u64(), Some(customers));
        let calls = run.report["requests"].as_f64().unwrap_or(0.0);
        // The budget bound: the first call at once, then one every 0.1 s.
        let bound_secs = (calls - 1.0) / 10.0;
        println!(
            "udesk {customers} customers: {:.2} s for {calls:.0} calls ({} throttled); budget bound {bound_secs:.2} s; achieved {:.1}% of the bound (target >= 95%)",
            run.secs,
            run.report["throttled"],
            bound_secs / run.secs * 100.0
        );
        self.runtime.block_on(server.shutdown());
    }

    fn rss(&self) {
        let customers = env_number("DESKPORT_BENCH_RSS_CUSTOMERS", 1_000_000);
        eprintln!("seeding {customers} customers …");
        let server = self.sandbox(SandboxConfig {
            seed_customers: customers,
            // Udesk's budget is not what this measures: a platform minute of 6 ms (and a
            // scroll id that lives as long in real time as on the platform).
            time_scale: 10_000.0,
            scroll_ttl: std::time::Duration::from_secs(60 * 10_000),
            ..SandboxConfig::default()
        });
        let base = server.base_url();
        for (target, extra) in [
            ("omnidesk", vec!["--max-concurrency", "8"]),
            ("udesk", vec!["--udesk-minute", "0.006"]),
        ] {
            let args =
                strings(&[&["--target", target, "--base-url", &base][..], &extra[..]].concat());
            let run = run_export(&self.dir, &args);
            assert_eq!(run.report["rows"].as_u64(), Some(customers));
            println!(
                "rss {target} {customers} customers: peak RSS {:.0} MiB, {:.1} s (target < 100 MB)",
                mib(run.rss),
                run.secs
            );
        }
        self.runtime.block_on(server.shutdown());
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scenarios =
        std::env::var("DESKPORT_BENCH_SCENARIOS").unwrap_or_else(|_| "omnidesk,udesk,rss".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let bench = Bench {
        runtime: tokio::runtime::Runtime::new().expect("runtime"),
        dir: dir.path().to_path_buf(),
    };
    for scenario in scenarios.split(',').map(str::trim) {
        match scenario {
            "omnidesk" => bench.omnidesk(),
            "udesk" => bench.udesk(),
            "rss" => bench.rss(),
            other => eprintln!("unknown scenario {other:?}"),
        }
    }
}
