//! The slot plan and what needs a restart, on configurations parsed from text.

use std::sync::Arc;

use super::slots::{SlotPlan, plan_slots, restart_needed};
use crate::config::{self, Config};
use crate::control::runtime::slot_totals::{SlotTotals, rebase_slots};
use crate::datapath::DatapathCounters;

fn uplink(n: u8) -> String {
    format!(
        "[[uplink]]\nname = \"isp{n}\"\ninterface = \"wan{n}\"\ngateway = \"198.51.100.{n}\"\nweight = {n}\n"
    )
}

fn config(uplinks: &[u8], policy_on: Option<u8>) -> Config {
    let mut text = "[lan]\ninterface = \"lan0\"\nprefixes = [\"10.77.0.0/24\"]\n".to_owned();
    for n in uplinks {
        text.push_str(&uplink(*n));
    }
    if let Some(n) = policy_on {
        text.push_str(&format!(
            "[[policy]]\nname = \"web\"\nuplinks = [\"isp{n}\"]\n[policy.match]\nproto = \"tcp\"\n"
        ));
    }
    text.push_str("[nat]\nport_range = \"20000-29999\"\n");
    config::parse(&text, "t.toml", None).expect("valid test config")
}

fn running(plan: &SlotPlan) -> Vec<(config::Uplink, bool)> {
    plan.config
        .uplinks
        .iter()
        .cloned()
        .zip(plan.retired.iter().copied())
        .collect()
}

fn names(plan: &SlotPlan) -> Vec<String> {
    plan.config
        .uplinks
        .iter()
        .zip(&plan.retired)
        .map(|(u, r)| {
            if *r {
                format!("({})", u.name)
            } else {
                u.name.clone()
            }
        })
        .collect()
}

#[test]
fn uplinks_that_stay_keep_their_slots_whatever_the_file_order() {
    let start = running(&plan_slots(&[], config(&[1, 2, 3], None)).unwrap());
    let plan = plan_slots(&start, config(&[3, 1], Some(3))).unwrap();
    // isp2 leaves slot 1 retired (isp3 keeps slot 2), nothing is added.
    assert_eq!(names(&plan), ["isp1", "(isp2)", "isp3"]);
    assert_eq!(plan.removed, [1]);
    assert_eq!(plan.removed_names, ["isp2"]);
    assert!(plan.added.is_empty());
    assert_eq!(
        plan.config.uplinks[1].weight, 0,
        "a retired slot takes no flows"
    );
    // The policy names isp3: its member index is isp3's slot, not its file position (0).
    assert_eq!(plan.config.policies[0].uplinks[0].index, 2);

    // Next reload adds isp4: it takes the slot retired earlier, not a new one.
    let plan = plan_slots(&running(&plan), config(&[1, 3, 4], None)).unwrap();
    assert_eq!(names(&plan), ["isp1", "isp4", "isp3"]);
    assert_eq!(plan.added, [1]);
    assert!(plan.removed.is_empty());
}

#[test]
fn a_slot_removed_by_this_reload_is_not_reused_by_it_and_trailing_ones_go() {
    let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
    let plan = plan_slots(&start, config(&[1, 3], None)).unwrap();
    // isp2's flows still hold slot 1 while this reload fails them over: isp3 gets slot 2.
    assert_eq!(names(&plan), ["isp1", "(isp2)", "isp3"]);
    assert_eq!(
        (plan.added.as_slice(), plan.removed.as_slice()),
        (&[2][..], &[1][..])
    );

    let plan = plan_slots(&running(&plan), config(&[1], None)).unwrap();
    // isp3 removed: slots 1 and 2 are retired and trailing, so they are dropped.
    assert_eq!(names(&plan), ["isp1"]);
    assert_eq!(plan.removed, [2]);
}

