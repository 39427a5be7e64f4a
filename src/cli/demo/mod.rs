//! `agora demo`: one process, in-memory transport: a master, 3 agents, an elastic batch
//! framework and a service framework sharing the cluster through resource offers.

mod inproc;

use super::publish::Published;
use agora_actors::sdk::driver::{SchedulerDriver, WithScheduler};
use agora_actors::transport::mem::MemTransport;
use agora_actors::transport::Transport;
use agora_actors::{CommandInfo, Resources};
use agora_agent::actor::{start_agent, AgentOptions};
use agora_agent::core::AgentConfig;
use agora_allocator::{AllocatorConfig, DrfAllocator, DrfConfig};
use agora_frameworks::batch::{BatchConfig, BatchFramework};
use agora_frameworks::service::{ServiceConfig, ServiceFramework, ServiceStatus};
use agora_master::actor::{start_master, GetSnapshot, MasterOptions};
use agora_master::core::MasterConfig;
use anyhow::{anyhow, Context as _};
use clap::Args;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Tasks of the batch framework.
    #[arg(long, default_value_t = 60)]
    pub batch_tasks: usize,
    /// Instances the service framework keeps running.
    #[arg(long, default_value_t = 4)]
    pub service_instances: usize,
    /// Seconds each batch task runs.
    #[arg(long, default_value_t = 0.5)]
    pub task_secs: f64,
}

const AGENTS: usize = 3;
const AGENT_RESOURCES: &str = "cpus:4;mem:4096;disk:10000;ports:[31000-32000]";

/// One sample of the cluster every tick: per framework CPUs held by its tasks, and totals.
struct Sample {
    per_fw: BTreeMap<String, f64>,
    used_cpus: f64,
    used_mem: f64,
}

pub fn run(a: DemoArgs) -> anyhow::Result<i32> {
    let dir = tempfile::tempdir().context("creating the demo's work dir")?;
    let sys = actix::System::new();
    sys.block_on(async move { demo(a, dir.path()).await })
}

