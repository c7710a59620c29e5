//! Real faults in network namespaces (root; CI is root): five nodes on a
//! bridge under the set-add workload; one node cut off, one link cut one
//! way, a 2/3 split, kill -9 and restart. No acknowledged element may be
//! lost once the cluster healed and repaired.

use norn_tests::netns::{is_root, run_scenario, SCENARIOS};

#[test]
fn no_acknowledged_write_is_lost_under_real_faults() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    for name in SCENARIOS {
        let report = run_scenario(name, 8).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{report:?}");
        assert!(report.acknowledged > 0, "{name}: nothing was acknowledged");
        assert_eq!(report.lost, 0, "{name}: {report:?}");
        assert_eq!(report.never_read, 0, "{name}: {report:?}");
    }
}
