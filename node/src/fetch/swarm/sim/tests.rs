//! A small fleet, run in full: the simulation's sanity, and the swarm's on it.

use super::*;

#[test]
fn sixteen_nodes_share_a_blob_without_leaning_on_the_owner() {
    // At 50 Mbit/s one transfer of 32 MiB takes 5.4 s: longer than the driver's timers (a
    // provider lookup per second, copies counted per 2 s), so the ratio says how well the
    // swarm uses its links rather than how long its timers are.
    let config = Config { nodes: 16, size: 32 << 20, link_rate: 50e6 / 8.0, ..Config::default() };
    let report = run(&config);
    assert_eq!(report.complete, 16, "every node holds the blob: {report:?}");
    let ratio = report.ratio();
    assert!(ratio.is_finite() && (1.0..=3.0).contains(&ratio), "makespan/T1 = {ratio}");
    assert!(report.owner_upload <= 3.0, "the owner sent {} copies", report.owner_upload);
    assert_eq!(report.upstream_fetches, 1, "only the owner went upstream");
    // Every node but the owner received one copy, and cancelled hedges may add a little.
    assert!(report.mean_upload >= 15.0 / 16.0 - 1e-6, "{report:?}");
}

#[test]
fn a_run_is_repeatable() {
    let config = Config { nodes: 8, size: 8 << 20, ..Config::default() };
    let (a, b) = (run(&config), run(&config));
    assert_eq!((a.makespan, a.events), (b.makespan, b.events));
}

#[test]
fn slow_links_and_max_min_sharing_complete_too() {
    let config = Config {
        nodes: 10,
        size: 8 << 20,
        slow_fraction: 0.2,
        sharing: Sharing::MaxMin,
        discovery: Discovery::Sample(4),
        ..Config::default()
    };
    let report = run(&config);
    assert_eq!(report.complete, 10, "{report:?}");
    // Slow nodes cannot beat their own link: a tenth of the rate.
    assert!(report.ratio() >= 10.0, "{report:?}");
}

#[test]
fn max_min_hands_on_what_a_slow_end_cannot_use() {
    use std::time::Instant;

    use shoal_protocol::Digest;

    use super::net::Net;
    use crate::fetch::uploads::Uploads;

    // Node 0 sends 1,000 bytes to node 1 (fast) and to node 2 (a tenth of the rate) at once.
    let uploads = Uploads::new(4);
    let slot = || uploads.acquire(&Digest::of(b"blob"), None, Instant::now()).expect("a slot");
    let rates = vec![1.0, 1.0, 0.1];
    let fast_flow_done = |sharing| {
        let mut net = Net::new(sharing, rates.clone(), rates.clone());
        let (fast, _) = net.start(0, (0, 1), 1, 1000, 0, slot());
        let (_, changed) = net.start(0, (0, 2), 2, 1000, 0, slot());
        changed.iter().find(|c| c.flow == fast).expect("the fast flow was re-rated").at
    };
    // Equal shares: half the uplink each. Max-min: the slow flow takes its 0.1, the fast 0.9.
    assert_eq!(fast_flow_done(Sharing::Equal), 2000);
    assert_eq!(fast_flow_done(Sharing::MaxMin), 1112);
}

#[test]
fn referrals_find_sources_that_lookups_leave_out() {
    // Lookups that name only the first two nodes to announce, as libp2p-kad's own store would:
    // without referrals, everyone else leans on the owner and those two.
    let config = |referrals| Config {
        nodes: 24,
        size: 16 << 20,
        link_rate: 50e6 / 8.0,
        discovery: Discovery::First(2),
        referrals,
        ..Config::default()
    };
    let (with, without) = (run(&config(true)), run(&config(false)));
    assert_eq!((with.complete, without.complete), (24, 24));
    assert!(
        with.owner_upload < without.owner_upload && with.ratio() < without.ratio(),
        "with referrals: {with:?}\nwithout: {without:?}"
    );
}

#[test]
fn a_small_roster_rotates_its_sources_instead_of_starving() {
    // Four sources at a time out of 31 peers. Kept for good, the first four found would be
    // the same few early holders for every node, and the swarm would queue on them.
    let config = |source_cap| Config {
        nodes: 32,
        size: 16 << 20,
        link_rate: 50e6 / 8.0,
        discovery: Discovery::Sample(8),
        source_cap,
        ..Config::default()
    };
    let (small, every) = (run(&config(Some(4))), run(&config(None)));
    assert_eq!((small.complete, small.upstream_fetches), (32, 1), "{small:?}");
    assert!(small.max_sources <= 4 + 1, "four sources and the owner at most: {small:?}");
    assert!(every.max_sources > 16, "{every:?}");
    assert!(small.ratio() <= 4.0 && small.ratio() < every.ratio() * 1.5, "{small:?}\n{every:?}");
    assert!(small.owner_upload <= 3.0, "the owner sent {} copies", small.owner_upload);
}
