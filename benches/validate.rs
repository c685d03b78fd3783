//! Benchmark of `deskport validate` on generated files: rows/s, MB/s and peak RSS with 1 and
//! 2 threads. Runs the real binary (all rules, writing clean, rejects and report files).
//!
//! ```text
//! cargo bench --bench validate                                   # 1,000,000 rows, 3 runs each
//! DESKPORT_BENCH_ROWS=10000000 DESKPORT_BENCH_RUNS=1 cargo bench --bench validate
//! ```
//!
//! It ends with the peers, side by side: `qsvlite validate` (when on the PATH) and the
//! Python peer `benches/peer.py` (when phonenumbers and email-validator are installed).
//!
//! The input is generated once per size under target/ (deterministic, see `deskport::synth`).

mod common;

use common::{ensure_input, env_number, run_measured};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// `deskport validate INPUT` with its output discarded.
fn validate(input: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskport"));
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .arg("validate")
        .arg(input);
    cmd
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
    let input = ensure_input(&dir, rows, 42);
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
                validate(&input)
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
    cores(&dir, &input, runs);
    all_regions(&dir);
    peers(&dir, &input, runs);
}

/// `deskport validate` with all rules and all three outputs, as the peers are compared.
fn deskport_all_outputs(dir: &std::path::Path, input: &std::path::Path) -> Command {
    let mut cmd = validate(input);
    cmd.args(["--default-region", "NL", "--quiet", "--out"])
        .arg(dir.join("clean.csv"))
        .arg("--rejects")
        .arg(dir.join("rejects.csv"))
        .arg("--report")
        .arg(dir.join("report.json"));
    cmd
}

/// Whether `program args` runs and exits 0.
fn available(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Side by side with the peers, interleaved (A B A B …), medians: `qsvlite validate` on the
/// same file (names and email only, no phones), and the Python peer (`benches/peer.py`:
/// csv + email-validator + phonenumbers) on its first 100,000 rows. Each is skipped, saying
/// so, when it is not installed (neither is in CI).
fn peers(dir: &std::path::Path, input: &std::path::Path, runs: u64) {
    if available("qsvlite", &["--version"]) {
        let schema = dir.join("schema.json");
        std::fs::write(
            &schema,
            r#"{"type":"object","properties":{"First Name":{"type":"string","minLength":1},"Email":{"type":"string","format":"email"}}}"#,
        )
        .expect("write schema");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(run_measured(&mut deskport_all_outputs(dir, input)).0);
            let mut qsv = Command::new("qsvlite");
            qsv.args(["validate", "--trim", "-j", "2"])
                .arg(input)
                .arg(&schema)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            theirs.push(run_measured(&mut qsv).0);
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "peer qsvlite validate (names + email, no phones): deskport {a:.2} s, qsvlite {b:.2} s: deskport at {:.2}× qsvlite's rows/s",
            b / a
        );
    } else {
        println!("peer qsvlite: not on the PATH, comparison skipped (build it as issue 15 describes; kept out of CI)");
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peer.py");
    if available("python3", &["-c", "import phonenumbers, email_validator"]) {
        let text = std::fs::read_to_string(input).expect("read input");
        let sample: String = text
            .lines()
            .take(100_001)
            .map(|l| format!("{l}\n"))
            .collect();
        let small = dir.join("customers-100000.csv");
        std::fs::write(&small, sample).expect("write sample");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            ours.push(run_measured(&mut deskport_all_outputs(dir, &small)).0);
            let mut python = Command::new("python3");
            python
                .arg(&script)
                .arg(&small)
                .arg(dir.join("peer-clean.csv"))
                .arg(dir.join("peer-rejects.csv"))
                .arg("NL")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            theirs.push(run_measured(&mut python).0);
        }
        let (a, b) = (median(ours), median(theirs));
        println!(
            "peer Python (csv + email-validator + phonenumbers), 100,000 rows: deskport {a:.2} s, Python {b:.2} s: deskport {:.1}× faster",
            b / a
        );
    } else {
        println!("peer Python: phonenumbers or email-validator not installed (pip install phonenumbers email-validator), comparison skipped");
    }
}

/// Confines the child to the first CPU (before it runs): the whole process, every thread of
/// it, on one core.
fn on_one_core(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls between fork and exec (sched_setaffinity).
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// How the whole pipeline scales with cores: the default run (all outputs) on one core and
/// on every core, interleaved. `--threads` sizes only the checking pool; the reader, the
/// duplicate check and the writer have threads of their own, so `--threads 1` already uses
/// two cores and this is the ratio that says what a second core buys.
fn cores(dir: &std::path::Path, input: &std::path::Path, runs: u64) {
    let (mut one, mut all) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        one.push(run_measured(on_one_core(&mut deskport_all_outputs(dir, input))).0);
        all.push(run_measured(&mut deskport_all_outputs(dir, input)).0);
    }
    let (a, b) = (median(one), median(all));
    println!(
        "  whole process on 1 core {a:.2} s, on {} cores {b:.2} s: {:.2}×",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a / b
    );
}

/// Peak RSS on a file whose phone numbers come from every region the phone library knows
/// (50 rows of each region's example number): the phone patterns compiled for all of them,
/// which is the most a file can make the phone library hold.
fn all_regions(dir: &std::path::Path) {
    use rlibphonenumber::{PhoneNumberFormat, PHONE_NUMBER_UTIL};
    let mut csv = String::from("external_id,firstname,lastname,phone,country\n");
    let mut row = 0;
    for region in PHONE_NUMBER_UTIL.get_supported_regions() {
        let Ok(example) = PHONE_NUMBER_UTIL.get_example_number(region) else {
            continue;
        };
        let international = example.format_as(PhoneNumberFormat::International);
        for _ in 0..50 {
            row += 1;
            csv.push_str(&format!(
                "{row},Ann,Lee,\"{international}\",{}\n",
                region.as_region_str()
            ));
        }
    }
    let input = dir.join("all-regions.csv");
    std::fs::write(&input, csv).expect("write all-regions file");
    let (secs, rss) = run_measured(
        validate(&input)
            .args(["--quiet", "--threads", "2", "--out"])
            .arg(dir.join("all-regions-clean.csv")),
    );
    println!(
        "all regions: {row} rows, phones from every region: {secs:.2} s, peak RSS {:.1} MiB",
        rss as f64 / (1024.0 * 1024.0)
    );
}
