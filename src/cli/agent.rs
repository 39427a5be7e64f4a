//! `agora agent`.

use agora_actors::parse_attributes;
use agora_agent::actor::{start_agent, AgentOptions};
use agora_agent::checkpoint::CheckpointStore;
use agora_agent::core::AgentConfig;
use agora_isolation::{
    Containerizer, LibcontainerContainerizer, LibcontainerOptions, PosixContainerizer,
};
use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use std::path::Path;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Master address(es), comma-separated.
    #[arg(long, env = "AGORA_MASTER")]
    pub master: String,
    /// Address executors connect to.
    #[arg(long, default_value = "127.0.0.1:5051", env = "AGORA_AGENT_LISTEN")]
    pub listen: String,
    /// Address of the HTTP API (/health, /state, /metrics, /monitor/statistics).
    #[arg(long, default_value = "127.0.0.1:5081", env = "AGORA_AGENT_HTTP")]
    pub http: String,
    /// Directory for sandboxes and the agent's files.
    #[arg(
        long,
        default_value = "/var/lib/agora/agent",
        env = "AGORA_AGENT_WORK_DIR"
    )]
    pub work_dir: String,
    /// Resources to offer, e.g. 'cpus:4;mem:4096;disk:10000;ports:[31000-32000]'. Names not
    /// given are detected from the machine.
    #[arg(long, env = "AGORA_AGENT_RESOURCES")]
    pub resources: Option<String>,
    /// Attributes, e.g. 'rack:r1;zone:a'.
    #[arg(long, default_value = "", env = "AGORA_AGENT_ATTRIBUTES")]
    pub attributes: String,
    #[arg(long, default_value = "agora", env = "AGORA_CLUSTER")]
    pub cluster: String,
    /// Hostname reported to the master (default: this machine's).
    #[arg(long, env = "AGORA_AGENT_HOSTNAME")]
    pub hostname: Option<String>,
    /// How executors are isolated: libcontainer (cgroups + namespaces, needs root and usable
    /// cgroups), posix (own session and process group, no limits) or auto (libcontainer when
    /// possible, else posix; the log says which and why).
    #[arg(long, default_value = "auto", env = "AGORA_ISOLATION")]
    pub isolation: String,
    /// cgroup root of this agent's containers (libcontainer): `agora...`. Each container's
    /// cgroup is `<root>/<hash of the work dir>-<container id>`, so agents can share a host.
    #[arg(long, env = "AGORA_CGROUP_ROOT")]
    pub cgroup_root: Option<String>,
    /// How often sandboxes are measured against their tasks' `disk` (0: never). A container
    /// over its limit is killed and its tasks fail with reason `disk limit`.
    #[arg(long, default_value_t = 5_000, env = "AGORA_DISK_WATCH_INTERVAL_MS")]
    pub disk_watch_interval_ms: u64,
    /// Most processes per container (libcontainer's pids limit).
    #[arg(long, default_value_t = 4096, env = "AGORA_CONTAINER_PIDS_LIMIT")]
    pub container_pids_limit: i64,
    /// Most containers being started at once (on worker threads, off the agent's actor
    /// thread); further launches wait in a queue. 1..=64.
    #[arg(long, default_value_t = 8, env = "AGORA_MAX_PARALLEL_LAUNCHES",
        value_parser = clap::value_parser!(u64).range(1..=64))]
    pub max_parallel_launches: u64,
    /// How long a sandbox is kept after its executor ended (Mesos: 1 week).
    #[arg(long, default_value_t = 7 * 24 * 3_600_000, env = "AGORA_GC_DELAY_MS")]
    pub gc_delay_ms: u64,
    /// Fraction of the work dir's disk to keep free: the delay shrinks to
    /// `gc-delay × max(0, 1 − headroom − disk used)`, so a full disk frees sandboxes at once.
    #[arg(long, default_value_t = 0.1, env = "AGORA_GC_DISK_HEADROOM")]
    pub gc_disk_headroom: f64,
    /// How often sandboxes are checked for garbage collection.
    #[arg(long, default_value_t = 60_000, env = "AGORA_GC_INTERVAL_MS")]
    pub gc_interval_ms: u64,
    /// How often the executors' usage (CPU time, memory) is sent to the master, which shows
    /// it per task in its `/state`; 0: never.
    #[arg(long, default_value_t = 5_000, env = "AGORA_USAGE_REPORT_INTERVAL_MS")]
    pub usage_report_interval_ms: u64,
}

