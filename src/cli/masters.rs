//! `agora masters`: who leads, each master's raft figures, each peer as the leader sees it.

use super::query::{print_table, QueryArgs};
use serde_json::Value;

fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

pub fn run(a: QueryArgs) -> anyhow::Result<i32> {
    let masters = super::parse_masters(&a.master)?;
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for m in &masters {
        let row = match super::http_get::get(m, "/state")
            .ok()
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
        {
            Some(v) => {
                let raft = v.get("raft").cloned().unwrap_or(Value::Null);
                let row = vec![
                    m.clone(),
                    text(raft.get("node_id")),
                    text(v.get("raft_role")),
                    text(v.get("leader")),
                    text(raft.get("term")),
                    text(raft.get("commit_index")),
                    text(raft.get("applied_index")),
                    text(raft.get("leader_changes")),
                ];
                docs.push(
                    serde_json::json!({ "http": m, "raft": raft, "leader": v.get("leader") }),
                );
                row
            }
            None => {
                docs.push(serde_json::json!({ "http": m, "error": "not answering" }));
                let mut r = vec![m.clone(), "-".into(), "unreachable".into()];
                r.resize(8, "-".into());
                r
            }
        };
        rows.push(row);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&docs)?);
        return Ok(0);
    }
    print_table(
        &[
            "HTTP",
            "ID",
            "ROLE",
            "LEADER",
            "TERM",
            "COMMIT",
            "APPLIED",
            "LEADER_CHANGES",
        ],
        &rows,
    );
    // The leader's view of every peer's replication.
    let leader = docs
        .iter()
        .find(|d| d.pointer("/raft/raft_role").and_then(|r| r.as_str()) == Some("leader"));
    if let Some(peers) = leader
        .and_then(|d| d.pointer("/raft/peers"))
        .and_then(|p| p.as_array())
    {
        println!();
        let rows: Vec<Vec<String>> = peers
            .iter()
            .map(|p| {
                ["id", "addr", "http", "connected", "matched"]
                    .iter()
                    .map(|k| text(p.get(*k)))
                    .collect()
            })
            .collect();
        print_table(&["PEER", "ADDR", "HTTP", "CONNECTED", "MATCHED"], &rows);
    }
    let any = docs.iter().any(|d| d.get("error").is_none());
    Ok(if any { 0 } else { 1 })
}
