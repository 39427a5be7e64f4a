//! The agent's HTTP API: `/health`, `/state`, `/metrics`, `/monitor/statistics`.

use crate::actor::{AgentActor, GetAgentState, GetUsage};
use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use agora_actors::metrics;

async fn health() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

fn unavailable(e: impl std::fmt::Display) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(format!("agent not answering: {e}\n"))
}

async fn state(addr: web::Data<Addr<AgentActor>>) -> HttpResponse {
    match addr.send(GetAgentState).await {
        Ok(s) => HttpResponse::Ok().json(s),
        Err(e) => unavailable(e),
    }
}

async fn statistics(addr: web::Data<Addr<AgentActor>>) -> HttpResponse {
    match addr.send(GetUsage).await {
        Ok(list) => {
            let out: Vec<serde_json::Value> = list
                .into_iter()
                .map(|(id, u)| match u {
                    Ok(u) => serde_json::json!({
                        "container_id": id,
                        "cpu_time_ms": u.cpu_time_ms,
                        "mem_rss_bytes": u.mem_rss_bytes,
                        "mem_peak_bytes": u.mem_peak_bytes,
                        "limits": { "cpus_milli": u.limits.cpus_milli, "mem_mb": u.limits.mem_mb, "disk_mb": u.limits.disk_mb },
                    }),
                    Err(e) => serde_json::json!({ "container_id": id, "error": e }),
                })
                .collect();
            HttpResponse::Ok().json(out)
        }
        Err(e) => unavailable(e),
    }
}

async fn metrics(addr: web::Data<Addr<AgentActor>>) -> HttpResponse {
    let state = match addr.send(GetAgentState).await {
        Ok(s) => serde_json::to_value(s).unwrap_or_default(),
        Err(e) => return unavailable(e),
    };
    const P: &str = "agora_agent";
    let mut out = String::new();
    let counters = state
        .get("counters")
        .and_then(|c| c.as_object())
        .into_iter()
        .flatten();
    metrics::counters_from(&mut out, P, counters.map(|(k, v)| (k.as_str(), v.as_f64())));
    let len = |key: &str| {
        state
            .get(key)
            .and_then(|a| a.as_array())
            .map_or(0, |a| a.len())
    };
    metrics::gauge(&mut out, P, "executors", len("executors") as f64);
    metrics::gauge(&mut out, P, "tasks", len("tasks") as f64);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

pub fn serve(addr: Addr<AgentActor>, bind: &str) -> std::io::Result<String> {
    let data = web::Data::new(addr);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/health", web::get().to(health))
            .route("/state", web::get().to(state))
            .route("/metrics", web::get().to(metrics))
            .route("/monitor/statistics", web::get().to(statistics))
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
