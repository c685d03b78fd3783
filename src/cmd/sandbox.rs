//! `deskport sandbox`: flags → [`SandboxConfig`] → the emulated Omnidesk + Udesk server in
//! the foreground until Ctrl-C.

use super::{seconds, usage};
use crate::sandbox::{self, Faults, SandboxConfig};
use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

/// `deskport sandbox`'s flags.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port to listen on (0 for any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on; keep it on loopback.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Create this many realistic customers on both platforms at start.
    #[arg(long, default_value_t = 0, value_name = "N")]
    seed_customers: u64,
    /// How to answer where the documents are silent: `convenient` (ids in replies, errors that
    /// name the row) or `documented` (only what the documents print: no ids, bulk import
    /// always accepted, replayed scroll ids move on, auth refused as HTTP 200). Finer
    /// choices: PUT /__sandbox/profile.
    #[arg(long, value_enum, default_value_t = sandbox::ProfileName::Convenient)]
    profile: sandbox::ProfileName,
    /// The Udesk account's custom fields: `optional` (the document's eleven fields, none
    /// required), `documented` (the same, every one required as printed) or a JSON file
    /// holding a custom_fields reply. Changeable through PUT /__sandbox/udesk_fields.
    #[arg(long, default_value = "optional", value_name = "ACCOUNT|FILE")]
    udesk_fields: String,
    /// Seed for fault decisions (the same seed gives the same faults to a sequential client).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Platform seconds per real second: 60 makes a platform minute last one second.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Udesk calls allowed per platform minute (the published budget is 60).
    #[arg(long, default_value_t = 60)]
    udesk_calls_per_minute: u32,
    /// How Udesk refuses over-budget calls: HTTP 429, or HTTP 200 with code 429.
    #[arg(long, value_enum, default_value_t = sandbox::UdeskRateLimitStyle::Http429)]
    udesk_rate_limit_style: sandbox::UdeskRateLimitStyle,
    /// Omnidesk requests per platform second (default: unlimited, as no limit is published).
    #[arg(long, value_name = "R")]
    omnidesk_rate: Option<f64>,
    /// Platform seconds between accepted Udesk bulk imports.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    bulk_import_interval: f64,
    /// Platform seconds before an accepted bulk import is applied.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    bulk_import_delay: f64,
    /// Platform seconds a Udesk scroll id stays valid.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    scroll_ttl: f64,
    /// Fraction of requests answered 500 without being applied.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Fraction of requests applied and then answered 500.
    #[arg(long, default_value_t = 0.0)]
    apply_then_error_rate: f64,
    /// Fraction of requests whose connection is cut before the reply (not applied).
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Fraction of requests applied and then cut before the reply.
    #[arg(long, default_value_t = 0.0)]
    apply_then_drop_rate: f64,
    /// Added latency per request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Up to this much extra latency, uniformly.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Writes (POST/PUT/DELETE) take this many times the latency of reads.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    write_latency_factor: f64,
    /// Requests in flight beyond which requests queue (or get 503 with --over-capacity
    /// reject). Queued, the latency is service time on this many workers: latency grows
    /// with load as on a real server.
    #[arg(long)]
    capacity: Option<usize>,
    /// What happens beyond --capacity.
    #[arg(long, value_enum, default_value_t = sandbox::OverCapacity::Queue)]
    over_capacity: sandbox::OverCapacity,
    /// Load the store from this file at start (if it exists); POST /__sandbox/save and Ctrl-C write it.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Omnidesk apiKey the sandbox accepts (default: the demo key).
    #[arg(long, value_name = "KEY")]
    omnidesk_api_key: Option<String>,
    /// Udesk admin email (default: the demo email).
    #[arg(long, value_name = "EMAIL")]
    udesk_email: Option<String>,
    /// Udesk open API token (default: the demo token).
    #[arg(long, value_name = "TOKEN")]
    udesk_token: Option<String>,
    /// Udesk password for log_in (default: the demo password).
    #[arg(long, value_name = "PASSWORD")]
    udesk_password: Option<String>,
}

