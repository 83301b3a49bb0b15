//! One error type for the whole crate, with variants a caller can branch on.

use std::sync::Arc;

/// Result alias used throughout the crate. Example: [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when running tasks in other processes.
///
/// Errors are `Clone` because one failure (a lost worker, say) can be the outcome of many
/// items at once.
///
/// ```no_run
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn check(x: u32) -> u32 {
///     assert!(x != 3, "3 is bad");
///     x
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let pool = Pool::new(2)?;
///     for r in pool.imap(check, 0..5u32)? {
///         match r {
///             Ok(x) => println!("{x}"),
///             Err(Error::TaskPanicked { task, message, .. }) => println!("{task}: {message}"),
///             Err(Error::WorkerLost { pid, .. }) => println!("worker {pid} died; the pool replaced it"),
///             Err(other) => return Err(other),
///         }
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A blocking call did not finish within its timeout. For `AsyncResult::get_timeout` the
    /// result stays fetchable.
    #[error("timed out")]
    Timeout,

    /// The task panicked in the worker. The worker survives and keeps serving.
    #[error("task `{task}` panicked: {message}")]
    TaskPanicked {
        /// Registered name of the task.
        task: String,
        /// The panic payload, when it was a string, with its location.
        message: String,
        /// The worker's backtrace, when `RUST_BACKTRACE` enabled one.
        backtrace: Option<String>,
    },

    /// The worker running this task died (killed by a signal, aborted, out of memory, exited).
    /// The pool has replaced it. With a retry policy, `attempts` says how many workers the
    /// task took down (the policy's retries plus one).
    #[error("worker process {pid} died while running task `{task}` ({}){}", describe_death(*.signal, *.exit_code), describe_attempts(*.attempts))]
    WorkerLost {
        /// Registered name of the task that was running.
        task: String,
        /// Process id of the lost worker.
        pid: u32,
        /// The signal that killed it, if any (9 for SIGKILL, 6 for abort).
        signal: Option<i32>,
        /// Its exit code, when it exited rather than being killed.
        exit_code: Option<i32>,
        /// How many times the task ran and lost its worker (1 without a retry policy).
        attempts: u32,
    },

    /// The task ran longer than its `kill_after` limit: its worker was killed and replaced.
    #[error("task `{task}` ran longer than its limit of {after:?} and was killed")]
    TaskTimedOut {
        /// Registered name of the task.
        task: String,
        /// The limit it ran past.
        after: std::time::Duration,
    },

    /// The pool was closed or terminated: it accepts no new work.
    #[error("the pool is closed")]
    PoolClosed,

    /// The pool was terminated before this task finished.
    #[error("the pool was terminated before the task finished")]
    PoolTerminated,

    /// The call was cancelled ([`AsyncResult::cancel`](crate::AsyncResult::cancel)) before it
    /// started (Python's `CancelledError`).
    #[error("the call was cancelled before it started")]
    Cancelled,

    /// The pool can no longer start workers (a replacement worker's initializer failed).
    #[error("the pool is broken: {reason}")]
    PoolBroken {
        /// Why.
        reason: String,
    },

    /// `join` was called on a pool that is still running; call `close` or `terminate` first.
    #[error("join() needs a closed or terminated pool; call close() first")]
    PoolRunning,

    /// The function handed to a pool is not a `#[pool_task]`, or a worker does not know the
    /// task name it was sent.
    #[error("`{name}` is not a registered task: annotate the function with #[pool_task]")]
    UnregisteredTask {
        /// The function's type or task name.
        name: String,
    },

    /// A value could not be encoded or decoded for the trip between processes.
    #[error("serialization failed for {what}: {message}")]
    Serialization {
        /// Which value (an argument, a result).
        what: String,
        /// The codec's message.
        message: String,
    },

    /// The task ran but its return value could not be serialized in the worker.
    #[error("task `{task}` returned a value that could not be serialized: {message}")]
    ResultEncoding {
        /// Registered name of the task.
        task: String,
        /// The codec's message.
        message: String,
    },

    /// The MPI pool was asked for in a program with no worker ranks: not started by an MPI
    /// launcher, or with a single rank. Says how to start it.
    #[error("no MPI worker ranks: {0}")]
    MpiLaunch(String),

    /// A peer sent a malformed or unexpected frame. The connection is dropped.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The worker answered the handshake with another protocol version or build.
    #[error("handshake with worker failed: {0}")]
    Handshake(String),

    /// A worker could not be started, or exited before it was ready.
    #[error("could not start a worker: {0}")]
    WorkerStart(String),

    /// The program never called `multiproc::init()` (or used `#[multiproc::main]` /
    /// `#[multiproc::test]`), so workers could not re-enter it as workers.
    #[error("{0}")]
    NotInitialized(String),

    /// A pool was created inside a worker process. Workers do not start pools of their own.
    #[error("pools cannot be created inside a pool worker process")]
    InWorker,

    /// The pool's initializer failed in a worker.
    #[error("pool initializer failed: {message}")]
    InitializerFailed {
        /// The panic message or other cause.
        message: String,
    },

    /// An argument to a library call is out of range (0 processes, chunksize 0, an empty
    /// key, a malformed name or address, ...). The more specific variants below cover the
    /// other ways a call can be refused.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The calling thread already holds this lock, which is not re-entrant (use an `RLock`).
    #[error("this thread already holds the lock (it is not re-entrant; use an RLock)")]
    AlreadyHeld,

    /// The calling thread does not hold the lock it tried to release.
    #[error("the lock is not held by this thread")]
    NotHeld,

    /// Released more often than acquired: a bounded semaphore past its initial value, a
    /// semaphore at its maximum, `task_done` called more times than items were put.
    #[error("{what} released more times than acquired")]
    ReleasedTooOften {
        /// What was released (`"a bounded semaphore"`, `"a joinable queue's task_done"`).
        what: &'static str,
    },

    /// An index or byte range outside the object.
    #[error("{what} is out of range (the {object} holds {len})")]
    OutOfRange {
        /// The index or range asked for.
        what: String,
        /// What it was asked of (`"array"`, `"block"`, `"buffer"`).
        object: &'static str,
        /// How many elements (or bytes) the object holds.
        len: usize,
    },

    /// Something is over a size limit: a message, a queue item, a number of handles in one
    /// message, a queue's `maxsize`, ...
    #[error("{what} is over the limit of {limit}")]
    TooLarge {
        /// What, with its size.
        what: String,
        /// The limit, in the unit `what` uses.
        limit: usize,
    },

    /// Two `#[pool_task]`s are registered under one name (the same module path and function
    /// name, e.g. from two crates' copies of a module): workers could not tell them apart.
    #[error("two tasks are registered under the name `{name}`; rename one of them")]
    DuplicateTask {
        /// The name they share.
        name: String,
    },

    /// `AsyncResult::successful` was asked before the result was ready.
    #[error("the result is not ready yet")]
    NotReady,

    /// The result was already taken by an earlier `get_timeout`.
    #[error("the result was already taken")]
    ResultTaken,

    /// A queue is full: `put_nowait`, or `put_timeout` ran out of time. The item was not
    /// queued and is still the caller's.
    #[error("the queue is full")]
    Full,

    /// A queue is empty: `get_nowait`, or `get_timeout` ran out of time.
    #[error("the queue is empty")]
    Empty,

    /// The queue was closed (`put` after `close`, or `get` on a closed and drained queue).
    #[error("the queue is closed")]
    Closed,

    /// The other end of a pipe was closed (or its process exited) and no message is left.
    #[error("the other end of the pipe is closed")]
    Eof,

    /// A received message is larger than the buffer given to `recv_bytes_into`; the message
    /// is returned here whole, nothing is lost.
    #[error("message of {} bytes does not fit a {capacity}-byte buffer", .message.len())]
    BufferTooSmall {
        /// The whole message.
        message: Vec<u8>,
        /// Size of the buffer that was offered.
        capacity: usize,
    },

    /// A process handle was used in a state that does not allow it (starting twice,
    /// closing a running process, ...).
    #[error("{0}")]
    ProcessState(String),

    /// A lock's previous holder died while holding it, and the data it protects may be
    /// half-updated. Acquiring returns [`LockError::OwnerDied`] with the guard instead;
    /// this is what it becomes through `?` (the guard dropped: the lock is free again), and
    /// what a `Condition` wait reports (the guard still holds the lock).
    #[error("the previous holder of the lock died while holding it")]
    OwnerDied,

    /// A barrier was broken (a party timed out, `abort` was called, its action panicked, or
    /// `reset` cut a wait short).
    #[error("the barrier is broken")]
    BrokenBarrier,

    /// `SharedMemory::create_named`: a block of that name exists already.
    #[error("a shared memory block named `{name}` already exists")]
    SegmentExists {
        /// The name.
        name: String,
    },

    /// `SharedMemory::attach`: there is no block of that name.
    #[error("no shared memory block named `{name}`")]
    SegmentNotFound {
        /// The name.
        name: String,
    },

    /// A manager peer did not prove it holds the authentication key (or the server did
    /// not prove it to us).
    #[error("authentication with the manager failed (wrong authkey?)")]
    AuthenticationFailed,

    /// The connection to a manager failed or was lost (the manager was shut down, died, or
    /// cannot be reached). The operation may or may not have taken effect.
    #[error("manager unavailable: {0}")]
    ManagerLost(String),

    /// An operating-system error; its source is the `io::Error` (kind and OS error code
    /// included).
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
}

