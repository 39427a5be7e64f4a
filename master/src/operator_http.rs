//! Operator endpoints of the allocation module (JSON):
//! - `GET /allocator` → `{"name": "drf"}`; `PUT /allocator` with `{"name": "lottery"}` switches
//!   the running policy at runtime, keeping every allocation;
//! - `GET /weights` → `{"role": weight, ...}` (weights other than 1); `PUT /weights` with the
//!   same shape sets the listed roles' weights (1 resets one);
//! - `PUT /priorities` with `{"role": level, ...}` sets strict-priority levels (0 resets);
//! - `GET /quota` → `{"role": {"guarantee": {...}, "limit": {...}}}`; `PUT /quota` with
//!   `{"role": "eng", "guarantee": "cpus:4;mem:4096", "limit": "cpus:8"}` sets one (both
//!   empty/absent removes it);
//! - `GET /roles` → per role: weight, priority, frameworks, allocated, weighted dominant share.
//!
//! - `POST /reserve` / `POST /unreserve` with `{"agent_id": "...", "role": "eng",
//!   "resources": "cpus:2;mem:1024"}` reserves unused resources of an agent for a role (or
//!   gives a dynamic reservation back); `GET /reservations` lists the dynamic ones per agent.
//!
//! - `GET /maintenance` → `{"AGENT_ID": {"mode": "draining", "window": {"start_ms": ..,
//!   "duration_ms": ..}}}` (agents in maintenance); `PUT /maintenance` with `{"agent_id":
//!   "...", "mode": "draining"|"down"|"up", "window": {...}}` (window: draining only,
//!   optional) changes one agent. Both on the leader only: a standby answers `307`.
//!
//! Handlers validate the input (role names, weight range) and answer 400 with the reason;
//! the allocator actor (or the master core, for reservations and maintenance) applies the
//! change, and then it is persisted in the registry (see `crate::persist`) so a new leader
//! restores it.

use crate::actor::{GetAllocator, MasterActor};
use crate::core::ReserveRequest;
use crate::persist::{
    GetMaintenance, GetReservations, MaintenanceRefused, OperatorMaintenance, OperatorReserve,
    Persist,
};
use crate::registry::RegistryOp;
use actix::Addr;
use actix_web::{web, HttpResponse};
use agora_actors::{AgentId, Maintenance, MaintenanceMode, MaintenanceWindow, Resources};
use agora_allocator::{
    validate_role, AllocatorActor, GetRoles, Operate, OperatorCommand, Quota, RolesView, Weight,
};
use std::collections::BTreeMap;

/// Largest operator request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Adds the routes to the master's HTTP app.
/// The paths below: served by the leader only (a standby answers `307`/`503`, see
/// `crate::http::leader_only`).
const OPERATOR_PATHS: [&str; 9] = [
    "/allocator",
    "/weights",
    "/priorities",
    "/roles",
    "/quota",
    "/reserve",
    "/unreserve",
    "/reservations",
    "/maintenance",
];

pub(crate) fn is_operator_path(path: &str) -> bool {
    OPERATOR_PATHS.contains(&path)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES))
        .route("/allocator", web::get().to(get_allocator))
        .route("/allocator", web::put().to(put_allocator))
        .route("/weights", web::get().to(get_weights))
        .route("/weights", web::put().to(put_weights))
        .route("/priorities", web::put().to(put_priorities))
        .route("/roles", web::get().to(get_roles))
        .route("/quota", web::get().to(get_quota))
        .route("/quota", web::put().to(put_quota))
        .route("/reserve", web::post().to(post_reserve))
        .route("/unreserve", web::post().to(post_unreserve))
        .route("/reservations", web::get().to(get_reservations))
        .route("/maintenance", web::get().to(get_maintenance))
        .route("/maintenance", web::put().to(put_maintenance));
}

