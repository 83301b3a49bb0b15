//! Cross-process building blocks living in shared memory: a robust mutex (the kernel tells
//! the next locker when a holder died) and an event count (a futex word waiters sleep on).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex;

use crate::error::{Error, Result};

/// Bytes reserved for a `pthread_mutex_t` (40 on x86-64 and aarch64 glibc).
pub(crate) const MUTEX_SPACE: usize = 64;
const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= MUTEX_SPACE);

/// How a lock was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locked {
    Clean,
    /// The previous holder died holding it; the protected state may be half-updated.
    OwnerDied,
}

/// A process-shared, robust `pthread_mutex_t`: the bytes of one, inside a shared segment.
///
/// It is never built in Rust: it *is* a region of a segment's state (zeroed when the segment
/// is created, then [`init`](RobustMutex::init)ialised before the segment is shared), and every
/// method borrows it, so no use can outlive the mapping it lives in.
///
/// Robust means the kernel marks the lock when its holder's thread dies (the process was
/// killed, say), and the next `lock` returns [`Locked::OwnerDied`] instead of blocking forever.
#[repr(C, align(64))]
pub(crate) struct RobustMutex(std::cell::UnsafeCell<[u8; MUTEX_SPACE]>);

// SAFETY: a pthread mutex exists to be used by many threads (and, process-shared, processes)
// at once through a shared reference; all access goes through the pthread functions.
unsafe impl Sync for RobustMutex {}

/// A pthread return code as a result; an error keeps the OS error (its kind and code) and
/// names the call.
fn check(rc: libc::c_int, what: &str) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    let os = std::io::Error::from_raw_os_error(rc);
    Err(Error::Io(std::sync::Arc::new(std::io::Error::new(
        os.kind(),
        format!("pthread_{what}: {os}"),
    ))))
}

impl RobustMutex {
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.0.get().cast()
    }

    /// Initialises the mutex in a fresh (zeroed, not yet shared) segment.
    pub(crate) fn init(&self, recursive: bool) -> Result<()> {
        // SAFETY: attr is a local, initialised by pthread_mutexattr_init before use; the mutex
        // memory is this value's (a zeroed segment region), not yet visible to other
        // processes.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr), "mutexattr_init")?;
            let kind = if recursive {
                libc::PTHREAD_MUTEX_RECURSIVE
            } else {
                libc::PTHREAD_MUTEX_ERRORCHECK
            };
            let rc = (|| {
                check(
                    libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                    "setpshared",
                )?;
                check(
                    libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                    "setrobust",
                )?;
                check(libc::pthread_mutexattr_settype(&mut attr, kind), "settype")?;
                check(libc::pthread_mutex_init(self.raw(), &attr), "mutex_init")
            })();
            libc::pthread_mutexattr_destroy(&mut attr);
            rc
        }
    }

    /// Locks, waiting until `deadline` (forever if `None`). A lock whose holder died is taken
    /// over, made consistent, and reported as [`Locked::OwnerDied`].
    ///
    /// The wait is cut into slices of [`WAKE_SLICE`]: an unlock wakes *one* sleeper, and a
    /// sleeper killed after that wake-up but before it took the lock takes the wake-up with
    /// it, leaving the lock free and every other sleeper asleep for good. Waking each slice
    /// and trying again bounds that loss to one slice.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> Result<Locked> {
        // SAFETY: the mutex was initialised by `init` in the segment's creator (constructor
        // contract: the memory is live).
        let mut rc = unsafe { libc::pthread_mutex_trylock(self.raw()) };
        while rc == libc::EBUSY || rc == libc::ETIMEDOUT {
            let slice_end = Instant::now() + WAKE_SLICE;
            let until = match deadline {
                Some(d) if d <= slice_end => {
                    if rc == libc::ETIMEDOUT {
                        break;
                    }
                    d
                }
                _ => slice_end,
            };
            let ts = realtime_deadline(until);
            // SAFETY: as above.
            rc = unsafe { libc::pthread_mutex_timedlock(self.raw(), &ts) };
        }
        match rc {
            0 => Ok(Locked::Clean),
            libc::EOWNERDEAD => {
                check(
                    // SAFETY: we hold the lock (EOWNERDEAD means it was acquired).
                    unsafe { libc::pthread_mutex_consistent(self.raw()) },
                    "consistent",
                )?;
                Ok(Locked::OwnerDied)
            }
            libc::ETIMEDOUT => Err(Error::Timeout),
            libc::EDEADLK => Err(Error::AlreadyHeld),
            rc => check(rc, "mutex_lock").map(|()| Locked::Clean),
        }
    }

    /// Locks without waiting: `Ok(None)` if another thread holds it.
    pub(crate) fn try_lock(&self) -> Result<Option<Locked>> {
        // SAFETY: as in `lock`.
        let rc = unsafe { libc::pthread_mutex_trylock(self.raw()) };
        match rc {
            // Held by another thread, or (EDEADLK) by this one: not available either way.
            libc::EBUSY | libc::EDEADLK => Ok(None),
            0 => Ok(Some(Locked::Clean)),
            libc::EOWNERDEAD => {
                check(
                    // SAFETY: acquired (EOWNERDEAD means it was).
                    unsafe { libc::pthread_mutex_consistent(self.raw()) },
                    "consistent",
                )?;
                Ok(Some(Locked::OwnerDied))
            }
            rc => check(rc, "mutex_trylock").map(|()| None),
        }
    }

    /// Unlocks. Fails (`EPERM`) if the calling thread does not hold the lock.
    pub(crate) fn unlock(&self) -> Result<()> {
        // SAFETY: as in `lock`; an unheld error-checking/robust mutex reports EPERM.
        match unsafe { libc::pthread_mutex_unlock(self.raw()) } {
            0 => Ok(()),
            libc::EPERM => Err(Error::NotHeld),
            rc => check(rc, "mutex_unlock"),
        }
    }
}

