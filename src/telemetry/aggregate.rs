//! What an aggregate reports about its own event stream (imported by the
//! aggregates, so it imports nothing of the crate).

/// A stored event the aggregate's state cannot follow: `decide` never
/// emits one, so the log was written by something else (a bug, a hand
/// edit). The state stays as it was; this says so, loudly and counted.
pub fn impossible_event(aggregate: &'static str, state: &str, event: &str) {
    tracing::error!(
        target: "observability",
        aggregate,
        state,
        event,
        "stored event cannot follow the aggregate's state; ignored"
    );
    metrics::counter!("aggregate_impossible_events_total", "aggregate" => aggregate)
        .increment(1);
}
