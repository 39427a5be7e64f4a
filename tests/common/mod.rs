//! Shared harness for integration tests: real `agora` processes on 127.0.0.1, a raw protocol
//! client that plays a framework, and guards that clean everything up even when a test fails.
#![allow(dead_code)]

#[path = "../../src/cli/http_get.rs"]
pub mod http_get;
pub mod sched_child;

use agora_actors::codec::{decode_body, encode_frame};
use agora_actors::transport::DEFAULT_MAX_FRAME_BYTES;
use agora_actors::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CLUSTER: &str = "agora";

pub fn agora_bin() -> &'static str {
    env!("CARGO_BIN_EXE_agora")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A process that is killed (SIGKILL to its process group) when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Spawns `agora ARGS` with its output in `dir/NAME.log`.
pub fn spawn(dir: &Path, name: &str, args: &[String]) -> Proc {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(agora_bin())
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn agora");
    Proc {
        child,
        name: name.to_string(),
        log,
    }
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn get_json(http: &str, path: &str) -> Option<serde_json::Value> {
    http_get::get(http, path)
        .ok()
        .and_then(|b| serde_json::from_str(&b).ok())
}

/// The containerizer the harness's agents use: `AGORA_TEST_ISOLATION` (`auto`, the default,
/// picks libcontainer as root with cgroups, else posix; `libcontainer`; `posix`). CI runs the
/// cluster tests once with each.
pub fn test_isolation() -> String {
    std::env::var("AGORA_TEST_ISOLATION").unwrap_or_else(|_| "auto".into())
}

pub fn cgroups_required() -> bool {
    std::env::var("AGORA_REQUIRE_CGROUPS").as_deref() == Ok("1")
}

/// Kills whatever still runs in a test's own cgroup root (`agora-t...`), removes its
/// container cgroups and then the root itself, even when the test failed.
pub struct CgroupRootGuard(pub String);

impl CgroupRootGuard {
    /// A root no other test (or test process) uses.
    pub fn unique() -> CgroupRootGuard {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        CgroupRootGuard(format!("agora-t{}-{n}", std::process::id()))
    }

    /// Container cgroups below the root, in every hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for root in self.roots() {
            if let Ok(children) = std::fs::read_dir(&root) {
                out.extend(children.flatten().map(|c| c.path()).filter(|p| p.is_dir()));
            }
        }
        out
    }

    /// The root's directory in every hierarchy where it exists.
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut out = vec![];
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            out.push(Path::new("/sys/fs/cgroup").join(&self.0));
        }
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(ctrl.path().join(&self.0));
        }
        out.retain(|p| p.is_dir());
        out
    }
}

impl Drop for CgroupRootGuard {
    fn drop(&mut self) {
        for _ in 0..100 {
            let dirs = self.dirs();
            if dirs.is_empty() {
                break;
            }
            for d in dirs {
                let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: only processes inside the test's own cgroup root.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = std::fs::remove_dir(&d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for root in self.roots() {
            let _ = std::fs::remove_dir(&root);
        }
    }
}

/// A master and agents as real processes, plus every executor process group they started
/// (found through the agents' /state), all killed on drop.
pub struct Cluster {
    /// The agents' cgroup root; emptied and removed on drop (after the processes are killed,
    /// before the directory goes).
    pub cgroups: CgroupRootGuard,
    pub dir: tempfile::TempDir,
    pub master: Proc,
    pub master_addr: String,
    pub master_http: String,
    pub agents: Vec<(Proc, String)>,
    pub executor_pids: Vec<i32>,
}

pub struct ClusterOpts {
    pub agents: usize,
    pub agent_resources: String,
    pub master_flags: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            agents: 2,
            agent_resources: "cpus:4;mem:4096;disk:10000;ports:[31000-32000]".into(),
            master_flags: vec![],
        }
    }
}

