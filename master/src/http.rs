//! The master's HTTP API (actix-web): `/health`, `/state` (JSON), `/metrics` (Prometheus text).
//! Handlers only ask the master actor for a snapshot; nothing here changes state.

use crate::actor::{GetSnapshot, MasterActor, Snapshot};
use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::collections::BTreeMap;
use std::fmt::Write as _;

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn snapshot(addr: &Addr<MasterActor>) -> Result<Snapshot, HttpResponse> {
    addr.send(GetSnapshot).await.map_err(|e| {
        HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n"))
    })
}

async fn state(addr: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match snapshot(&addr).await {
        Ok(s) => HttpResponse::Ok().json(state_json(&s)),
        Err(resp) => resp,
    }
}

/// The `/state` document: the core's view plus the allocator's.
pub fn state_json(s: &Snapshot) -> serde_json::Value {
    let mut v = serde_json::to_value(&s.state).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "allocator".into(),
            serde_json::json!({ "name": s.allocator, "shares": s.shares }),
        );
        obj.insert("counters".into(), s.counters.clone());
    }
    v
}

async fn metrics(addr: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match snapshot(&addr).await {
        Ok(s) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(metrics_text(&s)),
        Err(resp) => resp,
    }
}

/// Prometheus exposition of the snapshot. Counter names come from the core's counters struct so
/// a new counter shows up without touching this file.
pub fn metrics_text(s: &Snapshot) -> String {
    let mut out = String::new();
    if let Some(obj) = s.counters.as_object() {
        for (k, v) in obj {
            if let Some(n) = v.as_f64() {
                let _ = writeln!(
                    out,
                    "# TYPE agora_master_{k}_total counter\nagora_master_{k}_total {n}"
                );
            }
        }
    }
    let state = serde_json::to_value(&s.state).unwrap_or_default();
    let len = |key: &str| {
        state
            .get(key)
            .and_then(|a| a.as_array())
            .map_or(0, |a| a.len())
    };
    let _ = writeln!(
        out,
        "# TYPE agora_master_agents gauge\nagora_master_agents {}",
        len("agents")
    );
    let _ = writeln!(
        out,
        "# TYPE agora_master_frameworks gauge\nagora_master_frameworks {}",
        len("frameworks")
    );
    let _ = writeln!(
        out,
        "# TYPE agora_master_offers_outstanding gauge\nagora_master_offers_outstanding {}",
        len("offers")
    );
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for key in ["tasks", "completed_tasks"] {
        for t in state
            .get(key)
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(st) = t.get("state").and_then(|x| x.as_str()) {
                *by_state.entry(st.to_string()).or_default() += 1;
            }
        }
    }
    let _ = writeln!(out, "# TYPE agora_master_tasks gauge");
    for (st, n) in by_state {
        let _ = writeln!(out, "agora_master_tasks{{state=\"{st}\"}} {n}");
    }
    let f = &s.figures;
    let _ = writeln!(
        out,
        "# TYPE agora_master_allocation_runs_total counter\nagora_master_allocation_runs_total {}",
        f.allocation_runs
    );
    let _ = writeln!(
        out,
        "# TYPE agora_master_allocation_run_seconds gauge\nagora_master_allocation_run_seconds {}",
        f.allocation_last_micros as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# TYPE agora_master_allocation_run_seconds_total counter\nagora_master_allocation_run_seconds_total {}",
        f.allocation_total_micros as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# TYPE agora_master_send_failures_total counter\nagora_master_send_failures_total {}",
        f.send_failures
    );
    out
}

/// Binds the HTTP server and runs it on the current actix system. Returns the bound address.
pub fn serve(addr: Addr<MasterActor>, bind: &str) -> std::io::Result<String> {
    let data = web::Data::new(addr);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/state", web::get().to(state))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .disable_signals()
    .bind(bind)?;
    let bound = server
        .addrs()
        .first()
        .map(|a| a.to_string())
        .unwrap_or_else(|| bind.to_string());
    actix_rt::spawn(server.run());
    Ok(bound)
}
