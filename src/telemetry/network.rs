//! Which chain the running code works on, so that the chain metrics it
//! records (`chain_rpc_errors_total`, …) carry a `network` label — also
//! those of the chain client, which knows no network. Each chain's flows,
//! monitor and gauges run inside [`scope`]; outside, the label is empty.

use std::future::Future;

tokio::task_local! {
    static CURRENT: &'static str;
}

/// Runs `future` as work on the chain of `network` (its wire name).
pub async fn scope<F: Future>(network: &'static str, future: F) -> F::Output {
    CURRENT.scope(network, future).await
}

/// The current chain's network, `""` outside any.
pub fn label() -> &'static str {
    CURRENT.try_with(|network| *network).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_network_holds_inside_the_scope_only() {
        assert_eq!(label(), "");
        let seen = scope("base", async {
            tokio::task::yield_now().await;
            label()
        })
        .await;
        assert_eq!(seen, "base");
        assert_eq!(label(), "");
    }
}
