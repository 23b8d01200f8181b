//! The effect engine: runs every flow's side effects the same way.
//!
//! A [`Flow`] only says which items have work ([`Flow::open`]) and how to
//! take one step on one item ([`Flow::step`]), deciding from the item's
//! committed state alone. The engine owns everything else:
//!
//! - scheduling: a task per open item that is neither running nor
//!   waiting, at most `max_concurrent` steps at once; items beyond the limit
//!   queue for a permit instead of being skipped, so the queue never stalls;
//! - waking: on its [`Notify`] (a confirmation, a detected transfer) as
//!   well as on a tick (the fallback). A step that changed the state
//!   ([`Step::Progress`], including a broadcast) is followed by the next
//!   one at once, up to `max_steps_per_run`; an item that reaches that cap
//!   with work left wakes the engine, so it queues again without waiting
//!   for the tick;
//! - per-step deadline (`step_timeout`): a hung step is cancelled and
//!   reported like any other error;
//! - backoff: exponential for errors that may clear by themselves, long
//!   for errors that need a person, and a flow-chosen delay for waits
//!   (`Step::WaitFor`, e.g. polling Alpaca);
//! - `flow_status`: every failed step is written there (shown as
//!   `last_error`) and cleared when the item moves again;
//! - one graceful-shutdown bound: running steps get `shutdown_grace`,
//!   then are cancelled (every step commits its state change before its
//!   side effect, so a cut step is simply taken again).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::Label;
use sqlx::SqlitePool;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use tracing::Instrument as _;
use tracing::field::Empty;

use super::origin::FlowOrigins;
use super::status::{self, FlowName};
use crate::clock::Clock;
use crate::shutdown::ShutdownListener;
use crate::telemetry::flow::{self, FlowTag};
use crate::vocabulary::Network;

/// What one step achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The state changed: take the next step now, in the same task. Also
    /// the answer after a broadcast (the intent is recorded, so the state
    /// did change): on a fast chain the receipt is already there, and
    /// waiting for the tick would only add latency.
    Progress,
    /// Waiting on the outside world: look again on the next tick or wake.
    Wait,
    /// Look again no sooner than this (a poll backoff, a grace period).
    WaitFor(Duration),
    /// Nothing left to do for this item.
    Done,
}

impl Step {
    /// Its name in traces.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::Wait => "wait",
            Self::WaitFor(_) => "wait_for",
            Self::Done => "done",
        }
    }
}

/// How soon a failed step should be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The cause may clear by itself (RPC down, 5xx): exponential backoff.
    Soon,
    /// The cause needs a person (a final 4xx, a vault refusal): retried
    /// slowly, never given up.
    Slowly,
    /// Not an error: the item is held on purpose (an operator's freeze)
    /// and looked at again after this delay. Shown in `flow_status` like
    /// an error, so that operators see why, but not counted as one.
    Held(Duration),
}

/// A step that could not complete; the item stays where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepError {
    pub message: String,
    pub retry: Retry,
}

