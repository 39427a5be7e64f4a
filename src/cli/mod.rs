//! Subcommands of the `agora` binary. Each file is one subcommand; shared helpers live here.

pub mod agent;
pub mod alloc_cmds;
pub mod demo;
pub mod dev;
pub mod emulate_agents;
pub mod executor;
pub mod http_get;
pub mod maintenance;
pub mod master;
pub mod masters;
pub mod publish;
pub mod query;
pub mod run;
pub mod sim;
pub mod sim_report;

use anyhow::{bail, Context as _};
use std::sync::Arc;

pub fn init_logging(json: bool, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Distinguishes generations of ids across restarts of a node: seconds since the epoch.
pub fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `host:port[,host:port...]` → list, each checked to look like an address.
pub fn parse_masters(s: &str) -> anyhow::Result<Vec<String>> {
    let list: Vec<String> = s
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if list.is_empty() {
        bail!("no master address given");
    }
    for m in &list {
        check_addr(m)?;
    }
    Ok(list)
}

pub fn check_addr(a: &str) -> anyhow::Result<()> {
    let (host, port) = a
        .rsplit_once(':')
        .with_context(|| format!("address {a:?} has no :PORT"))?;
    if host.is_empty() {
        bail!("address {a:?} has no host");
    }
    port.parse::<u16>()
        .with_context(|| format!("address {a:?} has a bad port"))?;
    Ok(())
}

pub fn tcp_transport() -> Arc<dyn agora_actors::transport::Transport> {
    Arc::new(agora_actors::transport::tcp::TcpTransport::default())
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_string())
}
