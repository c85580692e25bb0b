//! What a reconcile tells besides the status: each condition transition as a log line and an
//! Event (best effort, never holding the reconcile), the per-RouterConfig gauges and the
//! rollout-time histogram (from when any instance first saw the generation), and the
//! ready-path trace of where a `Ready=True` write's time went.

use std::time::Instant;

use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use lockstep_core::{ObjectKey, barrier};
use lockstep_crds::RouterConfig;

use super::{Context, incarnation};

/// When a generation of a RouterConfig was first seen, for the rollout-time histogram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rollout {
    generation: i64,
    first_seen: Instant,
    ready_recorded: bool,
}

/// Logs, at debug level, where the time went between the last RouterReplica event this
/// instance saw and the `Ready=True` write just made: the operator's part of a rollout,
/// step by step (the last step, the write reaching a client's watch, is the client's to time).
pub(super) fn trace_ready_path(
    ctx: &Context,
    key: &ObjectKey,
    generation: i64,
    started: Instant,
    judged: Instant,
    confirmed: Option<Instant>,
) {
    let written = Instant::now();
    let report = *ctx.last_report_seen.lock().expect("last report lock");
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    tracing::debug!(
        routerconfig = %key,
        generation,
        report_to_reconcile_ms = report.map(|r| ms(r, started)),
        judge_ms = ms(started, judged),
        quorum_read_ms = confirmed.map(|c| ms(judged, c)),
        write_ms = ms(confirmed.unwrap_or(judged), written),
        "ready path"
    );
}

/// Logs each transition and records it as an Event. Events are best effort: they are sent
/// beside the reconcile, in order, and never hold it (and with it the object's next
/// reconcile) on a slow apiserver.
pub(super) fn publish(
    ctx: &Context,
    rc: &RouterConfig,
    key: &ObjectKey,
    generation: i64,
    transitions: &[barrier::Transition],
) {
    if transitions.is_empty() {
        return;
    }
    let events: Vec<Event> = transitions
        .iter()
        .map(|transition| {
            tracing::info!(routerconfig = %key, generation, reason = transition.reason.as_str(), note = %transition.note, "condition transition");
            Event {
                type_: if transition.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: transition.reason.as_str().to_owned(),
                note: Some(transition.note.chars().take(1000).collect()),
                // kube's Recorder folds events with the same action and reason into one series
                // that keeps the first note; one action per generation keeps each rollout's own.
                action: format!("Generation{generation}"),
                secondary: None,
            }
        })
        .collect();
    let (recorder, reference) = (ctx.recorder.clone(), rc.object_ref(&()));
    tokio::spawn(async move {
        for event in events {
            if let Err(error) = recorder.publish(&event, &reference).await {
                tracing::debug!(%error, "could not publish event");
            }
        }
    });
}

pub(super) fn record_metrics(ctx: &Context, rc: &RouterConfig, out: &barrier::Outcome) {
    let generation = out.generation;
    let id = incarnation(rc);
    let key = &id.0;
    ctx.metrics.set_routerconfig(
        key,
        out.ready,
        out.status.synced_replicas,
        out.status.replicas,
        generation,
    );
    let mut rollouts = ctx.rollouts.lock().expect("rollouts lock");
    let Some(rollout) = rollouts.get_mut(&id).filter(|r| r.generation == generation) else {
        return;
    };
    if out.ready && !rollout.ready_recorded {
        rollout.ready_recorded = true;
        let seconds = rollout.first_seen.elapsed().as_secs_f64();
        ctx.metrics.rollout_duration.observe(seconds);
        tracing::info!(routerconfig = %key, generation, replicas = out.status.replicas, seconds, "rollout complete");
    }
}

/// Remembers when a generation was first seen (by any instance, leader or not, so a new
/// leader's rollout times still start at the edit when it watched it happen).
pub(super) fn note_seen(ctx: &Context, rc: &RouterConfig) {
    let generation = rc.generation();
    let mut rollouts = ctx.rollouts.lock().expect("rollouts lock");
    let fresh = Rollout {
        generation,
        first_seen: Instant::now(),
        ready_recorded: false,
    };
    let rollout = rollouts.entry(incarnation(rc)).or_insert(fresh);
    if rollout.generation != generation {
        *rollout = fresh;
    }
}
