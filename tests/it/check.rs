//! `deskport check` against the sandbox under each reply profile: every call understood,
//! shapes printed without a single value, and refused credentials named.

use crate::common::{assert_exit, Workdir};
use deskport::sandbox::{self, Profile, SandboxConfig};

async fn check(config: SandboxConfig, target: &str, token: &str) -> std::process::Output {
    let server = sandbox::spawn(config.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let work = Workdir::new();
    let mut cmd = work.command();
    cmd.env("DESKPORT_OMNIDESK_API_KEY", token)
        .env("DESKPORT_UDESK_EMAIL", &config.udesk_email)
        .env("DESKPORT_UDESK_TOKEN", token)
        .args([
            "check",
            "--target",
            target,
            "--base-url",
            &server.base_url(),
        ])
        .args(["--brand-id", "1", "--udesk-minute", "1"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    server.shutdown().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_understands_every_call_under_every_profile_and_prints_no_value() {
    let mut profiles = vec![Profile::convenient(), Profile::documented()];
    for at in sandbox::RecordAt::ALL {
        profiles.push(Profile {
            omnidesk_record_at: at,
            ..Profile::documented()
        });
    }
    for profile in profiles {
        for target in ["omnidesk", "udesk"] {
            let config = SandboxConfig {
                seed_customers: 3,
                time_scale: 60.0,
                profile: profile.clone(),
                ..SandboxConfig::default()
            };
            let key = match target {
                "omnidesk" => config.omnidesk_api_key.clone(),
                _ => config.udesk_token.clone(),
            };
            let out = check(config, target, &key).await;
            let text = String::from_utf8_lossy(&out.stderr).to_string();
            assert_exit(&out, 0);
            assert!(
                text.contains("deskport can work with this account"),
                "{text}"
            );
            assert!(!text.contains("FAIL"), "{}: {text}", profile.name);
            // Shapes, never values: no seeded email, name or number is printed.
            for value in ["seed1@example.com", "S00000001", "+31610000001"] {
                assert!(!text.contains(value), "{value} printed: {text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_refused_credentials_whatever_code_carries_them() {
    for profile in [Profile::convenient(), Profile::documented()] {
        for target in ["omnidesk", "udesk"] {
            let config = SandboxConfig {
                time_scale: 60.0,
                profile: profile.clone(),
                ..SandboxConfig::default()
            };
            let out = check(config, target, "wrong-secret").await;
            assert_exit(&out, 1);
            let text = String::from_utf8_lossy(&out.stderr);
            assert!(
                text.contains("FAIL") && text.contains("nothing but valid credentials"),
                "{text}"
            );
            assert!(!text.contains("wrong-secret"), "{text}");
        }
    }
}