impl StepError {
    pub fn soon(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Soon,
        }
    }

    pub fn slowly(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Slowly,
        }
    }

    /// A deliberate hold, reported as `message` and rechecked after
    /// `recheck`.
    pub fn held(message: impl Into<String>, recheck: Duration) -> Self {
        Self {
            message: message.into(),
            retry: Retry::Held(recheck),
        }
    }

    /// From any error, keeping its whole `source` chain in the message.
    pub fn from_error(
        error: &(dyn std::error::Error + 'static),
        retry: Retry,
    ) -> Self {
        Self {
            message: crate::http::ErrorChain(error).to_string(),
            retry,
        }
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One kind of work the engine runs (mints, redemptions, ...).
pub trait Flow: Send + Sync + 'static {
    /// Its name in `flow_status`, logs and metric names.
    const NAME: FlowName;
    type Id: Clone
        + Eq
        + Hash
        + fmt::Display
        + AsRef<str>
        + Send
        + Sync
        + 'static;

    /// Every item with work left, oldest first.
    fn open(
        &self,
    ) -> impl Future<Output = Result<Vec<Self::Id>, StepError>> + Send;

    /// One step on `id`, decided from its committed state.
    fn step(
        &self,
        id: &Self::Id,
    ) -> impl Future<Output = Result<Step, StepError>> + Send;

    /// Periodic work beside the items (e.g. reconciling an inventory); run
    /// once per dispatch, in its own task, while no earlier run is going.
    fn housekeeping(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Cadence and limits of an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSettings {
    /// How often every open item is looked at without a wake-up.
    pub tick: Duration,
    /// Steps running at the same time.
    pub max_concurrent: usize,
    /// A step running longer is cancelled and counted as an error.
    pub step_timeout: Duration,
    /// First delay after an error that may clear by itself; doubles per
    /// failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Delay after an error that needs a person.
    pub final_error_backoff: Duration,
    /// Steps one task takes on an item before yielding to others.
    pub max_steps_per_run: usize,
    /// How long shutdown waits for running steps before cancelling them.
    pub shutdown_grace: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(500),
            max_concurrent: 8,
            step_timeout: Duration::from_mins(2),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_mins(1),
            final_error_backoff: Duration::from_mins(10),
            max_steps_per_run: 8,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Schedule {
    not_before: Instant,
    /// Consecutive failed steps (0 after a wait the flow asked for).
    failures: u32,
}

/// Runs one flow; cheap to clone.
pub struct Engine<F: Flow> {
    inner: Arc<Inner<F>>,
}

impl<F: Flow> Clone for Engine<F> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<F: Flow> {
    flow: F,
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    settings: EngineSettings,
    waker: Arc<Notify>,
    permits: Semaphore,
    in_flight: Mutex<HashSet<F::Id>>,
    schedules: Mutex<HashMap<F::Id, Schedule>>,
    housekeeping: Mutex<bool>,
    origins: FlowOrigins,
    /// Labels on the engine's metrics: the network of a per-chain engine.
    labels: Vec<Label>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes an item from the in-flight set when its task ends, however.
struct InFlight<F: Flow> {
    inner: Arc<Inner<F>>,
    id: F::Id,
}

impl<F: Flow> Drop for InFlight<F> {
    fn drop(&mut self) {
        lock(&self.inner.in_flight).remove(&self.id);
    }
}

impl<F: Flow> Engine<F> {
    pub fn new(
        flow: F,
        pool: SqlitePool,
        clock: Arc<dyn Clock>,
        settings: EngineSettings,
        waker: Arc<Notify>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                flow,
                pool,
                clock,
                settings,
                waker,
                permits: Semaphore::new(settings.max_concurrent.max(1)),
                in_flight: Mutex::new(HashSet::new()),
                schedules: Mutex::new(HashMap::new()),
                housekeeping: Mutex::new(false),
                origins: FlowOrigins::default(),
                labels: Vec::new(),
            }),
        }
    }

    /// Continues each item's trace from the span that started it (see
    /// [`FlowOrigins`]). For a freshly built engine; one already cloned
    /// keeps its origins.
    #[must_use]
    pub fn with_origins(self, origins: FlowOrigins) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.origins = origins;
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }

    /// Labels the engine's metrics with the network its flow serves, so
    /// that the engines of several chains report apart. For a freshly
    /// built engine, as [`Self::with_origins`].
    #[must_use]
    pub fn with_network(self, network: Network) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.labels = vec![Label::new("network", network.as_str())];
                Self {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Self { inner },
        }
    }

    pub fn flow(&self) -> &F {
        &self.inner.flow
    }

    /// Runs until `shutdown`, then gives running steps the grace period.
    pub fn spawn(self, shutdown: ShutdownListener) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, mut shutdown: ShutdownListener) {
        let name = F::NAME.as_str();
        let settings = self.inner.settings;
        tracing::info!(
            target: "driver",
            flow = name,
            tick_ms = settings.tick.as_millis(),
            max_concurrent = settings.max_concurrent,
            "engine started"
        );
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(settings.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = tick.tick() => {}
                () = self.inner.waker.notified() => {}
            }
            while tasks.try_join_next().is_some() {}
            self.dispatch(&mut tasks).await;
        }
        let drained = tokio::time::timeout(settings.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                target: "driver",
                flow = name,
                running = tasks.len(),
                "steps still running at shutdown; cancelled"
            );
            tasks.shutdown().await;
        }
        tracing::info!(target: "driver", flow = name, "engine stopped");
    }

    /// One dispatch that waits for every task it started (tests, tools).
    pub async fn pass(&self) -> usize {
        let mut tasks = JoinSet::new();
        let started = self.dispatch(&mut tasks).await;
        while tasks.join_next().await.is_some() {}
        started
    }

    /// Starts a task for every open item that is neither running nor
    /// waiting (and the housekeeping, when not running); returns how many
    /// items were started.
    pub async fn dispatch(&self, tasks: &mut JoinSet<()>) -> usize {
        let inner = &self.inner;
        let name = F::NAME.as_str();
        let idle_housekeeping = {
            let mut running = lock(&inner.housekeeping);
            !std::mem::replace(&mut *running, true)
        };
        if idle_housekeeping {
            let worker = Arc::clone(inner);
            tasks.spawn(async move {
                worker.flow.housekeeping().await;
                *lock(&worker.housekeeping) = false;
            });
        }
        let open = match inner.flow.open().await {
            Ok(open) => open,
            Err(error) => {
                tracing::warn!(target: "driver", flow = name, %error, "cannot list open work");
                return 0;
            }
        };
        #[expect(
            clippy::cast_precision_loss,
            reason = "a count far below 2^53 is exact as f64"
        )]
        metrics::gauge!(format!("{name}s_open"), inner.labels.clone())
            .set(open.len() as f64);
        let now = Instant::now();
        lock(&inner.schedules).retain(|id, _| open.contains(id));
        let mut started = 0;
        for id in open {
            let waiting = lock(&inner.schedules)
                .get(&id)
                .is_some_and(|schedule| schedule.not_before > now);
            if waiting || !lock(&inner.in_flight).insert(id.clone()) {
                continue;
            }
            let guard = InFlight {
                inner: Arc::clone(inner),
                id,
            };
            tasks.spawn(async move {
                // Queue for a permit rather than skip: nothing starves.
                let Ok(permit) = guard.inner.permits.acquire().await else {
                    return;
                };
                let work_left = guard.inner.drive(&guard.id).await;
                // Out of steps but not out of work: the permit goes to the
                // items queued behind this one, and a dispatch now (once
                // this item is no longer in flight) queues it again
                // without waiting for the tick.
                drop(permit);
                let inner = Arc::clone(&guard.inner);
                drop(guard);
                if work_left {
                    inner.waker.notify_one();
                }
            });
            started += 1;
        }
        started
    }

    /// Takes steps on one item until it waits, finishes or fails (or
    /// reaches `max_steps_per_run`).
    pub async fn drive(&self, id: &F::Id) {
        self.inner.drive(id).await;
    }
}

