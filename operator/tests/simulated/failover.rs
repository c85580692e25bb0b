//! Leader election: two operator binaries share the Lease `lockstep-operator` in the test's
//! namespace; when the leader is SIGKILLed during a rollout the other takes over and finishes
//! it, and a leader stopped with SIGTERM releases the Lease. The replicas are simulated
//! (`lockstep_e2e::simulated`). The module's turn has no operator of its own: the test starts
//! both, and no other module's operator runs beside them.

use std::{process::Command, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use lockstep_e2e::{
    eventually,
    fixture::{Fixture, exit_within},
    fleet::Operator,
    simulated::*,
};

use crate::take_turn;

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(lockstep_crds::OPERATOR_LEASE_NAME)
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn leader_gauge(admin: std::net::SocketAddr) -> Option<String> {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("lockstep_operator_leader "))
        .map(str::to_owned)
}

#[tokio::test]
async fn the_standby_finishes_a_rollout_when_the_leader_is_killed() {
    let _turn = take_turn("failover", None);
    let f = Fixture::new("failover").await;
    let start = |id: &str| -> Operator {
        start_operator(
            f.cp,
            &format!("-{id}"),
            &[
                "--identity",
                id,
                "--lease-namespace",
                &f.ns,
                "--lease-duration",
                "3s",
            ],
        )
    };
    let mut operators = vec![("op-a", start("op-a")), ("op-b", start("op-b"))];
    let leases: Api<Lease> = Api::namespaced(f.client.clone(), &f.ns);
    let first = eventually("a leader to be elected", WAIT, || async { holder(&leases).await })
        .await
        .unwrap();
    let leader_index = operators
        .iter()
        .position(|(id, _)| *id == first)
        .expect("a known identity");
    let (leader_id, mut leader) = operators.remove(leader_index);
    let (standby_id, standby) = operators.remove(0);
    assert_eq!(
        eventually("the leader gauge", WAIT, || async {
            leader_gauge(leader.admin).await.filter(|v| v == "1")
        })
        .await
        .unwrap(),
        "1"
    );
    assert_eq!(leader_gauge(standby.admin).await.as_deref(), Some("0"));

    let mut replicas = vec![f.replica("proxy-0", 30), f.replica("proxy-1", 30)];
    for r in &mut replicas {
        r.join().await;
    }
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9001");
    for r in &replicas {
        r.report_current(&f.api, "web").await;
    }
    f.wait_condition("web", "Ready", "True at generation 1", |c| c.status == "True")
        .await;

    // Kill the leader mid-rollout: generation 2 is applied and served, and only the standby
    // is left to notice.
    f.apply_route("web", "app.test", "/", "http://127.0.0.1:9002");
    leader.process.kill();
    let killed = std::time::Instant::now();
    for r in &replicas {
        r.report_current(&f.api, "web").await;
    }
    let mut wait = f.spawn_kubectl_wait("web", Duration::from_secs(30));
    let status = exit_within(&mut wait, Duration::from_secs(35)).expect("kubectl wait ends");
    assert!(status.success(), "the standby finished the rollout");
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    let rc = f.get("web").await;
    let ready = condition(&rc, "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.generation), ("True", 2));
    assert_eq!(holder(&leases).await.as_deref(), Some(standby_id));
    assert_ne!(standby_id, leader_id);
    assert_eq!(leader_gauge(standby.admin).await.as_deref(), Some("1"));

    // SIGTERM: the new leader releases the Lease on its way out instead of letting it run out.
    let pid = standby.process.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let released = eventually("the Lease to be released", Duration::from_secs(2), || async {
        let h = holder(&leases).await;
        (h.as_deref() != Some(standby_id)).then_some(h)
    })
    .await
    .unwrap();
    assert_eq!(released, None, "nobody else is running to take it");
    drop(standby);
}
