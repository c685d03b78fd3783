//! Benchmark of `deskport export` against the sandbox: both are the real binary, each its
//! own child process (the sandbox in this process would count in the exporter's peak RSS:
//! a child's maxrss starts from its parent's at fork), on loopback; wall time and peak RSS
//! of the exporter from wait4.
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
//! - `compress`: DESKPORT_BENCH_CUSTOMERS (default 100,000) Omnidesk customers, no
//!   latency, to `.csv`, `.csv.gz`, `.csv.zst` and `.parquet`, interleaved three times:
//!   medians and the ratios to plain CSV (target: `.zst` and Parquet within 10%);
//! - `changes`: DESKPORT_BENCH_CHANGES_CUSTOMERS (default 1,000,000) Omnidesk customers, no
//!   latency: a plain export against `--changes-since PREVIOUS` where PREVIOUS differs in
//!   1% of the customers (every 200th renamed, every 200th+100 left out), interleaved three
//!   times: medians, the ratio and the peak RSS (targets ≤ 1.3×, < 100 MB);
//! - `rss`: peak RSS exporting DESKPORT_BENCH_RSS_CUSTOMERS customers (default 1,000,000)
//!   from each platform.

mod common;

use common::{env_number, run_measured};
use deskport::sandbox;
use serde_json::Value;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

struct Run {
    secs: f64,
    rss: u64,
    report: Value,
}

/// Runs the exporter to `out.csv`; returns wall time, peak RSS of the child and its JSON
/// summary.
fn run_export(dir: &Path, args: &[String]) -> Run {
    run_export_to(dir, "out.csv", args)
}

/// [`run_export`] to the file `out` (in `dir`).
fn run_export_to(dir: &Path, out: &str, args: &[String]) -> Run {
    let log = dir.join("stderr.log");
    for suffix in ["", ".partial", ".checkpoint"] {
        let _ = std::fs::remove_file(dir.join(format!("{out}{suffix}")));
    }
    let (secs, rss) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_deskport"))
            .current_dir(dir)
            .env("DESKPORT_OMNIDESK_API_KEY", sandbox::DEMO_OMNIDESK_API_KEY)
            .env("DESKPORT_UDESK_EMAIL", sandbox::DEMO_UDESK_EMAIL)
            .env("DESKPORT_UDESK_TOKEN", sandbox::DEMO_UDESK_TOKEN)
            .args(["--log-format", "json", "export", "--out", out])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file")),
    );
    let report = common::summary_report(&log);
    Run { secs, rss, report }
}

/// `--target omnidesk --base-url BASE --max-concurrency 8`.
fn omnidesk_at_8(base: &str) -> Vec<String> {
    strings(&[
        "--target",
        "omnidesk",
        "--base-url",
        base,
        "--max-concurrency",
        "8",
    ])
}

/// The median of some timings.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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

