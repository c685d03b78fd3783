//! Flags for reaching a platform (which one, where, with which credentials, how politely),
//! shared by `import`, `export` and `reconcile`; the credentials they read; the clients and
//! the Ctrl-C handling those commands share.

use super::{seconds, usage, LogFormat, Ui};
use crate::import::Stop;
use crate::platform::omnidesk::{CustomKeys, KeyForm, Omnidesk};
use crate::platform::transport::{PauseNotice, Transport, TransportConfig};
use crate::platform::udesk::{Udesk, UdeskAuth};
use crate::platform::{BaseUrl, Secret};
use crate::validate::Platform;
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which platform, where, with which credentials file, and how politely: shared by
/// `import`, `export` and `reconcile`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The platform.
    #[arg(long, value_enum)]
    pub target: Platform,
    /// Start the built-in sandbox on a loopback port with demo credentials and use it.
    #[arg(long)]
    pub sandbox: bool,
    /// Platform seconds per real second for --sandbox (60 makes Udesk's minute last a second).
    #[arg(long, default_value_t = 1.0, value_name = "X", requires = "sandbox")]
    pub sandbox_time_scale: f64,
    /// Customers the --sandbox starts with (deterministic demo data).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "sandbox")]
    pub sandbox_customers: u64,
    /// The --sandbox Udesk account's custom fields: optional, documented (all required, as
    /// printed) or a JSON file holding a custom_fields reply.
    #[arg(
        long,
        default_value = "optional",
        value_name = "ACCOUNT|FILE",
        requires = "sandbox"
    )]
    pub sandbox_udesk_fields: String,
    /// The platform's origin, e.g. https://ACCOUNT.omnidesk.com or https://SUBDOMAIN.udesk.cn.
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// TOML file with [omnidesk] api_key / base_url and [udesk] email / token / password / base_url.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Most requests in flight; the actual number adapts between 1 and this.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_concurrency: usize,
    /// Keep --max-concurrency requests in flight instead of adapting (for measuring).
    #[arg(long)]
    pub fixed_concurrency: bool,
    /// Requests per second at most (Udesk default: its budget of 60 a minute).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Udesk calls per platform minute (the published budget is 60).
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub udesk_calls_per_minute: u32,
    /// Length of Udesk's budget minute in seconds (shorter only against a sped-up sandbox).
    #[arg(long, value_name = "SECS")]
    pub udesk_minute: Option<f64>,
    /// Seconds allowed for one request.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Stop the run (exit 3, safe to resume) when the platform asks to wait longer than
    /// this (Retry-After), or has not answered successfully for this long.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    pub give_up_after: f64,
    /// Attempts per request before giving up on it.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_attempts: u32,
    /// Omnidesk: how create writes custom field keys (custom_<name> per 000:264, or bare).
    #[arg(long, value_enum, default_value_t = KeyForm::Prefixed, value_name = "FORM")]
    pub omnidesk_create_keys: KeyForm,
    /// Omnidesk: how updateCustomer writes custom field keys (bare per 001:119, or custom_<name>).
    #[arg(long, value_enum, default_value_t = KeyForm::Bare, value_name = "FORM")]
    pub omnidesk_update_keys: KeyForm,
}

/// Credentials and origin for one platform, from the environment or the config file. The
/// credentials are [`Secret`]s, so even a `Debug` print of this shows none of them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformSettings {
    pub base_url: Option<String>,
    pub api_key: Option<Secret>,
    pub email: Option<String>,
    pub token: Option<Secret>,
    pub password: Option<Secret>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    omnidesk: PlatformSettings,
    #[serde(default)]
    udesk: PlatformSettings,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Environment first, then the config file.
