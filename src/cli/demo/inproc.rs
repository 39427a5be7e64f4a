//! A containerizer for `agora demo`: the command executor runs as actors inside this process
//! (so it can reach its agent over the in-memory transport) while the tasks it starts are real
//! child processes. Only for the single-process demo; agents use real containerizers.

use agora_actors::sdk::command::serve_command_executor;
use agora_actors::sdk::executor::ExecutorEnv;
use agora_actors::transport::Transport;
use agora_isolation::{
    BoxFuture, ContainerConfig, Containerizer, IsolationError, Launched, Limits, Termination, Usage,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

struct Entry {
    done: watch::Receiver<Option<Termination>>,
    abort: tokio::task::AbortHandle,
    limits: Limits,
}

pub struct InProcessContainerizer {
    transport: Arc<dyn Transport>,
    entries: Mutex<HashMap<String, Entry>>,
}

impl InProcessContainerizer {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        InProcessContainerizer {
            transport,
            entries: Mutex::new(HashMap::new()),
        }
    }
    fn entry<T>(&self, id: &str, f: impl FnOnce(&Entry) -> T) -> Result<T, IsolationError> {
        let map = self.entries.lock().map_err(|_| poisoned(id))?;
        map.get(id)
            .map(f)
            .ok_or_else(|| IsolationError::NotFound(id.to_string()))
    }
}

fn poisoned(id: &str) -> IsolationError {
    IsolationError::Lost {
        id: id.to_string(),
        reason: "containerizer state lock poisoned".into(),
    }
}

fn ended(exit_code: Option<i32>, reason: Option<&str>, message: String) -> Termination {
    Termination {
        exit_code,
        signal: None,
        reason: reason.map(str::to_string),
        message,
    }
}

impl Containerizer for InProcessContainerizer {
    fn name(&self) -> &'static str {
        "in-process (demo)"
    }

    fn launch(&self, config: ContainerConfig) -> Result<Launched, IsolationError> {
        std::fs::create_dir_all(&config.sandbox).map_err(|source| IsolationError::Sandbox {
            path: config.sandbox.clone(),
            source,
        })?;
        let vars: HashMap<String, String> = config.env.iter().cloned().collect();
        let env = ExecutorEnv::from_lookup(|k| Ok(vars.get(k).cloned())).map_err(|e| {
            IsolationError::InvalidConfig {
                id: config.id.clone(),
                reason: format!("executor environment: {e}"),
            }
        })?;
        let (tx, rx) = watch::channel(None);
        let transport = self.transport.clone();
        let handle = actix_rt::spawn(async move {
            let t = match serve_command_executor(env, transport, false).await {
                Ok(0) => ended(Some(0), None, "executor exited".into()),
                Ok(c) => ended(Some(c), None, format!("executor exited with status {c}")),
                Err(e) => ended(Some(1), None, format!("executor failed: {e}")),
            };
            let _ = tx.send(Some(t));
        });
        let entry = Entry {
            done: rx,
            abort: handle.abort_handle(),
            limits: config.limits,
        };
        self.entries
            .lock()
            .map_err(|_| poisoned(&config.id))?
            .insert(config.id.clone(), entry);
        Ok(Launched {
            pid: std::process::id() as i32,
            sandbox: config.sandbox,
        })
    }

    fn wait(&self, id: &str) -> BoxFuture<Result<Termination, IsolationError>> {
        let rx = self.entry(id, |e| e.done.clone());
        Box::pin(async move {
            let mut rx = rx?;
            loop {
                if let Some(t) = rx.borrow().clone() {
                    return Ok(t);
                }
                if rx.changed().await.is_err() {
                    // The executor future was aborted by `kill`.
                    return Ok(ended(None, Some("killed"), "executor killed".into()));
                }
            }
        })
    }

    fn kill(&self, id: &str, grace: Duration) -> BoxFuture<Result<(), IsolationError>> {
        let found = self.entry(id, |e| (e.abort.clone(), e.done.clone()));
        Box::pin(async move {
            let (abort, mut done) = found?;
            // The agent has already asked the executor to shut down; give it the grace period.
            let _ = tokio::time::timeout(grace, async {
                while done.borrow().is_none() && done.changed().await.is_ok() {}
            })
            .await;
            abort.abort();
            Ok(())
        })
    }

    fn usage(&self, id: &str) -> Result<Usage, IsolationError> {
        let limits = self.entry(id, |e| e.limits)?;
        Ok(Usage {
            cpu_time_ms: 0,
            mem_rss_bytes: 0,
            mem_peak_bytes: 0,
            limits,
        })
    }

    fn destroy(&self, id: &str) -> Result<(), IsolationError> {
        let mut map = self.entries.lock().map_err(|_| poisoned(id))?;
        map.remove(id);
        Ok(())
    }

    fn containers(&self) -> Vec<String> {
        self.entries
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}
