//! `deskport import` against the sandbox: the real binary, a sandbox on loopback in this
//! process. What the sandbox holds afterwards is compared with the valid input rows, field
//! by field; every row must be in exactly one result file; crashes, faults and resumes must
//! neither lose nor duplicate a customer (in a fresh sandbox nothing may come out `exists`:
//! a blind re-create of our own customer would).

use crate::common::{assert_exit, describe, fixture, read_csv, Workdir};
use deskport::sandbox::{self, Sandbox, SandboxConfig};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Rig {
    server: Sandbox,
    http: reqwest::Client,
    work: Workdir,
    config: SandboxConfig,
}

impl Rig {
    async fn start(config: SandboxConfig) -> Rig {
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

    /// `deskport import INPUT --target T --base-url … --journal journal ARGS` with credentials
    /// in the environment.
    fn command(&self, input: &str, target: &str, args: &[&str]) -> Command {
        let mut cmd = self.authed();
        cmd.args(["--log-format", "json", "import", input, "--target", target])
            .args(["--base-url", &self.base()])
            .args(args);
        if !args.contains(&"--journal") {
            cmd.args(["--journal", "journal"]);
        }
        if target == "omnidesk" {
            cmd.args(["--brand-id", "1"]);
        } else {
            // The sandbox runs Udesk's minute in a second for these tests.
            cmd.args([
                "--udesk-minute",
                "1",
                "--map",
                &fixture("udesk_mapping.toml"),
            ]);
        }
        cmd
    }

    /// `deskport` in the work directory with the sandbox's credentials in the environment.
    fn authed(&self) -> Command {
        let mut cmd = self.work.command();
        cmd.env("DESKPORT_OMNIDESK_API_KEY", &self.config.omnidesk_api_key)
            .env("DESKPORT_UDESK_EMAIL", &self.config.udesk_email)
            .env("DESKPORT_UDESK_TOKEN", &self.config.udesk_token);
        cmd
    }

    async fn run(&self, input: &str, target: &str, args: &[&str]) -> Output {
        output(self.command(input, target, args)).await
    }

    async fn state(&self) -> Value {
        crate::common::sandbox_state(&self.http, &self.base()).await
    }

    async fn faults(&self, faults: Value) {
        crate::common::set_faults(&self.http, &self.base(), faults).await
    }

    /// The clean rows of `input` under `target`'s rules, as `validate --out` writes them.
    fn clean_rows(&self, input: &str, target: &str) -> Vec<BTreeMap<String, String>> {
        let mut args = vec![
            "validate",
            input,
            "--target",
            target,
            "--out",
            "expected.csv",
            "-q",
        ];
        let map = fixture("udesk_mapping.toml");
        if target == "udesk" {
            args.extend(["--map", &map]);
        }
        let out = self.work.run(&args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{}",
            describe(&out)
        );
        let (header, rows) = read_csv(&self.work.file("expected.csv"));
        rows.into_iter()
            .map(|r| header.iter().cloned().zip(r).collect())
            .collect()
    }

    fn journal_file(&self, name: &str) -> std::path::PathBuf {
        self.work.file("journal").join(name)
    }

    /// Final records in the journal so far.
    fn done_records(&self) -> usize {
        std::fs::read_to_string(self.journal_file("journal.jsonl"))
            .map_or(0, |t| t.matches("\"t\":\"done\"").count())
    }

    /// Waits (at most 30 s) until the journal holds `n` final records.
    async fn wait_for_done(&self, n: usize) {
        let started = Instant::now();
        while self.done_records() < n {
            assert!(started.elapsed() < Duration::from_secs(30), "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

use crate::common::report;

/// Runs a command to its end off the async runtime's threads.
async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn list(cell: &str) -> BTreeSet<String> {
    cell.split(';')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Every row in exactly one of results / failures / rejects, and the counts add up.
fn assert_accounting(rig: &Rig, out: &Output, rows_in_file: usize) {
    let r = report(out);
    let c = &r["counts"];
    let sum: u64 = [
        "created",
        "updated",
        "exists",
        "failed",
        "invalid",
        "unfinished",
    ]
    .iter()
    .map(|k| c[k].as_u64().unwrap())
    .sum();
    assert_eq!(sum, rows_in_file as u64, "counts add up to the rows\n{r:#}");
    assert_eq!(r["rows_read"].as_u64().unwrap(), rows_in_file as u64);
    let mut lines = BTreeSet::new();
    for (file, column) in [
        ("results.csv", "line"),
        ("failures.csv", "deskport_line"),
        ("rejects.csv", "deskport_line"),
    ] {
        let (header, rows) = read_csv(&rig.journal_file(file));
        let i = header.iter().position(|h| h == column).unwrap();
        for row in rows {
            assert!(
                lines.insert(row[i].clone()),
                "line {} twice ({file})",
                row[i]
            );
        }
    }
    assert_eq!(
        lines.len(),
        rows_in_file,
        "every row in exactly one result file"
    );
}

/// The Omnidesk store equals the clean rows field by field, each exactly once.
fn assert_omnidesk_holds(state: &Value, expected: &[BTreeMap<String, String>]) {
    let customers = state["omnidesk"]["customers"].as_array().unwrap();
    assert_eq!(
        customers.len(),
        expected.len(),
        "one customer per valid row"
    );
    let by_id: BTreeMap<&str, &Value> = customers
        .iter()
        .map(|c| (c["external_primary_id"].as_str().unwrap(), c))
        .collect();
    assert_eq!(by_id.len(), customers.len(), "no external id twice");
    for row in expected {
        let c = by_id
            .get(row["external_id"].as_str())
            .unwrap_or_else(|| panic!("{} missing", row["external_id"]));
        assert_eq!(c["firstname"], row["firstname"].as_str(), "{row:?}");
        assert_eq!(c["lastname"], row["lastname"].as_str(), "{row:?}");
        let channels: BTreeSet<String> = c["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ch| {
                format!(
                    "{}:{}",
                    ch["type"].as_str().unwrap(),
                    ch["value"].as_str().unwrap()
                )
            })
            .collect();
        let mut want: BTreeSet<String> = BTreeSet::new();
        for e in list(&row["email"])
            .into_iter()
            .chain(list(&row["other_emails"]))
        {
            want.insert(format!("email:{e}"));
        }
        for p in list(&row["phones"]) {
            want.insert(format!("telephone:{p}"));
        }
        assert_eq!(channels, want, "channels of {}", row["external_id"]);
        for (k, v) in row.iter().filter(|(k, _)| k.starts_with("custom_")) {
            let name = &k["custom_".len()..];
            if !v.is_empty() {
                assert_eq!(
                    c["custom_fields"][name],
                    v.as_str(),
                    "{k} of {}",
                    row["external_id"]
                );
            }
        }
    }
}

/// The Udesk store equals the clean rows field by field, each exactly once.
fn assert_udesk_holds(state: &Value, expected: &[BTreeMap<String, String>]) {
    let customers = state["udesk"]["customers"].as_array().unwrap();
    assert_eq!(
        customers.len(),
        expected.len(),
        "one customer per valid row"
    );
    let by_id: BTreeMap<&str, &Value> = customers
        .iter()
        .map(|c| (c["open_api_token"].as_str().unwrap(), c))
        .collect();
    assert_eq!(by_id.len(), customers.len());
    for row in expected {
        let c = by_id
            .get(row["external_id"].as_str())
            .unwrap_or_else(|| panic!("{} missing", row["external_id"]));
        let nick = if row["nick_name"].is_empty() {
            [row["firstname"].as_str(), row["lastname"].as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            row["nick_name"].clone()
        };
        assert_eq!(c["nick_name"], nick.as_str());
        assert_eq!(c["email"].as_str().unwrap_or(""), row["email"]);
        let phones: BTreeSet<String> = c["cellphones"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[1].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            phones,
            list(&row["phones"]),
            "phones of {}",
            row["external_id"]
        );
        // Stored as [id, email] pairs, as the documents show them (003:502-505).
        let others: BTreeSet<String> = c["other_emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[1].as_str().unwrap().to_string())
            .collect();
        assert_eq!(others, list(&row["other_emails"]));
        let level = if row["level"].is_empty() {
            "normal"
        } else {
            row["level"].as_str()
        };
        assert_eq!(c["level"], level);
        let tags: BTreeSet<String> = c["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(tags, list(&row["tags"]));
        if let Some(v) = row.get("custom_TextField_1").filter(|v| !v.is_empty()) {
            assert_eq!(c["custom_fields"]["TextField_1"], v.as_str());
        }
    }
}

fn count(report: &Value, key: &str) -> u64 {
    report["counts"][key].as_u64().unwrap()
}

const FIXTURE_ROWS: usize = 500;

fn multichannel_csv(work: &Workdir) -> String {
    let text = "external_id,firstname,lastname,email,other_emails,phone,phone 2,phone 3,custom_plan,level,tags\n\
M1,Anna,Berg,anna@example.com,a2@example.com;a3@example.com,+31612345678,+31201234567,+3546111234,gold,vip,a;b\n\
M2,Bram,Smit,,,+31612345679,,,silver,,\n\
M3,Cora,Jansen,cora@example.com,,,,,,normal,x\n";
    work.write("multi.csv", text).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omnidesk_create_holds_exactly_the_valid_rows() {
    let rig = Rig::start(SandboxConfig::default()).await;
    let input = fixture("customers.csv");
    let out = rig.run(&input, "omnidesk", &[]).await;
    assert_exit(&out, 1); // the fixture has invalid rows
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let expected = rig.clean_rows(&input, "omnidesk");
    let r = report(&out);
    assert_eq!(count(&r, "created") as usize, expected.len());
    assert_eq!(count(&r, "exists"), 0);
    assert_omnidesk_holds(&rig.state().await, &expected);

    // Multiple channels and custom fields: first channel in the create, one extra of each,
    // the rest through addChannelOnly.
    let multi = multichannel_csv(&rig.work);
    let out = rig.run(&multi, "omnidesk", &["--journal", "j2"]).await;
    assert_exit(&out, 0);
    let state = rig.state().await;
    let m1 = state["omnidesk"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["external_primary_id"] == "M1")
        .unwrap()
        .clone();
    let values: BTreeSet<&str> = m1["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        BTreeSet::from([
            "anna@example.com",
            "a2@example.com",
            "a3@example.com",
            "+31612345678",
            "+31201234567",
            "+3546111234"
        ])
    );
    assert_eq!(m1["custom_fields"]["plan"], "gold");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sync_goes_with_every_create_and_add_channel_only_when_asked() {
    let rig = Rig::start(SandboxConfig::default()).await;
    let multi = multichannel_csv(&rig.work);
    let out = rig.run(&multi, "omnidesk", &["--journal", "plain"]).await;
    assert_exit(&out, 0);
    assert_eq!(
        rig.state().await["stats"]["no_sync_writes"],
        0,
        "not unless asked"
    );
    let again = rig.work.write(
        "again.csv",
        std::fs::read_to_string(&multi)
            .unwrap()
            .replace(",Anna,", ",Anja,")
            .replace('M', "N"),
    );
    let out = rig
        .run(
            again.to_str().unwrap(),
            "omnidesk",
            &["--journal", "nosync", "--no-sync"],
        )
        .await;
    assert_exit(&out, 0);
    assert_eq!(count(&report(&out), "created"), 3);
    // Three creates, and N1's two addChannelOnly calls (its third email, two more phones).
    assert_eq!(rig.state().await["stats"]["no_sync_writes"], 5);
    let udesk = rig
        .run(&multi, "udesk", &["--journal", "u", "--no-sync"])
        .await;
    assert_exit(&udesk, 2);
    assert!(String::from_utf8_lossy(&udesk.stderr).contains("--no-sync is Omnidesk's"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_create_uses_bulk_import_and_holds_exactly_the_valid_rows() {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    let out = rig.run(&input, "udesk", &[]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let expected = rig.clean_rows(&input, "udesk");
    let r = report(&out);
    assert_eq!(count(&r, "created") as usize, expected.len(), "{r:#}");
    assert_eq!(count(&r, "exists"), 0);
    let state = rig.state().await;
    assert_udesk_holds(&state, &expected);
    let by_bulk = state["udesk"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source_channel"] == "import")
        .count();
    assert!(by_bulk >= 100, "bulk import carried rows ({by_bulk})");
    assert!(
        by_bulk < expected.len(),
        "single creates used the rest of the budget"
    );
    let results = std::fs::read_to_string(rig.journal_file("results.csv")).unwrap();
    assert!(results.contains("bulk import confirmed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_updates_and_creates_and_update_mode_never_creates() {
    for target in ["omnidesk", "udesk"] {
        let rig = Rig::start(SandboxConfig {
            time_scale: 60.0,
            ..SandboxConfig::default()
        })
        .await;
        let first = rig.work.write(
            "first.csv",
            "external_id,firstname,lastname,email,phone,custom_TextField_1\nU1,Anna,Berg,anna@example.com,+31612345678,a\nU2,Bram,Smit,bram@example.com,,b\n",
        );
        let out = rig
            .run(first.to_str().unwrap(), target, &["--journal", "j1"])
            .await;
        assert_exit(&out, 0);
        // Upsert: U1 changes name and gains a phone, U3 is new.
        let second = rig.work.write(
            "second.csv",
            "external_id,firstname,lastname,email,phone,custom_TextField_1\nU1,Annie,Berg,anna@example.com,+31612345670,z\nU3,Cees,Bos,cees@example.com,,c\n",
        );
        let out = rig
            .run(
                second.to_str().unwrap(),
                target,
                &["--mode", "upsert", "--journal", "j2"],
            )
            .await;
        assert_exit(&out, 0);
        let r = report(&out);
        assert_eq!(
            (count(&r, "updated"), count(&r, "created")),
            (1, 1),
            "{target}: {r:#}"
        );
        let state = rig.state().await;
        match target {
            "omnidesk" => {
                let cs = state["omnidesk"]["customers"].as_array().unwrap();
                assert_eq!(cs.len(), 3);
                let u1 = cs
                    .iter()
                    .find(|c| c["external_primary_id"] == "U1")
                    .unwrap();
                assert_eq!(u1["firstname"], "Annie");
                assert_eq!(u1["custom_fields"]["TextField_1"], "z");
                assert!(u1["channels"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["value"] == "+31612345670"));
            }
            _ => {
                let cs = state["udesk"]["customers"].as_array().unwrap();
                assert_eq!(cs.len(), 3);
                let u1 = cs.iter().find(|c| c["open_api_token"] == "U1").unwrap();
                assert_eq!(u1["nick_name"], "Annie Berg");
                assert_eq!(u1["custom_fields"]["TextField_1"], "z");
            }
        }
        // Update mode: an unknown id is a failure and nothing is created.
        let third = rig.work.write(
            "third.csv",
            "external_id,firstname,lastname,email\nU2,Bram,Smits,bram@example.com\nNOPE,Nora,Niet,nora@example.com\n",
        );
        let out = rig
            .run(
                third.to_str().unwrap(),
                target,
                &["--mode", "update", "--journal", "j3"],
            )
            .await;
        assert_exit(&out, 1);
        let r = report(&out);
        assert_eq!(
            (
                count(&r, "updated"),
                count(&r, "failed"),
                count(&r, "created")
            ),
            (1, 1, 0)
        );
        let failures = std::fs::read_to_string(rig.work.file("j3/failures.csv")).unwrap();
        assert!(
            failures.contains("not_found") && failures.contains("NOPE"),
            "{failures}"
        );
        let state = rig.state().await;
        assert_eq!(
            state[target]["count"], 3,
            "{target}: update mode created nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rate_limits_lose_and_duplicate_nothing() {
    let rig = Rig::start(SandboxConfig {
        omnidesk_rate_per_second: Some(400.0),
        seed: 7,
        ..SandboxConfig::default()
    })
    .await;
    rig.faults(json!({
        "error_rate": 0.10, "apply_then_error_rate": 0.10, "drop_rate": 0.05, "apply_then_drop_rate": 0.02
    }))
    .await;
    let input = fixture("customers.csv");
    let out = rig.run(&input, "omnidesk", &["--max-attempts", "12"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let r = report(&out);
    assert_eq!(count(&r, "unfinished"), 0, "{r:#}");
    assert_eq!(
        count(&r, "exists"),
        0,
        "a re-sent create of our own customer: {r:#}"
    );
    assert!(r["retries"].as_u64().unwrap() > 0);
    let expected = rig.clean_rows(&input, "omnidesk");
    assert_eq!(count(&r, "created") as usize, expected.len());
    rig.faults(json!({})).await;
    assert_omnidesk_holds(&rig.state().await, &expected);
    let stats = &rig.state().await["stats"];
    assert!(stats["injected_apply_then_errors"].as_u64().unwrap() > 0);
}

/// Starts an import, kills it with SIGKILL once the journal has `after_done` final records
/// (or after `after` at the latest), and returns whether it was still running.
async fn kill_after(
    rig: &Rig,
    input: &str,
    target: &str,
    args: &[&str],
    after_done: usize,
    after: Duration,
) -> bool {
    let mut child = rig
        .command(input, target, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if rig.done_records() >= after_done || started.elapsed() >= after {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Kills the import at each `(done records, ms)` point, resumes to the end, and checks
/// exactly-once. With `limits`, the sandbox refuses more than the importer expects, so the
/// kills also land while the workers share a rate-limit pause.
async fn crash_resume(target: &str, faults: Value, kills: &[(usize, u64)], limits: bool) {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        seed: 11,
        // Per platform second: 2 × the time scale of 60 = 120 requests a real second.
        omnidesk_rate_per_second: limits.then_some(2.0),
        udesk_calls_per_minute: if limits { 30 } else { 60 },
        ..SandboxConfig::default()
    })
    .await;
    rig.faults(faults.clone()).await;
    let input = fixture("customers.csv");
    let mut killed = 0;
    for &(after_done, ms) in kills {
        if kill_after(
            &rig,
            &input,
            target,
            &["--resume", "--max-attempts", "12"],
            after_done,
            Duration::from_millis(ms),
        )
        .await
        {
            killed += 1;
        }
    }
    assert!(killed >= 2, "the import was killed mid-run at least twice");
    let out = rig
        .run(&input, target, &["--resume", "--max-attempts", "12"])
        .await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let r = report(&out);
    assert_eq!(count(&r, "unfinished"), 0, "{r:#}");
    assert_eq!(
        count(&r, "exists"),
        0,
        "a resumed create was sent again blindly: {r:#}"
    );
    let expected = rig.clean_rows(&input, target);
    assert_eq!(count(&r, "created") as usize, expected.len(), "{r:#}");
    rig.faults(json!({})).await;
    let state = rig.state().await;
    if limits {
        assert!(
            state["stats"]["rate_limited"].as_u64().unwrap() > 0,
            "the limit refused requests"
        );
    }
    match target {
        "omnidesk" => assert_omnidesk_holds(&state, &expected),
        _ => assert_udesk_holds(&state, &expected),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_resume_omnidesk_during_pauses_is_exactly_once() {
    // Early, mid-run, late; latency keeps requests in flight at each kill, and a rate limit
    // the importer was not told about makes it pause.
    crash_resume(
        "omnidesk",
        json!({"latency_ms": 3, "jitter_ms": 5}),
        &[(1, 60_000), (60, 60_000), (200, 60_000), (330, 60_000)],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_resume_omnidesk_with_faults_is_exactly_once() {
    crash_resume(
        "omnidesk",
        json!({"latency_ms": 2, "error_rate": 0.1, "apply_then_error_rate": 0.1, "drop_rate": 0.05}),
        &[(20, 60_000), (150, 60_000), (300, 60_000)],
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_resume_udesk_during_bulk_calls_and_pauses_is_exactly_once() {
    // The sandbox allows 30 calls a (sped-up) minute where the importer expects 60: kills
    // land during shared pauses, between a bulk import being accepted and confirmed, and
    // during bulk calls (latency 40 ms).
    crash_resume(
        "udesk",
        json!({"latency_ms": 40, "apply_then_error_rate": 0.05}),
        &[(1, 60_000), (120, 60_000), (250, 60_000)],
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_is_split_off_and_the_rest_of_the_bulk_lands() {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    // A customer already holding an email the file uses again: the validator cannot know,
    // the platform refuses the whole bulk call naming that row.
    let seed = rig.work.write(
        "seed.csv",
        "external_id,nick_name,email\nOLD,Old Timer,taken@example.com\n",
    );
    let out = rig
        .run(seed.to_str().unwrap(), "udesk", &["--journal", "j0"])
        .await;
    assert_exit(&out, 0);
    let mut text = String::from("external_id,nick_name,email\n");
    for i in 0..150 {
        let email = if i == 37 {
            "taken@example.com".to_string()
        } else {
            format!("p{i}@example.com")
        };
        text.push_str(&format!("P{i},Person {i},{email}\n"));
    }
    let input = rig.work.write("poison.csv", text);
    let out = rig.run(input.to_str().unwrap(), "udesk", &[]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, 150);
    let r = report(&out);
    assert_eq!(
        (count(&r, "created"), count(&r, "failed")),
        (149, 1),
        "{r:#}"
    );
    let failures = std::fs::read_to_string(rig.journal_file("failures.csv")).unwrap();
    assert!(
        failures.contains("P37") && failures.contains("Email duplicate"),
        "{failures}"
    );
    let state = rig.state().await;
    assert_eq!(
        state["udesk"]["count"], 150,
        "the old customer and the 149 good rows"
    );
    let by_bulk = state["udesk"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source_channel"] == "import")
        .count();
    assert!(
        by_bulk >= 99,
        "the rest of the refused batch still went by bulk import ({by_bulk})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_rules_resume_restart_and_the_run_lock() {
    let rig = Rig::start(SandboxConfig::default()).await;
    let input = fixture("customers.csv");
    // --resume with no journal: a fresh run.
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 1);
    let created = count(&report(&out), "created");
    // A second run without --resume refuses and names both ways on.
    let out = rig.run(&input, "omnidesk", &[]).await;
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--resume") && err.contains("--restart"),
        "{err}"
    );
    // --resume of a finished run sends nothing and reports the same outcome.
    let before = rig.state().await["stats"]["requests"].as_u64().unwrap();
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    assert_eq!(count(&report(&out), "created"), created);
    assert_eq!(
        rig.state().await["stats"]["requests"].as_u64().unwrap(),
        before
    );
    // Another input with the same journal is refused.
    let other = rig
        .work
        .write("other.csv", "external_id,firstname\nZ1,Zoe\n");
    let out = rig
        .run(other.to_str().unwrap(), "omnidesk", &["--resume"])
        .await;
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("different input"));
    // --restart keeps the old journal aside; in a sandbox that has them all, rows are `exists`.
    let out = rig.run(&input, "omnidesk", &["--restart"]).await;
    assert_exit(&out, 1);
    assert_eq!(count(&report(&out), "exists"), created);
    assert!(rig.journal_file("journal.jsonl.old").exists());
    // The run lock: a second import on the same journal while one runs.
    rig.faults(json!({"latency_ms": 200})).await;
    let mut first = rig
        .command(&input, "omnidesk", &["--restart"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another deskport import is running"),
        "{}",
        describe(&out)
    );
    first.kill().ok();
    first.wait().ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_says_how_to_resume() {
    let rig = Rig::start(SandboxConfig::default()).await;
    rig.faults(json!({"latency_ms": 20})).await;
    let input = fixture("customers.csv");
    let child = rig
        .command(&input, "omnidesk", &["--max-concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rig.wait_for_done(30).await;
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--resume"), "{err}");
    let r = report(&out);
    assert!(r["not_processed"].as_u64().unwrap() > 0, "{r:#}");
    // A clean stop leaves nothing in doubt: in-flight rows finished, queued ones were
    // journaled as not sent, so the resume needs no lookups.
    let state = deskport::import::journal::load(&rig.journal_file("journal.jsonl"), u64::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(
        state.in_doubt.len(),
        0,
        "rows left in doubt by a clean stop"
    );
    assert!(state.finals.len() >= 30);
    rig.faults(json!({})).await;
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let r = report(&out);
    assert_eq!(count(&r, "exists"), 0, "{r:#}");
    assert_omnidesk_holds(&rig.state().await, &rig.clean_rows(&input, "omnidesk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_is_down_stops_the_run_and_a_resume_finishes_it() {
    let rig = Rig::start(SandboxConfig::default()).await;
    rig.faults(json!({"error_rate": 1.0})).await;
    let input = fixture("customers.csv");
    let out = rig
        .run(
            &input,
            "omnidesk",
            &["--max-attempts", "2", "--max-concurrency", "4"],
        )
        .await;
    assert_exit(&out, 3);
    let r = report(&out);
    assert!(
        r["stopped"].as_str().unwrap().contains("unavailable"),
        "{r:#}"
    );
    assert!(count(&r, "unfinished") >= 50, "{r:#}");
    assert_eq!(count(&r, "created"), 0);
    let failures = std::fs::read_to_string(rig.journal_file("failures.csv")).unwrap();
    assert!(
        failures.contains("unfinished"),
        "unfinished rows are in failures.csv"
    );
    // The platform is back: the resume retries the unfinished rows (looking them up first).
    rig.faults(json!({})).await;
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let r = report(&out);
    assert_eq!(
        (count(&r, "unfinished"), count(&r, "exists")),
        (0, 0),
        "{r:#}"
    );
    assert_omnidesk_holds(&rig.state().await, &rig.clean_rows(&input, "omnidesk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_quits_at_once_and_the_journal_still_resumes() {
    let rig = Rig::start(SandboxConfig::default()).await;
    rig.faults(json!({"latency_ms": 300})).await;
    let input = fixture("customers.csv");
    let child = rig
        .command(&input, "omnidesk", &["--max-concurrency", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    rig.wait_for_done(5).await;
    let pid = child.id() as i32;
    // SAFETY: sending signals to our own child process.
    unsafe { libc::kill(pid, libc::SIGINT) };
    tokio::time::sleep(Duration::from_millis(50)).await;
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("quit at once") && err.contains("--resume"),
        "{err}"
    );
    rig.faults(json!({})).await;
    let out = rig.run(&input, "omnidesk", &["--resume"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    assert_eq!(count(&report(&out), "exists"), 0);
    assert_omnidesk_holds(&rig.state().await, &rig.clean_rows(&input, "omnidesk"));
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_file_or_log_of_a_run_contains_the_credentials() {
    let config = SandboxConfig {
        omnidesk_api_key: "OMNI-SECRET-7f3a9c".into(),
        udesk_token: "UDESK-TOKEN-55e1b0".into(),
        udesk_password: "UDESK-PASSWORD-c4d2".into(),
        time_scale: 60.0,
        ..SandboxConfig::default()
    };
    let rig = Rig::start(config.clone()).await;
    rig.faults(json!({"error_rate": 0.1})).await;
    let input = fixture("customers.csv");
    let mut logs = Vec::new();
    let out = rig.run(&input, "omnidesk", &["--journal", "jo"]).await;
    assert_exit(&out, 1);
    logs.push(out);
    // Udesk by password: logs in, then signs every call with the token it got.
    let mut cmd = rig.command(&input, "udesk", &["--journal", "ju"]);
    cmd.env_remove("DESKPORT_UDESK_TOKEN")
        .env("DESKPORT_UDESK_PASSWORD", &config.udesk_password);
    let out = output(cmd).await;
    assert_exit(&out, 1);
    logs.push(out);
    // A refused key: the error message must not quote it either.
    let mut cmd = rig.command(&input, "omnidesk", &["--journal", "jbad"]);
    cmd.env("DESKPORT_OMNIDESK_API_KEY", "WRONG-KEY-0000");
    let out = output(cmd).await;
    assert_exit(&out, 3);
    logs.push(out);
    let mut texts: Vec<(String, Vec<u8>)> = logs
        .iter()
        .flat_map(|o| {
            [
                ("stdout".to_string(), o.stdout.clone()),
                ("stderr".to_string(), o.stderr.clone()),
            ]
        })
        .collect();
    let mut files = Vec::new();
    files_under(rig.work.path(), &mut files);
    assert!(files.len() >= 10, "the runs wrote their files");
    for f in files {
        texts.push((f.display().to_string(), std::fs::read(&f).unwrap()));
    }
    for (name, bytes) in texts {
        let text = String::from_utf8_lossy(&bytes);
        for secret in [
            config.omnidesk_api_key.as_str(),
            config.udesk_token.as_str(),
            config.udesk_password.as_str(),
            "WRONG-KEY-0000",
        ] {
            assert!(!text.contains(secret), "{secret} found in {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_predicts_without_writing() {
    let rig = Rig::start(SandboxConfig::default()).await;
    let multi = multichannel_csv(&rig.work);
    let out = rig.run(&multi, "omnidesk", &["--journal", "seed"]).await;
    assert_exit(&out, 0);
    let input = rig.work.write(
        "plan.csv",
        "external_id,firstname,lastname,email\nM1,Anna,Berg,anna@example.com\nNEW1,Nina,Vos,nina@example.com\nBAD,R2-D2!,X,r2@example.com\n",
    );
    let before = rig.state().await["omnidesk"]["count"].clone();
    for (mode, expect) in [
        ("create", ["exists", "create"]),
        ("upsert", ["update", "create"]),
        ("update", ["update", "fail"]),
    ] {
        let out = rig
            .run(
                input.to_str().unwrap(),
                "omnidesk",
                &["--dry-run", "--mode", mode, "--journal", "dry"],
            )
            .await;
        assert_exit(&out, 1); // the invalid row
        let (_, rows) = read_csv(&rig.work.file("dry/dry-run.csv"));
        let actions: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
        assert_eq!(actions, [expect[0], expect[1], "reject"], "{mode}");
        let err = String::from_utf8_lossy(&out.stderr);
        if mode != "update" {
            assert!(
                err.contains("primary_id") && err.contains("<redacted>"),
                "{err}"
            );
            assert!(!err.contains(&rig.config.omnidesk_api_key));
        }
    }
    assert_eq!(
        rig.state().await["omnidesk"]["count"],
        before,
        "a dry run writes nothing"
    );
    assert!(!rig.work.file("dry/journal.jsonl").exists());
}

#[test]
fn plain_http_to_another_host_and_missing_credentials_are_refused() {
    let work = Workdir::new();
    let input = fixture("customers.csv");
    let out = work
        .command()
        .env("DESKPORT_OMNIDESK_API_KEY", "k")
        .args([
            "import",
            &input,
            "--target",
            "omnidesk",
            "--brand-id",
            "1",
            "--base-url",
            "http://acme.omnidesk.com",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://"));
    let out = work.run(&[
        "import",
        &input,
        "--target",
        "udesk",
        "--base-url",
        "https://acme.udesk.cn",
    ]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("DESKPORT_UDESK_TOKEN"));
    let out = work.run(&["import", "-", "--target", "udesk", "--sandbox"]);
    assert_exit(&out, 2);
}

#[test]
fn the_quickstart_import_runs_into_the_built_in_sandbox() {
    let work = Workdir::new();
    let out = work.run(&[
        "import",
        &fixture("customers.csv"),
        "--target",
        "omnidesk",
        "--sandbox",
    ]);
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("created") && err.contains("customers.import/results.csv"),
        "{err}"
    );
    assert!(work.file("customers.import/results.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udesk_rows_pending_at_a_kill_are_confirmed_not_failed_on_resume() {
    // The platform applies accepted bulk imports two (real) seconds later: the resume
    // starts while the rows the killed run had sent in bulk are still being applied.
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        bulk_import_delay: Duration::from_secs(120),
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    let mut child = rig
        .command(&input, "udesk", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let journal = rig.journal_file("journal.jsonl");
    while !std::fs::read_to_string(&journal).is_ok_and(|t| t.contains("\"t\":\"pending\"")) {
        assert!(started.elapsed() < Duration::from_secs(30), "no bulk call");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = rig.run(&input, "udesk", &["--resume"]).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let r = report(&out);
    assert_eq!(
        count(&r, "failed"),
        0,
        "pending rows journaled as failures: {r:#}"
    );
    let expected = rig.clean_rows(&input, "udesk");
    assert_eq!(count(&r, "created") as usize, expected.len(), "{r:#}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    rig.http
        .post(format!("{}/__sandbox/apply_imports", rig.base()))
        .send()
        .await
        .unwrap();
    assert_udesk_holds(&rig.state().await, &expected);
}

/// External ids the sandbox holds for `target`.
fn held_ids(state: &Value, target: &str) -> BTreeSet<String> {
    let (platform, key) = match target {
        "omnidesk" => ("omnidesk", "external_primary_id"),
        _ => ("udesk", "open_api_token"),
    };
    state[platform]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c[key].as_str().map(str::to_string))
        .collect()
}

/// `results.csv` as (external id, outcome) pairs.
fn outcomes(rig: &Rig) -> Vec<(String, String)> {
    let (header, rows) = read_csv(&rig.journal_file("results.csv"));
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id, outcome) = (col("external_id"), col("outcome"));
    rows.into_iter()
        .map(|r| (r[id].clone(), r[outcome].clone()))
        .collect()
}

/// The import/export suite under one sandbox reply profile: a third of the customers exist
/// before a create run with faults and two SIGKILLs; every valid row ends created or
/// existing, none that existed before is reported created, the store holds each row once;
/// upsert and update then update every row; an export has the platform's total.
async fn exactly_once_under(profile: sandbox::Profile, target: &str, kills: bool) {
    let name = profile.name.clone();
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        seed: 5,
        profile,
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    let text = std::fs::read_to_string(&input).unwrap();
    // Older versions of the first 170 customers (other first names) are there before.
    let head: Vec<String> = text
        .lines()
        .take(171)
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.splitn(3, ',').collect();
            match parts.as_slice() {
                [id, first, rest] if i > 0 && !first.starts_with('"') => {
                    format!("{id},Was{first},{rest}")
                }
                _ => line.to_string(),
            }
        })
        .collect();
    let head_file = rig.work.write("head.csv", head.join("\n") + "\n");
    let head_file = head_file.to_str().unwrap();
    let out = rig.run(head_file, target, &[]).await;
    assert!(
        out.status.code() == Some(1) || out.status.success(),
        "{}",
        describe(&out)
    );
    let before = held_ids(&rig.state().await, target);
    assert!(
        before.len() > 100,
        "{name}: {} customers before",
        before.len()
    );

    rig.faults(json!({"latency_ms": 5, "error_rate": 0.04, "apply_then_error_rate": 0.04, "apply_then_drop_rate": 0.02}))
        .await;
    // A journal of its own (the kills watch its final records).
    std::fs::remove_dir_all(rig.work.file("journal")).unwrap();
    let args = ["--max-attempts", "12"];
    if kills {
        let first = kill_after(&rig, &input, target, &args, 60, Duration::from_secs(60)).await;
        let resume = ["--resume", "--max-attempts", "12"];
        let second = kill_after(&rig, &input, target, &resume, 200, Duration::from_secs(60)).await;
        assert!(
            first || second,
            "{name}/{target}: the import was killed mid-run"
        );
    }
    let last: &[&str] = if kills {
        &["--resume", "--max-attempts", "12"]
    } else {
        &args
    };
    let out = rig.run(&input, target, last).await;
    assert_exit(&out, 1);
    assert_accounting(&rig, &out, FIXTURE_ROWS);
    let expected = rig.clean_rows(&input, target);
    for (id, outcome) in outcomes(&rig) {
        match outcome.as_str() {
            "created" => assert!(
                !before.contains(&id),
                "{name}/{target}: {id} existed before and was reported created"
            ),
            "exists" => assert!(
                before.contains(&id),
                "{name}/{target}: {id} reported existing"
            ),
            _ => {}
        }
    }
    let r = report(&out);
    let (created, exists) = (count(&r, "created"), count(&r, "exists"));
    let there_before = expected
        .iter()
        .filter(|row| before.contains(&row["external_id"]))
        .count();
    assert_eq!(
        (created as usize, exists as usize),
        (expected.len() - there_before, there_before),
        "{name}/{target}: {r:#}"
    );
    rig.faults(json!({})).await;
    let held = held_ids(&rig.state().await, target);
    for row in &expected {
        assert!(
            held.contains(&row["external_id"]),
            "{name}/{target}: {} missing",
            row["external_id"]
        );
    }

    // Upsert brings the older versions up to date; update changes nothing more.
    for mode in ["upsert", "update"] {
        let out = rig
            .run(&input, target, &["--restart", "--mode", mode])
            .await;
        assert_exit(&out, 1);
        assert_accounting(&rig, &out, FIXTURE_ROWS);
        let r = report(&out);
        assert_eq!(
            count(&r, "updated") as usize,
            expected.len(),
            "{name}/{target} {mode}: {r:#}"
        );
        assert_eq!(count(&r, "created"), 0, "{name}/{target} {mode}");
    }
    let state = rig.state().await;
    match target {
        "omnidesk" => assert_omnidesk_holds(&state, &expected),
        _ => assert_udesk_holds(&state, &expected),
    }
    eprintln!(
        "{name}/{target}: {} valid rows, {there_before} of them there before; create: {created} created + {exists} exists; upsert and update: {} updated each",
        expected.len(),
        expected.len()
    );

    // Reconcile finds every row equal.
    let mut reconcile = rig.authed();
    reconcile
        .args([
            "--log-format",
            "json",
            "reconcile",
            &input,
            "--target",
            target,
        ])
        .args(["--base-url", &rig.base(), "--out", "reconcile.csv"]);
    if target == "omnidesk" {
        reconcile.args(["--brand-id", "1"]);
    } else {
        reconcile.args([
            "--udesk-minute",
            "1",
            "--map",
            &fixture("udesk_mapping.toml"),
        ]);
    }
    let out = output(reconcile).await;
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(1),
        "{}",
        describe(&out)
    );
    let (header, rows) = read_csv(&rig.work.file("reconcile.csv"));
    let status = header.iter().position(|h| h == "status").unwrap();
    let equal = rows.iter().filter(|r| r[status] == "equal").count();
    assert_eq!(
        equal,
        expected.len(),
        "{name}/{target}: reconcile\n{}",
        describe(&out)
    );

    // The export, through faults, has what the platform counts.
    rig.faults(json!({"error_rate": 0.03, "apply_then_drop_rate": 0.02}))
        .await;
    let mut export = rig.authed();
    export
        .args([
            "--log-format",
            "json",
            "export",
            "--target",
            target,
            "--base-url",
            &rig.base(),
        ])
        .args(["--out", "export.csv", "--max-attempts", "12"]);
    if target == "omnidesk" {
        export.arg("--details");
    } else {
        export.args(["--udesk-minute", "1"]);
    }
    let out = output(export).await;
    assert_exit(&out, 0);
    let (_, rows) = read_csv(&rig.work.file("export.csv"));
    assert_eq!(
        rows.len(),
        held_ids(&state, target).len(),
        "{name}/{target}: export"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_the_documented_profile_omnidesk() {
    exactly_once_under(sandbox::Profile::documented(), "omnidesk", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_the_documented_profile_udesk() {
    exactly_once_under(sandbox::Profile::documented(), "udesk", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_under_the_convenient_profile_both_platforms() {
    for target in ["omnidesk", "udesk"] {
        exactly_once_under(sandbox::Profile::convenient(), target, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_whatever_shape_omnidesk_replies_take() {
    // Each place a record may be, each not-found and duplicate status (no kills: the shapes,
    // not the crashes, are under test here).
    let statuses = [(200, 400), (400, 200), (404, 409)];
    for (i, at) in sandbox::RecordAt::ALL.into_iter().enumerate() {
        let (not_found, duplicate) = statuses[i % statuses.len()];
        let profile = sandbox::Profile {
            name: format!("{at:?}/{not_found}/{duplicate}"),
            omnidesk_record_at: at,
            omnidesk_not_found_status: not_found,
            omnidesk_duplicate_status: duplicate,
            ..sandbox::Profile::documented()
        };
        exactly_once_under(profile, "omnidesk", false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_stop_the_run_whatever_code_carries_them() {
    // The documented profile refuses bad credentials with HTTP 200 and a code the documents
    // do not list: the read-only probe stops the run before any row (exit 3).
    for target in ["udesk", "omnidesk"] {
        let rig = Rig::start(SandboxConfig {
            time_scale: 60.0,
            profile: sandbox::Profile::documented(),
            ..SandboxConfig::default()
        })
        .await;
        let input = fixture("customers.csv");
        let mut cmd = rig.command(&input, target, &[]);
        cmd.env("DESKPORT_UDESK_TOKEN", "wrong-token")
            .env("DESKPORT_OMNIDESK_API_KEY", "wrong-key");
        let out = output(cmd).await;
        assert_exit(&out, 3);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("refused a read-only call before any row"),
            "{err}"
        );
        assert!(
            !err.contains("wrong-token") && !err.contains("wrong-key"),
            "{err}"
        );
        let r = report(&out);
        assert_eq!(count(&r, "failed"), 0, "{r:#}");
        assert_eq!(held_ids(&rig.state().await, target).len(), 0);
        // Right credentials: the resume does the work.
        let out = rig.run(&input, target, &["--resume"]).await;
        assert_exit(&out, 1);
        assert_accounting(&rig, &out, FIXTURE_ROWS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_identical_refusals_and_no_success_stop_a_first_run() {
    // Every row carries a custom field the account does not have, and the account does not
    // publish its fields (so nothing catches it before sending): the run says so once
    // instead of refusing 400 rows one by one.
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        profile: deskport::sandbox::Profile {
            udesk_fields_endpoint: false,
            ..deskport::sandbox::Profile::convenient()
        },
        ..SandboxConfig::default()
    })
    .await;
    let map = rig.work.write(
        "bad_map.toml",
        "[columns]\n\"custom_loyalty\" = \"custom.TextField_99\"\n",
    );
    // The first 60 rows are enough (and keep the budget-bound resume short).
    let text = std::fs::read_to_string(fixture("customers.csv")).unwrap();
    let head: Vec<&str> = text.lines().take(61).collect();
    let input = rig.work.write("head.csv", head.join("\n") + "\n");
    let input = input.to_str().unwrap().to_string();
    let command = |resume: bool| {
        let mut cmd = rig.authed();
        cmd.args([
            "--log-format",
            "json",
            "import",
            &input,
            "--target",
            "udesk",
        ])
        .args([
            "--base-url",
            &rig.base(),
            "--journal",
            "journal",
            "--udesk-minute",
            "1",
        ])
        .args(["--map", map.to_str().unwrap()]);
        if resume {
            cmd.arg("--resume");
        }
        cmd
    };
    let out = output(command(false)).await;
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the same way"), "{err}");
    assert!(err.contains("definitions could not be read"), "{err}");
    let r = report(&out);
    assert!(count(&r, "failed") < 10, "{r:#}");
    // Resumed, the rows are recorded as refused (the escape hatch the message names).
    let out = output(command(true)).await;
    assert_exit(&out, 1);
    let rows = report(&out)["rows_read"].as_u64().unwrap() as usize;
    assert!(rows > 50, "{rows}");
    assert_accounting(&rig, &out, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_udesk_call_plan_is_shown_at_the_start_and_in_the_dry_run() {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    let out = rig.run(&input, "udesk", &[]).await;
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    let plan = err
        .lines()
        .find(|l| l.contains("\"event\":\"plan\""))
        .unwrap_or_else(|| panic!("no plan: {err}"));
    assert!(
        plan.contains("one export pass") && plan.contains("at most"),
        "{plan}"
    );
    // A dry run of an upsert knows from the same survey which rows exist: no lookups.
    let before = rig.state().await["stats"]["requests"].as_u64().unwrap();
    let out = rig
        .run(
            &input,
            "udesk",
            &["--dry-run", "--mode", "upsert", "--journal", "dry"],
        )
        .await;
    assert_exit(&out, 1);
    let r = report(&out);
    let call_plan = r["call_plan"].as_str().unwrap();
    assert!(call_plan.contains("found 441 external ids"), "{call_plan}");
    assert_eq!(r["update"], 441, "{r:#}");
    let after = rig.state().await["stats"]["requests"].as_u64().unwrap();
    assert!(
        after - before <= 4,
        "the survey's calls only: {}",
        after - before
    );
}

/// `deskport undo JOURNAL --target T --base-url … --yes ARGS`.
/// Spawns `cmd` (output discarded) and kills it with SIGKILL once `progress()` reaches
/// `at`; fails if it ends first or makes no progress for a minute.
async fn kill_9_at(mut cmd: Command, progress: impl Fn() -> usize, at: usize) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while progress() < at {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Imports the first 119 rows of the fixture (journal `pre`): customers that are there
/// before the run under test.
async fn import_a_part_first(rig: &Rig, target: &str) {
    let text = std::fs::read_to_string(fixture("customers.csv")).unwrap();
    let part: String = text.lines().take(120).map(|l| format!("{l}\n")).collect();
    let part = rig.work.write("part.csv", part);
    let pre = rig
        .run(part.to_str().unwrap(), target, &["--journal", "pre"])
        .await;
    assert!(
        pre.status.code().is_some_and(|c| c <= 1),
        "{}",
        describe(&pre)
    );
}

fn undo_command(rig: &Rig, journal: &str, target: &str, args: &[&str]) -> Command {
    let mut cmd = rig.authed();
    cmd.args(["--log-format", "json", "undo", journal, "--target", target])
        .args(["--base-url", &rig.base(), "--yes"])
        .args(args);
    if target == "udesk" {
        cmd.args(["--udesk-minute", "1"]);
    }
    cmd
}

fn undo_lines(rig: &Rig, journal: &str) -> usize {
    std::fs::read_to_string(rig.work.file(journal).join("undo.jsonl"))
        .map_or(0, |t| t.lines().count())
}

async fn undo_after_an_upsert(target: &str) {
    let rig = Rig::start(SandboxConfig {
        seed_customers: 40,
        // Udesk's minute in a second, as the commands' --udesk-minute 1 expect.
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    // A part of the file is there before the import: those rows are updated, not created.
    import_a_part_first(&rig, target).await;
    let before = held_ids(&rig.state().await, target);
    assert!(before.len() > 60, "{}", before.len());

    let out = rig.run(&input, target, &["--mode", "upsert"]).await;
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        describe(&out)
    );
    let r = report(&out);
    let (created, updated) = (count(&r, "created"), count(&r, "updated"));
    assert!(created > 200 && updated > 50, "{r}");

    // The dry run lists, sends nothing.
    let dry = output(undo_command(&rig, "journal", target, &["--dry-run"])).await;
    assert_exit(&dry, 0);
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains(&format!("undo would delete {created} customers")),
        "{said}"
    );
    assert_eq!(
        held_ids(&rig.state().await, target).len() as u64,
        before.len() as u64 + created
    );

    // Replies exactly as documented from here on (Omnidesk's delete: "No content").
    let profile = rig
        .http
        .put(format!("{}/__sandbox/profile", rig.base()))
        .json(&json!({ "name": "documented" }))
        .send()
        .await
        .unwrap();
    assert!(profile.status().is_success());
    // Slow deletes, killed part-way, then run again to the end.
    rig.faults(json!({"latency_ms": 15})).await;
    let undo = undo_command(&rig, "journal", target, &["--max-concurrency", "2"]);
    kill_9_at(undo, || undo_lines(&rig, "journal"), 20).await;
    rig.faults(json!({"error_rate": 0.05, "apply_then_drop_rate": 0.05}))
        .await;
    let done = output(undo_command(&rig, "journal", target, &[])).await;
    assert_exit(&done, 0);
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&done.stderr)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let u = &summary["report"];
    assert_eq!(u["created_by_import"], created);
    assert!(u["deleted_before"].as_u64().unwrap() >= 20, "{u}");
    assert_eq!(
        u["deleted"].as_u64().unwrap()
            + u["deleted_before"].as_u64().unwrap()
            + u["already_gone"].as_u64().unwrap(),
        created,
        "{u}"
    );
    assert_eq!(u["updated_not_undone"], updated);
    // The documented empty reply is a delete, not a failure retried into "not found".
    assert!(u["deleted"].as_u64().unwrap() > 0, "{u}");
    // Exactly the customers that were there before the import are left.
    rig.faults(json!({})).await;
    assert_eq!(held_ids(&rig.state().await, target), before);
    let (header, rows) = read_csv(&rig.work.file("journal").join("undo.csv"));
    assert_eq!(header[3], "undo");
    assert_eq!(rows.len() as u64, created);
    assert!(rows.iter().all(|r| r[3] == "deleted" || r[3] == "gone"));
    // Run again: nothing left to do, nothing sent twice.
    let again = output(undo_command(&rig, "journal", target, &[])).await;
    assert_exit(&again, 0);
    let summary: Value = serde_json::from_str(
        String::from_utf8_lossy(&again.stderr)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(summary["report"]["deleted"], 0);
    assert_eq!(held_ids(&rig.state().await, target), before);
    // Another target than the import's is refused before anything is sent.
    let other = if target == "omnidesk" {
        "udesk"
    } else {
        "omnidesk"
    };
    let wrong = output(undo_command(&rig, "journal", other, &[])).await;
    assert_exit(&wrong, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_deletes_exactly_what_an_omnidesk_import_created_and_resumes_after_kill_9() {
    undo_after_an_upsert("omnidesk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_deletes_exactly_what_a_udesk_import_created_and_resumes_after_kill_9() {
    undo_after_an_upsert("udesk").await;
}

/// Customers made without an external id (by chat, phone or by hand), each holding one of
/// the addresses the `--match` rows carry; returns their platform ids by name.
fn hold_customers_without_external_ids(rig: &Rig, target: &str) -> BTreeMap<&'static str, u64> {
    use deskport::sandbox::store::{OmniChannel, OmniCustomer, UdeskCustomer};
    // name → (external id, emails, phones as the platform holds them)
    let udesk_phone = "13000000001"; // as every Udesk example holds phones (003:151-210)
    let people: [(&str, &str, &[&str], &[&str]); 5] = [
        ("anna", "", &["anna@example.nl"], &[]),
        (
            "bo",
            "",
            &[],
            &[if target == "udesk" {
                udesk_phone
            } else {
                "+8613000000001"
            }],
        ),
        ("taken", "OTHER-1", &["taken@example.nl"], &[]),
        ("x", "", &["x@example.nl"], &[]),
        ("y", "", &["y@example.nl"], &[]),
    ];
    let mut ids = BTreeMap::new();
    let mut data = rig.server.shared.data();
    for (name, ext, emails, phones) in people {
        if target == "omnidesk" {
            let store = &mut data.omni;
            let id = store.next_id();
            let mut channels = Vec::new();
            for e in emails {
                channels.push(OmniChannel {
                    id: store.next_id(),
                    kind: "email".into(),
                    value: e.to_string(),
                });
            }
            for p in phones {
                channels.push(OmniChannel {
                    id: store.next_id(),
                    kind: "telephone".into(),
                    value: p.to_string(),
                });
            }
            store.insert(OmniCustomer {
                id,
                brand_id: 1,
                external_primary_id: ext.into(),
                firstname: "Held".into(),
                lastname: "Before".into(),
                channels,
                custom_fields: BTreeMap::new(),
            });
            ids.insert(name, id);
        } else {
            let store = &mut data.udesk;
            let id = store.next_id();
            let cellphones = phones
                .iter()
                .map(|p| (store.next_phone_id(), p.to_string()))
                .collect();
            store.put(UdeskCustomer {
                id,
                nick_name: "Held Before".into(),
                level: "normal".into(),
                email: emails.first().map(|e| e.to_string()),
                cellphones,
                open_api_token: (!ext.is_empty()).then(|| ext.to_string()),
                ..UdeskCustomer::empty("Manual creation")
            });
            ids.insert(name, id);
        }
    }
    ids
}

const MATCH_ROWS: &str = "\
Customer Id,First Name,Last Name,Email,Other Emails,Phone 1
M1,Anna,Berg,anna@example.nl,,
M2,Bo,Li,,,+86 130 0000 0001
M3,Cas,Taken,taken@example.nl,,
M4,Dee,Two,x@example.nl,y@example.nl,
M5,Eva,New,eva@example.nl,,
";

/// The row's outcome in results.csv, or `failed` when failures.csv holds it.
fn outcome_of<'a>(outcomes: &'a [(String, String)], id: &str) -> &'a str {
    outcomes
        .iter()
        .find(|(e, _)| e == id)
        .map_or("failed", |(_, o)| o.as_str())
}

/// The external id each held customer carries now (empty: none).
fn external_ids_of(rig: &Rig, target: &str, ids: &BTreeMap<&str, u64>) -> BTreeMap<String, String> {
    let data = rig.server.shared.data();
    ids.iter()
        .map(|(name, id)| {
            let ext = if target == "omnidesk" {
                data.omni.customers[id].external_primary_id.clone()
            } else {
                data.udesk.customers[id]
                    .open_api_token
                    .clone()
                    .unwrap_or_default()
            };
            (name.to_string(), ext)
        })
        .collect()
}

async fn match_links_what_exists_without_an_external_id(
    target: &str,
    mode: &str,
    profile: deskport::sandbox::Profile,
) {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        profile,
        ..SandboxConfig::default()
    })
    .await;
    let held = hold_customers_without_external_ids(&rig, target);
    // Udesk: 300 new rows first, so the bulk lane (which shares the queue with the row
    // workers) has the matching rows to pass over.
    let mut rows = MATCH_ROWS.to_string();
    let bulk = target == "udesk" && mode == "create";
    if bulk {
        let (header, body) = rows.split_once('\n').unwrap();
        let new: String = (1..=300)
            .map(|i| format!("N{i:04},New,Row,new{i}@example.nl,,\n"))
            .collect();
        rows = format!("{header}\n{new}{body}");
    }
    let input = rig.work.write("match.csv", rows);
    let input = input.to_str().unwrap();
    let total_before = held_total(&rig, target);
    let added = if bulk { 301 } else { 1 };

    // The dry run searches too, and says what would be linked; it changes nothing.
    let dry = rig
        .run(
            input,
            target,
            &[
                "--mode",
                mode,
                "--journal",
                "dry",
                "--dry-run",
                "--match",
                "id,email,phone",
            ],
        )
        .await;
    assert!(
        dry.status.code().is_some_and(|c| c <= 1),
        "{}",
        describe(&dry)
    );
    let (header, planned) = read_csv(&rig.work.file("dry").join("dry-run.csv"));
    let (id, action) = (
        header.iter().position(|h| h == "external_id").unwrap(),
        header.iter().position(|h| h == "action").unwrap(),
    );
    let planned: BTreeMap<String, String> = planned
        .into_iter()
        .filter(|r| r[id].starts_with('M'))
        .map(|r| (r[id].clone(), r[action].clone()))
        .collect();
    let want: BTreeMap<String, String> = [
        ("M1", "link"),
        ("M2", "link"),
        ("M3", "fail"),
        ("M4", "fail"),
        ("M5", "create"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(planned, want);
    let unlinked = external_ids_of(&rig, target, &held)
        .values()
        .filter(|e| e.is_empty())
        .count();
    assert_eq!(unlinked, 4);

    let out = rig
        .run(
            input,
            target,
            &[
                "--mode",
                mode,
                "--match",
                "id,email,phone",
                "--max-concurrency",
                "1",
            ],
        )
        .await;
    assert_exit(&out, 1);
    let got = outcomes(&rig);
    let linked = if mode == "create" {
        "exists"
    } else {
        "updated"
    };
    assert_eq!(outcome_of(&got, "M1"), linked, "{got:?}");
    assert_eq!(outcome_of(&got, "M2"), linked, "{got:?}");
    assert_eq!(outcome_of(&got, "M3"), "failed", "{got:?}");
    assert_eq!(outcome_of(&got, "M4"), "failed", "{got:?}");
    assert_eq!(outcome_of(&got, "M5"), "created", "{got:?}");
    let (_, results) = read_csv(&rig.journal_file("results.csv"));
    let m1 = results.iter().find(|r| r[1] == "M1").unwrap();
    assert_eq!(m1[2], held["anna"].to_string(), "{m1:?}");
    assert!(
        m1[4].starts_with("linked by email anna@example.nl"),
        "{m1:?}"
    );
    let (header, failures) = read_csv(&rig.journal_file("failures.csv"));
    assert_eq!(failures.len(), 2, "{failures:?}");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let failure = |id: &str| {
        failures
            .iter()
            .find(|r| r[col("Customer Id")] == id)
            .unwrap()
            .clone()
    };
    let m3 = failure("M3");
    assert_eq!(m3[col("deskport_reason")], "match_conflict");
    assert!(
        m3[col("deskport_message")].contains("external id OTHER-1"),
        "{m3:?}"
    );
    let m4 = failure("M4");
    assert_eq!(m4[col("deskport_reason")], "match_conflict");
    let (x, y) = (held["x"].to_string(), held["y"].to_string());
    let message = &m4[col("deskport_message")];
    assert!(message.contains(&x) && message.contains(&y), "{m4:?}");

    // The linked customers carry the rows' external ids; the others are as they were; one
    // customer was added (M5), none duplicated.
    let now = external_ids_of(&rig, target, &held);
    let want: BTreeMap<String, String> = [
        ("anna", "M1"),
        ("bo", "M2"),
        ("taken", "OTHER-1"),
        ("x", ""),
        ("y", ""),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_string(), e.to_string()))
    .collect();
    assert_eq!(now, want);
    assert_eq!(held_total(&rig, target), total_before + added);
    // No row whose address a customer holds went into a bulk import (which may drop it,
    // 003:1131, or worse).
    let skips = {
        let mut data = rig.server.shared.data();
        deskport::sandbox::udesk::apply_due_imports(&mut data, Duration::MAX);
        data.import_skips.clone()
    };
    assert!(skips.is_empty(), "{skips:?}");
    {
        let data = rig.server.shared.data();
        let anna = held["anna"];
        let name = if target == "omnidesk" {
            data.omni.customers[&anna].firstname.clone()
        } else {
            data.udesk.customers[&anna].nick_name.clone()
        };
        // create leaves a linked customer's fields alone; upsert writes the row's.
        assert_eq!(name.contains("Anna"), mode == "upsert", "{name}");
    }

    // Run again: nothing is sent twice.
    let again = rig
        .run(
            input,
            target,
            &["--mode", mode, "--match", "id,email,phone", "--resume"],
        )
        .await;
    assert_exit(&again, 1);
    assert_eq!(held_total(&rig, target), total_before + added);

    // Undo removes only what was created, never a linked customer.
    let undo = output(undo_command(&rig, "journal", target, &[])).await;
    assert_exit(&undo, 0);
    assert_eq!(held_total(&rig, target), total_before);
    assert_eq!(external_ids_of(&rig, target, &held), want);
}

fn held_total(rig: &Rig, target: &str) -> usize {
    let data = rig.server.shared.data();
    if target == "omnidesk" {
        data.omni.customers.len()
    } else {
        data.udesk.customers.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_links_omnidesk_customers_without_an_external_id() {
    use deskport::sandbox::{Profile, RecordAt};
    match_links_what_exists_without_an_external_id("omnidesk", "create", Profile::convenient())
        .await;
    // Search replies as a list: two customers with one email are both seen.
    let listing = Profile {
        omnidesk_record_at: RecordAt::Items,
        ..Profile::convenient()
    };
    match_links_what_exists_without_an_external_id("omnidesk", "upsert", listing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_links_udesk_customers_without_an_external_id() {
    use deskport::sandbox::Profile;
    match_links_what_exists_without_an_external_id("udesk", "create", Profile::convenient()).await;
    // A bulk import that drops colliding rows silently (003:1131): rows whose address a
    // customer holds must never go into one.
    match_links_what_exists_without_an_external_id("udesk", "create", Profile::documented()).await;
    match_links_what_exists_without_an_external_id("udesk", "upsert", Profile::convenient()).await;
}

/// Where the platform does not take an external id through the call deskport makes (the
/// documents do not say it does), the row fails saying so and the customer is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_the_platform_does_not_take_fails_the_row_and_changes_nothing() {
    let rig = Rig::start(SandboxConfig {
        profile: deskport::sandbox::Profile::documented(),
        ..SandboxConfig::default()
    })
    .await;
    let held = hold_customers_without_external_ids(&rig, "omnidesk");
    let input = rig.work.write(
        "match.csv",
        MATCH_ROWS.lines().take(2).collect::<Vec<_>>().join("\n"),
    );
    let out = rig
        .run(
            input.to_str().unwrap(),
            "omnidesk",
            &["--mode", "upsert", "--match", "id,email"],
        )
        .await;
    assert_exit(&out, 1);
    let (header, failures) = read_csv(&rig.journal_file("failures.csv"));
    let reason = header.iter().position(|h| h == "deskport_reason").unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0][reason], "link_failed", "{failures:?}");
    assert_eq!(external_ids_of(&rig, "omnidesk", &held)["anna"], "");
    assert_eq!(
        rig.server.shared.data().omni.customers[&held["anna"]].firstname,
        "Held"
    );
}

#[test]
fn match_keys_are_checked_before_anything_is_read() {
    let work = Workdir::new();
    let input = work.write("m.csv", MATCH_ROWS);
    for (keys, says) in [
        ("email,id", "id comes first"),
        ("id,fax", "\"fax\" is not a key"),
        ("id,email,email", "names email twice"),
    ] {
        let out = work.run(&[
            "import",
            input.to_str().unwrap(),
            "--target",
            "udesk",
            "--sandbox",
            "--match",
            keys,
        ]);
        assert_exit(&out, 2);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{keys}: {}",
            describe(&out)
        );
    }
    let out = work.run(&[
        "import",
        input.to_str().unwrap(),
        "--target",
        "udesk",
        "--sandbox",
        "--match",
        "id,email",
        "--mode",
        "update",
    ]);
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mode update"),
        "{}",
        describe(&out)
    );
}

fn delete_command(rig: &Rig, input: &str, target: &str, args: &[&str]) -> Command {
    let mut cmd = rig.authed();
    cmd.args(["--log-format", "json", "delete", input, "--target", target])
        .args(["--base-url", &rig.base()])
        .args(args);
    if target == "udesk" {
        cmd.args(["--udesk-minute", "1"]);
    } else {
        cmd.args(["--brand-id", "1"]);
    }
    cmd
}

fn summary_of(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stderr);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap_or(Value::Null)
}

async fn delete_by_file(target: &str) {
    let rig = Rig::start(SandboxConfig {
        seed_customers: 200,
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    let seeded = held_ids(&rig.state().await, target);
    // By external id (1-60), by email only (61-65), by phone only (66-67, as written in a
    // national form), an id the platform does not hold, an id no platform could, and an
    // id that decides over an email of somebody else (70 goes, 71 stays).
    let mut text = String::from("Customer Id,Email,Phone,Country\n");
    for i in 1..=60 {
        text.push_str(&format!("S{i:08},,,\n"));
    }
    for i in 61..=65 {
        text.push_str(&format!(",seed{i}@example.com,,\n"));
    }
    for i in 66..=67 {
        text.push_str(&format!(",,06 1{i:07},NL\n"));
    }
    text.push_str("NOPE,,,\nbad\u{1}id,,,\nS00000070,seed71@example.com,,\n");
    let input = rig.work.write("gone.csv", text);
    let input = input.to_str().unwrap();
    let named: BTreeSet<String> = (1..=67).chain([70]).map(|i| format!("S{i:08}")).collect();
    let keys = ["--match", "id,email,phone"];

    // Without --yes and no terminal to ask on: refused, nothing deleted.
    let unconfirmed = output(delete_command(&rig, input, target, &keys)).await;
    assert_exit(&unconfirmed, 2);

    // The dry run lists what would go and deletes nothing.
    let dry = output(delete_command(
        &rig,
        input,
        target,
        &[&keys[..], &["--dry-run"]].concat(),
    ))
    .await;
    assert_exit(&dry, 0);
    let d = &summary_of(&dry)["dry_run"];
    assert_eq!(d["would_delete"], 68, "{d}");
    assert_eq!(d["not_found"], 1, "{d}");
    assert_eq!(d["unusable"], 1, "{d}");
    assert_eq!(held_ids(&rig.state().await, target), seeded);
    let (_, planned) = read_csv(&rig.work.file("gone.delete").join("delete-dry-run.csv"));
    assert_eq!(planned.len(), 70);
    assert!(
        planned.iter().any(|r| r[4].contains("found by phone")),
        "{planned:?}"
    );

    // Slow deletes, killed part-way, then run again (with faults) to the end.
    rig.faults(json!({"latency_ms": 15})).await;
    let run = delete_command(
        &rig,
        input,
        target,
        &[&keys[..], &["--yes", "--max-concurrency", "2"]].concat(),
    );
    let progress = rig.work.file("gone.delete").join("delete.jsonl");
    let lines = || std::fs::read_to_string(&progress).map_or(0, |t| t.lines().count());
    kill_9_at(run, lines, 20).await;
    rig.faults(json!({"error_rate": 0.05, "apply_then_drop_rate": 0.05}))
        .await;
    let done = output(delete_command(
        &rig,
        input,
        target,
        &[&keys[..], &["--yes"]].concat(),
    ))
    .await;
    // 1: the row with an id no platform could hold names no customer.
    assert_exit(&done, 1);
    let r = &summary_of(&done)["report"];
    assert!(r["deleted_before"].as_u64().unwrap() >= 20, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    let total = r["deleted"].as_u64().unwrap()
        + r["deleted_before"].as_u64().unwrap()
        + r["not_found"].as_u64().unwrap();
    assert_eq!(total, 69, "{r}");
    rig.faults(json!({})).await;
    let left = held_ids(&rig.state().await, target);
    let want: BTreeSet<String> = seeded.difference(&named).cloned().collect();
    assert_eq!(left, want);
    let (header, rows) = read_csv(&rig.work.file("gone.delete").join("delete.csv"));
    assert_eq!(header[3], "outcome");
    assert_eq!(rows.len(), 70);
    let outcome = |line: usize| rows.iter().find(|r| r[0] == line.to_string()).unwrap()[3].clone();
    assert_eq!(outcome(69), "not_found");
    assert_eq!(outcome(70), "invalid");
    // Every row is "deleted" but those whose delete was in flight at the kill (two at most,
    // found gone by the second run): a delete whose reply the faults cut, answered "not
    // found" on its retry, was this run's.
    assert!(
        rows.iter().filter(|r| r[3] == "deleted").count() >= 66,
        "{rows:?}"
    );

    // Again: nothing left to do, nothing sent.
    let again = output(delete_command(
        &rig,
        input,
        target,
        &[&keys[..], &["--yes"]].concat(),
    ))
    .await;
    assert_exit(&again, 1);
    assert_eq!(summary_of(&again)["report"]["deleted"], 0);
    assert_eq!(held_ids(&rig.state().await, target), want);

    // The progress is for this file to this place: another target is refused.
    let edited = rig.work.write("gone.csv", "Customer Id\nS00000100\n");
    let other = output(delete_command(
        &rig,
        edited.to_str().unwrap(),
        target,
        &["--yes"],
    ))
    .await;
    assert_exit(&other, 2);
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another file"),
        "{}",
        describe(&other)
    );

    if target == "omnidesk" {
        // GDPR purge: the customer with its data (purgeData), by file.
        let purge = rig
            .work
            .write("purge.csv", "Customer Id\nS00000100\nS00000101\n");
        let out = output(delete_command(
            &rig,
            purge.to_str().unwrap(),
            target,
            &["--yes", "--purge"],
        ))
        .await;
        assert_exit(&out, 0);
        let data = rig.server.shared.data();
        assert_eq!(data.omni.purged.len(), 2);
        assert!(data
            .omni
            .purged
            .iter()
            .all(|id| !data.omni.customers.contains_key(id)));
    } else {
        let out = output(delete_command(&rig, input, target, &["--yes", "--purge"])).await;
        assert_exit(&out, 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_file_on_omnidesk_with_dry_run_kill_9_and_purge() {
    delete_by_file("omnidesk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_file_on_udesk_with_dry_run_and_kill_9() {
    delete_by_file("udesk").await;
}

fn events_command(rig: &Rig, input: &str, args: &[&str]) -> Command {
    let mut cmd = rig.authed();
    cmd.args([
        "--log-format",
        "json",
        "events",
        input,
        "--target",
        "omnidesk",
    ])
    .args(["--base-url", &rig.base(), "--brand-id", "1"])
    .args(args);
    cmd
}

/// (customer id, message) of every timeline entry the sandbox holds, with its count.
fn timeline_entries(rig: &Rig) -> BTreeMap<(u64, String), usize> {
    let mut seen = BTreeMap::new();
    for e in &rig.server.shared.data().omni.events {
        *seen.entry((e.customer_id, e.message.clone())).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_exactly_once_through_faults_and_kill_9() {
    let rig = Rig::start(SandboxConfig {
        seed_customers: 50,
        ..SandboxConfig::default()
    })
    .await;
    let mut text = String::from("external_id,message,source_url,initiated_by\n");
    for i in 1..=300 {
        let customer = (i - 1) % 50 + 1;
        text.push_str(&format!(
            "S{customer:08},Order #{i} paid,https://shop.example/orders/{i},shop\n"
        ));
    }
    // One row names a customer the platform does not hold, one names none.
    text.push_str("NOPE,Order #0 paid,https://shop.example/orders/0,shop\n");
    text.push_str(",Order #-1 paid,https://shop.example/orders/-1,shop\n");
    let input = rig.work.write("orders.csv", text);
    let input = input.to_str().unwrap();
    let done_lines = || {
        std::fs::read_to_string(rig.work.file("orders.events").join("journal.jsonl"))
            .map_or(0, |t| t.matches("\"t\":\"done\"").count())
    };

    // Slow calls, killed part-way.
    rig.faults(json!({"latency_ms": 15})).await;
    let run = events_command(&rig, input, &["--max-concurrency", "4"]);
    kill_9_at(run, done_lines, 40).await;

    // Resumed through 500s before and after the event is applied: nothing is sent twice.
    rig.faults(json!({"error_rate": 0.1, "apply_then_drop_rate": 0.1}))
        .await;
    let resumed = output(events_command(&rig, input, &["--resume"])).await;
    assert_exit(&resumed, 1);
    assert!(
        timeline_entries(&rig).values().all(|&n| n == 1),
        "an event was sent twice"
    );
    let r = &summary_of(&resumed)["report"];
    assert!(r["skipped"].as_u64().unwrap() >= 40, "{r}");

    // What is left in doubt is listed, then sent again when asked; faults off.
    rig.faults(json!({})).await;
    let (_, failures) = read_csv(&rig.work.file("orders.events").join("failures.csv"));
    assert!(
        failures
            .iter()
            .all(|f| f[1] == "in_doubt" || f[1] == "not_found" || f[1] == "unfinished"),
        "{failures:?}"
    );
    let last = output(events_command(
        &rig,
        input,
        &["--resume", "--resend-in-doubt"],
    ))
    .await;
    assert_exit(&last, 1);
    let r = &summary_of(&last)["report"]["counts"];
    assert_eq!(r["created"], 300, "{r}");
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["invalid"], 1, "{r}");
    assert_eq!(r["unfinished"], 0, "{r}");
    let entries = timeline_entries(&rig);
    assert_eq!(entries.len(), 300);
    assert!(entries.values().all(|&n| n == 1), "an event was sent twice");
    let ids: BTreeMap<String, u64> = {
        let data = rig.server.shared.data();
        data.omni
            .customers
            .values()
            .map(|c| (c.external_primary_id.clone(), c.id))
            .collect()
    };
    for i in 1..=300u64 {
        let customer = ids[&format!("S{:08}", (i - 1) % 50 + 1)];
        assert!(
            entries.contains_key(&(customer, format!("Order #{i} paid"))),
            "{i}"
        );
    }
    // Once more: nothing left to send.
    let again = output(events_command(&rig, input, &["--resume"])).await;
    assert_exit(&again, 1);
    assert_eq!(rig.server.shared.data().omni.events.len(), 300);

    // reconcile looks for each event on its customer's timeline (one read per customer);
    // what it cannot see is reported as such.
    let mut check = rig.authed();
    check.args([
        "--log-format",
        "json",
        "reconcile",
        input,
        "--target",
        "omnidesk",
    ]);
    check.args([
        "--base-url",
        &rig.base(),
        "--brand-id",
        "1",
        "--out",
        "seen.csv",
    ]);
    let seen = output(check).await;
    assert_exit(&seen, 1);
    let s = &summary_of(&seen)["events"];
    assert_eq!(
        (&s["found"], &s["not_seen"], &s["cannot_see"], &s["invalid"]),
        (&json!(300), &json!(0), &json!(1), &json!(1)),
        "{s}"
    );
    assert!(
        s["requests"].as_u64().unwrap() <= 52,
        "one read per customer: {s}"
    );
    rig.server
        .shared
        .data()
        .omni
        .events
        .retain(|e| e.message != "Order #7 paid");
    let seen = output({
        let mut c = rig.authed();
        c.args([
            "reconcile",
            input,
            "--target",
            "omnidesk",
            "--base-url",
            &rig.base(),
            "--brand-id",
            "1",
            "--out",
            "seen.csv",
        ]);
        c
    })
    .await;
    assert_exit(&seen, 1);
    let (_, report) = read_csv(&rig.work.file("seen.csv"));
    let row7 = report.iter().find(|r| r[0] == "8").unwrap();
    assert_eq!(row7[2], "not_seen", "{row7:?}");

    // Refused before any row: another platform, a file that is not events.
    let wrong = rig
        .work
        .write("wrong.csv", "external_id,msg\nS00000001,x\n");
    let out = output(events_command(&rig, wrong.to_str().unwrap(), &[])).await;
    assert_exit(&out, 2);
    assert!(!rig.work.file("wrong.events").join("journal.jsonl").exists());
}

/// An event whose call went unanswered is looked for on the timeline; where the timeline
/// cannot confirm it, it stays in doubt instead of being sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_event_is_never_sent_again_unasked() {
    let rig = Rig::start(SandboxConfig {
        seed_customers: 5,
        ..SandboxConfig::default()
    })
    .await;
    let input = rig.work.write(
        "one.csv",
        "customer_id,message,source_url,initiated_by\n1,Mail sent,https://mail.example/1,mailer\n",
    );
    let input = input.to_str().unwrap();
    // Every call is applied and then answered 500: the row is in doubt.
    rig.faults(json!({"apply_then_drop_rate": 1.0})).await;
    let out = output(events_command(&rig, input, &[])).await;
    assert_exit(&out, 1);
    assert_eq!(rig.server.shared.data().omni.events.len(), 1);
    rig.faults(json!({})).await;
    // By customer id only, the timeline (read by external id) cannot tell: not resent.
    let again = output(events_command(&rig, input, &["--resume"])).await;
    assert_exit(&again, 1);
    assert_eq!(rig.server.shared.data().omni.events.len(), 1);
    let (_, failures) = read_csv(&rig.work.file("one.events").join("failures.csv"));
    assert_eq!(failures[0][1], "in_doubt", "{failures:?}");
}

async fn only_missing_sends_just_the_delta(target: &str) {
    let rig = Rig::start(SandboxConfig {
        time_scale: 60.0,
        ..SandboxConfig::default()
    })
    .await;
    let input = fixture("customers.csv");
    import_a_part_first(&rig, target).await;
    let (header, rows) = read_csv(&rig.work.file("pre").join("results.csv"));
    let outcome = header.iter().position(|h| h == "outcome").unwrap();
    let created: Vec<String> = rows
        .iter()
        .filter(|r| r[outcome] == "created")
        .map(|r| r[1].clone())
        .collect();
    assert!(created.len() > 60, "{}", created.len());
    // Someone edits one of them on the platform meanwhile.
    let edited = created[0].clone();
    {
        let mut data = rig.server.shared.data();
        if target == "omnidesk" {
            let id = data.omni.by_primary[&(1, edited.clone())];
            data.omni.customers.get_mut(&id).unwrap().firstname = "Changed".into();
        } else {
            let id = data.udesk.by_token[&edited];
            let mut c = data.udesk.customers[&id].clone();
            c.nick_name = "Changed".into();
            data.udesk.put(c);
        }
    }
    let out = rig
        .run(&input, target, &["--mode", "upsert", "--only-missing"])
        .await;
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{}",
        describe(&out)
    );
    let got = outcomes(&rig);
    let skipped: BTreeSet<&str> = got
        .iter()
        .filter(|(_, o)| o == "exists")
        .map(|(e, _)| e.as_str())
        .collect();
    let want: BTreeSet<&str> = created[1..].iter().map(String::as_str).collect();
    assert_eq!(
        skipped, want,
        "the rows the platform holds as they are, and only those"
    );
    assert_eq!(outcome_of(&got, &edited), "updated");
    assert_eq!(
        got.iter().filter(|(_, o)| o == "updated").count(),
        1,
        "{got:?}"
    );
    assert!(rig.journal_file("reconcile.csv").exists());
    let (_, results) = read_csv(&rig.journal_file("results.csv"));
    assert!(results
        .iter()
        .filter(|r| r[3] == "exists")
        .all(|r| r[4].contains("--only-missing")));
    // Afterwards the platform holds the whole file.
    let mut check = rig.authed();
    check.args([
        "--log-format",
        "json",
        "reconcile",
        &input,
        "--target",
        target,
        "--base-url",
        &rig.base(),
        "--out",
        "after.csv",
    ]);
    if target == "omnidesk" {
        check.args(["--brand-id", "1"]);
    } else {
        check.args([
            "--udesk-minute",
            "1",
            "--map",
            &fixture("udesk_mapping.toml"),
        ]);
    }
    let after = output(check).await;
    let r = &summary_of(&after)["report"];
    assert_eq!(
        (&r["missing"], &r["different"]),
        (&json!(0), &json!(0)),
        "{}",
        describe(&after)
    );
    // Without --resume an existing journal is refused before the reconcile's calls.
    let again = rig
        .run(&input, target, &["--mode", "upsert", "--only-missing"])
        .await;
    assert_exit(&again, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_missing_sends_just_the_delta_to_omnidesk() {
    only_missing_sends_just_the_delta("omnidesk").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_missing_sends_just_the_delta_to_udesk() {
    only_missing_sends_just_the_delta("udesk").await;
}
