//! The engine with a small in-memory flow (a real flow needs a chain; the
//! point here is the scheduling, which the flow does not influence).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::clock::SystemClock;
use crate::shutdown;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ItemId(String);

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ItemId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What each item's next step does.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Progress `n` times, then done.
    ProgressThenDone(usize),
    FailOnceThenDone,
    Hang,
    WaitFor(Duration),
    Held(Duration),
}

struct ToyFlow {
    items: Mutex<HashMap<String, (Behaviour, usize)>>,
    steps: AtomicUsize,
    running: AtomicUsize,
    most_running: AtomicUsize,
    housekeeping: AtomicUsize,
}

impl ToyFlow {
    fn new(items: impl IntoIterator<Item = (&'static str, Behaviour)>) -> Self {
        Self {
            items: Mutex::new(
                items
                    .into_iter()
                    .map(|(id, behaviour)| (id.to_owned(), (behaviour, 0)))
                    .collect(),
            ),
            steps: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most_running: AtomicUsize::new(0),
            housekeeping: AtomicUsize::new(0),
        }
    }

    fn open_count(&self) -> usize {
        lock(&self.items).len()
    }
}

impl Flow for ToyFlow {
    const NAME: FlowName = FlowName::Mint;
    type Id = ItemId;

    async fn open(&self) -> Result<Vec<ItemId>, StepError> {
        let mut ids: Vec<_> = lock(&self.items).keys().cloned().collect();
        ids.sort();
        Ok(ids.into_iter().map(ItemId).collect())
    }

    async fn step(&self, id: &ItemId) -> Result<Step, StepError> {
        self.steps.fetch_add(1, Ordering::SeqCst);
        let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(running, Ordering::SeqCst);
        // Let other tasks run, so concurrency is observable.
        tokio::task::yield_now().await;
        let (behaviour, taken) = {
            let mut items = lock(&self.items);
            let Some(entry) = items.get_mut(&id.0) else {
                self.running.fetch_sub(1, Ordering::SeqCst);
                return Ok(Step::Done);
            };
            entry.1 += 1;
            *entry
        };
        let outcome = match behaviour {
            Behaviour::ProgressThenDone(n) if taken <= n => Ok(Step::Progress),
            Behaviour::FailOnceThenDone if taken == 1 => {
                Err(StepError::soon("node down"))
            }
            Behaviour::ProgressThenDone(_) | Behaviour::FailOnceThenDone => {
                lock(&self.items).remove(&id.0);
                Ok(Step::Done)
            }
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                Ok(Step::Done)
            }
            Behaviour::WaitFor(delay) => Ok(Step::WaitFor(delay)),
            Behaviour::Held(recheck) => {
                Err(StepError::held("asset frozen: split", recheck))
            }
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn housekeeping(&self) {
        self.housekeeping.fetch_add(1, Ordering::SeqCst);
    }
}

async fn pool() -> SqlitePool {
    let pool = SqlitePool::connect("sqlite::memory:").await.unwrap();
    crate::startup::MIGRATOR.run(&pool).await.unwrap();
    pool
}

async fn engine(flow: ToyFlow, settings: EngineSettings) -> Engine<ToyFlow> {
    Engine::new(
        flow,
        pool().await,
        Arc::new(SystemClock),
        settings,
        Arc::new(Notify::new()),
    )
}

async fn last_error(engine: &Engine<ToyFlow>, id: &str) -> Option<String> {
    status::status(&engine.inner.pool, FlowName::Mint, id)
        .await
        .unwrap()
        .map(|status| status.last_error)
}

#[tokio::test]
async fn more_items_than_permits_all_finish_in_one_pass() {
    let ids = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
        "o", "p", "q", "r", "s", "t",
    ];
    let flow = ToyFlow::new(
        ids.iter().map(|id| (*id, Behaviour::ProgressThenDone(2))),
    );
    let engine = engine(
        flow,
        EngineSettings {
            max_concurrent: 3,
            ..EngineSettings::default()
        },
    )
    .await;
    // Every item gets a task, whatever the limit: none is skipped.
    assert_eq!(engine.pass().await, 20);
    assert_eq!(engine.flow().open_count(), 0);
    // 2 progress steps and the finishing one, each.
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 60);
    let most = engine.flow().most_running.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} steps ran at once");
    assert_eq!(engine.flow().housekeeping.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_step_is_recorded_backed_off_and_cleared_by_progress() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::FailOnceThenDone)]),
        EngineSettings {
            retry_base: Duration::from_millis(200),
            ..EngineSettings::default()
        },
    )
    .await;
    engine.pass().await;
    assert_eq!(last_error(&engine, "a").await.as_deref(), Some("node down"));
    // Backing off: the next pass leaves it alone.
    assert_eq!(engine.pass().await, 0);
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 1);
    // After the delay it is tried again, finishes, and the error goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flow().open_count() > 0 {
        assert!(Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(20)).await;
        engine.pass().await;
    }
    assert_eq!(last_error(&engine, "a").await, None);
}

