//! `lookalike serve`: the web page and JSON API (see `lookalike::server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use lookalike::server::{serve, ServerConfig};

use super::Global;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:7878 to serve the network)
    #[arg(long, default_value = "127.0.0.1:7878")]
    bind: SocketAddr,
    /// Bearer token that write requests (upload, index, delete) must carry; without one,
    /// the server is read-only. Every local user sees it in the process list: prefer
    /// LOOKALIKE_TOKEN or --token-file
    #[arg(long, env = "LOOKALIKE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Read the token from this file (its one line; keep the file private to the user who
    /// serves), instead of --token; it takes precedence over LOOKALIKE_TOKEN
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A host name the server answers to besides localhost and IP addresses (repeatable).
    /// Requests naming another host are refused (421), which stops DNS-rebinding pages from
    /// reading a server bound to loopback; on another address, checked once one is given
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Folders whose files `POST /api/index` may index (repeatable)
    #[arg(long = "root", value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Files under this folder are never dropped by the Duplicates view (one of them keeps
    /// each group it is in); repeatable
    #[arg(long, value_name = "DIR")]
    reference: Vec<PathBuf>,
    /// Largest request body, in MiB
    #[arg(long, default_value_t = 32)]
    max_body_mb: usize,
    /// Inferences running at once; more requests queue
    #[arg(long, default_value_t = 2)]
    max_inferences: usize,
    /// How long a queued request waits before a 503, in seconds
    #[arg(long, default_value_t = 5)]
    queue_timeout: u64,
}

pub fn run(global: &Global, args: ServeArgs) -> Result<ExitCode> {
    // clap fills `token` from the command line or the environment: it came from the command
    // line if the environment does not hold it.
    let on_command_line =
        args.token.is_some() && std::env::var("LOOKALIKE_TOKEN").ok() != args.token;
    let token = match &args.token_file {
        Some(_) if on_command_line => bail!("give the token once: --token or --token-file"),
        Some(path) => Some(read_token(path)?),
        None => {
            if on_command_line {
                tracing::warn!(
                    "--token is visible to every user of this machine in the process list: \
                     pass it in LOOKALIKE_TOKEN or with --token-file instead"
                );
            }
            args.token
        }
    };
    let writes = token.is_some();
    if !args.bind.ip().is_loopback() && !writes {
        tracing::warn!(
            bind = %args.bind,
            "serving the network without a token: writes are off, but anyone who can reach \
             {} can search and download every indexed file, with its path and GPS position",
            args.bind
        );
    }
    let engine = Arc::new(global.engine(!writes)?);
    let upload_dir = global.db_dir()?.join("uploads");
    let mut roots = Vec::new();
    for root in args.roots {
        roots.push(
            root.canonicalize()
                .with_context(|| format!("--root {}", root.display()))?,
        );
    }
    if writes {
        std::fs::create_dir_all(&upload_dir)
            .with_context(|| format!("creating {}", upload_dir.display()))?;
        roots.push(upload_dir.canonicalize()?);
    }
    let config = ServerConfig {
        bind: args.bind,
        token,
        roots,
        upload_dir,
        max_body_bytes: args.max_body_mb.max(1) << 20,
        max_concurrent_inferences: args.max_inferences.max(1),
        queue_timeout: Duration::from_secs(args.queue_timeout),
        references: args.reference,
        allowed_hosts: args.allowed_hosts,
        ..ServerConfig::default()
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config, engine))?;
    Ok(ExitCode::SUCCESS)
}

/// The token in `path`: its one line, without the line end. The server refuses a token that
/// is empty or has white space around it, so a stray space fails at start, not per request.
fn read_token(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token from {}", path.display()))?;
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.contains('\n') {
        bail!(
            "{}: a token file holds the token alone, on one line",
            path.display()
        );
    }
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} can be read by other users (mode {:o}): chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    Ok(token.to_owned())
}
