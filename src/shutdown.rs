//! A shutdown signal that background tasks can observe. Rocket triggers it
//! when it begins shutting down (SIGTERM, Ctrl-C or a shutdown request);
//! anything else may trigger it too (e.g. a lost lease).

use std::sync::Arc;

use tokio::sync::watch;

/// Starts shutdown. Cheap to clone; managed in Rocket's state.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    sender: Arc<watch::Sender<bool>>,
}

/// Observes shutdown. Each task takes its own clone.
#[derive(Debug, Clone)]
pub struct ShutdownListener {
    receiver: watch::Receiver<bool>,
}

/// A connected trigger/listener pair.
pub fn channel() -> (ShutdownTrigger, ShutdownListener) {
    let (sender, receiver) = watch::channel(false);
    (
        ShutdownTrigger {
            sender: Arc::new(sender),
        },
        ShutdownListener { receiver },
    )
}

impl ShutdownTrigger {
    /// Idempotent.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn subscribe(&self) -> ShutdownListener {
        ShutdownListener {
            receiver: self.sender.subscribe(),
        }
    }

    pub fn is_triggered(&self) -> bool {
        *self.sender.borrow()
    }
}

impl ShutdownListener {
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once shutdown has been triggered (immediately if it
    /// already was). Also resolves if every trigger is gone, since then
    /// nothing could ever stop the task otherwise.
    pub async fn wait(&mut self) {
        // An error means every sender was dropped: treat as shutdown.
        let _ = self.receiver.wait_for(|triggered| *triggered).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn listeners_see_the_trigger() {
        let (trigger, mut listener) = channel();
        let mut late = trigger.subscribe();
        assert!(!listener.is_triggered());
        let waiter = tokio::spawn(async move {
            listener.wait().await;
        });
        trigger.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        late.wait().await;
        assert!(late.is_triggered());
        assert!(trigger.is_triggered());
    }

    #[tokio::test]
    async fn dropping_every_trigger_releases_waiters() {
        let (trigger, mut listener) = channel();
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), listener.wait())
            .await
            .unwrap();
    }
}
