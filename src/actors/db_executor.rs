//! DbExecutor: the single writer. One dedicated thread owns the only write connection and
//! commits whatever writes are queued as one `BEGIN IMMEDIATE` transaction (group commit),
//! each write inside its own savepoint so one failing write never spoils its neighbours.
//! Every caller is answered after that commit, so a success response always describes
//! durable state.
//!
//! Not an actix `SyncArbiter`: a sync actor handles one message at a time and cannot see
//! the queue behind it, which is exactly what group commit needs. The thread plays the
//! same role, with a bounded queue that answers 503 when it is full.
//!
//! At shutdown, [`DbExecutor::close`] refuses new writes and waits until everything
//! already queued is committed and answered, so nothing acknowledged dies with the process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use crate::db::DbConnection;
use diesel::r2d2::R2D2Connection;
use diesel::Connection;
use tokio::sync::oneshot;

use super::bell::InboxBell;
use crate::error::HubError;
use crate::metrics::Metrics;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&mut DbConnection) -> Reply + Send>;
type Reconnect = Box<dyn Fn() -> anyhow::Result<DbConnection> + Send>;

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct DbExecutor {
    queue: SyncSender<Job>,
    /// Set by [`DbExecutor::close`]: new writes are refused.
    closed: Arc<AtomicBool>,
}

impl DbExecutor {
    /// Starts the writer thread on `conn`. `reconnect` opens a fresh connection if a write
    /// ever panics (the old connection's open transaction is rolled back when it closes).
    pub fn start(
        conn: DbConnection,
        reconnect: Reconnect,
        capacity: usize,
        batch_max: usize,
        metrics: Metrics,
        bell: Arc<InboxBell>,
    ) -> Self {
        let (queue, jobs) = mpsc::sync_channel(capacity.max(1));
        // The thread ends by itself when the last handle (and so the queue) is dropped.
        std::thread::Builder::new()
            .name("m3shd-writer".into())
            .spawn(move || run_writer(conn, reconnect, jobs, batch_max.max(1), metrics, bell))
            .expect("the OS refused to start the writer thread");
        Self {
            queue,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs `write` in its own savepoint inside the next group commit and returns its
    /// result once the commit is durable. An `Err` from `write` rolls back only its own
    /// changes.
    pub async fn write<T, F>(&self, write: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T, HubError> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(HubError::Unavailable("the hub is shutting down".into()));
        }
        let (job, answered) = job_of(write);
        self.queue.try_send(job).map_err(|error| match error {
            TrySendError::Full(_) => {
                HubError::Unavailable("the hub is saturated with writes; retry shortly".into())
            }
            TrySendError::Disconnected(_) => {
                HubError::Unavailable("the database writer has stopped".into())
            }
        })?;
        answered
            .await
            .map_err(|_| HubError::internal("the writer dropped a write"))?
    }

    /// Refuses every write from now on, then waits until each write queued before this call
    /// has been committed and its caller answered: the queue is first in, first out, so an
    /// empty write queued last is answered after all of them.
    pub async fn close(&self) -> Result<(), HubError> {
        self.closed.store(true, Ordering::Release);
        let (barrier, answered) = job_of(|_| Ok(()));
        let queue = self.queue.clone();
        // Waits for room rather than failing on a full queue: nothing new joins it now,
        // so room comes as the writer works through it.
        tokio::task::spawn_blocking(move || queue.send(barrier))
            .await
            .map_err(|e| HubError::internal(format!("cannot queue the last write: {e}")))?
            .map_err(|_| HubError::Unavailable("the database writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| HubError::internal("the writer dropped its last write"))?
    }
}

/// Wraps `write` as a job for the writer thread, with the receiver of its answer.
fn job_of<T, F>(write: F) -> (Job, oneshot::Receiver<Result<T, HubError>>)
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, HubError> + Send + 'static,
{
    let (answer, answered) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let rung = crate::db::inbox::rung_mark();
        let result = conn.transaction(write);
        if result.is_err() {
            // Its audit rows and inbox items were rolled back with it.
            crate::db::audit::forget_tip();
            crate::db::inbox::unring_since(rung);
        }
        Box::new(move |commit: Result<(), String>| {
            let outcome = match commit {
                Ok(()) => result,
                Err(cause) => Err(HubError::internal(format!("commit failed: {cause}"))),
            };
            let _ = answer.send(outcome);
        })
    });
    (job, answered)
}

fn reopen(conn: &mut DbConnection, reconnect: &Reconnect) {
    match reconnect() {
        Ok(fresh) => *conn = fresh,
        Err(error) => tracing::error!(error = %error, "cannot reopen the write connection"),
    }
}

fn run_writer(
    mut conn: DbConnection,
    reconnect: Reconnect,
    jobs: Receiver<Job>,
    batch_max: usize,
    metrics: Metrics,
    bell: Arc<InboxBell>,
) {
    crate::db::audit::remember_tips();
    crate::db::inbox::collect_rings();
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let started = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            conn.write_transaction::<_, diesel::result::Error, _>(|conn| {
                for job in batch.drain(..) {
                    replies.push(job(conn));
                }
                Ok(())
            })
        }));
        let commit = match outcome {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => {
                // The connection's transaction state is unknown after a panic: replace it.
                tracing::error!(
                    "a write panicked; the batch was rolled back and the connection reopened"
                );
                reopen(&mut conn, &reconnect);
                Err("a write in this batch failed unexpectedly".to_string())
            }
        };
        // A database server can drop the connection (a restart, a failover): the next
        // batch gets a fresh one rather than failing for good.
        if commit.is_err() && conn.ping().is_err() {
            tracing::error!("the write connection was lost; reopening it");
            reopen(&mut conn, &reconnect);
        }
        metrics.group_commit(replies.len(), started.elapsed());
        let rung = crate::db::inbox::take_rung();
        if commit.is_err() {
            crate::db::audit::forget_tip();
        } else {
            bell.ring(&rung);
        }
        if let Err(cause) = &commit {
            tracing::error!(error = %cause, writes = replies.len(), "group commit failed");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}