/// A `deskport sandbox` child; killed when dropped.
struct SandboxProcess {
    child: std::process::Child,
    base: String,
    /// Its stdout, kept open: the sandbox prints more after its address.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bench {
    /// Starts `deskport sandbox --port 0 ARGS` and waits for its address.
    fn sandbox(&self, args: &[&str]) -> SandboxProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deskport"))
            .args(["sandbox", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the sandbox");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        let mut stdout = std::io::BufReader::new(stdout);
        stdout.read_line(&mut first).expect("sandbox address");
        let base = first
            .trim()
            .rsplit(' ')
            .next()
            .expect("listening on URL")
            .to_string();
        SandboxProcess {
            child,
            base,
            _stdout: stdout,
        }
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
        let n = customers.to_string();
        let server = self.sandbox(&["--seed-customers", &n, "--latency-ms", "20"]);
        let base = server.base.clone();
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
        drop(server);
    }

    fn udesk(&self) {
        let customers = env_number("DESKPORT_BENCH_CUSTOMERS", 100_000);
        // A platform minute of 6 s: the budget of 60 calls is 10 calls a second.
        let n = customers.to_string();
        let server = self.sandbox(&[
            "--seed-customers",
            &n,
            "--latency-ms",
            "20",
            "--time-scale",
            "10",
        ]);
        let base = server.base.clone();
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
        drop(server);
    }

    fn compress(&self) {
        let customers = env_number("DESKPORT_BENCH_CUSTOMERS", 100_000);
        let n = customers.to_string();
        let server = self.sandbox(&["--seed-customers", &n]);
        let args = omnidesk_at_8(&server.base);
        let outs = ["out.csv", "out.csv.gz", "out.csv.zst", "out.parquet"];
        let mut secs: Vec<Vec<f64>> = vec![Vec::new(); outs.len()];
        for _ in 0..3 {
            for (i, out) in outs.iter().enumerate() {
                let run = run_export_to(&self.dir, out, &args);
                assert_eq!(run.report["rows"].as_u64(), Some(customers));
                secs[i].push(run.secs);
            }
        }
        let medians: Vec<f64> = secs.iter_mut().map(|v| median(v)).collect();
        for (i, out) in outs.iter().enumerate() {
            let bytes = std::fs::metadata(self.dir.join(out)).map_or(0, |m| m.len());
            println!(
                "compress {out:<12} {:>6.2} s (median of 3)  {:>6.1} MB  {:.2}x plain CSV time",
                medians[i],
                bytes as f64 / 1e6,
                medians[i] / medians[0]
            );
        }
        drop(server);
    }

    fn changes(&self) {
        let customers = env_number("DESKPORT_BENCH_CHANGES_CUSTOMERS", 1_000_000);
        eprintln!("seeding {customers} customers …");
        let n = customers.to_string();
        let server = self.sandbox(&["--seed-customers", &n]);
        let args = omnidesk_at_8(&server.base);
        let first = run_export_to(&self.dir, "first.csv", &args);
        assert_eq!(first.report["rows"].as_u64(), Some(customers));
        // PREVIOUS: the same customers, 0.5% with another first name, 0.5% missing.
        let mut reader = csv::Reader::from_path(self.dir.join("first.csv")).expect("first.csv");
        let mut writer = csv::Writer::from_path(self.dir.join("previous.csv")).expect("previous");
        writer
            .write_record(reader.headers().expect("header"))
            .unwrap();
        let first_name = 4; // BASE_COLUMNS: platform_id, external_id, brand_id, brand_name, firstname
        for (i, row) in reader.records().enumerate() {
            let mut row: Vec<String> = row.unwrap().iter().map(str::to_string).collect();
            match i % 200 {
                0 => row[first_name] = format!("{}x", row[first_name]),
                100 => continue,
                _ => {}
            }
            writer.write_record(&row).unwrap();
        }
        writer.flush().unwrap();
        drop(writer);
        let mut with_changes = args.clone();
        with_changes.extend(strings(&["--changes-since", "previous.csv"]));
        let (mut plain, mut changed, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            plain.push(run_export_to(&self.dir, "plain.csv", &args).secs);
            let run = run_export_to(&self.dir, "nightly.csv", &with_changes);
            let c = &run.report["changes"];
            assert_eq!(c["updated"].as_u64(), Some(customers.div_ceil(200)));
            assert_eq!(c["inserted"].as_u64(), Some((customers + 100) / 200));
            changed.push(run.secs);
            rss.push(run.rss);
        }
        let (p, c) = (median(&mut plain), median(&mut changed));
        println!(
            "changes {customers} customers, 1% changed: plain {p:.2} s, --changes-since {c:.2} s (medians of 3): {:.2}x (target <= 1.3x); peak RSS {:.0} MiB (target < 100 MB)",
            c / p,
            mib(rss.into_iter().max().unwrap_or(0))
        );
        drop(server);
    }

    fn rss(&self) {
        let customers = env_number("DESKPORT_BENCH_RSS_CUSTOMERS", 1_000_000);
        eprintln!("seeding {customers} customers …");
        let n = customers.to_string();
        // Udesk's budget is not what this measures: a platform minute of 6 ms (and a scroll
        // id that lives as long in real time as on the platform).
        let server = self.sandbox(&[
            "--seed-customers",
            &n,
            "--time-scale",
            "10000",
            "--scroll-ttl",
            "600000",
        ]);
        let base = server.base.clone();
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
        drop(server);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let scenarios = std::env::var("DESKPORT_BENCH_SCENARIOS")
        .unwrap_or_else(|_| "omnidesk,udesk,compress,changes,rss".into());
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
            "compress" => bench.compress(),
            "changes" => bench.changes(),
            other => eprintln!("unknown scenario {other:?}"),
        }
    }
}
