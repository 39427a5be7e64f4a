//! `agora emulate-agents` (hidden, for scripts/bench-failover.sh): N emulated agents in one
//! process, each with its own connection to the real master over the real wire protocol. They
//! register, answer pings, follow the leader through a list of masters, and re-register with
//! their id and `--tasks-per-agent` running tasks after a failover. Prints one JSON line per
//! milestone (all registered, all re-registered) with a wall-clock timestamp in ms.

use agora_actors::codec::{decode_body, encode_frame};
use agora_actors::transport::DEFAULT_MAX_FRAME_BYTES;
use agora_actors::*;
use clap::Args;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Args, Debug, Clone)]
pub struct EmulateArgs {
    /// Comma-separated master transport addresses.
    #[arg(long)]
    pub master: String,
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    #[arg(long, default_value_t = 10)]
    pub tasks_per_agent: usize,
    #[arg(long, default_value = "agora")]
    pub cluster: String,
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

struct Counts {
    registered: AtomicUsize,
    reregistered: AtomicUsize,
    total: usize,
}

pub fn run(a: EmulateArgs) -> anyhow::Result<i32> {
    let masters = super::parse_masters(&a.master)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let counts = Arc::new(Counts {
            registered: AtomicUsize::new(0),
            reregistered: AtomicUsize::new(0),
            total: a.agents,
        });
        for i in 0..a.agents {
            let (m, c, a) = (masters.clone(), counts.clone(), a.clone());
            tokio::spawn(async move { agent(i, m, a, c).await });
        }
        std::future::pending::<()>().await;
    });
    Ok(0)
}

fn milestone(event: &str, n: usize) {
    println!(
        "{{\"event\":\"{event}\",\"agents\":{n},\"unix_ms\":{}}}",
        unix_ms()
    );
}

fn tasks_of(agent_id: &AgentId, i: usize, n: usize) -> Vec<TaskReport> {
    let fw = FrameworkId::new("fw-bench").expect("id");
    let res = Resources::parse("cpus:0.01;mem:1").expect("resources");
    (0..n)
        .map(|t| {
            let id = format!("t-{i}-{t}");
            TaskReport {
                framework_id: fw.clone(),
                executor_id: ExecutorId::new(id.clone()).expect("id"),
                task: TaskInfo {
                    container: None,
                    task_id: TaskId::new(id.clone()).expect("id"),
                    name: id,
                    agent_id: agent_id.clone(),
                    resources: res.clone(),
                    command: None,
                    executor: None,
                    data: vec![],
                },
                state: TaskState::Running,
            }
        })
        .collect()
}

/// One emulated agent: connect, (re-)register, answer pings; on loss, next master.
async fn agent(i: usize, masters: Vec<String>, a: EmulateArgs, counts: Arc<Counts>) {
    let mut id: Option<AgentId> = None;
    let mut idx = i % masters.len();
    loop {
        let r = session(i, &masters[idx], &a, &mut id, &counts).await;
        if let Err(e) = r {
            tracing::debug!(agent = i, error = %e, "session ended");
        }
        idx = (idx + 1) % masters.len();
        tokio::time::sleep(Duration::from_millis(50 + (i % 50) as u64)).await;
    }
}

async fn send(s: &mut TcpStream, m: &Message) -> anyhow::Result<()> {
    let f = encode_frame(m, DEFAULT_MAX_FRAME_BYTES)?;
    s.write_all(&f).await?;
    Ok(())
}

async fn recv(s: &mut TcpStream) -> anyhow::Result<Message> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await?;
    Ok(decode_body(&body)?)
}

async fn session(
    i: usize,
    addr: &str,
    a: &EmulateArgs,
    id: &mut Option<AgentId>,
    counts: &Counts,
) -> anyhow::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let name = format!("emu-{i}");
    send(
        &mut s,
        &Message::Hello(Hello::new(&a.cluster, NodeKind::Agent, &name)),
    )
    .await?;
    let resources = Resources::parse("cpus:64;mem:65536;disk:100000")?;
    let reg = match id {
        None => Message::RegisterAgent {
            hostname: name.clone(),
            endpoint: format!("127.0.0.1:{}", 40000 + i),
            resources,
            attributes: Attributes::new(),
        },
        Some(agent_id) => Message::ReregisterAgent {
            agent_id: agent_id.clone(),
            hostname: name.clone(),
            endpoint: format!("127.0.0.1:{}", 40000 + i),
            resources,
            attributes: Attributes::new(),
            tasks: tasks_of(agent_id, i, a.tasks_per_agent),
            frameworks: vec![FrameworkInfo {
                id: Some(FrameworkId::new("fw-bench")?),
                ..FrameworkInfo::new("bench")
            }],
        },
    };
    let first = id.is_none();
    loop {
        match recv(&mut s).await? {
            Message::Hello(_) => send(&mut s, &reg).await?,
            Message::AgentRegistered { agent_id, .. } => {
                *id = Some(agent_id);
                let c = if first {
                    &counts.registered
                } else {
                    &counts.reregistered
                };
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                // Every agent re-registers once per failover: each multiple of N ends one.
                if n % counts.total == 0 {
                    milestone(
                        if first {
                            "all_registered"
                        } else {
                            "all_reregistered"
                        },
                        n,
                    );
                }
            }
            Message::Ping => send(&mut s, &Message::Pong).await?,
            _ => {}
        }
    }
}
