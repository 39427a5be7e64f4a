//! `agora dev`: a master and one agent on 127.0.0.1, real TCP and HTTP, until Ctrl-C.

use super::agent::AgentArgs;
use super::master::MasterArgs;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DevArgs {
    /// Base directory for the master's and agent's work dirs.
    #[arg(long, default_value = "/tmp/agora-dev")]
    pub work_dir: String,
    #[arg(long, default_value_t = 5050)]
    pub master_port: u16,
    #[arg(long, default_value_t = 5080)]
    pub master_http_port: u16,
    #[arg(long, default_value_t = 5051)]
    pub agent_port: u16,
    #[arg(long, default_value_t = 5081)]
    pub agent_http_port: u16,
    /// Agent resources (default: detected).
    #[arg(long)]
    pub resources: Option<String>,
}

pub fn run(a: DevArgs) -> anyhow::Result<i32> {
    let sys = actix::System::new();
    sys.block_on(async move {
        let m = MasterArgs {
            listen: format!("127.0.0.1:{}", a.master_port),
            http: format!("127.0.0.1:{}", a.master_http_port),
            work_dir: format!("{}/master", a.work_dir),
            cluster: "agora".into(),
            offer_timeout_ms: 10_000,
            agent_ping_interval_ms: 2_000,
            max_missed_pings: 5,
            allocation_interval_ms: 1_000,
            kill_grace_ms: 3_000,
            id: 1,
            peers: None,
            raft_tick_ms: 50,
            raft_election_ticks: 10,
            alloc: Default::default(),
            agent_reregister_timeout_ms: 600_000,
            revocation_grace_ms: 30_000,
            max_connections: agora_actors::transport::MAX_CONNECTIONS_PER_LISTENER,
        };
        let (mbound, mhttp) = super::master::start(&m).await?;
        let ag = AgentArgs {
            master: mbound.clone(),
            listen: format!("127.0.0.1:{}", a.agent_port),
            http: format!("127.0.0.1:{}", a.agent_http_port),
            work_dir: format!("{}/agent", a.work_dir),
            resources: a.resources.clone(),
            attributes: String::new(),
            cluster: "agora".into(),
            hostname: None,
            isolation: "auto".into(),
            cgroup_root: None,
            container_pids_limit: 4096,
            disk_watch_interval_ms: 5_000,
            max_parallel_launches: 8,
            gc_delay_ms: 7 * 24 * 3_600_000,
            gc_disk_headroom: 0.1,
            gc_interval_ms: 60_000,
            usage_report_interval_ms: 5_000,
        };
        let (abound, ahttp, _) = super::agent::start(&ag).await?;
        println!("agora dev cluster is up (Ctrl-C to stop)");
        println!("  master: {mbound}   http://{mhttp}/state");
        println!("  agent:  {abound}   http://{ahttp}/state");
        println!("  try:    agora run --master {mbound} -- echo hello");
        println!("          agora tasks --master {mhttp}");
        super::shutdown_signal().await;
        Ok(0)
    })
}
