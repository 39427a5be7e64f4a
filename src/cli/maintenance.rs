//! `agora maintenance [drain|down|up AGENT]`: an operator's maintenance of agents, through the
//! leading master's `GET/PUT /maintenance` (any master of the list may be given: a standby's
//! answer is followed to the leader).

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct MaintenanceArgs {
    /// The masters' HTTP addresses (HOST:PORT, comma-separated).
    #[arg(long, env = "AGORA_MASTER_HTTP", default_value = "127.0.0.1:5080")]
    pub master: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<MaintenanceAction>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum MaintenanceAction {
    /// Stop offering the agent; frameworks with tasks on it are told (with the window).
    Drain {
        agent: String,
        /// Planned start of the maintenance, wall-clock ms since the Unix epoch.
        #[arg(long, requires = "duration_ms")]
        start_ms: Option<u64>,
        /// Planned length of the maintenance, in ms.
        #[arg(long, requires = "start_ms")]
        duration_ms: Option<u64>,
    },
    /// Take the agent out: its tasks are lost (reason `maintenance`), it may not re-register.
    Down { agent: String },
    /// Back to normal: offered again; a down agent may re-register.
    Up { agent: String },
}

pub fn run(a: MaintenanceArgs) -> anyhow::Result<i32> {
    let masters = super::parse_masters(&a.master)?;
    let body = match &a.action {
        None => super::http_get::to_leader("GET", &masters, "/maintenance", None)?,
        Some(action) => {
            let req = request_body(action).to_string();
            super::http_get::to_leader("PUT", &masters, "/maintenance", Some(&req))?
        }
    };
    let v: Value = serde_json::from_str(&body).context("the master's /maintenance is not JSON")?;
    if a.json {
        println!("{v}");
    } else {
        print(&v);
    }
    Ok(0)
}

fn request_body(action: &MaintenanceAction) -> Value {
    match action {
        MaintenanceAction::Drain {
            agent,
            start_ms,
            duration_ms,
        } => {
            let window = match (start_ms, duration_ms) {
                (Some(s), Some(d)) => serde_json::json!({ "start_ms": s, "duration_ms": d }),
                _ => Value::Null,
            };
            serde_json::json!({ "agent_id": agent, "mode": "draining", "window": window })
        }
        MaintenanceAction::Down { agent } => {
            serde_json::json!({ "agent_id": agent, "mode": "down" })
        }
        MaintenanceAction::Up { agent } => serde_json::json!({ "agent_id": agent, "mode": "up" }),
    }
}

fn print(v: &Value) {
    let Some(map) = v.as_object() else {
        println!("{v}");
        return;
    };
    let num = |m: &Value, k: &str| {
        m.get("window")
            .and_then(|w| w.get(k))
            .and_then(Value::as_u64)
            .map_or("-".to_string(), |n| n.to_string())
    };
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|(agent, m)| {
            let mode = m.get("mode").and_then(Value::as_str).unwrap_or("-");
            vec![
                agent.clone(),
                mode.to_string(),
                num(m, "start_ms"),
                num(m, "duration_ms"),
            ]
        })
        .collect();
    super::query::print_table(&["AGENT", "MODE", "START_MS", "DURATION_MS"], &rows);
}