fn settings(platform: Platform, config: Option<&PathBuf>) -> anyhow::Result<PlatformSettings> {
    let file: ConfigFile = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read --config {}: {e}", path.display())))?;
            toml::from_str(&text)
                .map_err(|e| usage(format!("--config {}: {}", path.display(), e.message())))?
        }
        None => ConfigFile::default(),
    };
    let (mut s, prefix) = match platform {
        Platform::Omnidesk => (file.omnidesk, "DESKPORT_OMNIDESK"),
        Platform::Udesk => (file.udesk, "DESKPORT_UDESK"),
    };
    let var = |name: &str| env(&format!("{prefix}_{name}"));
    let secret = |name: &str, from_file: Option<Secret>| var(name).map(Secret::new).or(from_file);
    s.base_url = var("BASE_URL").or(s.base_url.take());
    s.email = var("EMAIL").or(s.email.take());
    s.api_key = secret("API_KEY", s.api_key.take());
    s.token = secret("TOKEN", s.token.take());
    s.password = secret("PASSWORD", s.password.take());
    Ok(s)
}

/// A platform reached: the in-process sandbox (if any) and the settings to use.
pub struct Connection {
    sandbox: Option<crate::sandbox::Sandbox>,
    /// Origin and credentials.
    pub settings: PlatformSettings,
}

impl Connection {
    /// Stops the in-process sandbox, if there is one.
    pub async fn close(self) {
        if let Some(server) = self.sandbox {
            server.shutdown().await;
        }
    }
}

