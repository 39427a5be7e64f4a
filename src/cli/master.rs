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
    let handle = start_master(args.options()?, super::tcp_transport())
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