#[test]
fn a_slot_given_to_a_new_uplink_counts_from_zero_and_the_others_keep_counting() {
    let counters: Vec<Arc<DatapathCounters>> = (0..2)
        .map(|_| Arc::new(DatapathCounters::default()))
        .collect();
    let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
    // isp1 (slot 0) and isp2 (slot 1) carry traffic on both workers.
    for c in &counters {
        c.uplinks[0].tx_packets.add(10);
        c.uplinks[1].tx_packets.add(7);
        c.uplinks[1].rx_bytes.add(1500);
        c.uplinks[1].flows_created.add(3);
        c.uplinks[1].tcp_handshakes_started.add(2);
    }
    let mut baselines = Vec::new();
    let view = |baselines: &Vec<SlotTotals>, slot: usize| {
        SlotTotals::sum(&counters, slot).since(baselines.get(slot).copied().unwrap_or_default())
    };
    assert_eq!(view(&baselines, 1).tx_packets, 14);
    // isp2 removed, then isp3 added: it takes slot 1.
    let removed = plan_slots(&start, config(&[1], None)).unwrap();
    let plan = plan_slots(&running(&removed), config(&[1, 3], None)).unwrap();
    assert_eq!(plan.added, vec![1]);
    assert_eq!(names(&plan)[1], "isp3");
    rebase_slots(&mut baselines, &counters, &plan.added);
    assert_eq!(
        view(&baselines, 1),
        SlotTotals::default(),
        "isp3 starts at 0"
    );
    assert_eq!(view(&baselines, 0).tx_packets, 20, "isp1 keeps its totals");
    counters[1].uplinks[1].tx_packets.add(5);
    counters[0].uplinks[1].flows_created.add(1);
    let isp3 = view(&baselines, 1);
    assert_eq!((isp3.tx_packets, isp3.flows_created), (5, 1));
    assert_eq!(isp3.rx_bytes, 0);
    assert_eq!(view(&baselines, 0).tx_packets, 20);
}

#[test]
fn changed_uplink_definitions_and_moved_interfaces_are_refused_with_the_reason() {
    let start = running(&plan_slots(&[], config(&[1, 2], None)).unwrap());
    let mut moved = config(&[1, 2], None);
    moved.uplinks[1].gateway = "198.51.100.77".parse().unwrap();
    let error = plan_slots(&start, moved).unwrap_err().to_string();
    assert!(
        error.contains("uplink isp2: its gateway (198.51.100.2 → 198.51.100.77) changed"),
        "{error}"
    );

    let mut renamed = config(&[1, 2], None);
    renamed.uplinks[1].name = "isp9".into();
    let error = plan_slots(&start, renamed).unwrap_err().to_string();
    assert!(
        error.contains("interface wan2 passes from uplink isp2 to uplink isp9"),
        "{error}"
    );
}

#[test]
fn restart_is_still_needed_for_the_lan_the_port_range_and_the_datapath() {
    let old = config(&[1, 2], None);
    let mut new = config(&[1], None);
    assert_eq!(restart_needed(&old, &new), None, "the uplink set reloads");
    new.lan.interface = "lan9".into();
    assert_eq!(restart_needed(&old, &new), Some("[lan]"));
    let mut new = config(&[1, 2], None);
    new.datapath.flow_capacity += 1;
    assert_eq!(restart_needed(&old, &new), Some("[datapath]"));
    let mut new = config(&[1, 2], None);
    new.nat.ports_per_host = Some(10);
    assert_eq!(restart_needed(&old, &new), Some("nat.ports_per_host"));
}

#[test]
fn refusals_read_as_they_always_have() {
    use super::ReloadError;
    assert_eq!(
        ReloadError::RestartNeeded("[lan]").to_string(),
        "[lan] changed: restart flowpin to apply it"
    );
    assert_eq!(
        ReloadError::Invalid(anyhow::anyhow!("inner").context("outer")).to_string(),
        "outer: inner"
    );
    assert_eq!(
        ReloadError::NoFreeSlot {
            uplink: "isp9".into()
        }
        .to_string(),
        format!(
            "uplink isp9: no free uplink slot (at most {} uplinks, counting slots of uplinks removed earlier whose flows are gone only after a restart)",
            crate::datapath::MAX_UPLINKS
        )
    );
    let stopped = ReloadError::ForwardingStopped(super::IoReopenError::Workers(
        std::io::Error::other("no threads"),
    ));
    assert_eq!(
        stopped.to_string(),
        "starting the workers: no threads (forwarding is stopped: fix the cause and reload, or restart flowpin)"
    );
}