impl ConnectArgs {
    /// Every default, with the platform and where to reach it: for a command that makes a
    /// read or two on the side (`validate` reading the account's custom fields).
    pub fn for_reads(
        target: Platform,
        sandbox: bool,
        base_url: Option<String>,
        config: Option<PathBuf>,
    ) -> ConnectArgs {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            connect: ConnectArgs,
        }
        let mut words = vec!["deskport", "--target", target.name()];
        if sandbox {
            words.push("--sandbox");
        }
        let mut connect = <Only as clap::Parser>::parse_from(words).connect;
        connect.base_url = base_url;
        connect.config = config;
        connect
    }

    /// The Omnidesk custom field key forms these flags ask for.
    pub fn omnidesk_custom_keys(&self) -> CustomKeys {
        CustomKeys {
            create: self.omnidesk_create_keys,
            update: self.omnidesk_update_keys,
        }
    }

    /// Refuses impossible numbers before anything is started.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max_concurrency == 0 {
            return Err(usage("--max-concurrency must be at least 1"));
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(usage(
                "--rate must be a positive number of requests per second",
            ));
        }
        if !(self.sandbox_time_scale.is_finite() && self.sandbox_time_scale > 0.0) {
            return Err(usage("--sandbox-time-scale must be a positive number"));
        }
        Ok(())
    }

    /// Udesk's budget window, shortened only against a sped-up sandbox.
    pub fn minute(&self) -> anyhow::Result<Duration> {
        let minute = match (self.udesk_minute, self.sandbox) {
            (Some(m), _) => seconds("--udesk-minute", m)?,
            (None, true) => Duration::from_secs_f64(60.0 / self.sandbox_time_scale),
            (None, false) => Duration::from_secs(60),
        };
        if minute.is_zero() {
            return Err(usage("--udesk-minute must be positive"));
        }
        Ok(minute)
    }

    /// The transport these flags ask for.
    pub fn transport(&self, minute: Duration, ui: Ui) -> anyhow::Result<Transport> {
        let rate =
            match self.target {
                Platform::Omnidesk => self.rate,
                Platform::Udesk => Some(self.rate.unwrap_or(
                    f64::from(self.udesk_calls_per_minute.max(1)) / minute.as_secs_f64(),
                )),
            };
        let config = TransportConfig {
            timeout: seconds("--timeout", self.timeout)?.max(Duration::from_millis(100)),
            max_attempts: self.max_attempts.max(1),
            max_concurrency: self.max_concurrency,
            rate_per_second: rate,
            adaptive: !self.fixed_concurrency,
            give_up_after: seconds("--give-up-after", self.give_up_after)?
                .max(Duration::from_secs(1)),
            ..TransportConfig::default()
        };
        let mut transport = Transport::new(config).context("building the HTTP client")?;
        transport.on_pause(Arc::new(move |notice: &PauseNotice| log_pause(ui, notice)));
        Ok(transport)
    }

    /// Starts the sandbox when asked, and gathers origin and credentials.
    pub async fn connect(&self, ui: Ui) -> anyhow::Result<Connection> {
        self.check()?;
        if !self.sandbox {
            let mut settings = settings(self.target, self.config.as_ref())?;
            if let Some(b) = &self.base_url {
                settings.base_url = Some(b.clone());
            }
            return Ok(Connection {
                sandbox: None,
                settings,
            });
        }
        let sandbox_config = crate::sandbox::SandboxConfig {
            time_scale: self.sandbox_time_scale,
            seed_customers: self.sandbox_customers,
            udesk_fields: crate::sandbox::AccountFields::from_arg(&self.sandbox_udesk_fields)
                .map_err(|e| usage(format!("--sandbox-udesk-fields {e}")))?,
            ..Default::default()
        };
        let server = crate::sandbox::spawn(
            sandbox_config,
            "127.0.0.1:0".parse().context("the loopback address")?,
        )
        .await
        .context("starting the sandbox")?;
        if ui.progress() {
            eprintln!(
                "sandbox: {} (in-process, demo credentials)",
                server.base_url()
            );
        }
        let settings = PlatformSettings {
            base_url: Some(server.base_url()),
            api_key: Some(Secret::new(crate::sandbox::DEMO_OMNIDESK_API_KEY)),
            email: Some(crate::sandbox::DEMO_UDESK_EMAIL.into()),
            token: Some(Secret::new(crate::sandbox::DEMO_UDESK_TOKEN)),
            password: None,
        };
        Ok(Connection {
            sandbox: Some(server),
            settings,
        })
    }

    /// A placeholder origin, for messages and dry runs.
    pub fn example_origin(&self) -> &'static str {
        match self.target {
            Platform::Omnidesk => "https://ACCOUNT.omnidesk.com",
            Platform::Udesk => "https://SUBDOMAIN.udesk.cn",
        }
    }

    /// Whether the settings hold this platform's credentials.
    pub fn has_credentials(&self, s: &PlatformSettings) -> bool {
        match self.target {
            Platform::Omnidesk => s.api_key.is_some(),
            Platform::Udesk => s.email.is_some() && (s.token.is_some() || s.password.is_some()),
        }
    }

    /// The usage error for missing credentials.
    pub fn no_credentials(&self) -> anyhow::Error {
        usage(match self.target {
            Platform::Omnidesk => "no Omnidesk credentials: set DESKPORT_OMNIDESK_API_KEY (or [omnidesk] api_key in --config)",
            Platform::Udesk => "no Udesk credentials: set DESKPORT_UDESK_EMAIL and DESKPORT_UDESK_TOKEN (or DESKPORT_UDESK_PASSWORD), or use --config",
        })
    }

    /// The usage error for a missing origin.
    pub fn no_base_url(&self) -> anyhow::Error {
        usage(format!(
            "no base URL: pass --base-url (e.g. {}), set DESKPORT_{}_BASE_URL, or use --sandbox",
            self.example_origin(),
            self.target.name().to_uppercase()
        ))
    }

    /// The Omnidesk brand for rows without a `brand_id` column: `--brand-id`, else 1 with
    /// `--sandbox` (or when `default_allowed`, as in a dry run), else a usage error.
    pub fn omnidesk_brand(
        &self,
        brand_id: Option<u64>,
        default_allowed: bool,
    ) -> anyhow::Result<u64> {
        match brand_id {
            Some(b) => Ok(b),
            None if self.sandbox || default_allowed => Ok(1),
            None => Err(usage(
                "--brand-id is required for Omnidesk (rows with a brand_id column use their own)",
            )),
        }
    }

    /// The origin and credentials a command that talks to the platform needs.
    pub fn require(&self, s: &PlatformSettings) -> anyhow::Result<BaseUrl> {
        let base = match &s.base_url {
            Some(b) => BaseUrl::parse(b).map_err(|e| usage(e.to_string()))?,
            None => return Err(self.no_base_url()),
        };
        if !self.has_credentials(s) {
            return Err(self.no_credentials());
        }
        Ok(base)
    }
}

