//! Runs the barrier model checker and prints what it explored and any counterexample:
//! `cargo run --release -p lockstep-model --example check -- [small|rollout|failover|names|wide]
//! [--mutation none|late-renewal|join-without-check|name-only|no-relist] [--stop-at-first]
//! [--max-states N] [--max-depth N] [--max-time S] [--faults-until S] [--max-faults N]
//! [--lease-seconds S]`. Exits 1 when a property fails. `e2e/bench/model.sh` runs every
//! configuration and mutant, then the deep `wide` run.

use std::time::Instant;

use lockstep_model::{BarrierModel, Mutation};
use stateright::{Checker, Model};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = args.first().map(String::as_str).unwrap_or("small");
    let mutation = match args
        .iter()
        .position(|a| a == "--mutation")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
    {
        None | Some("none") => Mutation::None,
        Some("late-renewal") => Mutation::LateRenewalKeepsStage,
        Some("join-without-check") => Mutation::JoinWithoutQuorumCheck,
        Some("name-only") => Mutation::NameOnlyIdentity,
        Some("no-relist") => Mutation::NoMembershipRelist,
        Some(other) => {
            eprintln!(
                "unknown mutation {other:?}: none, late-renewal, join-without-check, name-only, no-relist"
            );
            std::process::exit(2);
        }
    };
    let mut model = match config {
        "small" => BarrierModel::small(),
        "failover" => BarrierModel::failover(),
        "wide" => BarrierModel::wide(),
        "names" => BarrierModel::same_names(),
        "rollout" => BarrierModel::rollout(),
        other => {
            eprintln!("unknown configuration {other:?}: small, rollout, failover, names, wide");
            std::process::exit(2);
        }
    };
    model.mutation = mutation;
    let number = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<u64>().expect("a number"))
    };
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
    let elapsed = started.elapsed();
    println!(
        "states {} (unique {}), max depth {}, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        elapsed.as_secs_f64()
    );
    let mut failed = false;
    for property in model.properties() {
        match checker.discovery(property.name) {
            Some(path) if property.expectation != stateright::Expectation::Sometimes => {
                failed = true;
                println!(
                    "VIOLATED: {}\n{}",
                    property.name,
                    lockstep_model::explain(&model, &path.into_actions())
                );
            }
            None if property.expectation == stateright::Expectation::Sometimes => {
                failed = true;
                println!("NEVER REACHED: {}", property.name);
            }
            _ => println!("holds: {}", property.name),
        }
    }
    std::process::exit(i32::from(failed));
}
