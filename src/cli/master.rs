//! `agora master`.

use agora_allocator::{AllocatorConfig, DrfAllocator};
use agora_master::actor::{start_master, MasterOptions};
use agora_master::core::MasterConfig;
use agora_master::ha::{MakeAllocator, RegistryOptions};
use agora_master::registry::{format_peers, parse_peers, Identity, RegistryConfig};
use anyhow::Context as _;
use clap::Args;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct MasterArgs {
    /// Address for agents and schedulers (the actor transport).
    #[arg(long, default_value = "127.0.0.1:5050", env = "AGORA_MASTER_LISTEN")]
    pub listen: String,
    /// Address of the HTTP API (/health, /state, /metrics).
    #[arg(long, default_value = "127.0.0.1:5080", env = "AGORA_MASTER_HTTP")]
    pub http: String,
    /// Directory for the master's files.
    #[arg(
        long,
        default_value = "/var/lib/agora/master",
        env = "AGORA_MASTER_WORK_DIR"
    )]
    pub work_dir: String,
    /// Cluster name; agents and frameworks of another cluster are refused.
    #[arg(long, default_value = "agora", env = "AGORA_CLUSTER")]
    pub cluster: String,
    /// An offer not answered within this long is rescinded and offered to others.
    #[arg(long, default_value_t = 10_000, env = "AGORA_OFFER_TIMEOUT_MS")]
    pub offer_timeout_ms: u64,
    #[arg(long, default_value_t = 2_000, env = "AGORA_AGENT_PING_INTERVAL_MS")]
    pub agent_ping_interval_ms: u64,
    /// An agent that misses this many pings in a row is removed and its tasks reported lost.
    #[arg(long, default_value_t = 5, env = "AGORA_MAX_MISSED_PINGS")]
    pub max_missed_pings: u32,
    #[arg(long, default_value_t = 1_000, env = "AGORA_ALLOCATION_INTERVAL_MS")]
    pub allocation_interval_ms: u64,
    /// Grace period between SIGTERM and SIGKILL when a task is killed.
    #[arg(long, default_value_t = 3_000, env = "AGORA_KILL_GRACE_MS")]
    pub kill_grace_ms: u64,
    /// This master's id in `--peers`.
    #[arg(long, default_value_t = 1, env = "AGORA_MASTER_ID")]
    pub id: u64,
    /// Every master of the group, this one included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`
    /// (their `--listen` addresses). Without it the master is a group of one.
    #[arg(long, env = "AGORA_MASTER_PEERS")]
    pub peers: Option<String>,
    /// Raft clock tick.
    #[arg(long, default_value_t = 50, env = "AGORA_RAFT_TICK_MS")]
    pub raft_tick_ms: u64,
    /// Raft election timeout in ticks (randomised up to twice this). A leader that hears from
    /// no majority for this long steps down and stops offering.
    #[arg(long, default_value_t = 10, env = "AGORA_RAFT_ELECTION_TICKS")]
    pub raft_election_ticks: usize,
    #[command(flatten)]
    pub alloc: super::alloc_cmds::AllocatorArgs,
    /// After a failover, agents of the registry that have not re-registered with the new
    /// leader within this long are marked unreachable and reported lost to frameworks.
    #[arg(
        long,
        default_value_t = 600_000,
        env = "AGORA_AGENT_REREGISTER_TIMEOUT_MS"
    )]
    pub agent_reregister_timeout_ms: u64,
    /// When resources are revoked for a role below its guarantee, the owning framework is
    /// warned this long before its tasks are killed (unless it sets its own grace period).
    #[arg(long, default_value_t = 30_000, env = "AGORA_REVOCATION_GRACE_MS")]
    pub revocation_grace_ms: u64,
    /// Connections (agents, schedulers, peer masters) the transport listener serves at once.
    /// Each takes a file descriptor: the master raises its soft `RLIMIT_NOFILE` to fit, up to
    /// the hard limit, and refuses to start if even that is too low.
    #[arg(long, default_value_t = agora_actors::transport::MAX_CONNECTIONS_PER_LISTENER, env = "AGORA_MAX_CONNECTIONS")]
    pub max_connections: usize,
}

/// A master's `--listen` must be its own entry of `--peers` (a wildcard host with the same
/// port is fine): otherwise two masters could be started with the same id at different
/// addresses, and the group would have two voters under one id.
fn check_own_peer_address(
    listen: &str,
    id: u64,
    peers: &std::collections::BTreeMap<u64, String>,
) -> anyhow::Result<()> {
    let mine = peers.get(&id).map(String::as_str).unwrap_or_default();
    let split = |a: &str| {
        a.rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
    };
    let (Some((lh, lp)), Some((ph, pp))) = (split(listen), split(mine)) else {
        anyhow::bail!("--listen {listen} or the --peers entry {id}={mine} is not HOST:PORT");
    };
    let wildcard = matches!(lh.as_str(), "0.0.0.0" | "[::]" | "::");
    if lp != pp || !(wildcard || lh == ph) {
        anyhow::bail!(
            "--listen {listen} is not this master's address in --peers ({id}={mine}); is --id \
             {id} right? Every master needs its own id, listening on its own --peers address"
        );
    }
    Ok(())
}