/// Says that every worker pauses, and why, in the log format (not with `--quiet`), so a run
/// that waits for the platform never looks hung.
fn log_pause(ui: Ui, notice: &PauseNotice) {
    if ui.quiet {
        return;
    }
    let why = if notice.asked_by_platform {
        "the platform asked to wait (Retry-After)"
    } else {
        "the platform refused requests (rate limit or overload)"
    };
    match ui.log_format {
        LogFormat::Text => eprintln!("pausing {:.0} s: {why}", notice.seconds),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({"level": "warn", "event": "pause", "seconds": notice.seconds, "asked_by_platform": notice.asked_by_platform, "message": why})
        ),
    }
}

impl ConnectArgs {
    /// The Omnidesk client for these settings, writing custom field keys in the forms the
    /// flags ask for.
    pub fn omnidesk_client(
        &self,
        settings: &PlatformSettings,
        base: BaseUrl,
        brand: u64,
        transport: Transport,
    ) -> Arc<Omnidesk> {
        Arc::new(self.omnidesk(settings, base, brand, transport))
    }

    /// Where rows go, as journals and checkpoints record it: `sandbox`, or the origin.
    pub fn origin(&self, base: &BaseUrl) -> String {
        if self.sandbox {
            "sandbox".to_string()
        } else {
            base.join("")
        }
    }

    /// [`Self::omnidesk_client`], not yet shared, for a command to set more on it.
    pub fn omnidesk(
        &self,
        settings: &PlatformSettings,
        base: BaseUrl,
        brand: u64,
        transport: Transport,
    ) -> Omnidesk {
        let key = settings.api_key.clone().unwrap_or_else(|| Secret::new(""));
        Omnidesk::new(base, key, brand, transport).with_custom_keys(self.omnidesk_custom_keys())
    }
}

/// The Udesk client for these settings (a token, else log-in with the password).
pub fn udesk_client(
    settings: &PlatformSettings,
    base: BaseUrl,
    transport: Transport,
) -> Arc<Udesk> {
    let email = settings.email.clone().unwrap_or_default();
    let auth = match (settings.token.clone(), settings.password.clone()) {
        (Some(t), _) => UdeskAuth::Token(t),
        (None, Some(p)) => UdeskAuth::Password(p),
        (None, None) => UdeskAuth::Token(Secret::new("")),
    };
    Arc::new(Udesk::new(base, email, auth, transport))
}

/// First Ctrl-C: a clean stop. Second: exit at once (the journal stays consistent: every
/// record is one line, and a torn last line is ignored on resume).
pub fn spawn_ctrl_c(
    stop: Arc<Stop>,
    hint: String,
    quiet: bool,
    doing: &'static str,
    state: &'static str,
) {
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        stop.request();
        if !quiet {
            eprintln!("\nstopping: {doing} (Ctrl-C again to quit at once)");
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("quit at once; {state} is consistent. Safe to resume with:\n  {hint}");
            std::process::exit(Exit::Aborted as i32);
        }
    });
}

/// The command line that continues this run: the same arguments (never credentials: they
/// are not flags) without `--restart`, with `--resume`, and with each of `implied` that was
/// not given (a flag whose default the run derived, such as the journal directory).
pub fn rerun_hint(implied: &[(&str, String)]) -> String {
    let given: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut words: Vec<String> = given
        .iter()
        .filter(|a| *a != "--restart")
        .cloned()
        .collect();
    for (flag, value) in implied {
        let present = given
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if !present {
            words.push((*flag).to_string());
            words.push(value.clone());
        }
    }
    if !words.iter().any(|w| w == "--resume") {
        words.push("--resume".into());
    }
    let quoted: Vec<String> = words.into_iter().map(shell_quoted).collect();
    format!("deskport {}", quoted.join(" "))
}

/// A word as a POSIX shell reads it back.
fn shell_quoted(word: String) -> String {
    if word.is_empty()
        || word.contains(|c: char| c.is_whitespace() || "'\"$`\\;&|<>*?()#~".contains(c))
    {
        format!("'{}'", word.replace('\'', r"'\''"))
    } else {
        word
    }
}