impl<F: Flow> Inner<F> {
    /// The engine's metric labels plus one more.
    fn labels_and(&self, key: &'static str, value: &'static str) -> Vec<Label> {
        let mut labels = self.labels.clone();
        labels.push(Label::new(key, value));
        labels
    }

    /// Takes steps on one item until it waits, finishes or fails (false),
    /// or until `max_steps_per_run` steps all made progress (true: work
    /// is left).
    async fn drive(&self, id: &F::Id) -> bool {
        let name = F::NAME.as_str();
        let limit = self.settings.step_timeout;
        for _ in 0..self.settings.max_steps_per_run.max(1) {
            // One span per step, in the trace of the request that started
            // the flow when there was one; every span opened inside
            // carries the flow's id ([`crate::flow_span!`]).
            let span = tracing::info_span!(
                target: "trace",
                "flow.step",
                otel.name = format!("{name}.step"),
                flow.kind = name,
                flow.id = %id,
                flow.request_id = Empty,
                step.outcome = Empty,
                error = Empty,
            );
            self.origins.adopt(&span, id.as_ref());
            let tag = FlowTag {
                kind: name,
                id: id.to_string(),
            };
            let outcome = flow::scope(
                tag,
                tokio::time::timeout(limit, self.flow.step(id)),
            )
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| {
                metrics::counter!(
                    format!("{name}_step_timeouts_total"),
                    self.labels.clone()
                )
                .increment(1);
                Err(StepError::soon(format!(
                    "step cancelled after {} ms (a call hung)",
                    limit.as_millis()
                )))
            });
            match &outcome {
                Ok(step) => span.record("step.outcome", step.as_str()),
                Err(error) => span
                    .record("step.outcome", "error")
                    .record("error", error.message.as_str()),
            };
            drop(span);
            match outcome {
                Ok(step) => {
                    if step == Step::Done {
                        self.origins.forget(id.as_ref());
                    }
                    self.succeeded(id, step).await;
                    if step != Step::Progress {
                        return false;
                    }
                }
                Err(error) => {
                    self.failed(id, &error).await;
                    return false;
                }
            }
        }
        true
    }

    async fn succeeded(&self, id: &F::Id, step: Step) {
        let had_errors = {
            let mut schedules = lock(&self.schedules);
            let had_errors = schedules
                .get(id)
                .is_some_and(|schedule| schedule.failures > 0);
            match step {
                Step::WaitFor(delay) => {
                    schedules.insert(
                        id.clone(),
                        Schedule {
                            not_before: Instant::now() + delay,
                            failures: 0,
                        },
                    );
                }
                Step::Progress | Step::Wait | Step::Done => {
                    schedules.remove(id);
                }
            }
            had_errors
        };
        // Progress always clears (a row may be left by an earlier run);
        // a wait only after an error of this run.
        if (had_errors || matches!(step, Step::Progress | Step::Done))
            && let Err(error) =
                status::clear_error(&self.pool, F::NAME, id.as_ref()).await
        {
            tracing::warn!(target: "driver", flow = F::NAME.as_str(), %error, "cannot clear the item's status");
        }
    }

    async fn failed(&self, id: &F::Id, error: &StepError) {
        let name = F::NAME.as_str();
        let settings = self.settings;
        let (delay, failures) = {
            let mut schedules = lock(&self.schedules);
            let failures = schedules
                .get(id)
                .map_or(1, |schedule| schedule.failures.saturating_add(1));
            let delay = match error.retry {
                Retry::Soon => {
                    let doublings = failures.saturating_sub(1).min(16);
                    settings
                        .retry_base
                        .saturating_mul(2_u32.saturating_pow(doublings))
                        .min(settings.retry_max)
                }
                Retry::Slowly => settings.final_error_backoff,
                Retry::Held(recheck) => recheck,
            };
            schedules.insert(
                id.clone(),
                Schedule {
                    not_before: Instant::now() + delay,
                    failures,
                },
            );
            (delay, failures)
        };
        match error.retry {
            // Not an error: logged once per hold, not on every recheck.
            Retry::Held(_) => {
                if failures == 1 {
                    tracing::info!(
                        target: "driver",
                        flow = name,
                        id = %id,
                        reason = %error.message,
                        recheck_in_ms = delay.as_millis(),
                        "item held"
                    );
                }
            }
            Retry::Soon => {
                metrics::counter!(
                    format!("{name}_step_errors_total"),
                    self.labels_and("retryable", "true")
                )
                .increment(1);
                tracing::warn!(
                    target: "driver",
                    flow = name,
                    id = %id,
                    error = %error.message,
                    retry_in_ms = delay.as_millis(),
                    "step failed; will retry"
                );
            }
            Retry::Slowly => {
                metrics::counter!(
                    format!("{name}_step_errors_total"),
                    self.labels_and("retryable", "false")
                )
                .increment(1);
                tracing::error!(
                    target: "driver",
                    flow = name,
                    id = %id,
                    error = %error.message,
                    retry_in_ms = delay.as_millis(),
                    "step failed and needs attention; will retry later"
                );
            }
        }
        let now = self.clock.now();
        if let Err(db) = status::record_error(
            &self.pool,
            F::NAME,
            id.as_ref(),
            &error.message,
            now,
        )
        .await
        {
            tracing::warn!(target: "driver", flow = name, error = %db, "cannot record the item's status");
        }
    }
}

#[cfg(test)]
mod tests;
