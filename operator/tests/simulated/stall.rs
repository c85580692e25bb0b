//! `Stalled`, with a short `--stall-timeout`: a rollout that lags longer than the timeout is
//! Stalled naming the laggard, and recovers when it catches up. The module's own operator,
//! because its stall timeout differs from the barrier module's. The replicas are simulated
//! (`lockstep_e2e::simulated`).

use std::time::{Duration, Instant};

use lockstep_e2e::{
    fixture::{Fixture, lockstep_plugin},
    simulated::*,
};

use crate::Turn;

/// This module's turn, with its operator.
fn take_turn() -> Turn {
    crate::take_turn(
        "stall",
        Some(&["--stall-timeout", "3s", "--lease-duration", "3s"]),
    )
}

#[tokio::test]
async fn a_rollout_lagging_past_the_stall_timeout_is_stalled_until_it_catches_up() {
    let _turn = take_turn();
    let f = Fixture::new("stall").await;
    let mut fast = f.replica("fast", 30);
    let mut slow = f.replica("slow", 30);
    fast.join().await;
    slow.join().await;
    let applied = Instant::now();
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    fast.report_current(&f.api, "web").await;

    let (rc, _) = f
        .wait_condition("web", "Ready", "to count fast", |c| c.message.starts_with("1/2"))
        .await;
    let stalled = condition(&rc, "Stalled").unwrap();
    if applied.elapsed() < Duration::from_secs(2) {
        assert_eq!(stalled.status, "False", "not stalled before the timeout");
        assert_eq!(
            f.kstatus("web").0,
            "InProgress",
            "a lagging rollout is in progress"
        );
        // Still lagging when the wait gives up: exit 2.
        let wait = lockstep_plugin(f.cp, &["wait", "web", "-n", &f.ns, "--timeout", "500ms"]);
        assert_eq!(
            wait.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&wait.stderr)
        );
    }

    let (rc, stalled) = f
        .wait_condition("web", "Stalled", "True", |c| c.status == "True")
        .await;
    // The stall clock is the persisted lastTransitionTime of Reconciling, which Kubernetes
    // keeps in whole seconds: truncation can bring the deadline up to a second earlier than
    // 3 s after the apply, never more.
    assert!(
        applied.elapsed() >= Duration::from_secs(2),
        "stalled after {:?}, well before the 3 s timeout",
        applied.elapsed()
    );
    assert_eq!(stalled.reason, "RolloutStalled");
    assert_eq!(
        stalled.message,
        format!(
            "{}/slow has not served generation 1 within the stall timeout (3s)",
            f.ns
        )
    );
    // Exactly one of Reconciling/Stalled is True, so kstatus reports Failed.
    let reconciling = condition(&rc, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("False", "RolloutStalled")
    );
    assert_eq!(condition(&rc, "Ready").unwrap().status, "False");
    assert!(
        f.events("web")
            .iter()
            .any(|(reason, note)| reason == "RolloutStalled" && note.contains("slow"))
    );

    // kstatus (the real cli-utils library, as Flux and kpt use it) calls it Failed, and
    // `kubectl lockstep wait` exits 1.
    assert_eq!(f.kstatus("web").0, "Failed");
    let wait = lockstep_plugin(f.cp, &["wait", "web", "-n", &f.ns, "--timeout", "20s"]);
    assert_eq!(
        wait.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&wait.stderr)
    );

    slow.report_current(&f.api, "web").await;
    let (rc, _) = f
        .wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;
    assert_eq!(f.kstatus("web").0, "Current");
    let stalled = condition(&rc, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("False", "Idle")
    );
}

#[tokio::test]
async fn a_rejection_is_in_progress_for_kstatus_until_the_stall_timeout_then_failed() {
    let _turn = take_turn();
    let f = Fixture::new("reject-stall").await;
    let mut picky = f.replica("picky", 30);
    picky.join().await;
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    let applied = Instant::now();
    picky
        .reject(
            &f.api,
            "web",
            0,
            "",
            1,
            "spec.rules[0].tls.secretName: certificate expired",
        )
        .await;
    f.wait_condition("web", "Ready", "Rejected", |c| c.reason == "Rejected")
        .await;
    if applied.elapsed() < Duration::from_secs(2) {
        // A rejection may be transient (a Secret fixed a moment later): in progress.
        assert_eq!(f.kstatus("web").0, "InProgress");
    }
    f.wait_condition("web", "Stalled", "True", |c| c.status == "True")
        .await;
    assert_eq!(f.kstatus("web").0, "Failed");
}
