//! Which flow (a mint, a redemption) the running code works for, so that
//! every span it opens carries `flow.kind` and `flow.id` — also spans of
//! the chain and Alpaca clients, which know nothing of flows. The engine
//! sets it around each step ([`scope`]); [`crate::flow_span!`] reads it.

use std::future::Future;

tokio::task_local! {
    static CURRENT: FlowTag;
}

/// The flow a step works for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowTag {
    /// `mint`, `redemption`.
    pub kind: &'static str,
    /// The mint's `tokenization_request_id`, the redemption's id.
    pub id: String,
}

/// Runs `future` as work of `tag`'s flow.
pub async fn scope<F: Future>(tag: FlowTag, future: F) -> F::Output {
    CURRENT.scope(tag, future).await
}

/// The current flow's kind, outside any flow `None`.
pub fn kind() -> Option<&'static str> {
    CURRENT.try_with(|tag| tag.kind).ok()
}

/// The current flow's id, outside any flow `None`.
pub fn id() -> Option<String> {
    CURRENT.try_with(|tag| tag.id.clone()).ok()
}

/// An INFO span (target `trace`) named `$name` with `flow.kind` and
/// `flow.id` of the current flow (empty outside one) and any further
/// fields, as in `tracing::info_span!`.
#[macro_export]
macro_rules! flow_span {
    ($name:literal $(, $($fields:tt)+)?) => {
        ::tracing::info_span!(
            target: "trace",
            $name,
            flow.kind = $crate::telemetry::flow::kind(),
            flow.id = $crate::telemetry::flow::id()
            $(, $($fields)+)?
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tag_holds_inside_the_scope_only() {
        assert_eq!(kind(), None);
        let tag = FlowTag {
            kind: "mint",
            id: "abc".to_owned(),
        };
        let seen = scope(tag, async {
            tokio::task::yield_now().await;
            (kind(), id())
        })
        .await;
        assert_eq!(seen, (Some("mint"), Some("abc".to_owned())));
        assert_eq!(id(), None);
    }
}
