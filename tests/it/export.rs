//! `deskport export` against the sandbox: the real binary, a sandbox on loopback in this
//! process. Every customer the sandbox holds must be in the file exactly once with its
//! fields; a killed or interrupted export, resumed, must give a file byte-identical to an
//! uninterrupted one, also with faults, expired scrolls and a list that grows meanwhile.

use crate::common::{assert_exit, describe, read_csv, Workdir};
use deskport::sandbox::{self, Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Rig {
    server: Sandbox,
    http: reqwest::Client,
    work: Workdir,
    config: SandboxConfig,
}

impl Rig {
    /// A sandbox with `customers` seeded customers on both platforms; Udesk's minute lasts a
    /// second (so its budget is 60 calls a second and a scroll id lives a second).
    async fn start(customers: u64) -> Rig {
        let config = SandboxConfig {
            seed_customers: customers,
            time_scale: 60.0,
            ..SandboxConfig::default()
        };
        let server = sandbox::spawn(config.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Rig {
            server,
            http: reqwest::Client::new(),
            work: Workdir::new(),
            config,
        }
    }

    fn base(&self) -> String {
        self.server.base_url()
    }

    /// `deskport --log-format json export --target T --base-url … --out OUT ARGS`.
    fn command(&self, target: &str, out: &str, args: &[&str]) -> Command {
        let mut cmd = self.work.command();
        cmd.env("DESKPORT_OMNIDESK_API_KEY", &self.config.omnidesk_api_key)
            .env("DESKPORT_UDESK_EMAIL", &self.config.udesk_email)
            .env("DESKPORT_UDESK_TOKEN", &self.config.udesk_token)
            .args(["--log-format", "json", "export", "--target", target])
            .args(["--base-url", &self.base(), "--out", out])
            .args(args);
        if target == "udesk" {
            cmd.args(["--udesk-minute", "1"]);
        }
        cmd
    }

    async fn run(&self, target: &str, out: &str, args: &[&str]) -> Output {
        let mut cmd = self.command(target, out, args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    fn spawn(&self, target: &str, out: &str, args: &[&str]) -> Child {
        self.command(target, out, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    async fn state(&self) -> Value {
        crate::common::sandbox_state(&self.http, &self.base()).await
    }

    async fn faults(&self, faults: Value) {
        crate::common::set_faults(&self.http, &self.base(), faults).await
    }

    /// Changes how the sandbox answers where the documents are silent.
    async fn profile(&self, name: &str) {
        let r = self
            .http
            .put(format!("{}/__sandbox/profile", self.base()))
            .json(&json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.file(name)
    }

    fn bytes(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Size of a file now (0 when missing).
    fn size(&self, name: &str) -> u64 {
        std::fs::metadata(self.path(name)).map_or(0, |m| m.len())
    }

    /// Waits (at most 60 s) until `name` has more than `bytes` bytes; false if `child` ended first.
    async fn wait_for_size(&self, child: &mut Child, name: &str, bytes: u64) -> bool {
        let started = Instant::now();
        while self.size(name) <= bytes {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no progress");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        true
    }
}

use crate::common::report;

/// The CSV as maps from column to cell, keyed by platform id; fails on an id seen twice.
fn rows_by_id(path: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let (header, rows) = read_csv(path);
    let mut by_id = BTreeMap::new();
    for row in rows {
        let map: BTreeMap<String, String> = header.iter().cloned().zip(row).collect();
        let id = map["platform_id"].clone();
        assert!(by_id.insert(id.clone(), map).is_none(), "id {id} twice");
    }
    by_id
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_exports_every_customer_once_with_its_fields() {
    let rig = Rig::start(25_000).await;
    let out = rig.run("omnidesk", "all.csv", &["--details"]).await;
    assert_exit(&out, 0);
    let r = report(&out);
    assert_eq!(r["rows"], 25_000);
    assert!(!rig.path("all.csv.partial").exists());
    assert!(!rig.path("all.csv.checkpoint").exists());
    let (header, _) = read_csv(&rig.path("all.csv"));
    assert_eq!(header[0], "platform_id");
    assert!(header.contains(&"custom_tier".to_string()), "{header:?}");
    let rows = rows_by_id(&rig.path("all.csv"));
    let state = rig.state().await;
    let customers = state["omnidesk"]["customers"].as_array().unwrap();
    assert_eq!(rows.len(), customers.len());
    for c in customers {
        let row = &rows[&text(&c["id"])];
        assert_eq!(row["external_id"], text(&c["external_primary_id"]));
        assert_eq!(row["firstname"], text(&c["firstname"]));
        assert_eq!(row["lastname"], text(&c["lastname"]));
        assert_eq!(row["brand_id"], text(&c["brand_id"]));
        assert_eq!(row["custom_tier"], text(&c["custom_fields"]["tier"]));
        let channels: Vec<String> = c["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ch| format!("{}:{}", text(&ch["type"]), text(&ch["value"])))
            .collect();
        assert_eq!(row["channels"], channels.join(";"));
        let phones: Vec<String> = c["channels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|ch| ch["type"] == "telephone")
            .map(|ch| text(&ch["value"]))
            .collect();
        assert_eq!(row["phones"], phones.join(";"), "E.164 phones stay intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_exports_every_customer_once_with_its_fields() {
    let rig = Rig::start(25_000).await;
    let out = rig.run("udesk", "all.csv", &[]).await;
    assert_exit(&out, 0);
    assert_eq!(report(&out)["rows"], 25_000);
    let rows = rows_by_id(&rig.path("all.csv"));
    let state = rig.state().await;
    let customers = state["udesk"]["customers"].as_array().unwrap();
    assert_eq!(rows.len(), customers.len());
    for c in customers {
        let row = &rows[&text(&c["id"])];
        assert_eq!(row["external_id"], text(&c["open_api_token"]));
        assert_eq!(row["nick_name"], text(&c["nick_name"]));
        assert_eq!(row["email"], text(&c["email"]));
        assert_eq!(row["level"], text(&c["level"]));
        let phones: Vec<String> = c["cellphones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| text(&p[1]))
            .collect();
        assert_eq!(row["phones"], phones.join(";"));
        let tags: Vec<String> = c["tags"].as_array().unwrap().iter().map(text).collect();
        assert_eq!(row["tags"], tags.join(";"));
        assert_eq!(
            row["custom_TextField_1"],
            text(&c["custom_fields"]["TextField_1"])
        );
    }
    // The page list gives the same file for what it can reach.
    let small = Rig::start(450).await;
    let scroll = small.run("udesk", "scroll.jsonl", &[]).await;
    assert_exit(&scroll, 0);
    let list = small
        .run("udesk", "list.jsonl", &["--udesk-source", "list"])
        .await;
    assert_exit(&list, 0);
    assert_eq!(report(&list)["pages"], 5);
    assert_eq!(small.bytes("scroll.jsonl"), small.bytes("list.jsonl"));
    assert_eq!(
        String::from_utf8(small.bytes("list.jsonl"))
            .unwrap()
            .lines()
            .count(),
        450
    );
}

/// Kills the export (SIGKILL) `kills` times at growing sizes of the partial file, resumes,
/// and compares the final file with an uninterrupted export of the same data.
async fn kill_and_resume(rig: &Rig, target: &str, out: &str, args: &[&str], kills: usize) {
    kill_and_resume_as(rig, target, out, args, kills, |bytes| bytes.to_vec()).await
}

/// The decompressed text of a `.gz` (by the system's `gzip`) or `.zst` (by the zstd crate)
/// file: readers other than the one the export writes with.
fn decompressed(name: &str, bytes: &[u8]) -> Vec<u8> {
    if name.ends_with(".gz") {
        let mut gzip = Command::new("gzip")
            .args(["-dc"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = gzip.stdin.take().unwrap();
        let input = bytes.to_vec();
        let feeder = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = gzip.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "gzip -dc: {}", describe(&out));
        out.stdout
    } else if name.ends_with(".zst") {
        zstd::stream::decode_all(bytes).expect("zstd frames")
    } else {
        bytes.to_vec()
    }
}

/// As [`kill_and_resume`], comparing what `decode` makes of the files (a Udesk resume starts
/// a new scroll, so pages and with them compressed frames may be cut elsewhere).
async fn kill_and_resume_as(
    rig: &Rig,
    target: &str,
    out: &str,
    args: &[&str],
    kills: usize,
    decode: impl Fn(&[u8]) -> Vec<u8>,
) {
    let reference = format!("reference-{out}");
    let whole = rig.run(target, &reference, args).await;
    assert_exit(&whole, 0);
    let expected = rig.bytes(&reference);
    let partial = format!("{out}.partial");
    let mut killed = 0;
    let mut resume_args: Vec<&str> = args.to_vec();
    resume_args.push("--resume");
    for k in 0..kills {
        let mut child = rig.spawn(target, out, &resume_args);
        let threshold = expected.len() as u64 * (k as u64 + 1) / (kills as u64 + 2);
        if rig.wait_for_size(&mut child, &partial, threshold).await {
            child.kill().unwrap();
            killed += 1;
        }
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none() || status.success(),
            "killed or done: {status:?}"
        );
    }
    assert!(killed > 0, "the export ended before any kill");
    let last = rig.run(target, out, &resume_args).await;
    assert_exit(&last, 0);
    let got = rig.bytes(out);
    let (got, expected) = (decode(&got), decode(&expected));
    assert!(
        got == expected,
        "resumed file differs: {} bytes vs {}",
        got.len(),
        expected.len()
    );
    assert!(!rig.path(&partial).exists());
    assert!(!rig.path(&format!("{out}.checkpoint")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_kill_9_and_resume_gives_the_same_bytes() {
    let rig = Rig::start(20_000).await;
    rig.faults(json!({"latency_ms": 3})).await;
    kill_and_resume(&rig, "omnidesk", "o.csv", &["--max-concurrency", "2"], 3).await;
    // With faults: 500s, cut connections (before and after the handler ran) and capacity 503s.
    rig.faults(
        json!({"latency_ms": 2, "error_rate": 0.05, "drop_rate": 0.03,
        "apply_then_drop_rate": 0.03, "capacity": 3, "over_capacity": "reject"}),
    )
    .await;
    kill_and_resume(&rig, "omnidesk", "f.jsonl", &["--max-concurrency", "4"], 2).await;
    let stats = &rig.state().await["stats"];
    for fault in ["injected_errors", "injected_drops", "over_capacity"] {
        assert!(stats[fault].as_u64().unwrap() > 0, "{fault}: {stats}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_to_standard_output_is_the_file_and_leaves_nothing_behind() {
    let rig = Rig::start(3_000).await;
    for target in ["omnidesk", "udesk"] {
        let file = rig.run(target, "file.csv", &[]).await;
        assert_exit(&file, 0);
        let piped = rig.run(target, "-", &[]).await;
        assert_exit(&piped, 0);
        assert!(
            piped.stdout == rig.bytes("file.csv"),
            "{target}: stdout differs"
        );
        let jsonl = rig.run(target, "-", &["--format", "jsonl"]).await;
        assert_exit(&jsonl, 0);
        assert_eq!(
            String::from_utf8_lossy(&jsonl.stdout).lines().count(),
            3_000
        );
        let summary: Value = serde_json::from_str(
            String::from_utf8_lossy(&jsonl.stderr)
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(summary["report"]["rows"], 3_000, "{summary}");
    }
    for name in ["-", "-.partial", "-.checkpoint", "-.lock"] {
        assert!(!rig.path(name).exists(), "{name} was left");
    }
    // Nothing to resume from: said before anything is read.
    let resume = rig.run("omnidesk", "-", &["--resume"]).await;
    assert_exit(&resume, 2);
    assert!(resume.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&resume.stderr).contains("cannot be resumed"),
        "{}",
        describe(&resume)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_exports_hold_the_same_text_and_resume_after_kill_9() {
    let rig = Rig::start(8_000).await;
    rig.faults(json!({"latency_ms": 3})).await;
    let plain = rig.run("omnidesk", "plain.csv", &[]).await;
    assert_exit(&plain, 0);
    let plain_jsonl = rig.run("omnidesk", "plain.jsonl", &[]).await;
    assert_exit(&plain_jsonl, 0);
    // Omnidesk pages are cut at the same offsets on a resume: the same compressed bytes.
    kill_and_resume(&rig, "omnidesk", "o.csv.gz", &["--max-concurrency", "2"], 2).await;
    kill_and_resume(
        &rig,
        "omnidesk",
        "o.jsonl.zst",
        &["--max-concurrency", "2"],
        2,
    )
    .await;
    assert_eq!(
        decompressed("o.csv.gz", &rig.bytes("o.csv.gz")),
        rig.bytes("plain.csv")
    );
    assert_eq!(
        decompressed("o.jsonl.zst", &rig.bytes("o.jsonl.zst")),
        rig.bytes("plain.jsonl")
    );
    assert!(rig.bytes("o.csv.gz").len() * 3 < rig.bytes("plain.csv").len());
    // A Udesk resume starts a new scroll: the text is the same, the frames may differ.
    rig.faults(json!({"latency_ms": 40})).await;
    kill_and_resume_as(&rig, "udesk", "u.csv.zst", &[], 2, |b| {
        decompressed("u.csv.zst", b)
    })
    .await;
    // What an export compresses, validate and import read as they are.
    for file in ["o.csv.gz", "o.jsonl.zst", "u.csv.zst"] {
        let out = rig
            .work
            .run(&["validate", file, "--report", "r.json", "--quiet"]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        let report: Value = serde_json::from_str(&rig.work.read("r.json")).unwrap();
        assert_eq!(report["rows_read"], 8_000, "{file}");
    }
    // An export with nothing to write is still a valid compressed file.
    let empty = rig
        .run(
            "omnidesk",
            "none.csv.gz",
            &["--query", "nosuchcustomeranywhere"],
        )
        .await;
    assert_exit(&empty, 0);
    let text = String::from_utf8(decompressed("none.csv.gz", &rig.bytes("none.csv.gz"))).unwrap();
    assert_eq!(text.lines().count(), 1, "the header alone: {text:?}");
    assert!(text.starts_with(rig.work.read("plain.csv").split(',').next().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_kill_9_and_resume_gives_the_same_bytes_also_with_faults() {
    let rig = Rig::start(12_000).await;
    rig.faults(json!({"latency_ms": 60})).await;
    kill_and_resume(&rig, "udesk", "u.csv", &[], 3).await;
    // A failed scroll call is never repeated (it may have moved the scroll on): a new scroll
    // starts from the beginning, so the chain of 12 calls must get through now and then.
    rig.faults(
        json!({"latency_ms": 40, "error_rate": 0.03, "apply_then_error_rate": 0.03,
        "apply_then_drop_rate": 0.02}),
    )
    .await;
    kill_and_resume(&rig, "udesk", "f.csv", &[], 2).await;
    // Scroll ids that move on when sent again (an Elasticsearch scroll): a call whose reply
    // is lost must not be repeated, or a batch goes missing.
    rig.profile("documented").await;
    kill_and_resume(&rig, "udesk", "d.csv", &[], 2).await;
    rig.profile("convenient").await;
    let stats = &rig.state().await["stats"];
    let faults: u64 = [
        "injected_errors",
        "injected_apply_then_errors",
        "injected_apply_then_drops",
    ]
    .iter()
    .map(|k| stats[*k].as_u64().unwrap())
    .sum();
    assert!(faults > 0, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_scroll_expiry_during_a_run_and_across_a_resume() {
    let rig = Rig::start(12_000).await;
    let whole = rig.run("udesk", "reference.csv", &[]).await;
    assert_exit(&whole, 0);
    let expected = rig.bytes("reference.csv");

    // During a run: one call waits longer than a scroll id lives (1 s here).
    rig.faults(json!({"latency_ms": 100})).await;
    let mut child = rig.spawn("udesk", "run.csv", &[]);
    assert!(
        rig.wait_for_size(&mut child, "run.csv.partial", 150_000)
            .await
    );
    rig.faults(json!({"latency_ms": 1300})).await;
    tokio::time::sleep(Duration::from_millis(1400)).await;
    rig.faults(json!({"latency_ms": 50})).await;
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&out, 0);
    let r = report(&out);
    assert!(r["scroll_restarts"].as_u64().unwrap() >= 1, "{r:#}");
    assert!(r["duplicates_skipped"].as_u64().unwrap() >= 1000, "{r:#}");
    assert!(
        rig.bytes("run.csv") == expected,
        "same file after a restart"
    );

    // Across a resume: killed, then resumed after the scroll id has expired.
    let mut child = rig.spawn("udesk", "resume.csv", &[]);
    assert!(
        rig.wait_for_size(&mut child, "resume.csv.checkpoint", 0)
            .await
    );
    assert!(
        rig.wait_for_size(&mut child, "resume.csv.partial", 300_000)
            .await
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(rig.path("resume.csv.checkpoint").exists());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.faults(json!({})).await;
    let out = rig.run("udesk", "resume.csv", &["--resume"]).await;
    assert_exit(&out, 0);
    let r = report(&out);
    assert!(r["rows_before"].as_u64().unwrap() >= 1000, "{r:#}");
    assert!(r["duplicates_skipped"].as_u64().unwrap() >= 1000, "{r:#}");
    assert!(rig.bytes("resume.csv") == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_list_growing_during_the_export() {
    let rig = Rig::start(15_000).await;
    let before: BTreeSet<String> = rig.state().await["omnidesk"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| text(&c["id"]))
        .collect();
    rig.faults(json!({"latency_ms": 5})).await;
    let mut child = rig.spawn("omnidesk", "grow.csv", &["--max-concurrency", "2"]);
    assert!(
        rig.wait_for_size(&mut child, "grow.csv.partial", 1000)
            .await
    );
    let url = format!("{}/api/v2/customer", rig.base());
    for i in 0..120 {
        let form = reqwest::multipart::Form::new()
            .text("brand_id", "1")
            .text("primary_id", format!("NEW{i}"))
            .text("firstname", "Nieuw")
            .text("lastname", "Klant")
            .text("channel_id", "1")
            .text("customer_link_channel", format!("new{i}@example.com"));
        let r = rig
            .http
            .post(&url)
            .header("apiKey", &rig.config.omnidesk_api_key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&out, 0);
    let rows = rows_by_id(&rig.path("grow.csv")); // fails on a duplicate id
    for id in &before {
        assert!(rows.contains_key(id), "customer {id} missing");
    }
    assert!(rows.len() >= before.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_guard_neutralises_formulas_but_keeps_phone_numbers() {
    let rig = Rig::start(0).await;
    // Udesk accepts any text in names and custom fields.
    for (token, nick, description, field, phone) in [
        (
            "F1",
            "=cmd|' /C calc'!A0",
            "@SUM(A1:A9)",
            "-2+3",
            "+31612345678",
        ),
        ("F2", "Plain Name", "\tTabbed", "+2+3", "+31612345679"),
    ] {
        let body = json!({"customer": {"nick_name": nick, "open_api_token": token,
            "description": description, "cellphones": [[null, phone]],
            "custom_fields": {"TextField_1": field}}});
        let query = udesk_signed_query(&rig.config);
        let r = rig
            .http
            .post(format!("{}/open_api_v1/customers", rig.base()))
            .query(&query)
            .json(&body)
            .send()
            .await
            .unwrap();
        let reply: Value = r.json().await.unwrap();
        assert_eq!(reply["code"], 1000, "{reply}");
    }
    let guarded = rig.run("udesk", "guarded.csv", &[]).await;
    assert_exit(&guarded, 0);
    let rows = rows_by_id(&rig.path("guarded.csv"));
    let f1 = rows.values().find(|r| r["external_id"] == "F1").unwrap();
    assert_eq!(f1["nick_name"], "'=cmd|' /C calc'!A0");
    assert_eq!(f1["description"], "'@SUM(A1:A9)");
    assert_eq!(f1["custom_TextField_1"], "'-2+3");
    assert_eq!(f1["phones"], "+31612345678", "a valid E.164 number stays");
    let f2 = rows.values().find(|r| r["external_id"] == "F2").unwrap();
    assert_eq!(f2["description"], "'\tTabbed");
    assert_eq!(f2["custom_TextField_1"], "'+2+3");
    assert_eq!(f2["nick_name"], "Plain Name");

    let raw = rig.run("udesk", "raw.csv", &["--raw"]).await;
    assert_exit(&raw, 0);
    let rows = rows_by_id(&rig.path("raw.csv"));
    let f1 = rows.values().find(|r| r["external_id"] == "F1").unwrap();
    assert_eq!(f1["nick_name"], "=cmd|' /C calc'!A0");
    assert_eq!(f1["description"], "@SUM(A1:A9)");
    assert_eq!(f1["custom_TextField_1"], "-2+3");

    let jsonl = rig.run("udesk", "all.jsonl", &[]).await;
    assert_exit(&jsonl, 0);
    let text = String::from_utf8(rig.bytes("all.jsonl")).unwrap();
    assert!(
        text.contains("\"nick_name\":\"=cmd|' /C calc'!A0\""),
        "JSONL is never guarded"
    );
}

/// Signature parameters for a direct Udesk call from the test.
fn udesk_signed_query(config: &SandboxConfig) -> Vec<(&'static str, String)> {
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let nonce = format!("{:032x}", fastrand_nonce());
    deskport::platform::udesk::signed_query(
        &config.udesk_email,
        &config.udesk_token,
        timestamp,
        &nonce,
    )
}

fn fastrand_nonce() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    t ^ u128::from(n) << 64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_rules_lock_and_ctrl_c() {
    let rig = Rig::start(20_000).await;
    rig.faults(json!({"latency_ms": 5})).await;
    let whole = rig.run("omnidesk", "reference.csv", &[]).await;
    assert_exit(&whole, 0);

    // Ctrl-C: exit 3, the checkpoint is written, the message says how to continue.
    let mut child = rig.spawn("omnidesk", "c.csv", &["--max-concurrency", "2"]);
    assert!(
        rig.wait_for_size(&mut child, "c.csv.partial", 100_000)
            .await
    );
    // While it runs, a second export to the same file is refused.
    let second = rig.run("omnidesk", "c.csv", &["--resume"]).await;
    assert_exit(&second, 2);
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another export is writing"),
        "{}",
        describe(&second)
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--resume"),
        "{}",
        describe(&out)
    );
    assert!(rig.path("c.csv.checkpoint").exists());
    assert!(!rig.path("c.csv").exists(), "no final file before the end");

    // Without --resume, an unfinished export is not overwritten.
    let refused = rig.run("omnidesk", "c.csv", &[]).await;
    assert_exit(&refused, 2);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    // Another export's flags are refused.
    let mismatch = rig
        .run("omnidesk", "c.csv", &["--resume", "--query", "Smith"])
        .await;
    assert_exit(&mismatch, 2);
    assert!(
        String::from_utf8_lossy(&mismatch.stderr).contains("query"),
        "{}",
        describe(&mismatch)
    );
    let resumed = rig.run("omnidesk", "c.csv", &["--resume"]).await;
    assert_exit(&resumed, 0);
    assert!(rig.bytes("c.csv") == rig.bytes("reference.csv"));

    // --resume with no checkpoint is a fresh export (a scheduler can always pass it).
    let fresh = rig.run("omnidesk", "fresh.csv", &["--resume"]).await;
    assert_exit(&fresh, 0);
    assert!(rig.bytes("fresh.csv") == rig.bytes("reference.csv"));

    // No credential in any file the exports wrote.
    for entry in std::fs::read_dir(rig.work.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&rig.config.omnidesk_api_key),
            "{}",
            path.display()
        );
        assert!(
            !text.contains(&rig.config.udesk_token),
            "{}",
            path.display()
        );
    }
    for out in [&whole, &out, &refused, &mismatch, &resumed, &second] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains(&rig.config.omnidesk_api_key));
    }
}

// ---- deskport reconcile ------------------------------------------------------------------

impl Rig {
    /// `deskport --log-format json ARGS` with the sandbox's credentials in the environment.
    async fn deskport(&self, args: &[&str]) -> Output {
        let mut cmd = self.work.command();
        cmd.env("DESKPORT_OMNIDESK_API_KEY", &self.config.omnidesk_api_key)
            .env("DESKPORT_UDESK_EMAIL", &self.config.udesk_email)
            .env("DESKPORT_UDESK_TOKEN", &self.config.udesk_token)
            .args(["--log-format", "json"])
            .args(args);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// `deskport reconcile fixtures/customers.csv` with the flags the import used.
    async fn reconcile(
        &self,
        target: &str,
        extra: &[&str],
    ) -> (Output, Vec<BTreeMap<String, String>>) {
        let input = crate::common::fixture("customers.csv");
        let map = crate::common::fixture("udesk_mapping.toml");
        let base = self.base();
        let mut args = vec!["reconcile", &input, "--target", target, "--base-url", &base];
        args.extend(["--out", "diff.csv", "--default-region", "NL"]);
        if target == "omnidesk" {
            args.extend(["--brand-id", "1"]);
        } else {
            args.extend(["--udesk-minute", "1", "--map", &map]);
        }
        args.extend(extra);
        let out = self.deskport(&args).await;
        let (header, rows) = read_csv(&self.path("diff.csv"));
        let rows = rows
            .into_iter()
            .map(|r| header.iter().cloned().zip(r).collect())
            .collect();
        (out, rows)
    }

    async fn import_fixture(&self, target: &str) {
        let input = crate::common::fixture("customers.csv");
        let map = crate::common::fixture("udesk_mapping.toml");
        let base = self.base();
        let mut args = vec!["import", &input, "--target", target, "--base-url", &base];
        args.extend(["--journal", "journal", "--default-region", "NL"]);
        if target == "omnidesk" {
            args.extend(["--brand-id", "1"]);
        } else {
            args.extend(["--udesk-minute", "1", "--map", &map]);
        }
        let out = self.deskport(&args).await;
        assert_exit(&out, 1); // the fixture has invalid rows on purpose
    }
}

fn statuses(rows: &[BTreeMap<String, String>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r["status"].clone()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_an_omnidesk_import_reports_exactly_what_changed() {
    let rig = Rig::start(0).await;
    rig.import_fixture("omnidesk").await;
    let (out, rows) = rig.reconcile("omnidesk", &[]).await;
    assert_exit(&out, 0);
    let counts = statuses(&rows);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["equal", "invalid"],
        "{counts:?}"
    );
    let r = report(&out);
    assert_eq!(r["rows_read"].as_u64().unwrap() as usize, rows.len());
    let equal: Vec<&BTreeMap<String, String>> =
        rows.iter().filter(|r| r["status"] == "equal").collect();

    // Delete two customers, rename two, and add one the input does not have.
    let base = rig.base();
    let key = &rig.config.omnidesk_api_key;
    for r in &equal[..2] {
        let url = format!("{base}/api/v2/customer/{}", r["platform_id"]);
        let reply = rig
            .http
            .delete(url)
            .header("apiKey", key)
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
    }
    for r in &equal[2..4] {
        let reply = rig
            .http
            .put(format!("{base}/api/v2/customer/updateCustomer"))
            .header("apiKey", key)
            .form(&[
                ("externalPrimaryID", r["external_id"].as_str()),
                ("brandID", "1"),
                ("firstname", "Changed"),
            ])
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success());
    }
    let form = reqwest::multipart::Form::new()
        .text("brand_id", "1")
        .text("primary_id", "ONLY-ON-PLATFORM")
        .text("firstname", "Extra")
        .text("lastname", "Klant")
        .text("channel_id", "1")
        .text("customer_link_channel", "extra@example.com");
    let reply = rig
        .http
        .post(format!("{base}/api/v2/customer"))
        .header("apiKey", key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());

    for via in ["export", "lookups"] {
        let (out, after) = rig.reconcile("omnidesk", &["--via", via]).await;
        assert_exit(&out, 1);
        let by_id = |status: &str| -> BTreeSet<String> {
            after
                .iter()
                .filter(|r| r["status"] == status)
                .map(|r| r["external_id"].clone())
                .collect()
        };
        let ids = |rows: &[&BTreeMap<String, String>]| -> BTreeSet<String> {
            rows.iter().map(|r| r["external_id"].clone()).collect()
        };
        assert_eq!(by_id("missing"), ids(&equal[..2]), "via {via}");
        assert_eq!(by_id("different"), ids(&equal[2..4]), "via {via}");
        for r in after.iter().filter(|r| r["status"] == "different") {
            assert_eq!(r["fields"], "firstname");
            assert!(
                r["differences"].contains("\"platform\":\"Changed\""),
                "{r:?}"
            );
        }
        assert_eq!(by_id("equal").len(), equal.len() - 4);
        let extra = by_id("extra");
        if via == "export" {
            assert_eq!(extra, BTreeSet::from(["ONLY-ON-PLATFORM".to_string()]));
            assert_eq!(report(&out)["extra"], 1);
        } else {
            assert!(extra.is_empty());
            assert_eq!(report(&out)["extra"], Value::Null);
        }
    }

    // The delta at cut-over: the missing and different rows as a file import takes as it
    // is; imported (upsert), the platform holds the input again.
    let (out, _) = rig
        .reconcile("omnidesk", &["--write-missing", "delta.csv"])
        .await;
    assert_exit(&out, 1);
    assert_eq!(report(&out)["missing_file"][1], 4);
    let delta = rows_by_external_id(&rig.path("delta.csv"));
    let expected: BTreeSet<String> = equal[..4]
        .iter()
        .map(|r| r["external_id"].clone())
        .collect();
    assert_eq!(delta.keys().cloned().collect::<BTreeSet<_>>(), expected);
    let base = rig.base();
    let import = rig
        .deskport(&[
            "import",
            "delta.csv",
            "--target",
            "omnidesk",
            "--base-url",
            &base,
            "--journal",
            "delta-journal",
            "--mode",
            "upsert",
            "--brand-id",
            "1",
        ])
        .await;
    assert_exit(&import, 0);
    let (out, after) = rig.reconcile("omnidesk", &[]).await;
    assert_exit(&out, 0);
    assert_eq!(statuses(&after).get("missing"), None);
    assert_eq!(statuses(&after).get("different"), None);
}

/// A CSV as maps from column to cell, keyed by `external_id`.
fn rows_by_external_id(path: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let (header, rows) = read_csv(path);
    rows.into_iter()
        .map(|r| {
            let map: BTreeMap<String, String> = header.iter().cloned().zip(r).collect();
            (map["external_id"].clone(), map)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_after_a_udesk_bulk_import_finds_every_row() {
    let rig = Rig::start(0).await;
    rig.import_fixture("udesk").await;
    let state = rig.state().await;
    assert!(
        state["udesk"]["customers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["source_channel"] == "import"),
        "some rows went through the bulk import"
    );
    for via in ["export", "lookups"] {
        let (out, rows) = rig.reconcile("udesk", &["--via", via]).await;
        assert_exit(&out, 0);
        let counts = statuses(&rows);
        assert!(counts["equal"] > 400, "{counts:?}");
        assert_eq!(counts.get("missing"), None);
        assert_eq!(counts.get("different"), None, "{rows:?}");
    }
}

/// The rows of a changes CSV as (op, changed_fields, platform_id), in file order.
fn change_rows(path: &std::path::Path) -> Vec<(String, String, String)> {
    let (header, rows) = read_csv(path);
    assert_eq!(&header[..3], ["op", "changed_fields", "platform_id"]);
    rows.into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_changes_with_a_state_dir_or_a_previous_file_and_after_kill_9() {
    let rig = Rig::start(3_000).await;
    let ids: Vec<u64> = rig.server.shared.data().omni.order.clone();

    // The first night: no state yet, every customer is an insert.
    let first = rig
        .run("omnidesk", "day1.csv", &["--state", "state", "--details"])
        .await;
    assert_exit(&first, 0);
    assert_eq!(report(&first)["changes"]["first_run"], true);
    let inserts = change_rows(&rig.path("day1.changes.csv"));
    assert_eq!(inserts.len(), 3_000);
    assert!(inserts
        .iter()
        .all(|(op, changed, _)| op == "insert" && changed.is_empty()));
    assert!(rig.path("state/state.json").exists() && rig.path("state/digest").exists());

    // During the day: two customers go, one is renamed, one gains a custom field nobody had
    // (on the first page, so it becomes a column), one is new. (`--details`: the list has
    // no custom fields, 000:111-128.)
    {
        let mut data = rig.server.shared.data();
        let omni = &mut data.omni;
        omni.remove(ids[4]).unwrap();
        omni.remove(ids[16]).unwrap();
        omni.customers.get_mut(&ids[9]).unwrap().firstname = "Renamed".into();
        omni.customers
            .get_mut(&ids[0])
            .unwrap()
            .custom_fields
            .insert("loyalty".into(), "gold".into());
        let mut new = omni.customers[&ids[1]].clone();
        new.id = omni.next_id();
        new.external_primary_id = "brand-new".into();
        new.channels.clear();
        omni.insert(new);
    }
    let second = rig
        .run("omnidesk", "day2.csv", &["--state", "state", "--details"])
        .await;
    assert_exit(&second, 0);
    let changes = &report(&second)["changes"];
    let counts =
        |c: &Value| ["inserted", "updated", "deleted", "unchanged"].map(|k| c[k].as_u64().unwrap());
    assert_eq!(counts(changes), [1, 2, 2, 2_996], "{changes}");
    assert_eq!(changes["fields_added"], json!(["custom_loyalty"]));
    let mut got = change_rows(&rig.path("day2.changes.csv"));
    let deletes: Vec<_> = got.drain(..2).collect();
    assert_eq!(
        deletes,
        vec![
            ("delete".into(), String::new(), ids[4].to_string()),
            ("delete".into(), String::new(), ids[16].to_string())
        ]
    );
    assert_eq!(
        got,
        vec![
            ("update".into(), "custom_loyalty".into(), ids[0].to_string()),
            ("update".into(), "firstname".into(), ids[9].to_string()),
            (
                "insert".into(),
                String::new(),
                rig.server.shared.data().omni.last_id.to_string()
            ),
        ]
    );
    // The same comparison from the previous file instead of the state.
    let from_file = rig
        .run(
            "omnidesk",
            "day2b.csv",
            &[
                "--changes-since",
                "day1.csv",
                "--changes",
                "day2b-changes.csv",
                "--details",
            ],
        )
        .await;
    assert_exit(&from_file, 0);
    assert_eq!(
        rig.bytes("day2b-changes.csv"),
        rig.bytes("day2.changes.csv")
    );

    // The field is gone again: reported, and the column stays (empty) in the snapshot.
    rig.server
        .shared
        .data()
        .omni
        .customers
        .get_mut(&ids[0])
        .unwrap()
        .custom_fields
        .remove("loyalty");
    rig.server.shared.data().omni.remove(ids[30]).unwrap();
    let third = rig
        .run("omnidesk", "day3.csv", &["--state", "state", "--details"])
        .await;
    assert_exit(&third, 0);
    let changes = &report(&third)["changes"];
    assert_eq!(counts(changes), [0, 1, 1, 2_997], "{changes}");
    assert_eq!(changes["fields_removed"], json!(["custom_loyalty"]));
    let (header, _) = read_csv(&rig.path("day3.csv"));
    assert!(header.contains(&"custom_loyalty".to_string()), "{header:?}");
    // Told otherwise, the column goes.
    let dropped = rig
        .run(
            "omnidesk",
            "day3b.csv",
            &[
                "--changes-since",
                "day2.csv",
                "--drop-removed-columns",
                "--details",
            ],
        )
        .await;
    assert_exit(&dropped, 0);
    let (header, _) = read_csv(&rig.path("day3b.csv"));
    assert!(
        !header.contains(&"custom_loyalty".to_string()),
        "{header:?}"
    );
    assert_eq!(
        report(&dropped)["changes"]["fields_removed"],
        json!(["custom_loyalty"])
    );

    // Killed and resumed, the changes are those of an uninterrupted run, byte for byte.
    rig.faults(json!({"latency_ms": 3})).await;
    rig.server.shared.data().omni.remove(ids[40]).unwrap();
    kill_and_resume(
        &rig,
        "omnidesk",
        "day4.csv",
        &[
            "--changes-since",
            "day3.csv",
            "--details",
            "--max-concurrency",
            "2",
        ],
        2,
    )
    .await;
    assert_eq!(
        rig.bytes("day4.changes.csv"),
        rig.bytes("reference-day4.changes.csv")
    );
    assert_eq!(
        change_rows(&rig.path("day4.changes.csv")),
        vec![("delete".into(), String::new(), ids[40].to_string())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_jsonl_changes_compressed_and_the_refusals() {
    let rig = Rig::start(500).await;
    let first = rig
        .run("udesk", "u1.jsonl.zst", &["--state", "ustate"])
        .await;
    assert_exit(&first, 0);
    let gone = rig.server.shared.data().udesk.order[3];
    rig.server.shared.data().udesk.remove(gone).unwrap();
    let second = rig
        .run("udesk", "u2.jsonl.zst", &["--state", "ustate"])
        .await;
    assert_exit(&second, 0);
    let text = String::from_utf8(decompressed(".zst", &rig.bytes("u2.changes.jsonl.zst"))).unwrap();
    assert_eq!(text, format!("{{\"op\":\"delete\",\"id\":\"{gone}\"}}\n"));

    // A Parquet export keeps its state too; its changes are JSONL.
    for (out, expected) in [("p1.parquet", 499), ("p2.parquet", 498)] {
        if out == "p2.parquet" {
            let gone = rig.server.shared.data().udesk.order[7];
            rig.server.shared.data().udesk.remove(gone).unwrap();
        }
        let run = rig.run("udesk", out, &["--state", "pstate"]).await;
        assert_exit(&run, 0);
        assert_eq!(report(&run)["rows"], expected);
    }
    let text = std::fs::read_to_string(rig.path("p2.changes.jsonl")).unwrap();
    assert!(text.starts_with("{\"op\":\"delete\",\"id\":\""), "{text}");
    assert_eq!(text.lines().count(), 1);
    // And against the previous Parquet file itself: its cells, as typed.
    let renamed = rig.server.shared.data().udesk.order[10];
    rig.server
        .shared
        .data()
        .udesk
        .customers
        .get_mut(&renamed)
        .unwrap()
        .nick_name = "Renamed".into();
    let run = rig
        .run("udesk", "p3.parquet", &["--changes-since", "p2.parquet"])
        .await;
    assert_exit(&run, 0);
    let changes = &report(&run)["changes"];
    assert_eq!(
        (&changes["updated"], &changes["unchanged"]),
        (&json!(1), &json!(497)),
        "{changes}"
    );
    let text = std::fs::read_to_string(rig.path("p3.changes.jsonl")).unwrap();
    assert!(
        text.starts_with("{\"op\":\"update\",\"changed\":[\"nick_name\"],\"record\":{"),
        "{text}"
    );

    // Configuration mistakes are one error before any export: another format, another
    // target's state, stdout.
    for (target, out, args, says) in [
        (
            "udesk",
            "x.csv",
            vec!["--changes-since", "u1.jsonl.zst"],
            "reads as jsonl",
        ),
        (
            "omnidesk",
            "y.jsonl",
            vec!["--state", "ustate"],
            "target was udesk",
        ),
        ("udesk", "-", vec!["--state", "ustate"], "--out -"),
        (
            "udesk",
            "z.csv",
            vec!["--changes", "c.csv"],
            "go with --changes-since",
        ),
        (
            "udesk",
            "p.parquet",
            vec!["--changes-since", "u1.jsonl.zst"],
            "it is not a Parquet file",
        ),
        ("udesk", "p.parquet.gz", vec![], "compressed inside"),
    ] {
        let out = rig.run(target, out, &args).await;
        assert_exit(&out, 2);
        assert!(describe(&out).contains(says), "{says}: {}", describe(&out));
    }
    assert!(!rig.path("x.csv").exists() && !rig.path("y.jsonl").exists());
}

/// The rows of a Parquet export read by the parquet crate's own record reader, as the CSV
/// export's cells (lists joined with `;`, custom fields as `custom_<key>`); times as
/// milliseconds.
fn parquet_rows(path: &std::path::Path) -> BTreeMap<String, BTreeMap<String, String>> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, ListAccessor, MapAccessor};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let text = |f: &Field| match f {
        Field::Null => String::new(),
        Field::Str(s) => s.clone(),
        Field::Long(n) | Field::TimestampMillis(n) => n.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    let mut by_id = BTreeMap::new();
    for row in reader.get_row_iter(None).unwrap() {
        let row = row.unwrap();
        let mut cells = BTreeMap::new();
        for (name, field) in row.get_column_iter() {
            match field {
                Field::ListInternal(list) => {
                    let items: Vec<String> = (0..list.len())
                        .map(|i| list.get_string(i).unwrap().clone())
                        .collect();
                    cells.insert(name.clone(), items.join(";"));
                }
                Field::MapInternal(map) => {
                    let (keys, values) = (map.get_keys(), map.get_values());
                    for i in 0..map.len() {
                        cells.insert(
                            format!("custom_{}", keys.get_string(i).unwrap()),
                            values.get_string(i).unwrap().clone(),
                        );
                    }
                }
                other => {
                    cells.insert(name.clone(), text(other));
                }
            }
        }
        let id = cells["platform_id"].clone();
        assert!(by_id.insert(id.clone(), cells).is_none(), "id {id} twice");
    }
    by_id
}

/// Whether a tool a test needs must be there (CI) rather than the check skipped.
fn pyarrow_required() -> bool {
    std::env::var("DESKPORT_PYARROW_TESTS").as_deref() == Ok("require")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_exports_hold_the_csv_values_typed_and_resume_after_kill_9() {
    let rig = Rig::start(6_000).await;
    rig.faults(json!({"latency_ms": 3})).await;
    kill_and_resume(
        &rig,
        "omnidesk",
        "o.parquet",
        &["--max-concurrency", "2"],
        2,
    )
    .await;
    // Udesk: a resume starts a new scroll, so pages may be cut elsewhere; the rows are the
    // same.
    let scratch = rig.path("decoded.parquet");
    kill_and_resume_as(&rig, "udesk", "u.parquet", &[], 2, |bytes| {
        std::fs::write(&scratch, bytes).unwrap();
        format!("{:?}", parquet_rows(&scratch)).into_bytes()
    })
    .await;
    for (target, args) in [
        ("omnidesk", vec![]),
        ("udesk", vec!["--udesk-source", "list"]),
    ] {
        let (csv_out, parquet_out) = (format!("{target}.csv"), format!("{target}.parquet"));
        assert_exit(&rig.run(target, &csv_out, &args).await, 0);
        let done = rig.run(target, &parquet_out, &args).await;
        assert_exit(&done, 0);
        assert_eq!(report(&done)["format"], "parquet");
        let csv = rows_by_id(&rig.path(&csv_out));
        let parquet = parquet_rows(&rig.path(&parquet_out));
        assert_eq!(csv.len(), parquet.len());
        let mut custom_cells = 0;
        for (id, row) in &csv {
            let typed = &parquet[id];
            for (column, cell) in row {
                if column.ends_with("_at") {
                    assert_eq!(typed[column].is_empty(), cell.is_empty(), "{id} {column}");
                } else if column.starts_with("custom_") && column != "custom_fields_json" {
                    if !cell.is_empty() {
                        custom_cells += 1;
                        assert_eq!(typed.get(column), Some(cell), "{id} {column}");
                    }
                } else if column != "custom_fields_json" {
                    assert_eq!(&typed[column], cell, "{id} {column}");
                }
            }
        }
        assert!(
            target == "omnidesk" || custom_cells > 0,
            "no custom fields compared"
        );
    }

    // An independent reader: Apache Arrow's own (pyarrow), with the documented types.
    let probe = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !probe {
        assert!(!pyarrow_required(), "python3 with pyarrow is required");
        eprintln!("skipped: python3 pyarrow not found (pip install pyarrow)");
        return;
    }
    let script = "import pyarrow.parquet as pq, json, sys\nt = pq.read_table(sys.argv[1])\nprint(json.dumps({'rows': t.num_rows, 'types': {f.name: str(f.type) for f in t.schema}, 'ids': t.column('platform_id').to_pylist()}))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(rig.path("udesk.parquet"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pyarrow: {}", describe(&out));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["rows"], 6_000);
    let types = &read["types"];
    assert_eq!(types["platform_id"], "int64");
    assert_eq!(types["phones"], "list<element: string>");
    assert_eq!(types["created_at"], "timestamp[ms, tz=UTC]");
    assert!(
        types["custom_fields"]
            .as_str()
            .unwrap()
            .starts_with("map<string, string"),
        "{types}"
    );
    let ids: BTreeSet<String> = read["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(
        ids,
        rows_by_id(&rig.path("udesk.csv")).into_keys().collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_rows_writes_numbered_parts_that_add_up_to_the_whole_also_after_kill_9() {
    let rig = Rig::start(2_500).await;
    assert_exit(&rig.run("omnidesk", "whole.csv", &[]).await, 0);
    let whole = String::from_utf8(rig.bytes("whole.csv")).unwrap();
    let (header, body) = whole.split_at(whole.find('\n').unwrap() + 1);

    let split = rig
        .run("omnidesk", "r.csv", &["--split-rows", "1000"])
        .await;
    assert_exit(&split, 0);
    assert_eq!(report(&split)["parts"].as_array().unwrap().len(), 3);
    assert!(!rig.path("r.csv").exists() && !rig.path("r.csv.partial").exists());
    let parts: Vec<String> = (1..=3)
        .map(|n| String::from_utf8(rig.bytes(&format!("r-{n:05}.csv"))).unwrap())
        .collect();
    let mut joined = String::new();
    for (i, part) in parts.iter().enumerate() {
        let rows = part
            .strip_prefix(header)
            .expect("every part has the header");
        assert_eq!(rows.lines().count(), [1000, 1000, 500][i]);
        joined.push_str(rows);
    }
    assert_eq!(joined, body);

    // Compressed and killed twice: each part decompresses to the plain part.
    rig.faults(json!({"latency_ms": 3})).await;
    let args = ["--split-rows", "1000", "--max-concurrency", "2", "--resume"];
    let mut killed = 0;
    for k in 0..2u64 {
        let mut child = rig.spawn("omnidesk", "g.csv.gz", &args);
        if rig
            .wait_for_size(&mut child, "g.csv.gz.partial", 40_000 * (k + 1))
            .await
        {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    assert!(killed > 0, "the export ended before any kill");
    assert_exit(&rig.run("omnidesk", "g.csv.gz", &args).await, 0);
    for (n, part) in parts.iter().enumerate() {
        let name = format!("g-{:05}.csv.gz", n + 1);
        let text = decompressed(&name, &rig.bytes(&name));
        assert_eq!(String::from_utf8(text).unwrap(), *part, "{name}");
    }

    // A shorter split tonight leaves no part of last night's behind.
    assert_exit(
        &rig.run("omnidesk", "r.csv", &["--split-rows", "2000"])
            .await,
        0,
    );
    assert!(rig.path("r-00002.csv").exists() && !rig.path("r-00003.csv").exists());

    // Parquet parts, each a file of its own.
    assert_exit(
        &rig.run("omnidesk", "p.parquet", &["--split-rows", "1000"])
            .await,
        0,
    );
    let sizes: Vec<usize> = (1..=3)
        .map(|n| parquet_rows(&rig.path(&format!("p-{n:05}.parquet"))).len())
        .collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    assert!(!rig.path("p-00004.parquet").exists() && !rig.path("p.parquet").exists());
}