async fn demo(a: DemoArgs, dir: &std::path::Path) -> anyhow::Result<i32> {
    let transport: Arc<dyn Transport> = Arc::new(MemTransport::default());
    let master = start_cluster(&transport, dir).await?;
    println!(
        "agora demo: 1 master + {AGENTS} agents ({AGENT_RESOURCES} each), in-memory transport"
    );
    let batch_cmd = CommandInfo::shell(&format!("sleep {}", a.task_secs));
    let mut bc = BatchConfig::new("batch", a.batch_tasks, batch_cmd, res("cpus:1;mem:512")?);
    bc.shared_executor = true;
    bc.sample_interval_ms = 0;
    let batch = Published::new(
        BatchFramework::new(bc).map_err(|e| anyhow!("{e}"))?,
        |b, out| *out = Some(b.progress()),
    );
    let batch_progress = batch.out.clone();
    // A flaky service: instances crash after a few seconds and are relaunched.
    let svc_cmd = CommandInfo::shell("sleep 3; exit 1");
    let mut sc = ServiceConfig::new(
        "service",
        a.service_instances,
        svc_cmd,
        res("cpus:1;mem:1024")?,
    );
    sc.relaunch_backoff_base_ms = 0;
    let service = Published::new(
        ServiceFramework::new(sc).map_err(|e| anyhow!("{e}"))?,
        |s, out| *out = Some(s.status()),
    );
    let service_status = service.out.clone();
    let m = vec!["master:5050".to_string()];
    let (svc, _svc_exit) = SchedulerDriver::start(transport.clone(), m.clone(), "agora", service)
        .map_err(|e| anyhow!("{e}"))?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_bat, bat_exit) =
        SchedulerDriver::start(transport.clone(), m, "agora", batch).map_err(|e| anyhow!("{e}"))?;
    let started = Instant::now();
    let mut samples = vec![];
    let mut bat_exit = Box::pin(bat_exit);
    let code = loop {
        tokio::select! {
            c = &mut bat_exit => break c.unwrap_or(1),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if let Some(s) = sample(&master).await {
            let p = latest(&batch_progress);
            let st = latest(&service_status);
            println!(
                "[{:>5.1}s] batch: {:>3}/{} finished, {:>2} running | service: {}/{} running, {} relaunches | cluster CPU {:>3.0}%",
                started.elapsed().as_secs_f64(), p.finished, p.total, p.running, st.running, st.wanted, st.relaunches,
                100.0 * s.used_cpus / total_cpus()
            );
            samples.push(s);
        }
        if started.elapsed() > Duration::from_secs(600) {
            break 1;
        }
    };
    let p = latest(&batch_progress);
    let st = latest(&service_status);
    let _ = svc
        .send(WithScheduler::new(
            |s: &mut Published<ServiceFramework, ServiceStatus>, ctx| s.inner.shutdown(ctx),
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    report(&p, &st, &samples, started.elapsed());
    Ok(if code == 0 && p.finished == p.total {
        0
    } else {
        1
    })
}

fn latest<T: Clone + Default>(m: &Mutex<Option<T>>) -> T {
    m.lock().ok().and_then(|g| g.clone()).unwrap_or_default()
}

fn res(s: &str) -> anyhow::Result<Resources> {
    Resources::parse(s).map_err(|e| anyhow!("{e}"))
}

fn total_cpus() -> f64 {
    AGENTS as f64 * 4.0
}

async fn start_cluster(
    transport: &Arc<dyn Transport>,
    dir: &std::path::Path,
) -> anyhow::Result<actix::Addr<agora_master::actor::MasterActor>> {
    let config = MasterConfig {
        cluster: "agora".into(),
        offer_timeout_ms: 5_000,
        ..MasterConfig::default()
    };
    let opts = MasterOptions {
        listen: "master:5050".into(),
        config,
        allocator: Box::new(DrfAllocator::new(DrfConfig::default()).map_err(|e| anyhow!("{e}"))?),
        allocator_config: AllocatorConfig {
            allocation_interval_ms: 200,
            ..AllocatorConfig::default()
        },
        epoch: super::epoch_now(),
        // In one process there is nothing to fail over to: no replicated registry.
        registry: None,
    };
    let master = start_master(opts, transport.clone()).await?;
    let containerizer = Arc::new(inproc::InProcessContainerizer::new(transport.clone()));
    for i in 1..=AGENTS {
        let config = AgentConfig {
            cluster: "agora".into(),
            hostname: format!("demo-agent-{i}"),
            endpoint: format!("agent{i}:5051"),
            resources: res(AGENT_RESOURCES)?,
            attributes: Default::default(),
            work_dir: dir.join(format!("agent{i}")).display().to_string(),
            command_executor_argv: vec!["in-process".into()],
            ..AgentConfig::default()
        };
        let opts = AgentOptions {
            config,
            listen: format!("agent{i}:5051"),
            masters: vec![master.bound.clone()],
            epoch: super::epoch_now(),
            checkpoint: None,
            disk_watch_interval_ms: 0,
            max_parallel_launches: 1,
            gc: None,
            usage_report_interval: None,
        };
        start_agent(opts, transport.clone(), containerizer.clone()).await?;
    }
    Ok(master.addr)
}

fn cpus_of(text: &str) -> f64 {
    Resources::parse(text)
        .map(|r| r.scalar_total("cpus").as_f64())
        .unwrap_or(0.0)
}

fn mem_of(text: &str) -> f64 {
    Resources::parse(text)
        .map(|r| r.scalar_total("mem").as_f64())
        .unwrap_or(0.0)
}

async fn sample(master: &actix::Addr<agora_master::actor::MasterActor>) -> Option<Sample> {
    let snap = master.send(GetSnapshot).await.ok()?;
    let mut per_fw = BTreeMap::new();
    for f in &snap.state.frameworks {
        per_fw.insert(f.name.clone(), cpus_of(&f.used));
    }
    let used_cpus = snap.state.agents.iter().map(|a| cpus_of(&a.used)).sum();
    let used_mem = snap.state.agents.iter().map(|a| mem_of(&a.used)).sum();
    Some(Sample {
        per_fw,
        used_cpus,
        used_mem,
    })
}

/// A one-line chart of a series in 0..=1 using block characters.
fn sparkline(v: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let step = (v.len() / 40).max(1);
    v.chunks(step)
        .map(|c| {
            let x = c.iter().sum::<f64>() / c.len() as f64;
            BARS[((x.clamp(0.0, 1.0)) * 7.0).round() as usize]
        })
        .collect()
}

fn report(
    p: &agora_frameworks::batch::Progress,
    st: &agora_frameworks::service::ServiceStatus,
    samples: &[Sample],
    wall: Duration,
) {
    let total = total_cpus();
    let series = |name: &str| -> Vec<f64> {
        samples
            .iter()
            .map(|s| s.per_fw.get(name).copied().unwrap_or(0.0) / total)
            .collect()
    };
    let avg = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let (bs, ss) = (series("batch"), series("service"));
    println!("\nframework  tasks run  finished  failed  relaunches  CPU share avg  share over time (0..100% of {total} CPUs)");
    println!(
        "batch      {:>9}  {:>8}  {:>6}  {:>10}  {:>12.0}%  {}",
        p.tasks_launched,
        p.finished,
        p.failed + p.lost + p.errored + p.killed,
        p.retries,
        100.0 * avg(&bs),
        sparkline(&bs)
    );
    println!(
        "service    {:>9}  {:>8}  {:>6}  {:>10}  {:>12.0}%  {}",
        st.relaunches + st.wanted as u64,
        0,
        st.relaunches,
        st.relaunches,
        100.0 * avg(&ss),
        sparkline(&ss)
    );
    let cpu: Vec<f64> = samples.iter().map(|s| s.used_cpus / total).collect();
    let mem: Vec<f64> = samples
        .iter()
        .map(|s| s.used_mem / (AGENTS as f64 * 4096.0))
        .collect();
    println!(
        "\ncluster utilization over {:.1}s: CPU {:.0}% average, memory {:.0}% average",
        wall.as_secs_f64(),
        100.0 * avg(&cpu),
        100.0 * avg(&mem)
    );
    println!("CPU over time: {}", sparkline(&cpu));
}
