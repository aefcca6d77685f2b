//! The long run of issue 18's mixed load against a running `lookalike serve`: the driver of
//! `tests/soak.rs` (`tests/support/mixed_load.rs`), for minutes instead of seconds, against a
//! server in another process whose memory it samples. `scripts/soak.sh` prepares the index,
//! starts the server and runs this; run by hand:
//!
//! ```sh
//! LOOKALIKE_TOKEN=secret lookalike serve --bind 127.0.0.1:7891 &
//! LOOKALIKE_TOKEN=secret cargo run --release --example soak -- \
//!     --url http://127.0.0.1:7891 --pid $! --photos ~/Pictures/queries
//! ```
//!
//! Prints the report (per route: requests, p50/p99/max latency, 404s, 5xx, transport errors;
//! the collection against the driver's account; the server's RSS) and exits non-zero when the
//! run failed: any 5xx, transport error, unexpected or inconsistent answer, a route never
//! exercised, or memory over its bounds once warm.

#[path = "../tests/support/mixed_load.rs"]
mod mixed_load;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mixed_load::{Config, MemoryBounds, Photo};

#[derive(Parser)]
#[command(about = "Mixed load on a running lookalike server (issue 18's soak)")]
struct Args {
    /// The server, e.g. http://127.0.0.1:7891
    #[arg(long)]
    url: String,
    /// The server's write token (uploads and deletes)
    #[arg(long, env = "LOOKALIKE_TOKEN", hide_env_values = true)]
    token: String,
    /// The server's process id, whose VmRSS is sampled
    #[arg(long)]
    pid: u32,
    /// Folders of JPEG, PNG and WebP photos to search with and upload (repeatable)
    #[arg(long = "photos", value_name = "DIR", required = true)]
    photos: Vec<PathBuf>,
    /// Concurrent clients
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long the load runs
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Memory counts from this point on [default: a third of the run, at most 5 minutes:
    /// the server's memory climbs for a minute or two as the allocator's arenas and the
    /// thumbnail cache fill]
    #[arg(long, value_name = "SECONDS")]
    warmup: Option<u64>,
    /// Seconds between two readings of the server's VmRSS
    #[arg(long, default_value_t = 10)]
    rss_every: u64,
    /// Most uploads alive at once [default: a twentieth of the collection, at least 16]
    #[arg(long)]
    max_live_uploads: Option<usize>,
    /// Memory allowed above its warm-up value at its highest sample
    #[arg(long, default_value_t = 512.0, value_name = "MIB")]
    max_peak_growth: f64,
    /// Memory allowed above its warm-up value when the load is over
    #[arg(long, default_value_t = 128.0, value_name = "MIB")]
    max_end_growth: f64,
    #[arg(long, default_value_t = 18)]
    seed: u64,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let photos = Photo::all_under(&args.photos)?;
    let collection = collection_size(&args.url)?;
    let config = Config {
        base: args.url.trim_end_matches('/').to_string(),
        token: args.token,
        server_pid: args.pid,
        clients: args.clients,
        duration,
        warmup: args.warmup.map_or_else(
            || (duration / 3).min(Duration::from_secs(300)),
            Duration::from_secs,
        ),
        rss_interval: Duration::from_secs(args.rss_every.max(1)),
        memory: MemoryBounds {
            peak_mib: args.max_peak_growth,
            end_mib: args.max_end_growth,
        },
        max_live_uploads: args
            .max_live_uploads
            .unwrap_or((collection as usize / 20).max(16)),
        seed: args.seed,
        progress: true,
    };
    eprintln!(
        "soak: {} clients for {:.1} min against {} ({collection} items), {} photos to send",
        config.clients,
        args.minutes,
        config.base,
        photos.len()
    );
    let report = mixed_load::run(&config, &photos)?;
    println!("{report}");

    let failed = report.verdict();
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("soak: FAILED: {}", failed.join("; "));
        ExitCode::FAILURE
    })
}

/// How many items the server holds, to size the uploads' cap.
fn collection_size(base: &str) -> anyhow::Result<u64> {
    let stats: serde_json::Value = reqwest::blocking::get(format!("{base}/api/stats"))?
        .error_for_status()?
        .json()?;
    stats["items"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("/api/stats without items: {stats}"))
}
