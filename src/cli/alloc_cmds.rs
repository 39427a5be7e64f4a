//! Allocator flags of `agora master`, and the operator commands of the allocation module:
//! `agora allocator [set NAME]`, `agora weights [set ROLE=W ...]`, `agora priorities set
//! ROLE=LEVEL ...`, `agora quota [set ROLE --guarantee R --limit R | remove ROLE]`,
//! `agora roles`, `agora reserve|unreserve --agent ID --role ROLE RESOURCES`. They talk to
//! the master's HTTP API.

use agora_allocator::{DrfConfig, PolicyKind};
use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::Value;
use std::collections::BTreeMap;

/// Allocator flags of `agora master`.
#[derive(Args, Debug, Clone)]
pub struct AllocatorArgs {
    /// Allocation policy: drf (hierarchical DRF), priority (strict per-role levels, DRF within
    /// a level) or lottery (seeded, by entitled share). Switchable at runtime.
    #[arg(long, default_value = "drf", env = "AGORA_ALLOCATOR")]
    pub allocator: String,
    /// Comma-separated resource names left out of fair-share calculations (e.g. `gpus`).
    #[arg(
        long,
        default_value = "",
        env = "AGORA_FAIR_SHARING_EXCLUDED_RESOURCES"
    )]
    pub fair_sharing_excluded_resources: String,
    /// Seed of the lottery policy's draws (same seed and events, same offers).
    #[arg(long, default_value_t = 0, env = "AGORA_LOTTERY_SEED")]
    pub lottery_seed: u64,
    /// At most this many offers to one framework per allocation run, so the framework with
    /// the lowest share cannot sweep a whole large cluster in one run.
    #[arg(long, default_value_t = 1000, env = "AGORA_MAX_OFFERS_PER_FRAMEWORK")]
    pub max_offers_per_framework: usize,
    /// Revocation: how long a request to take resources back counts as under way before the
    /// allocator may ask again (keep it above every framework's grace period); 0 turns
    /// revocation off.
    #[arg(long, default_value_t = 120_000, env = "AGORA_REVOCATION_RETRY_MS")]
    pub revocation_retry_ms: u64,
    /// Fair-share revocation: a role whose dominant share is below FRACTION x its fair share
    /// (its weight over the weights of the roles taking part), and whose framework has wanted
    /// offers and been offered nothing for --fair-share-wait-ms, gets resources revoked from
    /// roles above their fair share (never below it, never guaranteed allocations). 0 (the
    /// default) turns it off; at most 1.
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "FRACTION",
        env = "AGORA_REVOKE_BELOW_FAIR_SHARE"
    )]
    pub revoke_below_fair_share: f64,
    /// How long a framework must have been offered nothing to count as starving.
    #[arg(long, default_value_t = 10_000, env = "AGORA_FAIR_SHARE_WAIT_MS")]
    pub fair_share_wait_ms: u64,
}

impl Default for AllocatorArgs {
    fn default() -> Self {
        AllocatorArgs {
            allocator: "drf".into(),
            fair_sharing_excluded_resources: String::new(),
            lottery_seed: 0,
            max_offers_per_framework: 1000,
            revocation_retry_ms: 120_000,
            revoke_below_fair_share: 0.0,
            fair_share_wait_ms: 10_000,
        }
    }
}

impl AllocatorArgs {
    /// The allocator configuration these flags describe, validated.
    pub fn drf_config(&self) -> anyhow::Result<DrfConfig> {
        let policy = PolicyKind::parse(&self.allocator).map_err(|e| anyhow::anyhow!("{e}"))?;
        let excluded = self
            .fair_sharing_excluded_resources
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let fraction = self.revoke_below_fair_share;
        if !(0.0..=1.0).contains(&fraction) {
            anyhow::bail!("--revoke-below-fair-share must be between 0 and 1, got {fraction}");
        }
        let cfg = DrfConfig {
            policy,
            fair_sharing_excluded: excluded,
            lottery_seed: self.lottery_seed,
            max_offers_per_framework_per_cycle: self.max_offers_per_framework,
            revocation_retry_ms: self.revocation_retry_ms,
            // Thousandths: the allocator's config stays integral (comparable, hashable).
            revoke_below_fair_share_milli: (fraction * 1000.0).round() as u32,
            fair_share_wait_ms: self.fair_share_wait_ms,
            ..DrfConfig::default()
        };
        cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(cfg)
    }
}