/// File descriptors kept for everything but the listener's connections (sled, HTTP, logs...).
const SPARE_FDS: u64 = 1_024;
/// Upper bound on `--max-connections` (a typo of 10 zeros would only pin memory).
const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// Makes room for `max_connections` sockets in this process's `RLIMIT_NOFILE`.
fn raise_fd_limit(max_connections: usize) -> anyhow::Result<()> {
    if max_connections == 0 || max_connections > MAX_MAX_CONNECTIONS {
        anyhow::bail!("--max-connections must be between 1 and {MAX_MAX_CONNECTIONS}");
    }
    let need = max_connections as u64 + SPARE_FDS;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        anyhow::bail!(
            "cannot read RLIMIT_NOFILE: {}",
            std::io::Error::last_os_error()
        );
    }
    if lim.rlim_cur >= need {
        return Ok(());
    }
    if lim.rlim_max < need {
        anyhow::bail!(
            "--max-connections {max_connections} needs {need} file descriptors but the hard limit \
             (ulimit -Hn) is {}; raise it or lower --max-connections",
            lim.rlim_max
        );
    }
    lim.rlim_cur = need;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        anyhow::bail!(
            "cannot raise RLIMIT_NOFILE to {need}: {}",
            std::io::Error::last_os_error()
        );
    }
    tracing::info!(
        soft_limit = need,
        "raised the file descriptor limit for --max-connections"
    );
    Ok(())
}

impl MasterArgs {
    pub fn config(&self) -> MasterConfig {
        MasterConfig {
            cluster: self.cluster.clone(),
            offer_timeout_ms: self.offer_timeout_ms,
            agent_ping_interval_ms: self.agent_ping_interval_ms,
            max_missed_pings: self.max_missed_pings,
            default_kill_grace_ms: self.kill_grace_ms,
            revocation_grace_ms: self.revocation_grace_ms,
            ..MasterConfig::default()
        }
    }
    /// The registry settings: the peer group (or a group of one) under `WORK_DIR/registry`.
    pub fn registry(&self, http: &str) -> anyhow::Result<RegistryOptions> {
        let peers = match &self.peers {
            Some(p) => parse_peers(p)?,
            // A group of one: the address is never dialed, so it is not part of the identity.
            None => [(self.id, "local".to_string())].into_iter().collect(),
        };
        if !peers.contains_key(&self.id) {
            anyhow::bail!(
                "--id {} is not in --peers {}",
                self.id,
                format_peers(&peers)
            );
        }
        if self.peers.is_some() {
            check_own_peer_address(&self.listen, self.id, &peers)?;
        }
        let mut config = RegistryConfig::new(Identity {
            cluster: self.cluster.clone(),
            node_id: self.id,
            peers,
        });
        config.election_ticks = self.raft_election_ticks.max(3);
        config.heartbeat_ticks = (config.election_ticks / 5).max(1);
        // Each new leader builds its allocator with the policy and settings given by the flags.
        let drf_config = self.alloc.drf_config()?;
        let make_allocator: MakeAllocator = Arc::new(move || {
            DrfAllocator::new(drf_config.clone())
                .map(|a| Box::new(a) as Box<dyn agora_allocator::Allocator>)
                .map_err(|e| e.to_string())
        });
        Ok(RegistryOptions {
            dir: std::path::Path::new(&self.work_dir).join("registry"),
            config,
            tick_ms: self.raft_tick_ms,
            http: http.to_string(),
            make_allocator,
            agent_reregister_timeout_ms: self.agent_reregister_timeout_ms,
        })
    }

    pub fn options(&self) -> anyhow::Result<MasterOptions> {
        let drf = DrfAllocator::new(self.alloc.drf_config()?)
            .map_err(|e| anyhow::anyhow!("allocator: {e}"))?;
        Ok(MasterOptions {
            registry: Some(self.registry(&self.http)?),
            listen: self.listen.clone(),
            config: self.config(),
            allocator: Box::new(drf),
            allocator_config: AllocatorConfig {
                allocation_interval_ms: self.allocation_interval_ms,
                ..AllocatorConfig::default()
            },
            epoch: super::epoch_now(),
        })
    }
}

/// Starts master + HTTP on the current system; returns (transport address, http address).
pub async fn start(args: &MasterArgs) -> anyhow::Result<(String, String)> {
    super::check_addr(&args.listen)?;
    super::check_addr(&args.http)?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating work dir {}", args.work_dir))?;
    raise_fd_limit(args.max_connections)?;
    let transport =
        agora_actors::transport::TcpTransport::default().with_max_connections(args.max_connections);
    let handle = start_master(args.options()?, Arc::new(transport))
        .await
        .context("starting the master")?;
    let http = agora_master::http::serve(handle.addr.clone(), &args.http)
        .with_context(|| format!("binding HTTP on {}", args.http))?;
    Ok((handle.bound, http))
}

pub fn run(args: MasterArgs) -> anyhow::Result<i32> {
    let sys = actix::System::new();
    sys.block_on(async move {
        let (bound, http) = start(&args).await?;
        tracing::info!(listen = %bound, %http, cluster = %args.cluster, "master ready");
        super::shutdown_signal().await;
        tracing::info!("master shutting down");
        Ok(0)
    })
}
