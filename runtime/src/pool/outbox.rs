//! Results on their way to the parent, and the bound on how long one may wait.
//!
//! A stream of short jobs costs the parent one wake-up per *batch* of results rather than one
//! per job: the worker holds a short job's result back while the next job is already there,
//! and sends the batch between two jobs once its oldest result is [`MAX_HOLD`] old. What
//! makes that safe is a second thread: if the main thread has not sent a held batch
//! [`FLUSH_AFTER`] after it began (it is deep in a job that may run for minutes), the
//! flusher sends it. A finished result therefore never waits for the job behind it: it
//! leaves within `2 × FLUSH_AFTER` at worst. The flusher looks in only every `FLUSH_AFTER`
//! while results are being held, and sleeps until told otherwise when none are, so a fast
//! stream pays a few hundred wake-ups per second for the guarantee, not one per batch.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::error::Result;
use crate::sys::wait::lock;
use crate::wire::conn::{Conn, BUFFER, IDLE_BUFFER};

/// The longest the main thread holds a finished result back to batch it with the next ones.
pub(crate) const MAX_HOLD: Duration = Duration::from_micros(500);
/// How often the flusher looks while results are held, and how old a held batch must be
/// for it to step in.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_millis(2);
/// A batch this large goes out at once.
const MAX_BATCH: usize = 256 * 1024;

#[derive(Default)]
struct State {
    /// Whole RESULT / JOB_FAILED frames, `buf[sent..]` not yet written.
    buf: Vec<u8>,
    sent: usize,
    /// When the oldest unsent result was held back; `None` when nothing is held.
    held_since: Option<Instant>,
    /// The flusher sleeps until told there is something held.
    parked: bool,
    /// The flusher started; it stops when the socket fails.
    started: bool,
    broken: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The worker's outgoing results.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    pub(crate) fn new() -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    buf: Vec::with_capacity(BUFFER),
                    ..State::default()
                }),
                wake: Condvar::new(),
            }),
        }
    }

    /// Queues one job's result frames (`frames`, emptied), then sends everything queued
    /// unless `hold`, in which case the batch waits for more, at most [`MAX_HOLD`].
    pub(crate) fn push(&self, conn: &mut Conn, frames: &mut Vec<u8>, hold: bool) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if st.buf.len() == st.sent {
            st.buf.clear();
            st.sent = 0;
            std::mem::swap(&mut st.buf, frames);
        } else {
            st.buf.extend_from_slice(frames);
            frames.clear();
        }
        let hold = hold
            && st.buf.len() < MAX_BATCH
            && st.held_since.is_none_or(|t| t.elapsed() < MAX_HOLD)
            && !st.broken;
        if !hold {
            return self.send_locked(st, conn);
        }
        if st.held_since.is_none() {
            st.held_since = Some(Instant::now());
            if !st.started {
                st.started = true;
                drop(st);
                return self.start_flusher(conn);
            }
            if st.parked {
                self.shared.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Whether results are waiting to be sent (held back, or left by a failed flush).
    pub(crate) fn holding(&self) -> bool {
        let st = lock(&self.shared.state);
        st.sent < st.buf.len()
    }

    /// Sends everything queued (before the worker blocks waiting for work, or exits).
    pub(crate) fn flush(&self, conn: &mut Conn) -> Result<()> {
        let st = lock(&self.shared.state);
        self.send_locked(st, conn)
    }

    fn send_locked(&self, mut st: MutexGuard<'_, State>, conn: &mut Conn) -> Result<()> {
        let sent = st.sent;
        if sent < st.buf.len() {
            // Drains incoming frames while the socket is full: never deadlocks with a parent
            // that is itself blocked writing to this worker.
            conn.send_all(&st.buf[sent..])?;
        }
        st.buf.clear();
        st.sent = 0;
        st.held_since = None;
        Ok(())
    }

    /// Whether the batch buffer grew past what an idle worker keeps.
    pub(crate) fn grown(&self) -> bool {
        lock(&self.shared.state).buf.capacity() > IDLE_BUFFER
    }

    /// Gives a buffer that big results grew back (unless results are still in it): the
    /// worker does this when it runs out of work, not after each job, so a stream of big
    /// results reuses one buffer instead of growing a new one each time.
    pub(crate) fn shrink(&self) {
        let mut st = lock(&self.shared.state);
        if st.sent == st.buf.len() && st.buf.capacity() > IDLE_BUFFER {
            st.buf = Vec::with_capacity(BUFFER);
        }
    }

    fn start_flusher(&self, conn: &Conn) -> Result<()> {
        let shared = self.shared.clone();
        crate::sys::retry_transient(|| {
            let fd = rustix::io::fcntl_dupfd_cloexec(conn.as_fd(), 3)?;
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("multiproc-flusher".into())
                .stack_size(64 * 1024)
                .spawn(move || flusher(&shared, &fd))
        })?;
        Ok(())
    }
}

/// Sends a held batch the main thread has left for [`FLUSH_AFTER`]. The socket is
/// non-blocking (shared with the main thread's descriptor): when it is full, the flusher
/// waits for room without holding the lock, so the main thread can write (and drain input)
/// meanwhile.
fn flusher(shared: &Shared, fd: &OwnedFd) {
    let mut st = lock(&shared.state);
    // Consecutive looks that found nothing held: then sleep until told.
    let mut empty_looks = 0;
    loop {
        let Some(since) = st.held_since else {
            empty_looks += 1;
            if empty_looks >= 2 {
                st.parked = true;
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                st.parked = false;
                empty_looks = 0;
            } else {
                st = shared
                    .wake
                    .wait_timeout(st, FLUSH_AFTER)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            continue;
        };
        empty_looks = 0;
        let age = since.elapsed();
        if age < FLUSH_AFTER {
            // Usually the main thread sends this batch itself long before.
            st = shared
                .wake
                .wait_timeout(st, FLUSH_AFTER - age)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            continue;
        }
        let sent = st.sent;
        match rustix::net::send(
            fd,
            &st.buf[sent..],
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        ) {
            Ok(n) => {
                st.sent += n;
                if st.sent == st.buf.len() {
                    st.buf.clear();
                    st.sent = 0;
                    st.held_since = None;
                }
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                drop(st);
                let _ = crate::sys::wait::writable(std::os::fd::AsFd::as_fd(fd), FLUSH_AFTER);
                st = lock(&shared.state);
            }
            Err(_) => {
                // The parent is gone (the watchdog exits the worker) or the channel broke:
                // the main thread sends what is left before it next waits, and its write
                // reports the error.
                st.broken = true;
                return;
            }
        }
    }
}