#[tokio::test]
async fn a_hung_step_is_cancelled_at_its_deadline_and_reported() {
    let engine = engine(
        ToyFlow::new([
            ("a", Behaviour::Hang),
            ("b", Behaviour::ProgressThenDone(0)),
        ]),
        EngineSettings {
            step_timeout: Duration::from_millis(100),
            ..EngineSettings::default()
        },
    )
    .await;
    engine.pass().await;
    assert_eq!(
        last_error(&engine, "a").await.as_deref(),
        Some("step cancelled after 100 ms (a call hung)")
    );
    // The other item was not held up.
    assert_eq!(engine.flow().open_count(), 1);
}

#[tokio::test]
async fn a_requested_wait_defers_the_next_step() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::WaitFor(Duration::from_mins(1)))]),
        EngineSettings::default(),
    )
    .await;
    assert_eq!(engine.pass().await, 1);
    assert_eq!(engine.pass().await, 0);
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 1);
    assert_eq!(last_error(&engine, "a").await, None);
}

#[tokio::test]
async fn shutdown_cancels_hung_steps_after_the_grace_period() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::Hang)]),
        EngineSettings {
            tick: Duration::from_millis(10),
            step_timeout: Duration::from_hours(1),
            shutdown_grace: Duration::from_millis(100),
            ..EngineSettings::default()
        },
    )
    .await;
    let (trigger, listener) = shutdown::channel();
    let handle = engine.clone().spawn(listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flow().running.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("the engine outlived its grace period")
        .unwrap();
}

#[tokio::test]
async fn a_wake_up_runs_a_pass_before_the_tick() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::ProgressThenDone(0))]),
        EngineSettings {
            tick: Duration::from_hours(1),
            ..EngineSettings::default()
        },
    )
    .await;
    let (trigger, listener) = shutdown::channel();
    let handle = engine.clone().spawn(listener);
    // The first tick fires at once; wait for it to finish the item, then
    // add work that only a wake-up can pick up within the test.
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flow().open_count() > 0 {
        assert!(Instant::now() < deadline, "first pass never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock(&engine.flow().items)
        .insert("b".to_owned(), (Behaviour::ProgressThenDone(0), 0));
    engine.inner.waker.notify_one();
    while engine.flow().open_count() > 0 {
        assert!(Instant::now() < deadline, "the wake-up was ignored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    trigger.trigger();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_hold_is_reported_and_rechecked_after_its_own_delay() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::Held(Duration::from_mins(1)))]),
        EngineSettings {
            retry_base: Duration::from_millis(1),
            retry_max: Duration::from_millis(1),
            ..EngineSettings::default()
        },
    )
    .await;
    assert_eq!(engine.pass().await, 1);
    assert_eq!(
        last_error(&engine, "a").await.as_deref(),
        Some("asset frozen: split")
    );
    // Not the error backoff (1 ms here): the hold's own minute.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(engine.pass().await, 0);
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_item_out_of_steps_but_not_of_work_goes_on_without_a_tick() {
    // 5 progress steps and the finishing one, 2 per run: three runs, and
    // only the first can come from the (immediate) first tick.
    let engine = engine(
        ToyFlow::new([("a", Behaviour::ProgressThenDone(5))]),
        EngineSettings {
            tick: Duration::from_hours(1),
            max_steps_per_run: 2,
            ..EngineSettings::default()
        },
    )
    .await;
    let (trigger, listener) = shutdown::channel();
    let handle = engine.clone().spawn(listener);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.flow().open_count() > 0 {
        assert!(Instant::now() < deadline, "the item waited for a tick");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 6);
    trigger.trigger();
    handle.await.unwrap();
}

#[tokio::test]
async fn a_pass_stops_an_item_at_the_step_cap() {
    let engine = engine(
        ToyFlow::new([("a", Behaviour::ProgressThenDone(5))]),
        EngineSettings {
            max_steps_per_run: 2,
            ..EngineSettings::default()
        },
    )
    .await;
    // The cap still bounds one run: the others queued get their turn.
    assert_eq!(engine.pass().await, 1);
    assert_eq!(engine.flow().steps.load(Ordering::SeqCst), 2);
    assert_eq!(engine.flow().open_count(), 1);
}
