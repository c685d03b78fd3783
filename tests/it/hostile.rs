//! Hostile servers, damaged state and adversarial inputs, each test written the way the
//! problem was found: small fake servers on loopback addresses, pipes and FIFOs, files that
//! change under a running import, hand-damaged journals.

use crate::common::{assert_exit, describe, fixture, read_csv, Workdir};
use deskport::sandbox::{self, SandboxConfig};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET_KEY: &str = "key-SECRET-4711";
const SECRET_PASSWORD: &str = "pw-SECRET-0815";

/// A fake platform on a loopback address: answers every request with what `reply` makes of
/// it (or never, for `None`), and keeps every request it received.
struct Fake {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

type Reply = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Fake {
    async fn start(ip: &str, reply: Reply) -> Fake {
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (reply, log) = (reply.clone(), log.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() < end + 4 + length {
                            continue;
                        }
                        log.lock().unwrap().push(text.clone());
                        match reply(&text) {
                            Some(response) => {
                                let _ = stream.write_all(response.as_bytes()).await;
                                let _ = stream.shutdown().await;
                            }
                            // A black hole: hold the connection, never answer.
                            None => tokio::time::sleep(Duration::from_secs(3600)).await,
                        }
                        return;
                    }
                });
            }
        });
        Fake { addr, seen }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn http(status: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// `deskport ARGS` with both platforms' credentials in the environment, killed if it runs
/// longer than `limit` (a hang is a failure, not a slow test).
fn run_limited(work: &Workdir, args: &[&str], limit: Duration) -> Output {
    let mut child = work
        .command()
        .env("DESKPORT_OMNIDESK_API_KEY", SECRET_KEY)
        .env("DESKPORT_UDESK_EMAIL", "admin@acme.example")
        .env("DESKPORT_UDESK_PASSWORD", SECRET_PASSWORD)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}\n{}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn import_args<'a>(input: &'a str, target: &'a str, base: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "import",
        input,
        "--target",
        target,
        "--base-url",
        base,
        "--journal",
        "journal",
    ];
    if target == "omnidesk" {
        args.extend(["--brand-id", "1"]);
    }
    args
}

/// A reply that is always `response`.
fn always(response: String) -> Reply {
    Arc::new(move |_| Some(response.clone()))
}

/// `deskport import` of the bundled fixture into Omnidesk at a fake answering with `reply`.
async fn import_against(reply: Reply) -> (Workdir, Output) {
    let fake = Fake::start("127.0.0.1", reply).await;
    let work = Workdir::new();
    let input = fixture("customers.csv");
    let base = fake.base();
    let out = run_limited(
        &work,
        &import_args(&input, "omnidesk", &base),
        Duration::from_secs(60),
    );
    (work, out)
}