async fn allocator(master: &Addr<MasterActor>) -> Result<Addr<AllocatorActor>, HttpResponse> {
    match master.send(GetAllocator).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(HttpResponse::ServiceUnavailable().body("allocator not running\n")),
        Err(e) => {
            Err(HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n")))
        }
    }
}

async fn view(master: &Addr<MasterActor>) -> Result<RolesView, HttpResponse> {
    let a = allocator(master).await?;
    a.send(GetRoles).await.map_err(|e| {
        HttpResponse::ServiceUnavailable().body(format!("allocator not answering: {e}\n"))
    })
}

async fn operate(master: &Addr<MasterActor>, cmd: OperatorCommand) -> HttpResponse {
    let a = match allocator(master).await {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    match a.send(Operate(cmd)).await {
        Ok(Ok(())) => match view(master).await {
            Ok(v) => HttpResponse::Ok().json(v),
            Err(resp) => resp,
        },
        Ok(Err(e)) => HttpResponse::BadRequest().body(format!("{e}\n")),
        Err(e) => {
            HttpResponse::ServiceUnavailable().body(format!("allocator not answering: {e}\n"))
        }
    }
}

async fn get_allocator(master: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match view(&master).await {
        Ok(v) => HttpResponse::Ok().json(serde_json::json!({ "name": v.allocator })),
        Err(resp) => resp,
    }
}

#[derive(serde::Deserialize)]
struct SwitchBody {
    name: String,
}

async fn put_allocator(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<SwitchBody>,
) -> HttpResponse {
    let name = body.into_inner().name;
    tracing::info!(%name, "operator: switch allocator");
    operate(&master, OperatorCommand::SwitchPolicy { name }).await
}

async fn get_weights(master: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match view(&master).await {
        Ok(v) => HttpResponse::Ok().json(v.weights),
        Err(resp) => resp,
    }
}

/// Validated weights from `{"role": weight}`.
pub fn parse_weights(body: &BTreeMap<String, f64>) -> Result<BTreeMap<String, Weight>, String> {
    body.iter()
        .map(|(role, w)| Weight::new(role, *w).map(|w| (role.clone(), w)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

async fn put_weights(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<BTreeMap<String, f64>>,
) -> HttpResponse {
    let weights = match parse_weights(&body) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "operator: weights refused");
            return HttpResponse::BadRequest().body(format!("{e}\n"));
        }
    };
    tracing::info!(roles = weights.len(), "operator: update weights");
    let ops: Vec<RegistryOp> = weights
        .iter()
        .map(|(role, w)| RegistryOp::SetWeight {
            role: role.clone(),
            weight_milli: w.0.max(0) as u64,
        })
        .collect();
    let resp = operate(&master, OperatorCommand::UpdateWeights { weights }).await;
    persist_if_ok(&master, &resp, ops).await;
    resp
}

async fn put_priorities(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<BTreeMap<String, u32>>,
) -> HttpResponse {
    let priorities = body.into_inner();
    if let Some(e) = priorities.keys().find_map(|r| validate_role(r).err()) {
        tracing::warn!(error = %e, "operator: priorities refused");
        return HttpResponse::BadRequest().body(format!("{e}\n"));
    }
    tracing::info!(roles = priorities.len(), "operator: update priorities");
    let ops: Vec<RegistryOp> = priorities
        .iter()
        .map(|(role, level)| RegistryOp::SetPriority {
            role: role.clone(),
            level: *level,
        })
        .collect();
    let resp = operate(&master, OperatorCommand::UpdatePriorities { priorities }).await;
    persist_if_ok(&master, &resp, ops).await;
    resp
}

async fn get_roles(master: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match view(&master).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(resp) => resp,
    }
}

async fn get_quota(master: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match view(&master).await {
        Ok(v) => {
            let quotas: BTreeMap<String, Quota> = v
                .roles
                .into_iter()
                .filter_map(|r| Some((r.role, r.quota?)))
                .collect();
            HttpResponse::Ok().json(quotas)
        }
        Err(resp) => resp,
    }
}