fn describe_attempts(attempts: u32) -> String {
    if attempts > 1 {
        format!(", after {attempts} attempts")
    } else {
        String::new()
    }
}

fn describe_death(signal: Option<i32>, exit_code: Option<i32>) -> String {
    match (signal, exit_code) {
        (Some(sig), _) => format!("killed by signal {sig}"),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => "exit status unknown".to_owned(),
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(Arc::new(e.into()))
    }
}

impl Error {
    pub(crate) fn serialization(what: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Serialization {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// What acquiring a lock returns: the guard, or why there is none — including, for a lock
/// whose previous holder died holding it, the guard itself, so the new holder can repair
/// what the dead one left half-written (as std's `PoisonError` hands over its guard).
///
/// `?` turns a `LockError` into [`Error`] (dropping, and so releasing, a guard it carried),
/// so code that does not repair anything reads as before.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let total = Value::new(0u64)?;
///     match total.lock() {
///         Ok(mut v) => *v += 1,
///         // The last holder died holding it: a counter is never half-written, so go on.
///         Err(LockError::OwnerDied(mut v)) => *v += 1,
///         Err(e) => return Err(e.into()),
///     }
///     assert_eq!(total.get()?, 1);
///     Ok(())
/// }
/// ```
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// What `try_acquire` and the `*_timeout` acquires return: `Ok(None)` if the lock was not
/// free (now, or within the timeout), as Python's `acquire(timeout=...)` returns `False`.
/// Example: [`Lock`](crate::Lock).
pub type TryLockResult<G> = std::result::Result<Option<G>, LockError<G>>;

/// Why [`LockResult`] holds no plain guard.
///
/// ```
/// use multiproc::prelude::*;
/// use multiproc::LockError;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let balance = Value::new(100i64)?;
///     let mut guard = match balance.lock() {
///         Ok(g) => g,
///         // Its holder died mid-update: the guard is ours, and so is the repair.
///         Err(LockError::OwnerDied(mut g)) => {
///             *g = 100; // e.g. restore the last known good state
///             g
///         }
///         Err(LockError::Failed(e)) => return Err(e),
///     };
///     *guard -= 30;
///     drop(guard);
///     assert_eq!(balance.get()?, 70);
///     Ok(())
/// }
/// ```
pub enum LockError<G> {
    /// The previous holder died holding the lock. The lock is held now, by this guard; the
    /// data it protects may be half-updated. Drop the guard (after repairing) as usual.
    OwnerDied(G),
    /// The lock could not be taken: the error says why (the thread holds it already, ...).
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, if the lock was taken over from a dead holder.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Failed(_) => None,
        }
    }

    /// The matching [`Error`] (`Error::OwnerDied` for a taken-over lock).
    pub fn error(&self) -> Error {
        match self {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::Failed(e) => e.clone(),
        }
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Self {
        e.error()
    }
}

impl<G> std::fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error(), f)
    }
}

impl<G> std::error::Error for LockError<G> {}
