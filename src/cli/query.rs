//! `agora state|agents|frameworks|tasks`: read the master's `/state` over HTTP.

use anyhow::Context as _;
use clap::Args;
use serde_json::Value;

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// The master's HTTP address (HOST:PORT); comma-separated list allowed, the first that
    /// answers is used.
    #[arg(long, env = "AGORA_MASTER_HTTP", default_value = "127.0.0.1:5080")]
    pub master: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// (tasks) Also list recently completed tasks.
    #[arg(long)]
    pub all: bool,
}

/// The leader's `/state`: the first master that answers tells who leads; a standby's answer is
/// followed to the leader (its own view of the cluster is empty).
pub fn fetch_state(masters: &str) -> anyhow::Result<Value> {
    let mut last = None;
    for m in super::parse_masters(masters)? {
        match super::http_get::get(&m, "/state") {
            Ok(body) => {
                let v: Value =
                    serde_json::from_str(&body).context("the master's /state is not JSON")?;
                return follow_leader(&m, v);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no master answered")))
}

fn follow_leader(asked: &str, v: Value) -> anyhow::Result<Value> {
    let role = v
        .get("raft_role")
        .and_then(|r| r.as_str())
        .unwrap_or("leader");
    if role == "leader" {
        return Ok(v);
    }
    let Some(leader) = v.get("leader").and_then(|l| l.as_str()) else {
        anyhow::bail!("{asked} is a standby ({role}) and knows no leader yet; try again shortly");
    };
    let body = super::http_get::get(leader, "/state")
        .with_context(|| format!("{asked} says the leader is {leader}"))?;
    serde_json::from_str(&body).context("the leader's /state is not JSON")
}

pub fn state(a: QueryArgs) -> anyhow::Result<i32> {
    let v = fetch_state(&a.master)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Prints rows as an aligned table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", c, width = w[i]))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn list(a: QueryArgs, key: &str, header: &[&str], cols: &[&str]) -> anyhow::Result<i32> {
    let v = fetch_state(&a.master)?;
    let array = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_array())
            .cloned()
            .unwrap_or_default()
    };
    let mut items = array(key);
    if a.all && key == "tasks" {
        items.extend(array("completed_tasks"));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| cols.iter().map(|c| s(it, c)).collect())
        .collect();
    print_table(header, &rows);
    Ok(0)
}

pub fn agents(a: QueryArgs) -> anyhow::Result<i32> {
    list(
        a,
        "agents",
        &[
            "ID",
            "HOSTNAME",
            "ENDPOINT",
            "CONNECTED",
            "TOTAL",
            "USED",
            "OFFERED",
        ],
        &[
            "id",
            "hostname",
            "endpoint",
            "connected",
            "total",
            "used",
            "offered",
        ],
    )
}

pub fn frameworks(a: QueryArgs) -> anyhow::Result<i32> {
    list(
        a,
        "frameworks",
        &["ID", "NAME", "ROLE", "ACTIVE", "TASKS", "USED", "OFFERED"],
        &[
            "id",
            "name",
            "role",
            "active",
            "active_tasks",
            "used",
            "offered",
        ],
    )
}

pub fn tasks(a: QueryArgs) -> anyhow::Result<i32> {
    list(
        a,
        "tasks",
        &["ID", "NAME", "FRAMEWORK", "AGENT", "STATE", "RESOURCES"],
        &[
            "id",
            "name",
            "framework_id",
            "agent_id",
            "state",
            "resources",
        ],
    )
}