#[derive(serde::Deserialize)]
struct QuotaBody {
    role: String,
    #[serde(default)]
    guarantee: String,
    #[serde(default)]
    limit: Option<String>,
}

async fn put_quota(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<QuotaBody>,
) -> HttpResponse {
    let b = body.into_inner();
    let quota = if b.guarantee.trim().is_empty() && b.limit.is_none() {
        if let Err(e) = validate_role(&b.role) {
            return HttpResponse::BadRequest().body(format!("{e}\n"));
        }
        None
    } else {
        match Quota::parse(&b.role, &b.guarantee, b.limit.as_deref()) {
            Ok(q) => Some(q),
            Err(e) => {
                tracing::warn!(error = %e, "operator: quota refused");
                return HttpResponse::BadRequest().body(format!("{e}\n"));
            }
        }
    };
    tracing::info!(role = %b.role, set = quota.is_some(), "operator: quota");
    let op = RegistryOp::SetQuota {
        role: b.role.clone(),
        quota: quota.clone(),
    };
    let resp = operate(
        &master,
        OperatorCommand::SetQuota {
            role: b.role,
            quota,
        },
    )
    .await;
    persist_if_ok(&master, &resp, vec![op]).await;
    resp
}

/// Persists the change once the allocator accepted it (the answer is 200), before answering.
async fn persist_if_ok(master: &Addr<MasterActor>, resp: &HttpResponse, ops: Vec<RegistryOp>) {
    if resp.status().is_success() {
        for op in ops {
            if let Err(e) = master.send(Persist(op)).await {
                tracing::warn!(error = %e, "master not answering; change not persisted");
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct ReserveBody {
    agent_id: String,
    role: String,
    resources: String,
}

async fn post_reserve(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<ReserveBody>,
) -> HttpResponse {
    reserve(&master, body.into_inner(), false).await
}

async fn post_unreserve(
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<ReserveBody>,
) -> HttpResponse {
    reserve(&master, body.into_inner(), true).await
}

async fn reserve(master: &Addr<MasterActor>, b: ReserveBody, unreserve: bool) -> HttpResponse {
    let bad = |e: String| {
        tracing::warn!(error = %e, unreserve, "operator: reservation refused");
        HttpResponse::BadRequest().body(format!("{e}\n"))
    };
    let agent_id = match AgentId::new(b.agent_id.trim()) {
        Ok(a) => a,
        Err(e) => return bad(format!("bad agent id: {e}")),
    };
    let resources = match Resources::parse(&b.resources) {
        Ok(r) if r.iter().all(|(k, _)| k.role.is_none()) => r,
        Ok(_) => {
            return bad("give the resources unreserved (`cpus:2`); the role is separate".into())
        }
        Err(e) => return bad(e.to_string()),
    };
    let req = ReserveRequest {
        agent_id: agent_id.clone(),
        role: b.role.trim().to_string(),
        resources,
        unreserve,
    };
    tracing::info!(agent = %agent_id, role = %req.role, resources = %req.resources, unreserve, "operator: reservation");
    match master.send(OperatorReserve(req)).await {
        Ok(Ok(now)) => HttpResponse::Ok().json(serde_json::json!({
            "agent_id": agent_id.to_string(),
            "reserved": now,
        })),
        Ok(Err(e)) => bad(e),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n")),
    }
}

async fn get_reservations(master: web::Data<Addr<MasterActor>>) -> HttpResponse {
    match master.send(GetReservations).await {
        Ok(r) => HttpResponse::Ok().json(r),
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n")),
    }
}

async fn get_maintenance(
    req: actix_web::HttpRequest,
    master: web::Data<Addr<MasterActor>>,
) -> HttpResponse {
    match master.send(GetMaintenance).await {
        Ok(Some(m)) => HttpResponse::Ok().json(m),
        Ok(None) => crate::http::elsewhere(req, master).await,
        Err(e) => HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n")),
    }
}

#[derive(serde::Deserialize)]
struct MaintenanceBody {
    agent_id: String,
    mode: String,
    #[serde(default)]
    window: Option<MaintenanceWindow>,
}

/// The change a `PUT /maintenance` body asks for (`None`: up), validated.
pub fn parse_maintenance(
    agent_id: &str,
    mode: &str,
    window: Option<MaintenanceWindow>,
) -> Result<(AgentId, Option<Maintenance>), String> {
    let agent_id = AgentId::new(agent_id.trim()).map_err(|e| format!("bad agent id: {e}"))?;
    let mode = match mode.trim() {
        "draining" | "drain" => Some(MaintenanceMode::Draining),
        "down" => Some(MaintenanceMode::Down),
        "up" => None,
        other => return Err(format!("mode {other:?}: expected draining, down or up")),
    };
    if window.is_some() && mode != Some(MaintenanceMode::Draining) {
        return Err("a window is given only with mode draining".into());
    }
    Ok((agent_id, mode.map(|mode| Maintenance { mode, window })))
}

async fn put_maintenance(
    req: actix_web::HttpRequest,
    master: web::Data<Addr<MasterActor>>,
    body: web::Json<MaintenanceBody>,
) -> HttpResponse {
    let b = body.into_inner();
    let (agent_id, maintenance) = match parse_maintenance(&b.agent_id, &b.mode, b.window) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "operator: maintenance refused");
            return HttpResponse::BadRequest().body(format!("{e}\n"));
        }
    };
    let change = OperatorMaintenance {
        agent_id: agent_id.clone(),
        maintenance,
    };
    match master.send(change).await {
        Ok(Ok(())) => {}
        Ok(Err(MaintenanceRefused::NotLeader)) => return crate::http::elsewhere(req, master).await,
        Ok(Err(MaintenanceRefused::Bad(e))) => {
            tracing::warn!(agent = %agent_id, error = %e, "operator: maintenance refused");
            let status = match e {
                crate::core::MasterError::UnknownAgent(_) => actix_web::http::StatusCode::NOT_FOUND,
                _ => actix_web::http::StatusCode::BAD_REQUEST,
            };
            return HttpResponse::build(status).body(format!("{e}\n"));
        }
        Err(e) => {
            return HttpResponse::ServiceUnavailable().body(format!("master not answering: {e}\n"))
        }
    }
    tracing::info!(agent = %agent_id, mode = b.mode.trim(), "operator: maintenance");
    let op = RegistryOp::SetMaintenance {
        agent_id,
        maintenance,
    };
    if let Err(e) = master.send(Persist(op)).await {
        tracing::warn!(error = %e, "master not answering; maintenance not persisted");
    }
    get_maintenance(req, master).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_bodies_are_validated() {
        let w = MaintenanceWindow {
            start_ms: 10,
            duration_ms: 20,
        };
        let (agent, m) = parse_maintenance(" a-1 ", "draining", Some(w)).unwrap();
        assert_eq!(agent.as_str(), "a-1");
        assert_eq!(
            m,
            Some(Maintenance {
                mode: MaintenanceMode::Draining,
                window: Some(w)
            })
        );
        assert_eq!(parse_maintenance("a-1", "up", None).unwrap().1, None);
        let down = parse_maintenance("a-1", "down", None).unwrap().1.unwrap();
        assert_eq!(down.mode, MaintenanceMode::Down);
        let bad_mode = parse_maintenance("a-1", "sideways", None).unwrap_err();
        assert!(bad_mode.contains("draining, down or up"), "{bad_mode}");
        let window_on_down = parse_maintenance("a-1", "down", Some(w)).unwrap_err();
        assert!(
            window_on_down.contains("only with mode draining"),
            "{window_on_down}"
        );
        assert!(parse_maintenance("", "up", None)
            .unwrap_err()
            .contains("bad agent id"));
    }
}
