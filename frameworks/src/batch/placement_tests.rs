//! Locality (delay scheduling), gang placement and per-task commands of the batch framework.

use super::super::*;
use super::OfferIdT;
use crate::testutil::*;

fn job(n: usize, f: impl FnOnce(&mut BatchConfig)) -> BatchFramework {
    let mut c = BatchConfig::new("job", n, CommandInfo::shell("sleep 1"), r("cpus:1;mem:100"));
    c.sample_interval_ms = 0;
    f(&mut c);
    let mut b = BatchFramework::new(c).unwrap();
    b.subscribed(&mut ctx(0), &fid(), false);
    b
}

/// Task i prefers host-a<i % 3>.
fn prefs(n: usize) -> Vec<Vec<String>> {
    (0..n).map(|i| vec![format!("host-a{}", i % 3)]).collect()
}

#[test]
fn delay_scheduling_waits_for_a_preferred_agent_then_gives_up() {
    let mut b = job(3, |c| {
        c.preferred_hosts = prefs(3);
        c.locality_wait_ms = 5_000;
    });
    // An agent nobody prefers: skipped, declined only until the wait ends.
    let mut c = ctx(1_000);
    b.offers(&mut c, vec![offer("o1", "x9", "cpus:4;mem:400")]);
    assert!(launched_ids(&c).is_empty());
    assert_eq!(declined(&c), vec![("o1".to_string(), 5.0)]);
    // A preferred agent: only its local task goes there, the rest of the offer is skipped.
    let mut c = ctx(2_000);
    b.offers(&mut c, vec![offer("o2", "a1", "cpus:4;mem:400")]);
    assert_eq!(launched_ids(&c), vec!["task-1"]);
    // The wait restarted at the skip after the local launch (t = 2 s): not over at 6.9 s...
    let mut c = ctx(6_900);
    b.offers(&mut c, vec![offer("o3", "x9", "cpus:4;mem:400")]);
    assert!(launched_ids(&c).is_empty());
    let (_, refuse) = declined(&c)[0].clone();
    assert!((refuse - 0.1).abs() < 1e-9, "{refuse}");
    // ...over at 7 s: the non-local agent takes both remaining tasks.
    let mut c = ctx(7_000);
    b.offers(&mut c, vec![offer("o4", "x9", "cpus:4;mem:400")]);
    assert_eq!(launched_ids(&c), vec!["task-0", "task-2"]);
    let p = b.progress();
    assert_eq!((p.launched_local, p.tasks_launched), (1, 3));
    assert_eq!(b.tasks()[1].local, Some(true));
    assert_eq!(b.tasks()[0].local, Some(false));
}

#[test]
fn without_a_wait_tasks_go_anywhere_but_local_ones_first() {
    let mut b = job(3, |c| c.preferred_hosts = prefs(3));
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a2", "cpus:1;mem:100")]);
    assert_eq!(launched_ids(&c), vec!["task-2"]);
    let mut c = ctx(20);
    b.offers(&mut c, vec![offer("o2", "x9", "cpus:1;mem:100")]);
    assert_eq!(launched_ids(&c), vec!["task-0"]);
}

#[test]
fn a_gang_holds_offers_until_all_tasks_fit() {
    let mut b = job(4, |c| c.gang = true);
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:2;mem:200")]);
    assert!(
        c.calls.is_empty(),
        "held, neither used nor declined: {:?}",
        c.calls
    );
    // A rescinded offer no longer counts.
    b.rescinded(&mut ctx(15), &OfferIdT::new("o1").unwrap());
    let mut c = ctx(20);
    b.offers(&mut c, vec![offer("o2", "a2", "cpus:2;mem:200")]);
    assert!(c.calls.is_empty());
    let mut c = ctx(30);
    b.offers(
        &mut c,
        vec![
            offer("o3", "a3", "cpus:2;mem:200"),
            offer("o4", "a4", "cpus:8;mem:800"),
        ],
    );
    // 2 + 2 + 8 slots >= 4: all four launch at once, over the held and the new offers.
    assert_eq!(launched_ids(&c).len(), 4);
    assert_eq!(b.progress().staged, 4);
    assert!(b.held.is_empty());
}

#[test]
fn a_gang_counts_offers_on_one_agent_together() {
    // Tasks of 2 cpus; an agent frees 1 cpu at a time, so each offer alone fits none.
    let mut b = job(2, |c| {
        c.gang = true;
        c.task_resources = r("cpus:2;mem:100");
    });
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:1;mem:100")]);
    b.offers(&mut c, vec![offer("o2", "a1", "cpus:1;mem:100")]);
    assert!(c.calls.is_empty(), "{:?}", c.calls);
    let mut c = ctx(20);
    b.offers(&mut c, vec![offer("o3", "a2", "cpus:2;mem:100")]);
    // a1's two offers hold one task between them: both launch, a1's offers in one accept.
    let accepts: Vec<Vec<String>> = c
        .calls
        .iter()
        .filter_map(|call| match call {
            agora_actors::sdk::Call::Accept { offer_ids, .. } => {
                Some(offer_ids.iter().map(|o| o.to_string()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(accepts, vec![vec!["o1", "o2"], vec!["o3"]]);
    assert_eq!(launched_ids(&c).len(), 2);
    assert!(b.held.is_empty());
}

#[test]
fn per_task_commands_and_their_validation() {
    let mut b = job(2, |c| {
        c.task_commands = vec![
            CommandInfo::shell("sim:const:5"),
            CommandInfo::shell("sim:const:7"),
        ];
    });
    let mut c = ctx(10);
    b.offers(&mut c, vec![offer("o1", "a1", "cpus:2;mem:200")]);
    let cmds: Vec<String> = launched(&c)[0]
        .1
        .iter()
        .map(|t| t.command.as_ref().unwrap().value.clone())
        .collect();
    assert_eq!(cmds, vec!["sim:const:5", "sim:const:7"]);
    let mut bad = BatchConfig::new("job", 3, CommandInfo::shell("x"), r("cpus:1"));
    bad.task_commands = vec![CommandInfo::shell("y")];
    assert!(BatchFramework::new(bad.clone()).is_err());
    bad.task_commands.clear();
    bad.preferred_hosts = prefs(2);
    assert!(BatchFramework::new(bad).is_err());
}
