//! `agora agent`.

use agora_actors::parse_attributes;
use agora_agent::actor::{start_agent, AgentOptions};
use agora_agent::core::AgentConfig;
use agora_isolation::PosixContainerizer;
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
    /// How executors are isolated: posix (own session and process group).
    #[arg(long, default_value = "posix", env = "AGORA_ISOLATION")]
    pub isolation: String,
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

pub async fn start(args: &AgentArgs) -> anyhow::Result<(String, String)> {
    super::check_addr(&args.listen)?;
    super::check_addr(&args.http)?;
    if args.isolation != "posix" {
        bail!(
            "--isolation {:?} is not available; this build supports: posix",
            args.isolation
        );
    }
    let masters = super::parse_masters(&args.master)?;
    let config = config(args)?;
    tracing::info!(resources = %config.resources, "agent resources; containerizer: posix (own session and process group per executor)");
    let opts = AgentOptions {
        config,
        listen: args.listen.clone(),
        masters,
        epoch: super::epoch_now(),
    };
    let handle = start_agent(
        opts,
        super::tcp_transport(),
        Arc::new(PosixContainerizer::new()),
    )
    .await
    .context("starting the agent")?;
    let http = agora_agent::http::serve(handle.addr.clone(), &args.http)
        .with_context(|| format!("binding HTTP on {}", args.http))?;
    Ok((handle.bound, http))
}

pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
    let sys = actix::System::new();
    sys.block_on(async move {
        let (bound, http) = start(&args).await?;
        tracing::info!(listen = %bound, %http, master = %args.master, "agent ready");
        super::shutdown_signal().await;
        tracing::info!("agent shutting down (executors keep running)");
        Ok(0)
    })
}
