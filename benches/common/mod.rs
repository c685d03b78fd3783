//! What both bench binaries need: numbers from the environment, generated inputs, and one
//! child's wall time and peak RSS.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A number from the environment, or the default.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `dir/customers-ROWS.csv`, generated once (deterministic, see `deskport::synth`).
#[allow(dead_code)] // not every bench generates an input file
pub fn ensure_input(dir: &Path, rows: u64, seed: u64) -> PathBuf {
    let path = dir.join(format!("customers-{rows}.csv"));
    if !path.exists() {
        eprintln!("generating {rows} rows into {} …", path.display());
        let tmp = path.with_extension("tmp");
        let file = std::fs::File::create(&tmp).expect("create input");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        deskport::synth::write(rows, seed, false, &mut out).expect("generate");
        drop(out);
        std::fs::rename(&tmp, &path).expect("rename input");
    }
    path
}

/// Runs the command (its stdio as the caller set it) and returns wall seconds and the peak
/// RSS in bytes of that child alone; panics unless it exits 0 or 1.
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which also gives its rusage
pub fn run_measured(cmd: &mut Command) -> (f64, u64) {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn deskport");
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

/// The `report` of the JSON summary line in a `--log-format json` run's stderr log.
#[allow(dead_code)] // the validate bench reads its report file instead
pub fn summary_report(log: &Path) -> serde_json::Value {
    let stderr = std::fs::read_to_string(log).unwrap_or_default();
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("\"event\":\"summary\""))
        .unwrap_or_else(|| panic!("no summary line: {stderr}"));
    serde_json::from_str::<serde_json::Value>(line).expect("json")["report"].clone()
}
