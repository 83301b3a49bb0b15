//! # multiproc
//!
//! Python's `multiprocessing`, done right in Rust. Annotate plain functions with
//! [`#[pool_task]`](pool_task) and run them in worker *processes* through a [`Pool`] that
//! speaks Python's vocabulary (`apply`, `map`, `imap_unordered`, `starmap_async`, ...), never
//! hangs when a worker dies, and runs in constant memory on endless inputs.
//!
//! ```
//! use multiproc::prelude::*;
//!
//! #[pool_task]
//! fn square(x: u64) -> u64 { x * x }
//!
//! #[pool_task]
//! fn add(a: i64, b: i64) -> i64 { a + b }
//!
//! #[multiproc::main]
//! fn main() -> multiproc::Result<()> {
//!     let pool = Pool::new(2)?;
//!     let v: Vec<u64> = pool.map(square, 0..1000u64)?;
//!     assert_eq!(v[999], 998_001);
//!     assert_eq!(pool.apply(add, (1, 2))?, 3);
//!     for (i, r) in pool.imap(square, 0..u64::MAX)?.take(5).enumerate() {
//!         assert_eq!(r?, (i * i) as u64);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! ## Entering worker mode
//! Workers are started by re-executing the program (or by forking a small server started
//! that way, [`StartMethod::ForkServer`]). The re-executed program must turn into a worker
//! before `main` does anything else: put [`#[multiproc::main]`](main) on `main` (or call
//! [`init()`] first thing), and use [`#[multiproc::test]`](test) instead of `#[test]`.
//! A program that forgets gets `Error::NotInitialized` from `Pool::new`, never a hang or a
//! recursive spawn.
//!
//! ## What can be a task
//! A free, non-generic, non-async function whose arguments are owned and, like its return
//! value, implement serde's `Serialize` and `Deserialize`. The attribute checks all of this
//! at compile time. The function stays an ordinary function.
//!
//! ## Threads, and code for either
//! [`dummy::Pool`] offers the same API on threads, for I/O-bound work (closures welcome), and
//! [`TaskPool`] is the trait both pools implement, so code can be written once for either.
//!
//! ## Timeouts
//! Every call that takes a timeout accepts any [`Duration`](std::time::Duration), from
//! zero ("only if ready now") to `Duration::MAX` ("at most that long", which is forever in
//! practice), and reports running out of time the way Python does — the same in the process
//! and the thread (`dummy`) versions:
//!
//! | kind of call | the calls | when time runs out | Python |
//! |---|---|---|---|
//! | take a lock | `Lock`/`RLock::acquire_timeout`, `Condition::acquire_timeout`, `Value`/`Array::lock_timeout` | `Ok(None)` | `acquire(timeout=)` → `False` |
//! | take a unit | `Semaphore`/`BoundedSemaphore::acquire_timeout` | `Ok(false)` | `False` |
//! | wait for a state | `Event::wait_timeout`, `ConditionGuard::wait_timeout` / `wait_for`, `AsyncResult::wait_timeout`, `JoinableQueue::join_timeout`, `Connection::poll` | `false` (`Ok(false)`) | `False` / `None` |
//! | wait for a process | `Process::join_timeout` | `Ok(None)`: still running | `None` (check `exitcode`) |
//! | produce a value | `AsyncResult::get_timeout`, `Opts::timeout` on `apply`/`map`/`starmap`, `Imap::next_timeout` (and `Opts::timeout` on `imap`), `recv_timeout`, manager calls | `Err(Error::Timeout)`; an `imap` goes on afterwards | `TimeoutError` |
//! | queue | `get_timeout` / `put_timeout` | `Err(Error::Empty)` / `Err(Error::Full)` | `queue.Empty` / `queue.Full` |
//! | barrier | `Barrier::wait_timeout` (and its default timeout) | `Err(Error::BrokenBarrier)`, the barrier breaks | `BrokenBarrierError` |
//!
//! ## Locks whose holder died
//! Locks are robust: when a process dies holding one, the next acquirer gets
//! [`LockError::OwnerDied`] *with the guard* — it holds the lock, and can repair what the
//! dead holder left half-updated (see [`LockError`] for an example). Through `?` that
//! becomes [`Error::OwnerDied`] and the lock is released.
//!
//! ## Async code, `concurrent.futures`, progress, logs
//!
//! An [`AsyncResult`] is a `Future` (await it on any executor; the result's arrival wakes the
//! task). [`concurrent`] has `wait` and `as_completed`; [`AsyncResult::cancel`] stops a call
//! not started yet. Optional features: `futures` (`Stream` forms of `imap` and
//! `as_completed`, from `futures-core`) and `progress` (`Opts::progress`, indicatif bars).
//! The library emits `tracing` events (targets `multiproc::pool`, `multiproc::process`,
//! `multiproc::task`), printed only if the program installs a subscriber.
//!
//! Coming from Python? [`coming_from_python`] maps every `multiprocessing` and
//! `concurrent.futures` call to ours.
//!
//! See `ARCHITECTURE.md` in the repository for the process model and the wire protocol, and
//! `RELIABILITY.md` for every fault the tests inflict and what happens.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(unreachable_pub, missing_debug_implementations)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "multiproc runs on Linux only: it is built on memfd segments, pidfds, futexes, robust \
     process-shared mutexes, close_range and descriptors passed over Unix sockets"
);

extern crate self as multiproc;

