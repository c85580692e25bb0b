//! Runs a model checker and prints what it explored and any counterexample:
//! `cargo run --release -p lockstep-model --example check -- CONFIGURATION [--mutation M]
//! [--stop-at-first] [--max-states N] [--max-depth N]`, and for the barrier configurations
//! `[--max-time S] [--faults-until S] [--max-faults N] [--lease-seconds S]`. Exits 1 when a
//! property fails. `e2e/bench/model.sh` runs every configuration and mutant, then the deep
//! `wide` run.
//!
//! Barrier configurations: small, rollout, failover, names, wide. Fleet configurations (the
//! promise per object): recreate, tls, tls-freeze, takeover, takeover-unserved, takeover-steps, widen, faults.

use std::time::Instant;

use lockstep_model::{
    BarrierModel, Mutation,
    objects::{FleetModel, explain_fleet},
};
use stateright::{Checker, Expectation, Model};

const MUTATIONS: &[(&str, Mutation)] = &[
    ("none", Mutation::None),
    ("late-renewal", Mutation::LateRenewalKeepsStage),
    ("join-without-check", Mutation::JoinWithoutQuorumCheck),
    ("name-only", Mutation::NameOnlyIdentity),
    ("no-relist", Mutation::NoMembershipRelist),
    ("trust-rollout-list", Mutation::RolloutListTrustedAfterExpiry),
    ("name-generation", Mutation::NameGenerationIdentity),
    (
        "certificate-from-current-spec",
        Mutation::CertificateFromCurrentSpec,
    ),
    ("stale-replica-spec", Mutation::StaleReplicaSpec),
    ("unsupervised-sync-loop", Mutation::UnsupervisedSyncLoop),
    ("leave-recreates-lease", Mutation::LeaveRecreatesLease),
    ("edited-object-only-rejudged", Mutation::EditedObjectOnlyRejudged),
    ("operator-judges-tls-apart", Mutation::OperatorJudgesTlsApart),
    (
        "no-replica-garbage-collection",
        Mutation::NoReplicaGarbageCollection,
    ),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = args.first().map(String::as_str).unwrap_or("small");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let mutation = match flag("--mutation") {
        None => Mutation::None,
        Some(name) => match MUTATIONS.iter().find(|(n, _)| *n == name) {
            Some((_, m)) => *m,
            None => {
                let names: Vec<&str> = MUTATIONS.iter().map(|(n, _)| *n).collect();
                eprintln!("unknown mutation {name:?}: {}", names.join(", "));
                std::process::exit(2);
            }
        },
    };
    let number = |name: &str| flag(name).map(|v| v.parse::<u64>().expect("a number"));
    let fleet = match config {
        "recreate" => Some(FleetModel::recreate()),
        "tls" => Some(FleetModel::tls()),
        "tls-freeze" => Some(FleetModel::tls_freeze()),
        "takeover" => Some(FleetModel::takeover()),
        "takeover-steps" => Some(FleetModel::takeover_steps()),
        "takeover-unserved" => Some(FleetModel::takeover_unserved()),
        "widen" => Some(FleetModel::widen()),
        "faults" => Some(FleetModel::faults()),
        _ => None,
    };
    let failed = if let Some(model) = fleet {
        let model = FleetModel { mutation, ..model };
        println!("configuration {config}, mutation {mutation:?}: {model:?}");
        check(model, &args, &number, explain_fleet)
    } else {
        let mut model = match config {
            "small" => BarrierModel::small(),
            "failover" => BarrierModel::failover(),
            "wide" => BarrierModel::wide(),
            "names" => BarrierModel::same_names(),
            "rollout" => BarrierModel::rollout(),
            other => {
                eprintln!(
                    "unknown configuration {other:?}: small, rollout, failover, names, wide, recreate, tls, tls-freeze, takeover, takeover-unserved, takeover-steps, widen, faults"
                );
                std::process::exit(2);
            }
        };
        model.mutation = mutation;
        if let Some(t) = number("--max-time") {
            model.max_time = t;
        }
        if let Some(t) = number("--faults-until") {
            model.faults_until = t;
        }
        if let Some(n) = number("--max-faults") {
            model.max_faults = n as u8;
        }
        if let Some(n) = number("--lease-seconds") {
            model.lease_seconds = n;
        }
        println!("configuration {config}, mutation {mutation:?}: {model:?}");
        check(model, &args, &number, lockstep_model::explain)
    };
    std::process::exit(i32::from(failed));
}

/// Explores `model`, prints the figures and each property; true when one fails.
fn check<M>(
    model: M,
    args: &[String],
    number: &dyn Fn(&str) -> Option<u64>,
    explain: fn(&M, &[M::Action]) -> String,
) -> bool
where
    M: Model + Clone + Send + Sync + 'static,
    M::State: std::fmt::Debug + std::hash::Hash + Send + Sync + Clone + PartialEq,
    M::Action: std::fmt::Debug + Send + Sync + Clone + PartialEq,
{
    let started = Instant::now();
    let mut checker = model
        .clone()
        .checker()
        .threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Some(n) = number("--max-states") {
        checker = checker.target_state_count(n as usize);
    }
    if let Some(n) = number("--max-depth") {
        checker = checker.target_max_depth(n as usize);
    }
    if args.iter().any(|a| a == "--stop-at-first") {
        checker = checker.finish_when(stateright::HasDiscoveries::AnyFailures);
    }
    let checker = checker.spawn_bfs().join();
    println!(
        "states {} (unique {}), max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        started.elapsed().as_secs_f64()
    );
    let mut failed = false;
    for property in model.properties() {
        match checker.discovery(property.name) {
            Some(path) if property.expectation != Expectation::Sometimes => {
                failed = true;
                println!(
                    "VIOLATED: {}\n{}",
                    property.name,
                    explain(&model, &path.into_actions())
                );
            }
            None if property.expectation == Expectation::Sometimes => {
                failed = true;
                println!("NEVER REACHED: {}", property.name);
            }
            _ => println!("holds: {}", property.name),
        }
    }
    failed
}
