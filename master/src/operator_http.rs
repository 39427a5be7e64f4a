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
//! Handlers validate the input (role names, weight range) and answer 400 with the reason;
//! the allocator actor applies the change. Weights, priorities and quota are not yet persisted
//! in the registry (they live in the running allocator).

use crate::actor::{GetAllocator, MasterActor};
use actix::Addr;
use actix_web::{web, HttpResponse};
use agora_allocator::{
    validate_role, AllocatorActor, GetRoles, Operate, OperatorCommand, Quota, RolesView, Weight,
};
use std::collections::BTreeMap;

/// Largest operator request body accepted.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Adds the routes to the master's HTTP app.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES))
        .route("/allocator", web::get().to(get_allocator))
        .route("/allocator", web::put().to(put_allocator))
        .route("/weights", web::get().to(get_weights))
        .route("/weights", web::put().to(put_weights))
        .route("/priorities", web::put().to(put_priorities))
        .route("/roles", web::get().to(get_roles))
        .route("/quota", web::get().to(get_quota))
        .route("/quota", web::put().to(put_quota));
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
    operate(&master, OperatorCommand::UpdateWeights { weights }).await
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
    operate(&master, OperatorCommand::UpdatePriorities { priorities }).await
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
    operate(
        &master,
        OperatorCommand::SetQuota {
            role: b.role,
            quota,
        },
    )
    .await
}
