//! The posix containerizer against real processes. Every test owns a `Fixture` whose drop
//! SIGKILLs whatever it launched, so a failing assertion never leaves processes behind, and
//! whose temporary directory holds all sandboxes.

use std::collections::BTreeSet;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora_isolation::{
    ContainerConfig, Containerizer, IsolationError, Limits, PosixContainerizer, PosixOptions,
    DEFAULT_PATH, REASON_EXIT_STATUS_UNKNOWN, REASON_KILLED,
};

/// Upper bound for anything a test awaits, so a bug fails the test instead of hanging it.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    containerizers: Vec<Arc<PosixContainerizer>>,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with_options(PosixOptions {
            recovery_poll_interval_ms: 20,
            ..PosixOptions::default()
        })
    }

    fn with_options(options: PosixOptions) -> Self {
        Fixture {
            containerizers: vec![Arc::new(PosixContainerizer::with_options(options))],
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn cz(&self) -> &PosixContainerizer {
        &self.containerizers[0]
    }

    /// A second containerizer, as a restarted agent would create.
    fn restarted(&mut self) -> Arc<PosixContainerizer> {
        let cz = Arc::new(PosixContainerizer::with_options(PosixOptions {
            recovery_poll_interval_ms: 20,
            ..PosixOptions::default()
        }));
        self.containerizers.push(cz.clone());
        cz
    }

    fn sandbox(&self, id: &str) -> PathBuf {
        self.dir.path().join("sandboxes").join(id)
    }

    fn config(&self, id: &str, argv: &[&str]) -> ContainerConfig {
        ContainerConfig {
            id: id.to_string(),
            sandbox: self.sandbox(id),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("AGORA_TEST".into(), "1".into())],
            limits: Limits {
                cpus_milli: 500,
                mem_mb: 64,
                disk_mb: 100,
            },
            user: None,
            isolated_network: false,
            io_weight: None,
            rootfs: None,
        }
    }

    fn sh(&self, id: &str, script: &str) -> ContainerConfig {
        self.config(id, &["/bin/sh", "-c", script])
    }

    /// Launches a shell script and waits until it printed `ready` (so its traps are set).
    async fn launch_ready(&self, id: &str, script: &str) -> i32 {
        let launched = self.cz().launch(self.sh(id, script)).expect("launch");
        wait_for_file(&self.sandbox(id).join("stdout"), "ready").await;
        launched.pid
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for cz in &self.containerizers {
            cz.kill_all_now();
        }
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TEST_TIMEOUT, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {TEST_TIMEOUT:?}"),
    }
}