/// Picks the containerizer for `--isolation`. `auto` falls back to posix with the reason;
/// an explicit `libcontainer` that cannot work is an error.
pub fn containerizer(args: &AgentArgs, work_dir: &Path) -> anyhow::Result<Arc<dyn Containerizer>> {
    let want = args.isolation.as_str();
    if !matches!(want, "auto" | "libcontainer" | "posix") {
        bail!("--isolation {want:?}: expected libcontainer, posix or auto");
    }
    if want == "posix" {
        tracing::info!("containerizer: posix (asked for with --isolation posix): own session and process group per executor, no resource limits");
        return Ok(Arc::new(PosixContainerizer::new()));
    }
    let exe = std::env::current_exe().context("locating the agora binary for the launcher")?;
    let cgroup_root = args.cgroup_root.clone().unwrap_or_else(|| "agora".into());
    let mut options = LibcontainerOptions::new(
        work_dir.join("containers"),
        vec![exe.display().to_string(), "launcher".into()],
    );
    options.cgroup_root = cgroup_root;
    options.cgroup_prefix = format!("{:016x}-", fnv1a(work_dir.display().to_string().as_bytes()));
    options.pids_limit = args.container_pids_limit;
    match LibcontainerContainerizer::new(options.clone()) {
        Ok(c) => {
            tracing::info!(cgroups = ?c.cgroup_version(), cgroup_root = %options.cgroup_root, "containerizer: libcontainer (cgroup limits; pid, mount, ipc and uts namespaces; host fs read-only, sandbox at /sandbox)");
            Ok(Arc::new(c))
        }
        Err(why) if want == "auto" => {
            tracing::warn!(%why, "containerizer: posix (libcontainer unavailable): no resource limits are enforced");
            Ok(Arc::new(PosixContainerizer::new()))
        }
        Err(why) => bail!("--isolation libcontainer is unavailable: {why}"),
    }
}

/// Stable 64-bit FNV-1a: the agent's cgroup name prefix, from its work dir.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn config(args: &AgentArgs) -> anyhow::Result<AgentConfig> {
    let work_dir = Path::new(&args.work_dir);
    std::fs::create_dir_all(work_dir)
        .with_context(|| format!("creating work dir {}", args.work_dir))?;
    let detected = agora_agent::detect::detect_resources(work_dir);
    let resources = agora_agent::detect::merge_resources(args.resources.as_deref(), detected)
        .map_err(|e| anyhow!("--resources: {e}"))?;
    let attributes =
        parse_attributes(&args.attributes).map_err(|e| anyhow!("--attributes: {e}"))?;
    let exe =
        std::env::current_exe().context("locating the agora binary for the command executor")?;
    Ok(AgentConfig {
        cluster: args.cluster.clone(),
        hostname: args.hostname.clone().unwrap_or_else(super::hostname),
        endpoint: args.listen.clone(),
        resources,
        attributes,
        work_dir: work_dir
            .canonicalize()
            .unwrap_or_else(|_| work_dir.to_path_buf())
            .display()
            .to_string(),
        command_executor_argv: vec![exe.display().to_string(), "executor".to_string()],
        ..AgentConfig::default()
    })
}

/// Starts the agent; returns its executor and HTTP addresses and its containerizer.
pub async fn start(args: &AgentArgs) -> anyhow::Result<(String, String, Arc<dyn Containerizer>)> {
    super::check_addr(&args.listen)?;
    super::check_addr(&args.http)?;
    let masters = super::parse_masters(&args.master)?;
    let config = config(args)?;
    let containerizer = containerizer(args, Path::new(&config.work_dir))?;
    tracing::info!(resources = %config.resources, "agent resources");
    let mut store = CheckpointStore::open(Path::new(&config.work_dir))?;
    let previous = store.load(&config.cluster)?;
    if let Some(record) = &previous {
        if record.containerizer != containerizer.name() && !record.containers.is_empty() {
            bail!(
                "the work dir's running containers were started by the {} containerizer; restart with --isolation {}",
                record.containerizer,
                record.containerizer
            );
        }
        tracing::info!(
            agent = ?record.core.agent_id,
            containers = record.containers.len(),
            "recovering from the checkpoint in the work dir"
        );
    }
    if !(0.0..=1.0).contains(&args.gc_disk_headroom) {
        bail!("--gc-disk-headroom must be between 0 and 1");
    }
    let opts = AgentOptions {
        config,
        listen: args.listen.clone(),
        masters,
        epoch: super::epoch_now(),
        checkpoint: Some((store, previous)),
        disk_watch_interval_ms: args.disk_watch_interval_ms,
        max_parallel_launches: args.max_parallel_launches as usize,
        gc: Some((
            agora_agent::gc::GcPolicy {
                delay_ms: args.gc_delay_ms,
                disk_headroom: args.gc_disk_headroom,
            },
            std::time::Duration::from_millis(args.gc_interval_ms.max(100)),
        )),
        usage_report_interval: (args.usage_report_interval_ms > 0)
            .then(|| std::time::Duration::from_millis(args.usage_report_interval_ms.max(100))),
    };
    let handle = start_agent(opts, super::tcp_transport(), containerizer.clone())
        .await
        .context("starting the agent")?;
    let http = agora_agent::http::serve(handle.addr.clone(), &args.http)
        .with_context(|| format!("binding HTTP on {}", args.http))?;
    Ok((handle.bound, http, containerizer))
}

pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
    let sys = actix::System::new();
    sys.block_on(async move {
        let (bound, http, containerizer) = start(&args).await?;
        tracing::info!(listen = %bound, %http, master = %args.master, "agent ready");
        super::shutdown_signal().await;
        tracing::info!("agent shutting down (executors keep running)");
        containerizer.agent_exiting();
        Ok(0)
    })
}
