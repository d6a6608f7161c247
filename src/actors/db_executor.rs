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
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
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

type Reply = Box<dyn FnOnce(Result<(), CommitFailed>) + Send>;
type Job = Box<dyn FnOnce(&mut DbConnection) -> Reply + Send>;
type Reconnect = Box<dyn Fn() -> anyhow::Result<DbConnection> + Send>;

/// Why a group commit did not happen.
#[derive(Debug, Clone)]
enum CommitFailed {
    /// Another hub process has taken the leadership of the database since this one did.
    Deposed(String),
    Failed(String),
}

impl From<diesel::result::Error> for CommitFailed {
    fn from(error: diesel::result::Error) -> Self {
        Self::Failed(error.to_string())
    }
}

impl std::fmt::Display for CommitFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deposed(why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

/// The leadership epoch a hub process on PostgreSQL writes under, shared with whoever
/// promotes it: 0 while the process follows another (it writes nothing). `None` on
/// SQLite, where one process owns the file and there is nothing to fence.
pub type Epoch = Option<Arc<AtomicI64>>;

/// The epoch of a process that follows: it has none yet.
pub const FOLLOWING: i64 = 0;

/// Whether a process writing under `epoch` follows another (or was deposed).
pub fn follows(epoch: &Epoch) -> bool {
    epoch
        .as_ref()
        .is_some_and(|e| e.load(Ordering::Acquire) == FOLLOWING)
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct DbExecutor {
    queue: SyncSender<Job>,
    /// Set by [`DbExecutor::close`]: new writes are refused.
    closed: Arc<AtomicBool>,
    epoch: Epoch,
}

impl DbExecutor {
    /// Starts the writer thread on `conn`. `reconnect` opens a fresh connection if a write
    /// ever panics (the old connection's open transaction is rolled back when it closes).
    /// With an `epoch` (PostgreSQL), writes are refused while it is [`FOLLOWING`], and
    /// every group commit checks, before it commits, that the database is still led by it.
    pub fn start(
        conn: DbConnection,
        epoch: Epoch,
        reconnect: Reconnect,
        capacity: usize,
        batch_max: usize,
        metrics: Metrics,
        bell: Arc<InboxBell>,
    ) -> Self {
        let (queue, jobs) = mpsc::sync_channel(capacity.max(1));
        let fence = epoch.clone();
        // The thread ends by itself when the last handle (and so the queue) is dropped.
        std::thread::Builder::new()
            .name("m3shd-writer".into())
            .spawn(move || {
                let writer = Writer {
                    epoch: fence,
                    reconnect,
                    batch_max: batch_max.max(1),
                    metrics,
                    bell,
                };
                writer.run(conn, jobs)
            })
            .expect("the OS refused to start the writer thread");
        Self {
            queue,
            closed: Arc::new(AtomicBool::new(false)),
            epoch,
        }
    }

    /// Whether this process follows another (or was deposed): its writes are refused.
    pub fn follows(&self) -> bool {
        follows(&self.epoch)
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
        if self.follows() {
            return Err(HubError::Unavailable(
                "this hub process follows the leader and writes nothing itself; retry shortly"
                    .into(),
            ));
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
        Box::new(move |commit: Result<(), CommitFailed>| {
            let outcome = match commit {
                Ok(()) => result,
                Err(CommitFailed::Deposed(why)) => Err(HubError::Unavailable(why)),
                Err(CommitFailed::Failed(cause)) => {
                    Err(HubError::internal(format!("commit failed: {cause}")))
                }
            };
            let _ = answer.send(outcome);
        })
    });
    (job, answered)
}

/// The writer thread's settings.
struct Writer {
    epoch: Epoch,
    reconnect: Reconnect,
    batch_max: usize,
    metrics: Metrics,
    bell: Arc<InboxBell>,
}

impl Writer {
    fn reopen(&self, conn: &mut DbConnection) {
        match (self.reconnect)() {
            Ok(fresh) => *conn = fresh,
            Err(error) => tracing::error!(error = %error, "cannot reopen the write connection"),
        }
    }

    /// Commits `batch` as one transaction; the reply of each write in it.
    fn commit(
        &self,
        conn: &mut DbConnection,
        batch: Vec<Job>,
    ) -> (Vec<Reply>, Result<(), CommitFailed>) {
        let mut replies: Vec<Reply> = Vec::with_capacity(batch.len());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            conn.write_transaction::<_, CommitFailed, _>(|conn| {
                for job in batch {
                    replies.push(job(conn));
                }
                // Checked last, under a share lock held to the commit: a new leader's
                // epoch either came first (and this batch rolls back) or waits for it.
                let Some(shared) = &self.epoch else {
                    return Ok(());
                };
                let ours = shared.load(Ordering::Acquire);
                let deposed = crate::db::leadership::still_leading(conn, ours)?;
                if deposed.is_err() {
                    // This process follows from now on: it refuses writes at once and
                    // forwards requests to the new leader.
                    shared.store(FOLLOWING, Ordering::Release);
                }
                deposed.map_err(CommitFailed::Deposed)
            })
        }));
        let commit = match outcome {
            Ok(result) => result,
            Err(_) => {
                // The connection's transaction state is unknown after a panic: replace it.
                tracing::error!(
                    "a write panicked; the batch was rolled back and the connection reopened"
                );
                self.reopen(conn);
                Err(CommitFailed::Failed(
                    "a write in this batch failed unexpectedly".into(),
                ))
            }
        };
        // A database server can drop the connection (a restart, a failover): the next
        // batch gets a fresh one rather than failing for good.
        if commit.is_err() && conn.ping().is_err() {
            tracing::error!("the write connection was lost; reopening it");
            self.reopen(conn);
        }
        (replies, commit)
    }

    fn run(self, mut conn: DbConnection, jobs: Receiver<Job>) {
        crate::db::audit::remember_tips();
        crate::db::inbox::collect_rings();
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < self.batch_max {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            let (replies, commit) = self.commit(&mut conn, batch);
            self.metrics.group_commit(replies.len(), started.elapsed());
            let rung = crate::db::inbox::take_rung();
            if commit.is_err() {
                crate::db::audit::forget_tip();
            } else {
                self.bell.ring(&rung);
            }
            if let Err(cause) = &commit {
                tracing::error!(error = %cause, writes = replies.len(), "group commit failed");
            }
            for reply in replies {
                reply(commit.clone());
            }
        }
    }
}
