//! Writes a deterministic messy customer file to stdout (see `deskport::synth`).
//!
//! ```text
//! cargo run --release --example gen_customers -- 1000000 > big.csv
//! cargo run --release --example gen_customers -- 1000 --seed 7 --jsonl > some.jsonl
//! ```

use std::io::{self, BufWriter};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rows: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seed: u64 = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(42);
    let jsonl = args.iter().any(|a| a == "--jsonl");
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    deskport::synth::write(rows, seed, jsonl, &mut out)
}
