//! Invariants, checked after every event, and the final checks of the liveness phase.

use crate::world::{MasterNode, World};
use agora_actors::{AgentId, Resources};

fn parse(what: &str, text: &str) -> Result<Resources, String> {
    Resources::parse(text).map_err(|e| format!("{what}: cannot parse {text:?}: {e}"))
}

fn add(a: &Resources, b: &Resources) -> Result<Resources, String> {
    a.checked_add(b)
        .map_err(|e| format!("cannot add {a} and {b}: {e}"))
}

/// Equal as quantities (zero entries aside).
fn same(a: &Resources, b: &Resources) -> bool {
    a.contains(b) && b.contains(a)
}

/// After every event.
pub fn invariants(w: &World) -> Result<(), String> {
    if let Some(v) = w.violations.first() {
        return Err(v.clone());
    }
    if w.touched_master || w.sc.check_every_events > 1 {
        for m in &w.masters {
            master_books(m)?;
        }
    }
    agents_not_overcommitted(w)?;
    for s in &w.scheds {
        if let Some(v) = s.driver.scheduler().violations.first() {
            return Err(format!("framework {}: {v}", s.name));
        }
    }
    Ok(())
}

/// Per agent at the master: used + offered <= total (so offers are disjoint from each other
/// and from what runs), and free (allocator) + offered + used = total (conservation).
fn master_books(m: &MasterNode) -> Result<(), String> {
    let (Some(core), Some(alloc)) = (m.core.as_ref(), m.alloc.as_ref()) else {
        return Ok(());
    };
    let state = core.state();
    let mut offered_sum: std::collections::BTreeMap<String, Resources> = Default::default();
    for o in &state.offers {
        let r = parse("offer", &o.resources)?;
        let e = offered_sum.entry(o.agent_id.clone()).or_default();
        *e = add(e, &r)?;
    }
    for a in &state.agents {
        let total = parse("agent total", &a.total)?;
        let used = parse("agent used", &a.used)?;
        let offered = parse("agent offered", &a.offered)?;
        let sum_offers = offered_sum.remove(&a.id).unwrap_or_default();
        if !same(&sum_offers, &offered) {
            return Err(format!(
                "agent {}: offers add up to {sum_offers} but offered is {offered}",
                a.id
            ));
        }
        let held = add(&used, &offered)?;
        if !total.contains(&held) {
            return Err(format!(
                "agent {} over-committed at the master: used {used} + offered {offered} > total {total}",
                a.id
            ));
        }
        let Ok(id) = AgentId::new(a.id.clone()) else {
            continue;
        };
        if let Some(free) = alloc.free(&id) {
            let all = add(free, &held)?;
            if !same(&all, &total) {
                return Err(format!(
                    "agent {}: resources not conserved: allocator free {free} + offered {offered} + used {used} != total {total}",
                    a.id
                ));
            }
        }
    }
    if let Some((agent, r)) = offered_sum.into_iter().next() {
        return Err(format!("offer of {r} on unknown agent {agent}"));
    }
    Ok(())
}

fn agents_not_overcommitted(w: &World) -> Result<(), String> {
    for a in w.touched_agents.iter().map(|i| &w.agents[*i]) {
        let Some(core) = a.core.as_ref() else {
            continue;
        };
        let st = core.state();
        let total = parse("agent total", &st.resources.total)?;
        let used = parse("agent used", &st.resources.used)?;
        if !total.contains(&used) {
            return Err(format!(
                "{} over-committed: uses {used} of {total}",
                a.hostname
            ));
        }
    }
    Ok(())
}

/// At the end of the liveness phase.
pub fn final_checks(w: &World) -> Result<(), String> {
    for s in &w.scheds {
        let t = s.driver.scheduler();
        if let Some(b) = t.batch() {
            let p = b.progress();
            if p.finished != p.total {
                return Err(format!(
                    "batch {}: {} of {} tasks finished ({} lost, {} killed, {} failed, {} errored)",
                    s.name, p.finished, p.total, p.lost, p.killed, p.failed, p.errored
                ));
            }
            for task in &t.launched {
                let n = t.terminal.get(task).map(|c| c.any).unwrap_or(0);
                if n == 0 {
                    return Err(format!(
                        "batch {}: launched task {task} never got a terminal update",
                        s.name
                    ));
                }
            }
        }
    }
    let Some(core) = w.leader_core() else {
        return Err("no master at the end".into());
    };
    let state = core.state();
    for task in state.tasks.iter().filter(|t| t.state == "TASK_RUNNING") {
        let agent = state.agents.iter().find(|a| a.id == task.agent_id);
        if !agent.is_some_and(|a| a.connected) {
            return Err(format!(
                "task {} runs on agent {} which is not connected",
                task.id, task.agent_id
            ));
        }
        let node = w.agents.iter().find(|a| {
            a.core
                .as_ref()
                .and_then(|c| c.agent_id())
                .map(|i| i.to_string())
                == Some(task.agent_id.clone())
        });
        let runs = node.and_then(|n| n.core.as_ref()).is_some_and(|c| {
            c.state()
                .tasks
                .iter()
                .any(|t| t.task_id.to_string() == task.id)
        });
        if !runs {
            return Err(format!(
                "master says task {} runs on {}, but that agent does not have it",
                task.id, task.agent_id
            ));
        }
    }
    Ok(())
}
