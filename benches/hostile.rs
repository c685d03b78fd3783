//! Adversarial inputs: peak RSS and time of `deskport validate` (writing rejects) on files
//! built to make a reader buffer or write too much, each at two sizes so the time ratio
//! shows whether the work is linear (≈ 2 for twice the input).
//!
//! ```text
//! cargo bench --bench hostile                      # 73 MB unterminated quote, 1,000 × 1,000-key JSONL, a 200 MB line
//! DESKPORT_BENCH_HOSTILE_MB=367 cargo bench --bench hostile
//! ```

mod common;

use common::{env_number, run_measured};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CSV file of about `mb` MB whose third line opens a quote that never closes.
fn unterminated_quote(dir: &Path, mb: u64) -> PathBuf {
    let path = dir.join(format!("unterminated-{mb}mb.csv"));
    if !path.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(out, "external_id,firstname,lastname,email\nC1,Anna,Jansen,a@example.com\nC2,\"Open,Jansen,b@example.com").unwrap();
        let mut written = 0u64;
        let mut i = 3u64;
        while written < mb * 1_000_000 {
            let line = format!("C{i},Piet,de Vries,p{i}@example.com\n");
            written += line.len() as u64;
            out.write_all(line.as_bytes()).unwrap();
            i += 1;
        }
    }
    path
}

/// `lines` JSONL lines of `keys` keys each, every key new.
fn many_keys(dir: &Path, lines: u64, keys: u64) -> PathBuf {
    let path = dir.join(format!("keys-{lines}x{keys}.jsonl"));
    if !path.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for l in 0..lines {
            write!(out, "{{\"external_id\":\"C{l}\"").unwrap();
            for k in 0..keys {
                write!(out, ",\"k{l}_{k}\":\"v\"").unwrap();
            }
            writeln!(out, "}}").unwrap();
        }
    }
    path
}

/// One line of `mb` MB (a single field), then an ordinary row.
fn huge_line(dir: &Path, mb: u64) -> PathBuf {
    let path = dir.join(format!("line-{mb}mb.csv"));
    if !path.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write!(out, "external_id,description\nC1,").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..mb {
            out.write_all(&chunk).unwrap();
        }
        writeln!(out, "\nC2,ok").unwrap();
    }
    path
}

fn measure(input: &Path, dir: &Path) -> (f64, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskport"));
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .arg("validate")
        .arg(input)
        .arg("--rejects")
        .arg(dir.join("rejects.out"))
        .arg("--quiet");
    run_measured(&mut cmd)
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-hostile");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mb = env_number("DESKPORT_BENCH_HOSTILE_MB", 73);
    let cases: Vec<(String, PathBuf, PathBuf)> = vec![
        (
            format!("unterminated quote, {mb} MB"),
            unterminated_quote(&dir, mb / 2),
            unterminated_quote(&dir, mb),
        ),
        (
            "JSONL, 1,000 lines × 1,000 new keys".into(),
            many_keys(&dir, 500, 1000),
            many_keys(&dir, 1000, 1000),
        ),
        (
            "one 200 MB line".into(),
            huge_line(&dir, 100),
            huge_line(&dir, 200),
        ),
    ];
    println!("hostile inputs (validate --rejects), target: < 100 MB peak RSS and linear time");
    println!(
        "| input | size | wall | peak RSS | wall at half size | ratio |\n|---|---|---|---|---|---|"
    );
    for (name, half, full) in cases {
        let (half_secs, _) = measure(&half, &dir);
        let (secs, rss) = measure(&full, &dir);
        let size = std::fs::metadata(&full).unwrap().len() as f64 / 1e6;
        println!(
            "| {name} | {size:.0} MB | {secs:.2} s | {:.1} MiB | {half_secs:.2} s | {:.2} |",
            rss as f64 / (1024.0 * 1024.0),
            secs / half_secs.max(1e-9)
        );
    }
}
