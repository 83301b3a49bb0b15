//! What every pool shares in its life cycle: its state, the threads it owns, Python's
//! default chunk size, and what dropping it does.

use std::sync::Mutex;
use std::thread::JoinHandle;

use super::task_pool::TaskPool;

/// Where a pool is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Running,
    Closed,
    Terminated,
}

/// Python's default chunksize for `map`: `ceil(len / (4 × processes))`, at least 1.
pub(crate) fn default_chunksize(len: usize, processes: usize) -> usize {
    len.div_ceil(processes * 4).max(1)
}

/// The threads a pool owns (slot threads, or the thread pool's workers), joined once.
pub(crate) struct Threads(Mutex<Vec<JoinHandle<()>>>);

impl Threads {
    pub(crate) fn new(threads: Vec<JoinHandle<()>>) -> Threads {
        Threads(Mutex::new(threads))
    }

    fn take(&self) -> Vec<JoinHandle<()>> {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        t.drain(..).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Joins every thread not joined yet; later calls return at once.
    pub(crate) fn join_all(&self) {
        for t in self.take() {
            let _ = t.join();
        }
    }
}

/// What dropping any pool does: close and join (submitted work completes), or terminate when
/// the pool already was, or when the dropping thread is panicking (waiting could hang it).
pub(crate) fn finish_on_drop(pool: &impl TaskPool, terminated: bool) {
    if std::thread::panicking() || terminated {
        pool.terminate();
    } else {
        pool.close();
        let _ = pool.join();
    }
}
