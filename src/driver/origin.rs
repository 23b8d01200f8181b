//! Where a flow came from: the HTTP request (or other span) that started
//! it, so that the flow's step spans continue that request's trace. Kept
//! in memory: after a restart the steps of an old flow start traces of
//! their own (still tagged with `flow.id`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Flows remembered at most; the oldest are forgotten first.
const MAX_FLOWS: usize = 10_000;

#[derive(Debug, Clone)]
struct Origin {
    /// The HTTP request's `X-Request-Id`, when a request started it.
    request_id: Option<String>,
    context: SpanContext,
}

#[derive(Debug, Default)]
struct Origins {
    by_flow: HashMap<String, Vec<Origin>>,
    order: VecDeque<String>,
}

/// The requests that started each flow; shared by the API that records
/// them and the engine that continues their traces. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FlowOrigins(Arc<Mutex<Origins>>);

impl FlowOrigins {
    fn lock(&self) -> MutexGuard<'_, Origins> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `span` (of the HTTP request `request_id`, if one)
    /// moved `flow_id`.
    pub fn record(
        &self,
        flow_id: &str,
        request_id: Option<&str>,
        span: &tracing::Span,
    ) {
        let context = span.context().span().span_context().clone();
        let mut origins = self.lock();
        if !origins.by_flow.contains_key(flow_id) {
            if origins.order.len() >= MAX_FLOWS
                && let Some(oldest) = origins.order.pop_front()
            {
                origins.by_flow.remove(&oldest);
            }
            origins.order.push_back(flow_id.to_owned());
        }
        origins
            .by_flow
            .entry(flow_id.to_owned())
            .or_default()
            .push(Origin {
                request_id: request_id.map(str::to_owned),
                context,
            });
    }

    /// Makes `span` (not yet entered) a child of the latest request that
    /// moved `flow_id`, linked to the earlier ones, and records that
    /// request's id in its `flow.request_id` field.
    pub fn adopt(&self, span: &tracing::Span, flow_id: &str) {
        let origins = self.lock();
        let Some((latest, earlier)) = origins
            .by_flow
            .get(flow_id)
            .and_then(|list| list.split_last())
        else {
            return;
        };
        if let Some(request_id) = &latest.request_id {
            span.record("flow.request_id", request_id.as_str());
        }
        if latest.context.is_valid() {
            // Fails only for a span already started, which it is not.
            let _ = span.set_parent(
                opentelemetry::Context::new()
                    .with_remote_span_context(latest.context.clone()),
            );
        }
        for origin in earlier {
            if origin.context.is_valid() {
                span.add_link(origin.context.clone());
            }
        }
    }

    /// Forgets a finished flow.
    pub fn forget(&self, flow_id: &str) {
        let mut origins = self.lock();
        if origins.by_flow.remove(flow_id).is_some() {
            origins.order.retain(|id| id != flow_id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_flow.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_are_remembered_until_forgotten_and_bounded() {
        let origins = FlowOrigins::default();
        let span = tracing::Span::none();
        origins.record("a", Some("req-1"), &span);
        origins.record("a", Some("req-2"), &span);
        origins.record("b", None, &span);
        assert_eq!(origins.len(), 2);
        origins.forget("a");
        assert_eq!(origins.len(), 1);
        for n in 0..=MAX_FLOWS {
            origins.record(&n.to_string(), None, &span);
        }
        assert_eq!(origins.len(), MAX_FLOWS);
        assert!(!origins.lock().by_flow.contains_key("b"));
    }
}