fn all_text(work: &Workdir, out: &Output) -> String {
    let mut text = describe(out);
    for entry in walk(work.path()) {
        if let Ok(bytes) = std::fs::read(&entry) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_is_never_followed_and_no_credential_leaves() {
    let elsewhere = Fake::start("127.0.0.2", Arc::new(|_| Some(http("200 OK", &[], "{}")))).await;
    let target = format!("http://{}/api/v2/customer", elsewhere.addr);
    let redirecting = Fake::start(
        "127.0.0.1",
        Arc::new(move |_| Some(http("307 Temporary Redirect", &[("Location", &target)], ""))),
    )
    .await;
    let work = Workdir::new();
    let input = generated(&work, "rows.csv", 20);
    for platform in ["omnidesk", "udesk"] {
        let base = redirecting.base();
        let out = run_limited(
            &work,
            &import_args(&input, platform, &base),
            Duration::from_secs(60),
        );
        assert_exit(&out, 3);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("redirect") && err.contains("127.0.0.2"),
            "{err}"
        );
        let text = all_text(&work, &out);
        assert!(!text.contains(SECRET_KEY) && !text.contains(SECRET_PASSWORD));
        std::fs::remove_dir_all(work.file("journal")).ok();
    }
    assert!(
        elsewhere.requests().is_empty(),
        "the other host was reached: {:?}",
        elsewhere.requests()
    );
    for request in redirecting.requests() {
        assert!(
            !request.to_ascii_lowercase().contains("referer"),
            "{request}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_ends_the_run_at_once_and_it_resumes_later() {
    let (_, out) = import_against(always(http(
        "429 Too Many Requests",
        &[("Retry-After", "100000")],
        "{}",
    )))
    .await;
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Retry-After") && err.contains("safe to resume"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_pauses_are_logged_in_both_formats() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = Fake::start(
        "127.0.0.1",
        Arc::new(move |_| {
            if counter
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .is_multiple_of(2)
            {
                return Some(http("429 Too Many Requests", &[("Retry-After", "2")], "{}"));
            }
            let page = r#"{"itemTotal":1,"items":[{"id":1,"external_primary_id":"C1"}]}"#;
            Some(http(
                "200 OK",
                &[("Content-Type", "application/json")],
                page,
            ))
        }),
    )
    .await;
    let base = fake.base();
    for (format, expected) in [("text", "pausing 2 s"), ("json", "\"event\":\"pause\"")] {
        let work = Workdir::new();
        let out = run_limited(
            &work,
            &[
                "--log-format",
                format,
                "export",
                "--target",
                "omnidesk",
                "--base-url",
                &base,
                "--out",
                "c.csv",
            ],
            Duration::from_secs(60),
        );
        assert_exit(&out, 0);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{}",
            describe(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_never_answers_is_given_up_within_a_minute() {
    let fake = Fake::start("127.0.0.1", Arc::new(|_| None)).await;
    let work = Workdir::new();
    let input = fixture("customers.csv");
    let base = fake.base();
    let mut args = import_args(&input, "omnidesk", &base);
    args.extend(["--timeout", "1"]);
    let out = run_limited(&work, &args, Duration::from_secs(90));
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_404_stops_the_run_instead_of_failing_every_row() {
    let (work, out) = import_against(always(http(
        "404 Not Found",
        &[("Content-Type", "text/html")],
        "<html><body>Not Found</body></html>",
    )))
    .await;
    assert_exit(&out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("web page"));
    // Nothing was journaled as failed for good: every valid row is still to do.
    let journal = work.read("journal/journal.jsonl");
    assert!(!journal.contains("\"outcome\":\"failed\""), "{journal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_messages_that_echo_the_request_lose_their_credentials() {
    // Every reply quotes the request it answers, headers and query string included.
    let echo: Reply = Arc::new(|request| {
        let quoted = serde_json::to_string(&request.replace("\r\n", " | ")).unwrap();
        let body = if request.contains("/open_api_v1/log_in") {
            r#"{"code":1000,"open_api_auth_token":"tok-SECRET-2222"}"#.to_string()
        } else if request.contains("/open_api_v1/") {
            format!(r#"{{"code":2000,"message":{quoted}}}"#)
        } else {
            format!(r#"{{"type":"error","message":{quoted}}}"#)
        };
        let status = if request.contains("/open_api_v1/") {
            "200 OK"
        } else {
            "400 Bad Request"
        };
        Some(http(status, &[("Content-Type", "application/json")], &body))
    });
    let fake = Fake::start("127.0.0.1", echo).await;
    let base = fake.base();
    let signature = regex::Regex::new(r"(sign|nonce)=[0-9a-f]{8}").unwrap();
    for platform in ["omnidesk", "udesk"] {
        let work = Workdir::new();
        // Few rows: Udesk's budget is a call a second.
        let input = generated(&work, "rows.csv", 4);
        let out = run_limited(
            &work,
            &import_args(&input, platform, &base),
            Duration::from_secs(120),
        );
        // The read-only probe before the first row is refused: the run stops (exit 3),
        // quoting the platform's message.
        assert_exit(&out, 3);
        let text = all_text(&work, &out);
        assert!(
            text.contains("<redacted>"),
            "{platform}: the echo is there, scrubbed: {text}"
        );
        for secret in [SECRET_KEY, SECRET_PASSWORD, "tok-SECRET-2222"] {
            assert!(!text.contains(secret), "{platform}: {secret} leaked");
        }
        assert!(!signature.is_match(&text), "{platform}: a signature leaked");
    }
}

#[test]
fn a_pipe_or_fifo_is_refused_before_anything_is_created() {
    let work = Workdir::new();
    let data = std::fs::read(fixture("customers.csv")).unwrap();
    let mut child = work
        .command()
        .env("DESKPORT_OMNIDESK_API_KEY", SECRET_KEY)
        .args(["import", "/dev/stdin", "--target", "omnidesk", "--base-url"])
        .args([
            "http://127.0.0.1:9",
            "--brand-id",
            "1",
            "--journal",
            "journal",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        stdin.write_all(&data).ok();
    });
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
    assert!(!work.file("journal").exists());
    let fifo = work.file("rows.csv");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.display().to_string();
    let out = run_limited(
        &work,
        &[
            "import",
            &fifo,
            "--target",
            "omnidesk",
            "--base-url",
            "http://127.0.0.1:9",
            "--brand-id",
            "1",
        ],
        Duration::from_secs(30),
    );
    assert_exit(&out, 2);
    let out = run_limited(
        &work,
        &["import", ".", "--target", "omnidesk"],
        Duration::from_secs(30),
    );
    assert_exit(&out, 2);
    assert!(!work.file("..import").exists() && !work.file(".import").exists());
    let out = work.run(&["validate", "."]);
    assert_exit(&out, 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("directory").count(),
        1,
        "the cause is said once: {err}"
    );
}

struct Sandboxed {
    server: sandbox::Sandbox,
    work: Workdir,
}

impl Sandboxed {
    async fn start() -> Sandboxed {
        let server = sandbox::spawn(SandboxConfig::default(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Sandboxed {
            server,
            work: Workdir::new(),
        }
    }

    fn command(&self, input: &str, extra: &[&str]) -> Command {
        let mut cmd = self.work.command();
        cmd.env("DESKPORT_OMNIDESK_API_KEY", sandbox::DEMO_OMNIDESK_API_KEY)
            .args([
                "import",
                input,
                "--target",
                "omnidesk",
                "--journal",
                "journal",
            ])
            .args(["--base-url", &self.server.base_url()])
            .args(extra);
        if !extra.contains(&"--brand-id") {
            cmd.args(["--brand-id", "1"]);
        }
        cmd
    }

    fn run(&self, input: &str, extra: &[&str]) -> Output {
        self.command(input, extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    async fn customers(&self) -> usize {
        let state =
            crate::common::sandbox_state(&reqwest::Client::new(), &self.server.base_url()).await;
        state["omnidesk"]["customers"]
            .as_array()
            .map_or(0, Vec::len)
    }
}

fn generated(work: &Workdir, name: &str, rows: usize) -> String {
    let mut text = String::from("external_id,firstname,lastname,email\n");
    for i in 0..rows {
        text.push_str(&format!("X{i:05},Anna,Jansen,anna{i}@example.com\n"));
    }
    work.write(name, text).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_changes_under_a_running_import_stops_it_and_a_restored_file_resumes() {
    let rig = Sandboxed::start().await;
    let input = generated(&rig.work, "rows.csv", 400);
    let original = std::fs::read(&input).unwrap();
    crate::common::set_faults(
        &reqwest::Client::new(),
        &rig.server.base_url(),
        serde_json::json!({"latency_ms": 30}),
    )
    .await;
    let child = rig
        .command(&input, &["--max-concurrency", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    file.write_all(b"Y00001,Late,Row,late@example.com\n")
        .unwrap();
    drop(file);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("changed during the run"));
    // A resume of the changed file is refused (it is not the file the journal is for)…
    let out = rig.run(&input, &["--resume"]);
    assert_exit(&out, 2);
    // …and the restored file continues, exactly once.
    std::fs::write(&input, &original).unwrap();
    crate::common::set_faults(
        &reqwest::Client::new(),
        &rig.server.base_url(),
        serde_json::json!({}),
    )
    .await;
    let out = rig.run(&input, &["--resume"]);
    assert_exit(&out, 0);
    assert_eq!(rig.customers().await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_elsewhere_or_under_other_rules_is_refused_naming_the_flag() {
    let rig = Sandboxed::start().await;
    let other = Sandboxed::start().await;
    let input = generated(&rig.work, "rows.csv", 50);
    let out = rig.run(&input, &["--default-region", "NL"]);
    assert_exit(&out, 0);
    let mut other_place = rig.command(&input, &["--resume", "--default-region", "NL"]);
    other_place.args(["--base-url", &other.server.base_url()]);
    let out = other_place.output().unwrap();
    assert_exit(&out, 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--base-url"),
        "{}",
        describe(&out)
    );
    for (flags, names) in [
        (
            vec!["--resume", "--default-region", "NL", "--brand-id", "2"],
            "--brand-id",
        ),
        (
            vec!["--resume", "--default-region", "DE"],
            "--default-region",
        ),
        (
            vec![
                "--resume",
                "--default-region",
                "NL",
                "--duplicates",
                "error",
            ],
            "--duplicates",
        ),
    ] {
        let out = rig.run(&input, &flags);
        assert_exit(&out, 2);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(names),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(
        other.customers().await,
        0,
        "nothing went to the other place"
    );
    // Two restarts keep both earlier journals.
    for _ in 0..2 {
        assert_exit(
            &rig.run(&input, &["--restart", "--default-region", "NL"]),
            0,
        );
    }
    assert!(rig.work.file("journal/journal.jsonl.old").exists());
    assert!(rig.work.file("journal/journal.jsonl.old.2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resume_hint_is_the_whole_original_command() {
    let rig = Sandboxed::start().await;
    let input = generated(&rig.work, "rows.csv", 400);
    crate::common::set_faults(
        &reqwest::Client::new(),
        &rig.server.base_url(),
        serde_json::json!({"latency_ms": 50}),
    )
    .await;
    let child = rig
        .command(
            &input,
            &[
                "--default-region",
                "NL",
                "--duplicates",
                "error",
                "--max-concurrency",
                "2",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    // SAFETY: a plain signal to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    let hint = err
        .lines()
        .skip_while(|l| !l.contains("safe to resume with"))
        .collect::<Vec<_>>()
        .join("\n");
    for word in [
        "--default-region NL",
        "--duplicates error",
        "--base-url",
        "--brand-id 1",
        "--journal journal",
        "--resume",
    ] {
        assert!(hint.contains(word), "{word} missing from\n{err}");
    }
    // Following it finishes the run with every row valid, none journaled invalid.
    crate::common::set_faults(
        &reqwest::Client::new(),
        &rig.server.base_url(),
        serde_json::json!({}),
    )
    .await;
    let out = rig.run(
        &input,
        &[
            "--default-region",
            "NL",
            "--duplicates",
            "error",
            "--resume",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(rig.customers().await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_journals_are_refused_not_half_believed() {
    let rig = Sandboxed::start().await;
    let input = generated(&rig.work, "rows.csv", 30);
    assert_exit(&rig.run(&input, &[]), 0);
    let path = rig.work.file("journal/journal.jsonl");
    let good = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = good.lines().filter(|l| !l.is_empty()).collect();
    let cases = [
        // The header line damaged: the fingerprint check would be gone.
        format!("{{\"t\":\"ru\n{}\n", lines[1..].join("\n")),
        // A line in the middle damaged.
        format!("{}\n{{\"t\":\"done\",\"li\n{}\n", lines[..2].join("\n"), lines[2..].join("\n")),
        // A line number far beyond the input.
        format!(
            "{}\n{{\"t\":\"done\",\"line\":99999999999999,\"external_id\":\"X\",\"outcome\":\"created\"}}\n",
            good.trim_end()
        ),
    ];
    for damaged in cases {
        std::fs::write(&path, &damaged).unwrap();
        let out = rig.run(&input, &["--resume"]);
        assert!(
            matches!(out.status.code(), Some(2 | 3)),
            "refused with a clear error, no crash: {}",
            describe(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("journal") && err.contains("--restart"),
            "{err}"
        );
    }
    // A torn last line, as a crash leaves it, is fine.
    std::fs::write(&path, format!("{good}{{\"t\":\"done\",\"li")).unwrap();
    assert_exit(&rig.run(&input, &["--resume"]), 0);
}

#[test]
fn base_url_credentials_and_unquoted_config_secrets_are_never_echoed() {
    let work = Workdir::new();
    let out = work.run(&[
        "export",
        "--target",
        "omnidesk",
        "--base-url",
        "https://admin:hunter2-SECRET@acme.omnidesk.com",
        "--out",
        "x.csv",
    ]);
    assert_exit(&out, 2);
    assert!(!describe(&out).contains("hunter2"), "{}", describe(&out));
    work.write("deskport.toml", "[omnidesk]\napi_key = 1234.5678\n");
    let out = work.run(&[
        "export",
        "--target",
        "omnidesk",
        "--base-url",
        "https://acme.omnidesk.com",
        "--config",
        "deskport.toml",
        "--out",
        "x.csv",
    ]);
    assert_exit(&out, 2);
    assert!(!describe(&out).contains("1234"), "{}", describe(&out));
}

#[test]
fn a_full_disk_leaves_no_truncated_file_under_the_final_name() {
    let work = Workdir::new();
    let input = generated(&work, "rows.csv", 30_000);
    let mut cmd = work.command();
    cmd.args([
        "validate",
        &input,
        "--out",
        "clean.csv",
        "--report",
        "report.json",
    ]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_exit(&out, 3);
    assert!(
        !work.file("clean.csv").exists(),
        "a truncated clean.csv was left"
    );
    assert!(!work.file("report.json").exists());
    let leftovers: Vec<_> = walk(work.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn utf8_after_a_windows_1252_start_is_flagged_not_passed_as_mojibake() {
    let work = Workdir::new();
    let mut data = b"external_id,firstname,lastname,email\n".to_vec();
    for i in 0..3000 {
        data.extend(format!("C{i},Ren").as_bytes());
        data.push(0xE9); // é in Windows-1252
        data.extend(format!(",Dubois,r{i}@example.com\n").as_bytes());
    }
    data.extend("C9999,Renée,Dubois,late@example.com\n".as_bytes());
    let input = work.write("mixed.csv", data).display().to_string();
    let out = work.run(&["validate", &input, "--rejects", "rejects.csv"]);
    assert_exit(&out, 1);
    let rejects = work.read("rejects.csv");
    assert!(
        rejects.contains("encoding.mixed") && rejects.contains("C9999"),
        "{rejects}"
    );
    assert_eq!(rejects.lines().count(), 2, "only the UTF-8 row: {rejects}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_that_gets_fewer_customers_than_reported_says_so_and_exits_1() {
    // A caching proxy that answers every page with the first one.
    let page: String = {
        let items: Vec<serde_json::Value> = (1..=99)
            .map(|i| serde_json::json!({"id": i, "external_primary_id": format!("C{i}"), "firstname": "Anna"}))
            .collect();
        serde_json::json!({"itemTotal": 1000, "items": items}).to_string()
    };
    let fake = Fake::start(
        "127.0.0.1",
        Arc::new(move |_| {
            Some(http(
                "200 OK",
                &[("Content-Type", "application/json")],
                &page,
            ))
        }),
    )
    .await;
    let work = Workdir::new();
    let base = fake.base();
    let out = run_limited(
        &work,
        &[
            "export",
            "--target",
            "omnidesk",
            "--base-url",
            &base,
            "--out",
            "customers.csv",
        ],
        Duration::from_secs(60),
    );
    assert_exit(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("incomplete") && err.contains("1000"), "{err}");
}

/// A fake platform holding customer 7 (`S1`) whose first delete is applied and then cut
/// before any reply, and whose later deletes find nobody.
fn deletes_once_then_not_found(platform: &'static str) -> (Reply, Arc<AtomicUsize>) {
    let deletes = Arc::new(AtomicUsize::new(0));
    let seen = deletes.clone();
    let reply: Reply = Arc::new(move |request| {
        let json = [("Content-Type", "application/json")];
        let ok = |body: &str| Some(http("200 OK", &json, body));
        let is_delete = request.starts_with("DELETE ");
        if is_delete && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            // Applied, then the connection closes with no reply at all.
            return Some(String::new());
        }
        match platform {
            "omnidesk" if is_delete => Some(http(
                "404 Not Found",
                &json,
                r#"{"type":"error","message":"customer not found"}"#,
            )),
            "omnidesk" if request.contains("SearchByPrimaryExternalID") => {
                ok(r#"{"id":7,"external_primary_id":"S1","firstname":"Ann"}"#)
            }
            "omnidesk" => ok(r#"{"itemTotal":1,"items":[{"id":7,"external_primary_id":"S1"}]}"#),
            _ if is_delete => ok(r#"{"code":2005,"message":"customer not found"}"#),
            _ if request.contains("/log_in") => {
                ok(r#"{"code":1000,"open_api_auth_token":"tok-SECRET-2222"}"#)
            }
            _ if request.contains("get_customer") => {
                ok(r#"{"code":1000,"customer":{"id":7,"open_api_token":"S1","nick_name":"Ann"}}"#)
            }
            _ => ok(r#"{"code":1000,"meta":{"total_count":1},"customers":[{"id":7}]}"#),
        }
    });
    (reply, deletes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_whose_reply_was_lost_and_whose_retry_finds_nobody_was_ours() {
    for platform in ["omnidesk", "udesk"] {
        let (reply, deletes) = deletes_once_then_not_found(platform);
        let fake = Fake::start("127.0.0.1", reply).await;
        let work = Workdir::new();
        let input = work.write("gone.csv", "Customer Id\nS1\n");
        let base = fake.base();
        let mut args = vec![
            "delete",
            input.to_str().unwrap(),
            "--target",
            platform,
            "--base-url",
            &base,
            "--yes",
        ];
        if platform == "omnidesk" {
            args.extend(["--brand-id", "1"]);
        }
        let out = run_limited(&work, &args, Duration::from_secs(60));
        assert_exit(&out, 0);
        assert_eq!(deletes.load(Ordering::SeqCst), 2, "{platform}: one retry");
        let (header, rows) = read_csv(&work.path().join("gone.delete").join("delete.csv"));
        assert_eq!(header[3], "outcome");
        assert_eq!(rows.len(), 1);
        // Deleted by this run (the customer was there when the delete went out), not
        // "not found".
        assert_eq!(rows[0][2..4], ["7", "deleted"], "{platform}: {rows:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("1 deleted now"), "{platform}: {err}");
        let text = all_text(&work, &out);
        for secret in [SECRET_KEY, SECRET_PASSWORD, "tok-SECRET-2222"] {
            assert!(!text.contains(secret), "{platform}: {secret} leaked");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_cuts_slow_headers_and_refuses_cross_origin_control() {
    let server = sandbox::spawn(SandboxConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let reset = format!("{}/__sandbox/reset", server.base_url());
    let refused = http
        .post(&reset)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = http
        .post(&reset)
        .header("Sec-Fetch-Site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(http
        .post(&reset)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    // Slowloris: headers that never end are cut off.
    let addr = server.addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /api/v2/customer HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).unwrap_or(0);
        (n, started.elapsed())
    })
    .await
    .unwrap();
    assert!(
        closed.1 < Duration::from_secs(25),
        "cut off after {:?}",
        closed.1
    );
    server.shutdown().await;
}
