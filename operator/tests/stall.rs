//! `Stalled` against a real kube-apiserver, with a short `--stall-timeout`: a rollout that lags
//! longer than the timeout is Stalled naming the laggard, and recovers when it catches up.
//! Its own binary (and control plane), because its operator's stall timeout differs.

mod common;

use std::time::{Duration, Instant};

use common::*;
use lockstep_e2e::ControlPlane;

#[tokio::test]
async fn a_rollout_lagging_past_the_stall_timeout_is_stalled_until_it_catches_up() {
    let _operator = start_operator(
        ControlPlane::shared(),
        "-stall",
        &["--stall-timeout", "3s", "--lease-duration", "3s"],
    );
    let f = fixture("stall").await;
    let mut fast = f.replica("fast", 30);
    let mut slow = f.replica("slow", 30);
    fast.join().await;
    slow.join().await;
    let applied = Instant::now();
    f.apply("web", "app.test", "/", "http://127.0.0.1:9001");
    fast.report_current(&f.api, "web").await;

    let (rc, _) = f
        .wait_condition("web", "Ready", "to count fast", |c| c.message.starts_with("1/2"))
        .await;
    let stalled = condition(&rc, "Stalled").unwrap();
    if applied.elapsed() < Duration::from_secs(2) {
        assert_eq!(stalled.status, "False", "not stalled before the timeout");
    }

    let (rc, stalled) = f
        .wait_condition("web", "Stalled", "True", |c| c.status == "True")
        .await;
    assert!(
        applied.elapsed() >= Duration::from_secs(3),
        "stalled after {:?}, before the 3 s timeout",
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

    slow.report_current(&f.api, "web").await;
    let (rc, _) = f
        .wait_condition("web", "Ready", "True", |c| c.status == "True")
        .await;
    let stalled = condition(&rc, "Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("False", "Idle")
    );
}
