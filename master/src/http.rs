//! The master's HTTP API (actix-web): `/health`, `/state` (JSON), `/metrics` (Prometheus text).
//! Handlers only ask the master actor for a snapshot; nothing here changes state.

use crate::actor::{GetSnapshot, MasterActor, Snapshot};
use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use agora_actors::metrics;
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
        // Who leads: on every master, leader or standby. Without a registry (in-process demo)
        // this master simply leads.
        let (leader, role) = match &s.ha {
            Some(ha) => (serde_json::json!(ha.leader), ha.raft_role),
            None => (serde_json::Value::Null, "leader"),
        };
        obj.insert("leader".into(), leader);
        obj.insert("raft_role".into(), role.into());
        if let Some(ha) = &s.ha {
            obj.insert("raft".into(), serde_json::to_value(ha).unwrap_or_default());
        }
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
    const P: &str = "agora_master";
    let mut out = String::new();
    let counters = s.counters.as_object().into_iter().flatten();
    metrics::counters_from(&mut out, P, counters.map(|(k, v)| (k.as_str(), v.as_f64())));
    let state = serde_json::to_value(&s.state).unwrap_or_default();
    let items = |key: &str| {
        state
            .get(key)
            .and_then(|a| a.as_array())
            .cloned()
            .unwrap_or_default()
    };
    metrics::gauge(&mut out, P, "agents", items("agents").len() as f64);
    metrics::gauge(&mut out, P, "frameworks", items("frameworks").len() as f64);
    let in_mode = |mode| {
        let records = s.state.maintenance.values();
        records.filter(|m| m.mode == mode).count() as f64
    };
    let draining = in_mode(agora_actors::MaintenanceMode::Draining);
    metrics::gauge(&mut out, P, "agents_draining", draining);
    let down = in_mode(agora_actors::MaintenanceMode::Down);
    metrics::gauge(&mut out, P, "agents_down", down);
    metrics::gauge(
        &mut out,
        P,
        "offers_outstanding",
        items("offers").len() as f64,
    );
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    for t in items("tasks").iter().chain(items("completed_tasks").iter()) {
        if let Some(st) = t.get("state").and_then(|x| x.as_str()) {
            *by_state.entry(st.to_string()).or_default() += 1;
        }
    }
    let _ = writeln!(out, "# TYPE {P}_tasks gauge");
    for (st, n) in by_state {
        let _ = writeln!(out, "{P}_tasks{{state=\"{st}\"}} {n}");
    }
    let f = &s.figures;
    metrics::counter(&mut out, P, "allocation_runs", f.allocation_runs as f64);
    metrics::gauge(
        &mut out,
        P,
        "allocation_run_seconds",
        f.allocation_last_micros as f64 / 1e6,
    );
    metrics::counter(
        &mut out,
        P,
        "allocation_run_seconds",
        f.allocation_total_micros as f64 / 1e6,
    );
    metrics::counter(&mut out, P, "send_failures", f.send_failures as f64);
    if let Some(ha) = &s.ha {
        let is_leader = if ha.raft_role == "leader" { 1.0 } else { 0.0 };
        metrics::gauge(&mut out, P, "raft_is_leader", is_leader);
        metrics::gauge(&mut out, P, "raft_term", ha.term as f64);
        metrics::gauge(&mut out, P, "raft_commit_index", ha.commit_index as f64);
        metrics::gauge(&mut out, P, "raft_applied_index", ha.applied_index as f64);
        metrics::counter(&mut out, P, "raft_leader_changes", ha.leader_changes as f64);
        metrics::counter(&mut out, P, "raft_peer_errors", ha.peer_errors as f64);
        metrics::counter(
            &mut out,
            P,
            "raft_duplicate_id_refusals",
            ha.duplicate_id_refusals as f64,
        );
        metrics::gauge(&mut out, P, "registry_agents", ha.registry_agents as f64);
        metrics::gauge(
            &mut out,
            P,
            "registry_frameworks",
            ha.registry_frameworks as f64,
        );
    }
    out
}

/// `GET /raft`: this master's raft view (role, leader, term, commit, peers) without the
/// cluster state — cheap enough to poll while the leader is busy.
async fn raft(addr: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match addr.send(crate::ha::GetHa).await {
        Ok(Some(ha)) => {
            let mut v = serde_json::to_value(&ha).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("raft_role".into(), ha.raft_role.into());
            }
            HttpResponse::Ok().json(v)
        }
        Ok(None) => {
            HttpResponse::Ok().json(serde_json::json!({ "raft_role": "leader", "leader": null }))
        }
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n")),
    }
}

/// Where requests that only the leader serves belong: `None` when this master leads (or runs
/// without a registry), else the leader's HTTP address if one is known. Cheap: no snapshot.
#[derive(actix::Message)]
#[rtype(result = "Option<Option<String>>")]
pub(crate) struct LeaderElsewhere;

impl actix::Handler<LeaderElsewhere> for MasterActor {
    type Result = Option<Option<String>>;
    fn handle(&mut self, _: LeaderElsewhere, _: &mut actix::Context<Self>) -> Self::Result {
        match &self.raft {
            Some(r) if !self.leading => Some(r.leader_http()),
            _ => None,
        }
    }
}

/// A standby's answer to a request for the leader: `307` to the same path there, or `503`
/// when no leader is known. `None` when this master leads.
async fn standby_answer(addr: &Addr<MasterActor>, path: &str) -> Option<HttpResponse> {
    let leader = match addr.send(LeaderElsewhere).await {
        Ok(l) => l?,
        Err(e) => {
            let body = format!("master not answering: {e}\n");
            return Some(HttpResponse::ServiceUnavailable().body(body));
        }
    };
    Some(match leader {
        Some(leader) => HttpResponse::TemporaryRedirect()
            .insert_header(("Location", format!("http://{leader}{path}")))
            .body(format!("not the leader; the leader is {leader}\n")),
        None => HttpResponse::ServiceUnavailable().body("not the leader; no leader is known\n"),
    })
}

fn path_and_query(req: &actix_web::HttpRequest) -> &str {
    req.uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
}

/// Any path the master does not serve itself: on a standby, `307` to the same path on the
/// leader, or `503` when no leader is known; on the leader, `404`.
pub(crate) async fn elsewhere(
    req: actix_web::HttpRequest,
    addr: web::Data<Addr<MasterActor>>,
) -> HttpResponse {
    standby_answer(&addr, path_and_query(&req))
        .await
        .unwrap_or_else(|| HttpResponse::NotFound().body("not found\n"))
}

/// The operator endpoints act on the leader's allocator and books; a standby has neither (its
/// allocator is not running, its core is empty), so it sends them on to the leader rather than
/// answering from its idle state. One check for every such path, before any handler runs.
async fn leader_only(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if crate::operator_http::is_operator_path(req.path()) {
        if let Some(addr) = req.app_data::<web::Data<Addr<MasterActor>>>().cloned() {
            if let Some(resp) = standby_answer(&addr, path_and_query(req.request())).await {
                return Ok(req.into_response(resp).map_into_right_body());
            }
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
}

/// Binds the HTTP server and runs it on the current actix system. Returns the bound address.
pub fn serve(addr: Addr<MasterActor>, bind: &str) -> std::io::Result<String> {
    let data = web::Data::new(addr);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(actix_web::middleware::from_fn(leader_only))
            .route("/health", web::get().to(health))
            .route("/state", web::get().to(state))
            .route("/metrics", web::get().to(metrics))
            .configure(crate::operator_http::routes)
            .route("/raft", web::get().to(raft))
            .default_service(web::to(elsewhere))
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
