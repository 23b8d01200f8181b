//! One wake-up for several engines: the HTTP side and the monitors
//! notify one [`Notify`] per flow, and each chain's engine of that flow
//! waits on its own.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::shutdown::ShutdownListener;

/// `count` wakers fed by `source`: `source` itself for one engine, else
/// one each, every one notified whenever `source` is (`notify_one` keeps
/// a permit for an engine that is busy, so no wake-up is lost). The task
/// stops with `shutdown`.
pub fn fan_out(
    source: &Arc<Notify>,
    count: usize,
    mut shutdown: ShutdownListener,
) -> (Vec<Arc<Notify>>, Option<JoinHandle<()>>) {
    if count <= 1 {
        return (vec![Arc::clone(source)], None);
    }
    let targets: Vec<Arc<Notify>> =
        (0..count).map(|_| Arc::new(Notify::new())).collect();
    let source = Arc::clone(source);
    let fed = targets.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                () = source.notified() => {
                    for target in &fed {
                        target.notify_one();
                    }
                }
            }
        }
    });
    (targets, Some(task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_target_is_woken_even_when_busy() {
        let (trigger, listener) = crate::shutdown::channel();
        let source = Arc::new(Notify::new());
        let (targets, task) = fan_out(&source, 2, listener);
        source.notify_one();
        // Nobody waits yet: each target keeps its permit.
        for target in &targets {
            tokio::time::timeout(Duration::from_secs(5), target.notified())
                .await
                .unwrap();
        }
        trigger.trigger();
        task.unwrap().await.unwrap();
    }

    #[tokio::test]
    async fn one_engine_waits_on_the_source_itself() {
        let (_trigger, listener) = crate::shutdown::channel();
        let source = Arc::new(Notify::new());
        let (targets, task) = fan_out(&source, 1, listener);
        assert!(task.is_none());
        assert!(Arc::ptr_eq(&targets[0], &source));
    }
}
