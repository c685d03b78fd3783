//! Benchmark of `deskport validate` on generated files: rows/s, MB/s and peak RSS with 1 and
//! 2 threads. Runs the real binary (all rules, writing clean, rejects and report files).
//!
//! ```text
//! cargo bench --bench validate                                   # 1,000,000 rows, 3 runs each
//! DESKPORT_BENCH_ROWS=10000000 DESKPORT_BENCH_RUNS=1 cargo bench --bench validate
//! ```
//!
//! The input is generated once per size under target/ (deterministic, see `deskport::synth`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs the command and returns (wall seconds, peak RSS in bytes) of that child alone.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
fn run_measured(cmd: &mut Command) -> (f64, u64) {
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn deskport");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(waited, pid, "wait4 failed");
    let code = libc::WEXITSTATUS(status);
    assert!(code == 0 || code == 1, "deskport exited {code}");
    (secs, usage.ru_maxrss as u64 * 1024)
}

fn ensure_input(dir: &Path, rows: u64) -> PathBuf {
    let path = dir.join(format!("customers-{rows}.csv"));
    if !path.exists() {
        eprintln!("generating {rows} rows into {} …", path.display());
        let tmp = path.with_extension("tmp");
        let file = std::fs::File::create(&tmp).expect("create input");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        deskport::synth::write(rows, 42, false, &mut out).expect("generate");
        drop(out);
        std::fs::rename(&tmp, &path).expect("rename input");
    }
    path
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rows = env_number("DESKPORT_BENCH_ROWS", 1_000_000);
    let runs = env_number("DESKPORT_BENCH_RUNS", 3).max(1);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-validate");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let input = ensure_input(&dir, rows);
    let bytes = std::fs::metadata(&input).expect("input size").len();
    println!(
        "validate: {rows} rows, {:.1} MB, {} core(s) available, {runs} run(s) each, median shown",
        bytes as f64 / 1e6,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut rates = Vec::new();
    for threads in [1, 2] {
        let mut times = Vec::new();
        let mut peak = 0;
        for _ in 0..runs {
            let (secs, rss) = run_measured(
                Command::new(env!("CARGO_BIN_EXE_deskport"))
                    .arg("validate")
                    .arg(&input)
                    .args([
                        "--default-region",
                        "NL",
                        "--quiet",
                        "--threads",
                        &threads.to_string(),
                    ])
                    .arg("--out")
                    .arg(dir.join("clean.csv"))
                    .arg("--rejects")
                    .arg(dir.join("rejects.csv"))
                    .arg("--report")
                    .arg(dir.join("report.json")),
            );
            times.push(secs);
            peak = peak.max(rss);
        }
        let secs = median(times);
        let rate = rows as f64 / secs;
        rates.push(rate);
        println!(
            "  threads={threads}: {secs:>7.2} s  {rate:>10.0} rows/s  {:>6.1} MB/s  peak RSS {:>6.1} MiB",
            bytes as f64 / 1e6 / secs,
            peak as f64 / (1024.0 * 1024.0)
        );
    }
    println!("  2 threads / 1 thread = {:.2}×", rates[1] / rates[0]);
}