mod child;
pub mod connection;
pub mod dummy;

#[doc = include_str!("coming_from_python.md")]
pub mod coming_from_python {}
mod error;
mod exec;
mod manager;
#[cfg(feature = "mpi")]
pub mod mpi;
mod pipe;
mod pool;
mod process;
mod queue;
mod registry;
mod role;
mod shared_memory;
mod sharedctypes;
mod shm;
mod spawn;
mod synchronize;
mod sys;
mod task;
mod wire;

pub use child::init;
pub use error::{Error, LockError, LockResult, Result, TryLockResult};
pub use exec::task_pool::TaskPool;
#[cfg(feature = "futures")]
pub use exec::ImapStream;
pub use exec::{concurrent, AsyncResult, Imap, Opts};
/// The progress-bar crate `Opts::progress_with` takes bars of (the `progress` feature).
#[cfg(feature = "progress")]
pub use indicatif;
pub use manager::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionGuardProxy, ConditionProxy, DictProxy,
    EventProxy, JoinableQueueProxy, ListProxy, LockGuardProxy, LockProxy, Managed, ManagedProxy,
    Manager, ManagerBuilder, ManagerClient, NamespaceProxy, QueueProxy, RLockProxy, SemaphoreProxy,
    ValueProxy,
};
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn double(x: u32) -> u32 { x * 2 }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     // Runs only in the parent: a worker started from this program serves tasks and exits
///     // inside the attribute's code, before this line.
///     assert!(!multiproc::is_worker());
///     Ok(())
/// }
/// ```
///
pub use multiproc_macros::main;
pub use multiproc_macros::managed;
pub use multiproc_macros::pool_task;
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn double(x: u32) -> u32 { x * 2 }
///
/// #[multiproc::test]
/// fn doubles_in_a_worker() {
///     let pool = Pool::new(2).unwrap();
///     assert_eq!(pool.map(double, 0..4u32).unwrap(), [0, 2, 4, 6]);
/// }
/// # fn main() {}
/// ```
///
pub use multiproc_macros::test;
/// ```
/// use multiproc::prelude::*;
///
/// #[derive(Clone, Copy, Debug, PartialEq, Shareable)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64, hits: u32 }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let p = Value::new(Point { x: 0.0, y: 0.0, hits: 0 })?;
///     p.lock()?.hits += 1;
///     assert_eq!(p.get()?.hits, 1);
///     Ok(())
/// }
/// ```
///
pub use multiproc_macros::Shareable;
pub use pipe::{pipe, pipe_oneway, Connection, Receiver, Sender};
pub use pool::{Pool, PoolBuilder};
pub use process::{active_children, ExitStatus, Process};
pub use queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};
pub use registry::{TaskArg, TaskFn, TaskOutput};
pub use role::is_worker;
pub use role::{current_process, parent_process};
pub use shared_memory::{ShareableItem, ShareableList, SharedMemory};
pub use sharedctypes::{Array, ArrayGuard, RawArray, RawValue, Shareable, Value, ValueGuard};
pub use spawn::StartMethod;
pub use synchronize::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, Event, Lock, LockGuard, RLock, Semaphore,
    SemaphoreGuard,
};
pub use task::{AnyTask, Task, TaskCall};
pub use wire::handshake::ProcessInfo;

/// Number of CPUs this process may run on (Python's `os.process_cpu_count()`); at least 1.
///
/// ```
/// let n = multiproc::cpu_count();
/// assert!(n >= 1);
/// // e.g. `Pool::new(multiproc::cpu_count())`, which is also what `Pool::builder()` defaults to
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The kinds of pool call an [`Opts`] can be for, and which options each takes: the `K` of
/// `Opts<T, K>`, inferred from the method the options are handed to (see [`Opts`]).
pub mod opts {
    pub use crate::exec::options::{
        Async, Call, Iter, Map, MapAsync, TakesCallbacks, TakesChunksize, TakesTimeout,
    };
}

/// The names most programs need: `use multiproc::prelude::*;`.
pub mod prelude {
    pub use crate::{
        managed, pool_task, Array, AsyncResult, Barrier, BarrierProxy, BoundedSemaphore,
        BoundedSemaphoreProxy, Condition, ConditionProxy, Connection, DictProxy, Error, Event,
        EventProxy, ExitStatus, JoinableQueue, JoinableQueueProxy, ListProxy, Lock, LockError,
        LockProxy, Manager, NamespaceProxy, Opts, Pool, Process, Queue, QueueProxy, RLock,
        RLockProxy, RawArray, RawValue, Receiver, Semaphore, SemaphoreProxy, Sender, Shareable,
        SharedMemory, SimpleQueue, StartMethod, Task, TaskCall, TaskFn, TaskPool, Value,
        ValueProxy,
    };
}

/// What generated code refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::child::enter_test;
    pub use crate::manager::managed::{
        assert_managed, decode_managed, decode_method_args, encode_method_output, method_tag,
        no_such_method, signature_mismatch, Dispatch, ManagedType, ObjectProxy, MANAGED_TYPES,
    };
    pub use crate::registry::{
        assert_task_arg, assert_task_output, call_here, signature_of, type_id_of, Signature,
        TaskEntry, TASKS,
    };
    pub use crate::sharedctypes::assert_shareable;
    pub use crate::task::{run_chunk, Par, ParNone, ParRun};
    pub use linkme;
    pub use serde;
}