/// Runs `deskport sandbox`.
pub fn run(args: SandboxArgs) -> anyhow::Result<Exit> {
    for (name, rate) in [
        ("--error-rate", args.error_rate),
        ("--apply-then-error-rate", args.apply_then_error_rate),
        ("--drop-rate", args.drop_rate),
        ("--apply-then-drop-rate", args.apply_then_drop_rate),
    ] {
        if !(0.0..=1.0).contains(&rate) {
            return Err(usage(format!("{name} must be between 0 and 1")));
        }
    }
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        return Err(usage("--time-scale must be a positive number"));
    }
    let defaults = SandboxConfig::default();
    let custom_credentials = args.omnidesk_api_key.is_some()
        || args.udesk_token.is_some()
        || args.udesk_password.is_some();
    let config = SandboxConfig {
        omnidesk_api_key: args.omnidesk_api_key.unwrap_or(defaults.omnidesk_api_key),
        udesk_email: args.udesk_email.unwrap_or(defaults.udesk_email),
        udesk_token: args.udesk_token.unwrap_or(defaults.udesk_token),
        udesk_password: args.udesk_password.unwrap_or(defaults.udesk_password),
        time_scale: args.time_scale,
        udesk_calls_per_minute: args.udesk_calls_per_minute,
        udesk_rate_limit_style: args.udesk_rate_limit_style,
        omnidesk_rate_per_second: args.omnidesk_rate,
        bulk_import_interval: seconds("--bulk-import-interval", args.bulk_import_interval)?,
        bulk_import_delay: seconds("--bulk-import-delay", args.bulk_import_delay)?,
        scroll_ttl: seconds("--scroll-ttl", args.scroll_ttl)?,
        faults: Faults {
            error_rate: args.error_rate,
            apply_then_error_rate: args.apply_then_error_rate,
            drop_rate: args.drop_rate,
            apply_then_drop_rate: args.apply_then_drop_rate,
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            write_latency_factor: args.write_latency_factor,
            capacity: args.capacity,
            over_capacity: args.over_capacity,
        },
        seed: args.seed,
        seed_customers: args.seed_customers,
        state_file: args.state_file,
        profile: args.profile.profile(),
        udesk_fields: sandbox::AccountFields::from_arg(&args.udesk_fields)
            .map_err(|e| usage(format!("--udesk-fields {e}")))?,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let addr = std::net::SocketAddr::new(args.bind, args.port);
        let server = sandbox::spawn(config.clone(), addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let base = server.base_url();
        println!("deskport sandbox listening on {base}");
        println!("  Omnidesk API v2:     {base}/api/v2/customer");
        println!("  Udesk open API v1:   {base}/open_api_v1/customers");
        println!(
            "  inspect / control:   {base}/__sandbox/state, /__sandbox/reset, /__sandbox/faults, /__sandbox/profile, /__sandbox/udesk_fields"
        );
        println!("  reply profile:       {}", config.profile.name);
        if custom_credentials {
            println!("  credentials: as given on the command line");
        } else {
            println!("  demo credentials (sandbox only):");
            println!("    DESKPORT_OMNIDESK_API_KEY={}", config.omnidesk_api_key);
            println!("    DESKPORT_UDESK_EMAIL={}", config.udesk_email);
            println!(
                "    DESKPORT_UDESK_TOKEN={}   (or DESKPORT_UDESK_PASSWORD={})",
                config.udesk_token, config.udesk_password
            );
        }
        println!("Ctrl-C stops it.");
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        if let Some(path) = sandbox::save(&server.shared).context("saving the sandbox state")? {
            eprintln!("state saved to {}", path.display());
        }
        server.shutdown().await;
        Ok(Exit::Ok)
    })
}
