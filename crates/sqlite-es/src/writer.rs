//! Group commit: one writer task per database writes every queued command
//! commit in one transaction, a savepoint per command.
//!
//! Committing one command at a time costs one fsync each, and writers on
//! separate connections race for `BEGIN IMMEDIATE` (the losers sleep in
//! SQLite's busy handler, 1–100 ms). Here every commit is queued to the
//! database's writer task, which takes all that are waiting, runs each in
//! its own `SAVEPOINT` and commits them together with one fsync. A
//! command that fails (an optimistic-concurrency conflict, a claim held by
//! another aggregate) is rolled back to its savepoint alone. Every caller
//! is answered only after `COMMIT` returned, so an answered commit is
//! durable (`synchronous=FULL`), and a crash before it loses the whole
//! batch, never part of a command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use futures::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::error::SqliteEsError;

/// Most commits written in one transaction.
const MAX_BATCH: usize = 256;

/// Commits waiting for the writer before callers wait to queue.
const QUEUE: usize = 1024;

/// Why one command's commit did not land.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Another commit already holds one of these event sequences.
    Conflict,
    Other(SqliteEsError),
}

impl From<SqliteEsError> for CommitError {
    fn from(err: SqliteEsError) -> Self {
        Self::Other(err)
    }
}

/// One command's writes, run by the writer inside its savepoint.
pub(crate) trait CommitJob: Send {
    fn write(
        self: Box<Self>,
        conn: &mut SqliteConnection,
    ) -> BoxFuture<'_, Result<(), CommitError>>;
}

type Outcome = Result<(), CommitError>;
type Answer = oneshot::Sender<Outcome>;

struct Queued {
    job: Box<dyn CommitJob>,
    answer: Answer,
}

/// The writer of one database, shared by every store on it.
#[derive(Debug)]
pub(crate) struct Writer {
    pool: SqlitePool,
    /// `None` until the first commit; replaced if the task has stopped.
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
}

/// Writers by database file (sqlx names each in-memory database
/// uniquely), so that all stores on one database share one.
static WRITERS: Mutex<Option<HashMap<PathBuf, Weak<Writer>>>> =
    Mutex::new(None);

impl Writer {
    /// The writer of `pool`'s database.
    pub(crate) fn for_pool(pool: &SqlitePool) -> Arc<Self> {
        let key = pool.connect_options().get_filename().to_path_buf();
        let mut writers =
            WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
        let writers = writers.get_or_insert_with(HashMap::new);
        if let Some(writer) = writers.get(&key).and_then(Weak::upgrade)
            && !writer.pool.is_closed()
        {
            return writer;
        }
        writers.retain(|_, writer| writer.strong_count() > 0);
        let writer = Arc::new(Self {
            pool: pool.clone(),
            queue: Mutex::new(None),
        });
        writers.insert(key, Arc::downgrade(&writer));
        writer
    }

    /// Queues `job` and waits until its batch is committed (or failed).
    pub(crate) async fn commit(
        &self,
        job: Box<dyn CommitJob>,
    ) -> Result<(), CommitError> {
        let (answer, answered) = oneshot::channel();
        self.sender()
            .send(Queued { job, answer })
            .await
            .map_err(|_| SqliteEsError::WriterStopped)?;
        answered.await.map_err(|_| SqliteEsError::WriterStopped)?
    }

    /// The running task's queue, starting the task on first use (and
    /// again if its runtime went away).
    fn sender(&self) -> mpsc::Sender<Queued> {
        let mut queue =
            self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = queue.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(self.pool.clone(), receiver));
        *queue = Some(sender.clone());
        sender
    }
}

/// Commits batches until every store on the database is gone.
async fn run(pool: SqlitePool, mut queue: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        commit_batch(&pool, std::mem::take(&mut batch)).await;
    }
}

/// Writes `batch` in one transaction and answers every caller.
async fn commit_batch(pool: &SqlitePool, batch: Vec<Queued>) {
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(err) => return fail_all(batch, &Arc::new(err)),
    };
    let mut answers = Vec::with_capacity(batch.len());
    for Queued { job, answer } in batch {
        if let Err(err) = savepoint(&mut tx, "SAVEPOINT command").await {
            answers.push((answer, None));
            return fail_answers(answers, &err);
        }
        let outcome = job.write(&mut tx).await;
        // RELEASE and ROLLBACK TO fail when SQLite has already rolled the
        // whole transaction back (I/O error, disk full): then no command
        // of the batch may be reported as written.
        let closed = match outcome {
            Ok(()) => savepoint(&mut tx, "RELEASE command").await,
            Err(_) => match savepoint(&mut tx, "ROLLBACK TO command").await {
                Ok(()) => savepoint(&mut tx, "RELEASE command").await,
                Err(err) => Err(err),
            },
        };
        answers.push((answer, Some(outcome)));
        if let Err(err) = closed {
            return fail_answers(answers, &err);
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (answer, outcome) in answers {
                if let Some(outcome) = outcome {
                    // The caller may have gone (request cancelled); its
                    // commit stands.
                    let _ = answer.send(outcome);
                }
            }
        }
        Err(err) => fail_answers(answers, &Arc::new(err)),
    }
}

async fn savepoint(
    conn: &mut SqliteConnection,
    sql: &'static str,
) -> Result<(), Arc<sqlx::Error>> {
    sqlx::query(sql)
        .execute(conn)
        .await
        .map(drop)
        .map_err(Arc::new)
}

fn fail_all(batch: Vec<Queued>, cause: &Arc<sqlx::Error>) {
    fail_answers(
        batch
            .into_iter()
            .map(|queued| (queued.answer, None))
            .collect(),
        cause,
    );
}

/// Nothing of the batch was committed: every caller gets `cause`, even
/// one that failed on its own (its conflict may have been with a command
/// that is now rolled back too).
fn fail_answers(
    answers: Vec<(Answer, Option<Outcome>)>,
    cause: &Arc<sqlx::Error>,
) {
    tracing::warn!(
        error = %cause,
        commits = answers.len(),
        "group commit failed; nothing of the batch was written"
    );
    for (answer, outcome) in answers {
        if let Some(Err(own)) = outcome {
            tracing::warn!(error = ?own, "a command of the failed batch");
        }
        let error = SqliteEsError::GroupCommit(Arc::clone(cause));
        let _ = answer.send(Err(CommitError::Other(error)));
    }
}