async fn wait_for_file(path: &Path, needle: &str) {
    within("waiting for output", async {
        loop {
            if fs::read_to_string(path).is_ok_and(|text| text.contains(needle)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// (state, ppid, comm) of a process, or None when it does not exist.
fn proc_state(pid: i32) -> Option<(char, i32, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = text.get(text.find('(')? + 1..text.rfind(')')?)?.to_string();
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// Dead: gone, or a zombie waiting for whoever it was reparented to.
fn is_dead(pid: i32) -> bool {
    proc_state(pid).is_none_or(|(state, _, _)| state == 'Z')
}

async fn wait_until_dead(pid: i32) {
    within("waiting for a process to die", async {
        while !is_dead(pid) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test]
async fn exit_codes_pass_through() {
    let fx = Fixture::new();
    for (id, code) in [("zero", 0), ("three", 3)] {
        fx.cz()
            .launch(fx.sh(id, &format!("exit {code}")))
            .expect("launch");
        let t = within("wait", fx.cz().wait(id)).await.expect("wait");
        assert_eq!(t.exit_code, Some(code), "{t:?}");
        assert_eq!(t.signal, None);
        assert_eq!(t.reason, None);
        assert_eq!(t.succeeded(), code == 0);
        assert_eq!(t.message, format!("exited with code {code}"));
    }
}

#[tokio::test]
async fn output_lands_in_sandbox_files() {
    let fx = Fixture::new();
    let launched = fx
        .cz()
        .launch(fx.sh("out", "echo to-stdout; echo to-stderr >&2"))
        .expect("launch");
    assert_eq!(launched.sandbox, fx.sandbox("out"));
    within("wait", fx.cz().wait("out")).await.expect("wait");
    let read = |name: &str| fs::read_to_string(fx.sandbox("out").join(name)).expect(name);
    assert_eq!(read("stdout"), "to-stdout\n");
    assert_eq!(read("stderr"), "to-stderr\n");
}

#[tokio::test]
async fn environment_is_exactly_the_configured_one_and_cwd_is_the_sandbox() {
    let fx = Fixture::new();
    let mut config = fx.config("env", &["env"]);
    config.env = vec![
        ("FOO".into(), "bar baz".into()),
        ("EMPTY".into(), "".into()),
    ];
    fx.cz().launch(config).expect("launch");
    within("wait", fx.cz().wait("env")).await.expect("wait");
    let printed = fs::read_to_string(fx.sandbox("env").join("stdout")).expect("stdout");
    let lines: BTreeSet<&str> = printed.lines().collect();
    let path_line = format!("PATH={DEFAULT_PATH}");
    let expected: BTreeSet<&str> = ["FOO=bar baz", "EMPTY=", path_line.as_str()].into();
    assert_eq!(lines, expected);

    // A PATH of its own is kept, not replaced or duplicated.
    let mut config = fx.config("own-path", &["/usr/bin/env"]);
    config.env = vec![("PATH".into(), "/bin:/usr/bin".into())];
    fx.cz().launch(config).expect("launch");
    within("wait", fx.cz().wait("own-path"))
        .await
        .expect("wait");
    let printed = fs::read_to_string(fx.sandbox("own-path").join("stdout")).expect("stdout");
    assert_eq!(printed, "PATH=/bin:/usr/bin\n");

    fx.cz().launch(fx.sh("cwd", "pwd -P")).expect("launch");
    within("wait", fx.cz().wait("cwd")).await.expect("wait");
    let printed = fs::read_to_string(fx.sandbox("cwd").join("stdout")).expect("stdout");
    let sandbox = fs::canonicalize(fx.sandbox("cwd")).expect("canonicalize");
    assert_eq!(printed.trim_end(), sandbox.to_str().expect("utf-8 path"));
}

#[tokio::test]
async fn main_process_leads_its_own_session_and_group() {
    let fx = Fixture::new();
    let pid = fx
        .launch_ready("session", "echo ready; exec sleep 30")
        .await;
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let fields: Vec<&str> = text[text.rfind(')').expect(")") + 1..]
        .split_whitespace()
        .collect();
    assert_eq!(fields[2], pid.to_string(), "pgid");
    assert_eq!(fields[3], pid.to_string(), "session");
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let nofile = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("nofile line");
    assert!(
        nofile.split_whitespace().any(|w| w.parse::<u64>().is_ok()),
        "{nofile}"
    );
}

#[tokio::test]
async fn kill_lets_a_term_trapping_process_exit_gracefully() {
    let fx = Fixture::new();
    fx.launch_ready(
        "graceful",
        "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    )
    .await;
    let started = Instant::now();
    within("kill", fx.cz().kill("graceful", Duration::from_secs(5)))
        .await
        .expect("kill");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for the whole grace period"
    );
    let t = within("wait", fx.cz().wait("graceful"))
        .await
        .expect("wait");
    assert_eq!(t.exit_code, Some(7), "{t:?}");
    assert_eq!(t.signal, None);
    assert_eq!(t.reason.as_deref(), Some(REASON_KILLED));
    assert!(!t.succeeded());
    let out = fs::read_to_string(fx.sandbox("graceful").join("stdout")).expect("stdout");
    assert!(out.contains("bye"), "{out}");
}

#[tokio::test]
async fn kill_sigkills_a_process_ignoring_sigterm_after_the_grace() {
    let fx = Fixture::new();
    fx.launch_ready(
        "stubborn",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    )
    .await;
    let grace = Duration::from_millis(300);
    let started = Instant::now();
    within("kill", fx.cz().kill("stubborn", grace))
        .await
        .expect("kill");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= grace,
        "SIGKILL before the grace ended: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let t = within("wait", fx.cz().wait("stubborn"))
        .await
        .expect("wait");
    assert_eq!(t.signal, Some(libc::SIGKILL), "{t:?}");
    assert_eq!(t.exit_code, None);
    assert_eq!(t.reason.as_deref(), Some(REASON_KILLED));
}

#[tokio::test]
async fn kill_reaches_grandchildren_in_the_group() {
    let fx = Fixture::new();
    // The grandchild ignores SIGTERM and outlives the main process's graceful exit; it must
    // still die with the container.
    fx.launch_ready(
        "family",
        "(trap '' TERM; exec sleep 30) & echo $! > grandchild.pid; \
         sleep 30 & echo $! > child.pid; \
         trap 'exit 0' TERM; echo ready; wait",
    )
    .await;
    let read_pid = |name: &str| -> i32 {
        let text = fs::read_to_string(fx.sandbox("family").join(name)).expect(name);
        text.trim().parse().expect("pid")
    };
    let (grandchild, child) = (read_pid("grandchild.pid"), read_pid("child.pid"));
    assert!(!is_dead(grandchild) && !is_dead(child));
    let started = Instant::now();
    within("kill", fx.cz().kill("family", Duration::from_secs(5)))
        .await
        .expect("kill");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "main did not exit on SIGTERM"
    );
    let t = within("wait", fx.cz().wait("family")).await.expect("wait");
    assert_eq!(t.exit_code, Some(0), "{t:?}");
    wait_until_dead(grandchild).await;
    wait_until_dead(child).await;
}

#[tokio::test]
async fn leftover_processes_die_when_the_main_process_exits_by_itself() {
    let fx = Fixture::new();
    fx.cz()
        .launch(fx.sh("leftover", "sleep 30 & echo $! > bg.pid; exit 4"))
        .expect("launch");
    let t = within("wait", fx.cz().wait("leftover"))
        .await
        .expect("wait");
    assert_eq!(t.exit_code, Some(4));
    assert_eq!(t.reason, None);
    let text = fs::read_to_string(fx.sandbox("leftover").join("bg.pid")).expect("bg.pid");
    wait_until_dead(text.trim().parse().expect("pid")).await;
}

#[tokio::test]
async fn wait_is_repeatable_and_immediate_after_exit() {
    let fx = Fixture::new();
    fx.cz()
        .launch(fx.sh("twice", "sleep 0.2; exit 5"))
        .expect("launch");
    // Two waiters before the exit see the same result...
    let (first, second) = within("waits", async {
        tokio::join!(fx.cz().wait("twice"), fx.cz().wait("twice"))
    })
    .await;
    let first = first.expect("first wait");
    assert_eq!(first, second.expect("second wait"));
    assert_eq!(first.exit_code, Some(5));
    // ...and so do later ones, at once.
    for _ in 0..2 {
        let again = tokio::time::timeout(Duration::from_millis(100), fx.cz().wait("twice"))
            .await
            .expect("wait after exit must be immediate")
            .expect("wait");
        assert_eq!(again, first);
    }
}

#[tokio::test]
async fn usage_shows_cpu_time_of_a_busy_loop_growing() {
    let fx = Fixture::new();
    fx.launch_ready("busy", "echo ready; while :; do :; done")
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let before = fx.cz().usage("busy").expect("usage");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = fx.cz().usage("busy").expect("usage");
    assert!(
        after.cpu_time_ms > before.cpu_time_ms,
        "cpu did not grow: {before:?} -> {after:?}"
    );
    assert!(after.cpu_time_ms >= 100, "{after:?}");
    assert!(after.mem_rss_bytes > 0, "{after:?}");
    assert!(after.mem_peak_bytes >= after.mem_rss_bytes, "{after:?}");
    assert_eq!(after.limits, fx.config("busy", &["x"]).limits);

    within("kill", fx.cz().kill("busy", Duration::from_millis(100)))
        .await
        .expect("kill");
    let last = fx.cz().usage("busy").expect("usage after exit");
    assert!(
        last.cpu_time_ms >= after.cpu_time_ms,
        "cpu went backwards: {last:?}"
    );
    assert_eq!(last.mem_rss_bytes, 0);
    assert!(last.mem_peak_bytes > 0);
}

/// Zombie children of this test process forked by the current thread (a failed exec leaves
/// the fork with the thread's name), which would mean a failed launch was never reaped.
fn zombies_from_this_thread() -> Vec<i32> {
    let me = std::process::id() as i32;
    let comm = fs::read_to_string("/proc/thread-self/comm").expect("comm");
    let comm = comm.trim_end();
    let mut zombies = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(('Z', ppid, name)) = proc_state(pid) {
            if ppid == me && name == comm {
                zombies.push(pid);
            }
        }
    }
    zombies
}

#[tokio::test]
async fn launching_a_missing_binary_is_a_clear_error() {
    let fx = Fixture::new();
    for (id, program) in [
        ("abs", "/nonexistent/agora-no-such-binary"),
        ("bare", "agora-no-such-binary"),
    ] {
        let err = fx
            .cz()
            .launch(fx.config(id, &[program, "arg"]))
            .expect_err("missing binary must fail");
        match &err {
            IsolationError::Spawn {
                program: p, source, ..
            } => {
                assert_eq!(p, program);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("expected Spawn, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(program) && text.contains(id), "{text}");
    }
    assert!(fx.cz().containers().is_empty());
    assert_eq!(zombies_from_this_thread(), Vec::<i32>::new());
    // The id is free again for a launch that works.
    fx.cz().launch(fx.sh("abs", "exit 0")).expect("relaunch");
}

#[tokio::test]
async fn destroy_forgets_only_exited_containers() {
    let fx = Fixture::new();
    fx.cz()
        .launch(fx.sh("gone", "exec sleep 30"))
        .expect("launch");
    assert_eq!(fx.cz().containers(), vec!["gone".to_string()]);
    assert!(matches!(
        fx.cz().destroy("gone"),
        Err(IsolationError::StillRunning(_))
    ));
    within("kill", fx.cz().kill("gone", Duration::from_millis(200)))
        .await
        .expect("kill");
    fx.cz().destroy("gone").expect("destroy");
    assert!(fx.cz().containers().is_empty());
    assert!(matches!(
        within("wait", fx.cz().wait("gone")).await,
        Err(IsolationError::NotFound(_))
    ));
    assert!(matches!(
        fx.cz().usage("gone"),
        Err(IsolationError::NotFound(_))
    ));
    assert!(matches!(
        fx.cz().destroy("gone"),
        Err(IsolationError::NotFound(_))
    ));
    assert!(
        fx.sandbox("gone").join("stdout").exists(),
        "sandbox must stay"
    );
    // The id can be used again, and the new run appends to the same output files.
    fx.cz()
        .launch(fx.sh("gone", "echo again"))
        .expect("relaunch");
    within("wait", fx.cz().wait("gone")).await.expect("wait");
}

#[tokio::test]
async fn killing_an_exited_container_is_ok() {
    let fx = Fixture::new();
    fx.cz().launch(fx.sh("done", "exit 0")).expect("launch");
    let t = within("wait", fx.cz().wait("done")).await.expect("wait");
    within("kill", fx.cz().kill("done", Duration::from_secs(5)))
        .await
        .expect("kill of an exited container");
    // Killing afterwards does not rewrite history.
    let again = within("wait", fx.cz().wait("done")).await.expect("wait");
    assert_eq!(again, t);
    assert_eq!(again.reason, None);
    assert!(matches!(
        within("kill", fx.cz().kill("nope", Duration::ZERO)).await,
        Err(IsolationError::NotFound(_))
    ));
}

#[tokio::test]
async fn bad_launches_are_refused_without_side_effects() {
    let fx = Fixture::with_options(PosixOptions {
        max_containers: 1,
        ..PosixOptions::default()
    });
    let mut relative = fx.sh("rel", "exit 0");
    relative.sandbox = PathBuf::from("relative/sandbox");
    assert!(matches!(
        fx.cz().launch(relative),
        Err(IsolationError::InvalidConfig { .. })
    ));
    assert!(matches!(
        fx.cz().launch(fx.sh("../escape", "exit 0")),
        Err(IsolationError::InvalidConfig { .. })
    ));

    let file = fx.dir.path().join("a-file");
    fs::write(&file, "x").expect("write");
    let mut under_file = fx.sh("under-file", "exit 0");
    under_file.sandbox = file.join("sandbox");
    assert!(matches!(
        fx.cz().launch(under_file),
        Err(IsolationError::Sandbox { .. })
    ));

    let mut unknown_user = fx.sh("user", "exit 0");
    unknown_user.user = Some("agora-no-such-user".into());
    assert!(matches!(
        fx.cz().launch(unknown_user),
        Err(IsolationError::User { .. })
    ));

    fx.cz()
        .launch(fx.sh("one", "exec sleep 30"))
        .expect("launch");
    assert!(matches!(
        fx.cz().launch(fx.sh("one", "exit 0")),
        Err(IsolationError::AlreadyExists(_))
    ));
    assert!(matches!(
        fx.cz().launch(fx.sh("two", "exit 0")),
        Err(IsolationError::TooManyContainers { limit: 1 })
    ));
    assert_eq!(fx.cz().containers(), vec!["one".to_string()]);
}

#[tokio::test]
async fn runs_as_the_configured_user() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("skipped: no user nobody");
        return;
    };
    let fx = Fixture::new();
    let mut config = fx.config("as-nobody", &["id", "-u"]);
    config.user = Some("nobody".into());
    fx.cz().launch(config).expect("launch");
    let t = within("wait", fx.cz().wait("as-nobody"))
        .await
        .expect("wait");
    assert_eq!(t.exit_code, Some(0), "{t:?}");
    let out = fs::read_to_string(fx.sandbox("as-nobody").join("stdout")).expect("stdout");
    assert_eq!(out.trim(), nobody.uid.to_string());
    let meta = fs::metadata(fx.sandbox("as-nobody")).expect("sandbox");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        nobody.uid.as_raw()
    );
}

#[tokio::test]
async fn a_restarted_agent_recovers_running_containers_and_spots_stale_ones() {
    let mut fx = Fixture::new();
    fx.launch_ready(
        "survivor",
        "trap 'exit 9' TERM; echo ready; while :; do sleep 0.05; done",
    )
    .await;
    fx.launch_ready("bystander", "echo ready; exec sleep 30")
        .await;
    let survivor = fx.cz().checkpoint("survivor").expect("checkpoint");
    // A checkpoint whose pid now belongs to another process (here: the bystander, with a
    // different start time) must be recognised as stale and that process left alone.
    let mut stale = fx.cz().checkpoint("bystander").expect("checkpoint");
    stale.id = "stale".into();
    stale.start_ticks += 1;
    let bystander_pid = stale.pid;

    let agent2 = fx.restarted();
    let recovered = agent2
        .recover(vec![survivor.clone(), stale])
        .expect("recover");
    let summary: Vec<(&str, bool)> = recovered
        .iter()
        .map(|r| (r.id.as_str(), r.running))
        .collect();
    assert_eq!(summary, vec![("survivor", true), ("stale", false)]);
    assert_eq!(
        agent2.containers(),
        vec!["stale".to_string(), "survivor".to_string()]
    );

    let t = tokio::time::timeout(Duration::from_millis(100), agent2.wait("stale"))
        .await
        .expect("stale container's wait is immediate")
        .expect("wait");
    assert_eq!(t.reason.as_deref(), Some(REASON_EXIT_STATUS_UNKNOWN));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!is_dead(bystander_pid), "an unrelated process was killed");

    assert!(agent2.usage("survivor").expect("usage").mem_rss_bytes > 0);
    within("kill", agent2.kill("survivor", Duration::from_secs(5)))
        .await
        .expect("kill recovered");
    let t = within("wait", agent2.wait("survivor")).await.expect("wait");
    assert_eq!(t.reason.as_deref(), Some(REASON_KILLED));
    // The original parent still sees the real exit status.
    let real = within("wait", fx.cz().wait("survivor"))
        .await
        .expect("wait");
    assert_eq!(real.exit_code, Some(9));
    // Duplicates of known ids are not recovered twice.
    assert!(agent2.recover(vec![survivor]).expect("recover").is_empty());
}