/// The longest a waiter for a [`RobustMutex`] sleeps before it looks at the lock again.
const WAKE_SLICE: Duration = Duration::from_millis(50);

/// `deadline` as an absolute CLOCK_REALTIME time, as `pthread_mutex_timedlock` wants it.
fn realtime_deadline(deadline: Instant) -> libc::timespec {
    let left = deadline.saturating_duration_since(Instant::now());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_add(left);
    libc::timespec {
        tv_sec: at.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: at.subsec_nanos() as _,
    }
}

/// An event count: a sequence number that notifiers bump and waiters sleep on, plus a count of
/// sleepers so that a notify with nobody asleep costs no system call. A waiter that dies
/// leaves the sleeper count high, which only costs spare wake-ups.
#[repr(C)]
pub(crate) struct EventCount {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

/// How long a waiter spins re-checking before it sleeps: waking a sleeping process costs
/// ~20 µs on a small VM, spinning this long costs a few µs of one core.
const SPIN_LIMIT: u32 = 2_000;

impl EventCount {
    /// The sequence number: it changes with every notify.
    pub(crate) fn seq(&self) -> u32 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            // The count is an int in the kernel: u32::MAX would read as -1 and wake only one.
            let _ = futex::wake(&self.seq, futex::Flags::empty(), i32::MAX as u32);
        }
    }

    /// Waits until `ready()` is true or `deadline` passes; `ready` is re-checked after every
    /// notify. Returns `Err(Timeout)` on the deadline. `spin`: spin briefly first (for waits
    /// that are expected to end soon).
    pub(crate) fn wait_until(
        &self,
        mut ready: impl FnMut() -> bool,
        deadline: Option<Instant>,
        spin: bool,
    ) -> Result<()> {
        if spin {
            for i in 0..SPIN_LIMIT {
                if ready() {
                    return Ok(());
                }
                if i % 64 == 63 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        loop {
            let seen = self.seq.load(Ordering::SeqCst);
            if ready() {
                return Ok(());
            }
            let timeout = match deadline {
                None => None,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    Some(left)
                }
            };
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // Re-check after announcing ourselves: a notify between the check and the
            // announcement bumped `seq`, so the futex wait below returns at once.
            if ready() {
                self.sleepers.fetch_sub(1, Ordering::SeqCst);
                return Ok(());
            }
            let r = sleep(&self.seq, seen, timeout);
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            r?;
        }
    }
}

/// One futex sleep while `word == seen`, at most `timeout`. Spurious returns are fine.
fn sleep(word: &AtomicU32, seen: u32, timeout: Option<Duration>) -> Result<()> {
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos() as _,
    });
    match futex::wait(word, futex::Flags::empty(), seen, ts.as_ref()) {
        Ok(()) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(rustix::io::Errno::TIMEDOUT) => Ok(()), // the caller checks its deadline
        Err(e) => Err(e.into()),
    }
}