#[derive(Args, Debug, Clone)]
pub struct OperatorArgs {
    /// The master's HTTP address (HOST:PORT).
    #[arg(long, env = "AGORA_MASTER_HTTP", default_value = "127.0.0.1:5080")]
    pub master: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<SetAction>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum SetAction {
    /// `allocator set NAME` | `weights set ROLE=W ...` | `priorities set ROLE=LEVEL ...`
    Set {
        #[arg(required = true)]
        values: Vec<String>,
    },
}

/// Every master of the list: requests go to the first that answers and follow a standby's
/// `307` to the leader (the allocator and its books live on the leader only).
fn masters(list: &str) -> anyhow::Result<Vec<String>> {
    super::parse_masters(list)
}

/// `ROLE=VALUE` pairs into a JSON object.
fn pairs(values: &[String]) -> anyhow::Result<BTreeMap<String, f64>> {
    values
        .iter()
        .map(|v| {
            let (role, w) = v
                .split_once('=')
                .with_context(|| format!("{v:?}: expected ROLE=VALUE"))?;
            let w: f64 = w
                .trim()
                .parse()
                .with_context(|| format!("{v:?}: {w:?} is not a number"))?;
            Ok((role.trim().to_string(), w))
        })
        .collect()
}

pub fn allocator(a: OperatorArgs) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    let body = match &a.action {
        Some(SetAction::Set { values }) => {
            let [name] = values.as_slice() else {
                anyhow::bail!("usage: agora allocator set NAME (drf, priority or lottery)");
            };
            let req = serde_json::json!({ "name": name }).to_string();
            super::http_get::to_leader("PUT", &m, "/allocator", Some(&req))?;
            super::http_get::to_leader("GET", &m, "/allocator", None)?
        }
        None => super::http_get::to_leader("GET", &m, "/allocator", None)?,
    };
    let v: Value = serde_json::from_str(&body).context("the master's answer is not JSON")?;
    if a.json {
        println!("{v}");
    } else {
        println!("{}", v.get("name").and_then(Value::as_str).unwrap_or("-"));
    }
    Ok(0)
}

pub fn weights(a: OperatorArgs) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    if let Some(SetAction::Set { values }) = &a.action {
        let req = serde_json::to_string(&pairs(values)?)?;
        super::http_get::to_leader("PUT", &m, "/weights", Some(&req))?;
    }
    let body = super::http_get::to_leader("GET", &m, "/weights", None)?;
    let v: BTreeMap<String, f64> =
        serde_json::from_str(&body).context("the master's /weights is not a role map")?;
    if a.json {
        println!("{}", serde_json::to_string(&v)?);
    } else {
        let rows: Vec<Vec<String>> = v
            .iter()
            .map(|(r, w)| vec![r.clone(), format!("{w}")])
            .collect();
        super::query::print_table(&["ROLE", "WEIGHT"], &rows);
    }
    Ok(0)
}

pub fn priorities(a: OperatorArgs) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    let Some(SetAction::Set { values }) = &a.action else {
        return roles(a);
    };
    let levels: BTreeMap<String, u32> = pairs(values)?
        .into_iter()
        .map(|(r, l)| {
            if l < 0.0 || l.fract() != 0.0 || l > f64::from(u32::MAX) {
                anyhow::bail!("priority of {r:?} must be a whole number >= 0");
            }
            Ok((r, l as u32))
        })
        .collect::<anyhow::Result<_>>()?;
    let body = serde_json::to_string(&levels)?;
    super::http_get::to_leader("PUT", &m, "/priorities", Some(&body))?;
    roles(OperatorArgs { action: None, ..a })
}

pub fn roles(a: OperatorArgs) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    let body = super::http_get::to_leader("GET", &m, "/roles", None)?;
    let v: Value = serde_json::from_str(&body).context("the master's /roles is not JSON")?;
    if a.json {
        println!("{v}");
        return Ok(0);
    }
    let field = |r: &Value, k: &str| match r.get(k) {
        Some(Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(xs)) => xs.len().to_string(),
        Some(Value::Number(n)) if k == "dominant_share" => {
            format!("{:.3}", n.as_f64().unwrap_or(0.0))
        }
        Some(other) => other.to_string(),
        None => "-".to_string(),
    };
    let rows: Vec<Vec<String>> = v
        .get("roles")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| {
            [
                "role",
                "weight",
                "priority",
                "frameworks",
                "dominant_share",
                "allocated",
                "reserved",
            ]
            .iter()
            .map(|k| field(r, k))
            .collect()
        })
        .collect();
    println!(
        "allocator: {}",
        v.get("allocator").and_then(Value::as_str).unwrap_or("-")
    );
    super::query::print_table(
        &[
            "ROLE",
            "WEIGHT",
            "PRIORITY",
            "FRAMEWORKS",
            "SHARE",
            "ALLOCATED",
            "RESERVED",
        ],
        &rows,
    );
    Ok(0)
}