impl Cluster {
    pub fn start(opts: ClusterOpts) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let master_addr = format!("127.0.0.1:{}", free_port());
        let master_http = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "master".to_string(),
            "--listen".into(),
            master_addr.clone(),
            "--http".into(),
            master_http.clone(),
            "--work-dir".into(),
            dir.path().join("master").display().to_string(),
        ];
        args.extend(opts.master_flags.iter().cloned());
        let master = spawn(dir.path(), "master", &args);
        let mut c = Cluster {
            dir,
            master,
            master_addr,
            master_http,
            agents: vec![],
            executor_pids: vec![],
            cgroups: CgroupRootGuard::unique(),
        };
        c.wait_health(&c.master_http.clone());
        for i in 0..opts.agents {
            c.add_agent(i, &opts.agent_resources, &format!("rack:r{}", i % 2));
        }
        let n = opts.agents;
        wait_until("agents registered", Duration::from_secs(20), || {
            let s = get_json(&c.master_http, "/state")?;
            (s["agents"].as_array()?.len() == n).then_some(())
        });
        c
    }

    pub fn add_agent(&mut self, i: usize, resources: &str, attributes: &str) {
        let http = format!("127.0.0.1:{}", free_port());
        let args = vec![
            "agent".to_string(),
            "--master".into(),
            self.master_addr.clone(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--http".into(),
            http.clone(),
            "--work-dir".into(),
            self.dir
                .path()
                .join(format!("agent{i}"))
                .display()
                .to_string(),
            "--resources".into(),
            resources.to_string(),
            "--attributes".into(),
            attributes.to_string(),
            "--isolation".into(),
            test_isolation(),
            "--cgroup-root".into(),
            self.cgroups.0.clone(),
        ];
        let p = spawn(self.dir.path(), &format!("agent{i}"), &args);
        self.wait_health(&http);
        self.check_containerizer(&http);
        self.agents.push((p, http));
    }

    /// Under AGORA_REQUIRE_CGROUPS=1 an agent not told to use posix must be running the
    /// libcontainer containerizer: the cluster tests then exercise real containers.
    fn check_containerizer(&self, http: &str) {
        if !cgroups_required() || test_isolation() == "posix" {
            return;
        }
        let s = get_json(http, "/state").expect("agent /state");
        assert_eq!(
            s["containerizer"].as_str(),
            Some("libcontainer"),
            "AGORA_REQUIRE_CGROUPS=1 but the agent does not use libcontainer"
        );
    }

    fn wait_health(&self, http: &str) {
        wait_until(&format!("{http}/health"), Duration::from_secs(20), || {
            http_get::get(http, "/health").ok()
        });
    }

    pub fn state(&self) -> serde_json::Value {
        get_json(&self.master_http, "/state").expect("master /state")
    }

    /// Remembers the executor pids an agent reports, so they are killed at the end even if the
    /// agent is gone by then.
    pub fn note_executors(&mut self) {
        for (_, http) in &self.agents {
            if let Some(s) = get_json(http, "/state") {
                for e in s["executors"].as_array().cloned().unwrap_or_default() {
                    if let Some(pid) = e["pid"].as_i64() {
                        if !self.executor_pids.contains(&(pid as i32)) {
                            self.executor_pids.push(pid as i32);
                        }
                    }
                }
            }
        }
    }

    /// Runs `agora ARGS` (with `--master` added) to completion; returns (exit code, output).
    pub fn run_cli(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(agora_bin())
            .args(args)
            .output()
            .expect("run agora");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    pub fn logs(&self) -> String {
        let mut s = format!("--- master\n{}", self.master.log_text());
        for (p, _) in &self.agents {
            s.push_str(&format!("--- {}\n{}", p.name, p.log_text()));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.note_executors();
        // Agents first: a live agent would start containers again while they are removed.
        for (p, _) in &mut self.agents {
            p.kill9();
        }
        for pid in &self.executor_pids {
            // Executors run in their own process group (pgid == pid): kill the whole group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

/// A framework speaking the wire protocol by hand over a blocking socket: lets tests do exactly
/// what they mean (ignore offers, send malformed frames...).
pub struct RawClient {
    pub stream: TcpStream,
    pub framework_id: Option<FrameworkId>,
    pending: Vec<Message>,
}

impl RawClient {
    pub fn connect(addr: &str, kind: NodeKind, cluster: &str) -> RawClient {
        RawClient::connect_with(addr, Hello::new(cluster, kind, "raw-test-client"))
    }

    pub fn connect_with(addr: &str, hello: Hello) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).ok();
        let mut c = RawClient {
            stream,
            framework_id: None,
            pending: vec![],
        };
        c.send(&Message::Hello(hello));
        c
    }

    pub fn send(&mut self, m: &Message) {
        let frame = encode_frame(m, DEFAULT_MAX_FRAME_BYTES).expect("encode");
        self.stream.write_all(&frame).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Next message within `timeout`, or None (timeout or closed).
    pub fn recv(&mut self, timeout: Duration) -> Option<Message> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        self.stream.set_read_timeout(Some(timeout)).ok();
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let n = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; n];
        self.stream.read_exact(&mut body).ok()?;
        decode_body(&body).ok()
    }

    /// Waits for a message matching `f`, keeping the others for later `recv`s.
    pub fn expect<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Message) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut skipped = vec![];
        let mut kept = std::mem::take(&mut self.pending).into_iter();
        let found = loop {
            let next = match kept.next() {
                Some(m) => Some(m),
                None => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        None
                    } else {
                        self.recv(left)
                    }
                }
            };
            match next {
                None => break None,
                Some(m) => match f(&m) {
                    Some(v) => break Some(v),
                    None => skipped.push(m),
                },
            }
        };
        skipped.extend(kept);
        self.pending = skipped;
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; saw {:?}",
                self.pending.iter().map(|m| m.kind()).collect::<Vec<_>>()
            )
        })
    }

    /// Connects as a scheduler and subscribes; returns the framework id.
    pub fn subscribe(addr: &str, name: &str) -> RawClient {
        RawClient::subscribe_with(addr, FrameworkInfo::new(name))
    }

    /// Subscribes with a given framework info (an id set = re-subscribe / failover).
    pub fn subscribe_with(addr: &str, info: FrameworkInfo) -> RawClient {
        let mut c = RawClient::connect(addr, NodeKind::Scheduler, CLUSTER);
        c.expect("hello", Duration::from_secs(5), |m| {
            matches!(m, Message::Hello(_)).then_some(())
        });
        c.send(&Message::Subscribe { framework: info });
        let id = c.expect("subscribed", Duration::from_secs(5), |m| match m {
            Message::Subscribed { framework_id, .. } => Some(framework_id.clone()),
            _ => None,
        });
        c.framework_id = Some(id);
        c
    }

    pub fn fid(&self) -> FrameworkId {
        self.framework_id.clone().expect("subscribed")
    }

    pub fn next_offers(&mut self, timeout: Duration) -> Vec<Offer> {
        self.expect("offers", timeout, |m| match m {
            Message::Offers { offers } => Some(offers.clone()),
            _ => None,
        })
    }

    /// Waits for an update of `task` in `state`, acknowledging every update seen meanwhile.
    pub fn wait_update(&mut self, task: &str, state: TaskState, timeout: Duration) -> TaskStatus {
        let fid = self.fid();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let st = self.expect(&format!("{task} {state:?}"), left, |m| match m {
                Message::Update { status } => Some(status.clone()),
                _ => None,
            });
            if let (Some(uuid), Some(agent_id)) = (st.uuid, st.agent_id.clone()) {
                self.send(&Message::Acknowledge {
                    framework_id: fid.clone(),
                    agent_id,
                    task_id: st.task_id.clone(),
                    uuid,
                });
            }
            if st.task_id.as_str() == task && st.state == state {
                return st;
            }
            if st.task_id.as_str() == task && st.state.is_terminal() {
                panic!(
                    "{task} ended {:?} ({:?}: {}) instead of {state:?}",
                    st.state, st.reason, st.message
                );
            }
        }
    }
}

pub fn task(id: &str, agent: &AgentId, resources: &str, cmd: &str) -> TaskInfo {
    TaskInfo {
        container: None,
        task_id: TaskId::new(id).unwrap(),
        name: id.to_string(),
        agent_id: agent.clone(),
        resources: Resources::parse(resources).unwrap(),
        command: Some(CommandInfo::shell(cmd)),
        executor: None,
        data: vec![],
    }
}