#[derive(Args, Debug, Clone)]
pub struct QuotaArgs {
    /// The master's HTTP address (HOST:PORT).
    #[arg(long, env = "AGORA_MASTER_HTTP", default_value = "127.0.0.1:5080")]
    pub master: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: Option<QuotaAction>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum QuotaAction {
    /// Set a role's quota: `agora quota set eng --guarantee 'cpus:4;mem:4096' --limit 'cpus:8'`.
    Set {
        role: String,
        /// Resources the role gets when it asks (if the cluster can hold them).
        #[arg(long, default_value = "")]
        guarantee: String,
        /// Most the role may hold, offered or used.
        #[arg(long)]
        limit: Option<String>,
    },
    /// Remove a role's quota.
    Remove { role: String },
}

pub fn quota(a: QuotaArgs) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    let req = match &a.action {
        Some(QuotaAction::Set {
            role,
            guarantee,
            limit,
        }) => {
            if guarantee.trim().is_empty() && limit.is_none() {
                anyhow::bail!("give --guarantee and/or --limit (or use `agora quota remove ROLE`)");
            }
            Some(serde_json::json!({ "role": role, "guarantee": guarantee, "limit": limit }))
        }
        Some(QuotaAction::Remove { role }) => Some(serde_json::json!({ "role": role })),
        None => None,
    };
    if let Some(req) = req {
        super::http_get::to_leader("PUT", &m, "/quota", Some(&req.to_string()))?;
    }
    let body = super::http_get::to_leader("GET", &m, "/quota", None)?;
    let v: Value = serde_json::from_str(&body).context("the master's /quota is not JSON")?;
    if a.json {
        println!("{v}");
        return Ok(0);
    }
    let text = |x: &Value| -> String {
        match x.as_object() {
            Some(o) if !o.is_empty() => o
                .iter()
                .map(|(k, m)| format!("{k}:{}", m.as_f64().unwrap_or(0.0) / 1000.0))
                .collect::<Vec<_>>()
                .join(";"),
            _ => "-".to_string(),
        }
    };
    let rows: Vec<Vec<String>> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(role, q)| vec![role.clone(), text(&q["guarantee"]), text(&q["limit"])])
        .collect();
    super::query::print_table(&["ROLE", "GUARANTEE", "LIMIT"], &rows);
    Ok(0)
}

#[derive(Args, Debug, Clone)]
pub struct ReserveArgs {
    /// The master's HTTP address (HOST:PORT).
    #[arg(long, env = "AGORA_MASTER_HTTP", default_value = "127.0.0.1:5080")]
    pub master: String,
    /// The agent whose resources are reserved (its id, as `agora agents` shows).
    #[arg(long)]
    pub agent: String,
    /// The role they are reserved for.
    #[arg(long)]
    pub role: String,
    /// Unreserved resources, e.g. `cpus:2;mem:1024`.
    pub resources: String,
}

/// `agora reserve` / `agora unreserve`: prints the agent's dynamic reservations after it.
pub fn reserve(a: ReserveArgs, unreserve: bool) -> anyhow::Result<i32> {
    let m = masters(&a.master)?;
    let req = serde_json::json!({
        "agent_id": a.agent,
        "role": a.role,
        "resources": a.resources,
    });
    let path = if unreserve { "/unreserve" } else { "/reserve" };
    let body = super::http_get::to_leader("POST", &m, path, Some(&req.to_string()))?;
    let v: Value = serde_json::from_str(&body).context("the master's answer is not JSON")?;
    let now = v.get("reserved").and_then(Value::as_str).unwrap_or("");
    println!(
        "{}: {}",
        a.agent,
        if now.is_empty() {
            "no dynamic reservations"
        } else {
            now
        }
    );
    Ok(0)
}
