//! `Queue`, `JoinableQueue` and `SimpleQueue`: FIFO queues that any number of processes put
//! into and get from.
//!
//! A queue is one shared-memory segment: a ring buffer of encoded items, a robust lock for
//! producers and one for consumers, and futex words to sleep on. `put` encodes the item
//! straight into the ring and returns; there is no feeder thread, so an item whose `put`
//! returned is in shared memory and is delivered even if its producer exits or is killed a
//! moment later. A consumer decodes an item straight from the ring before it advances the
//! ring, so a consumer killed mid-`get` loses nothing either: the item stays for the next
//! one. A process killed while holding one of the locks does not block the others: the
//! kernel hands the lock over (robust mutex), and the ring is only ever changed by one atomic
//! store, so it is never half-updated. A queue whose consumers keep up cycles through the
//! first pages of its ring (see `WARM`), so items do not cost fresh memory.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::fds;
use crate::shm::segment::{Segment, SegmentKind};
use crate::sys::futex::{EventCount, Locked, RobustMutex, MUTEX_SPACE};

/// Default ring size: unread items may take up to this much before `put` blocks. It is
/// virtual memory: only the pages holding unread items, and the warm area's pages once used,
/// are resident (see `PUNCH` and `WARM`).
const DEFAULT_BUFFER: usize = 1 << 30;
const MIN_BUFFER: usize = 64 * 1024;
/// Record lengths are 32-bit, so a ring (and any JUMP across it) stays under 4 GiB.
const MAX_BUFFER: usize = 1 << 32;
/// Rings larger than this give their pages back to the kernel, `PUNCH` bytes at a time, as
/// soon as they have been read; smaller ones stay resident.
const PUNCH_ABOVE: usize = 8 << 20;
const PUNCH: usize = 1 << 20;
/// The first bytes of the ring are never given back: a producer that finds the queue nearly
/// empty wraps back to the start early (see `put_with`), so a queue that keeps up with its
/// producers reuses these resident pages instead of faulting in fresh ones for every item.
const WARM: usize = 8 << 20;
/// A producer wraps back to the ring's start early once it is this far in...
const REWIND_AT: u64 = 256 << 10;
/// ...and no more than this is queued (so the consumers are keeping up).
const REWIND_MAX_USED: u64 = 2 << 20;
/// How often a producer blocked by a pending early wrap retries undoing it.
const RETRY_WRAP: Duration = Duration::from_millis(10);
/// `State::wrapped_at` when there is no early wrap to undo.
const NO_WRAP: u64 = u64::MAX;
/// Where the ring starts in the segment (page-aligned, so punched ranges are whole pages).
const DATA_AT: usize = 4096;

const REC_HEADER: usize = 8;
const TAG_ITEM: u32 = 0x4d51_0001;
const TAG_JUMP: u32 = 0x4d51_0002;
/// Skips to offset `len` of the next lap (left by `unwrap`, see there).
const TAG_SKIP: u32 = 0x4d51_0003;

/// `head` and `tail` pack a message count (high bits) with a byte position (low bits), so
/// one atomic store publishes both an item and the count `qsize` reads.
const POS_BITS: u32 = 36;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// `maxsize` may not exceed this.
const MAX_ITEMS: usize = 1 << 26;

fn pos(w: u64) -> u64 {
    w & POS_MASK
}
fn count(w: u64) -> u64 {
    w >> POS_BITS
}
fn pack(count: u64, pos: u64) -> u64 {
    ((count & COUNT_MASK) << POS_BITS) | (pos & POS_MASK)
}

#[repr(C, align(64))]
struct Line<T>(T);

#[repr(C)]
struct State {
    put_lock: Line<[u8; MUTEX_SPACE]>,
    get_lock: Line<[u8; MUTEX_SPACE]>,
    tail: Line<AtomicU64>,
    head: Line<AtomicU64>,
    /// Consumers wait here for items.
    data: Line<EventCount>,
    /// Producers wait here for room.
    space: Line<EventCount>,
    /// `JoinableQueue::join` waits here.
    joined: Line<EventCount>,
    closed: AtomicU32,
    /// A consumer is between giving pages back and publishing the new head (see `get`).
    commit_pending: AtomicU32,
    commit_head: AtomicU64,
    /// Position of the JUMP record of the last early wrap, while it may need undoing (see
    /// `unwrap`); `NO_WRAP` otherwise. Written under the producer lock.
    wrapped_at: AtomicU64,
    capacity: u64,
    /// Bytes never filled, so pages being given back are never ones a producer may be
    /// writing.
    reserve: u64,
    maxsize: u64,
    unfinished: AtomicI64,
}

const _: () = assert!(std::mem::size_of::<State>() + crate::shm::segment::HEADER_SPACE <= DATA_AT);

/// The untyped queue all three kinds share.
#[derive(Clone)]
struct RawQueue {
    seg: Segment,
}

/// How long a blocking call may wait.
#[derive(Clone, Copy)]
enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Wait {
    fn from_timeout(t: Duration) -> Wait {
        crate::sys::wait::deadline_after(t).map_or(Wait::Forever, Wait::Until)
    }
    fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }
}

impl RawQueue {
    fn create(maxsize: usize, buffer: usize) -> Result<RawQueue> {
        if maxsize > MAX_ITEMS {
            return Err(Error::InvalidArgument(format!(
                "maxsize {maxsize} is over the limit of {MAX_ITEMS}"
            )));
        }
        if !(MIN_BUFFER..=MAX_BUFFER).contains(&buffer) {
            return Err(Error::InvalidArgument(format!(
                "a queue buffer of {buffer} bytes is outside {MIN_BUFFER}..={MAX_BUFFER}"
            )));
        }
        let capacity = buffer.next_power_of_two();
        let seg = Segment::create(SegmentKind::Queue, DATA_AT + capacity)?;
        let q = RawQueue { seg };
        // SAFETY: the segment is fresh, zeroed and private to this process until this
        // function returns; the fields written are plain integers.
        unsafe {
            let st = q.seg.body().cast::<State>();
            (*st).capacity = capacity as u64;
            (*st).reserve = if capacity > PUNCH_ABOVE {
                PUNCH as u64
            } else {
                0
            };
            (*st).maxsize = maxsize as u64;
            (*st).wrapped_at = AtomicU64::new(NO_WRAP);
        }
        q.put_lock().init(false)?;
        q.get_lock().init(false)?;
        Ok(q)
    }

    fn attach(fd: std::os::fd::OwnedFd) -> Result<RawQueue> {
        let seg = Segment::attach(fd, SegmentKind::Queue)?;
        let q = RawQueue { seg };
        let cap = q.st().capacity as usize;
        if !cap.is_power_of_two() || DATA_AT + cap > q.seg.len() {
            return Err(Error::Protocol("received a corrupted queue".into()));
        }
        Ok(q)
    }

    fn st(&self) -> &State {
        // SAFETY: the segment is at least DATA_AT bytes (checked on attach, made so on
        // create), State fits before DATA_AT, and every field shared after creation is
        // atomic or only accessed under its lock.
        unsafe { &*self.seg.body().cast::<State>() }
    }

    fn put_lock(&self) -> RobustMutex {
        // SAFETY: in bounds of the live mapping, 64-aligned; lives as long as self.
        unsafe { RobustMutex::at(self.st().put_lock.0.as_ptr().cast_mut()) }
    }

    fn get_lock(&self) -> RobustMutex {
        // SAFETY: as for put_lock.
        unsafe { RobustMutex::at(self.st().get_lock.0.as_ptr().cast_mut()) }
    }

    fn ring(&self) -> *mut u8 {
        // SAFETY: DATA_AT is within the segment (checked on attach).
        unsafe { self.seg.ptr().add(DATA_AT) }
    }

    fn capacity(&self) -> u64 {
        self.st().capacity
    }

    /// Largest encoded item accepted.
    fn max_item(&self) -> usize {
        ((self.capacity() - self.st().reserve) / 2) as usize - REC_HEADER
    }

    fn is_closed(&self) -> bool {
        self.st().closed.load(Ordering::SeqCst) != 0
    }

    fn close(&self) {
        self.st().closed.store(1, Ordering::SeqCst);
        self.st().data.0.notify_all();
        self.st().space.0.notify_all();
    }

    fn qsize(&self) -> usize {
        let st = self.st();
        let head = st.head.0.load(Ordering::Acquire);
        let tail = st.tail.0.load(Ordering::Acquire);
        (count(tail).wrapping_sub(count(head)) & COUNT_MASK) as usize
    }

    /// Puts one item of at most `len` encoded bytes: `write` encodes it straight into the
    /// ring (no intermediate buffer, so no fresh memory per item), advancing the slice it is
    /// given past what it wrote. Nothing is published if `write` fails or panics.
    fn put_with(
        &self,
        len: usize,
        write: impl FnOnce(&mut &mut [u8]) -> Result<()>,
        wait: Wait,
        joinable: bool,
    ) -> Result<()> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if len > self.max_item() {
            return Err(Error::InvalidArgument(format!(
                "an item of {len} bytes does not fit this queue (at most {} bytes; build the \
                 queue with a larger buffer_bytes)",
                self.max_item()
            )));
        }
        let rec = (REC_HEADER + len).next_multiple_of(8) as u64;
        let st = self.st();
        let cap = st.capacity;
        let lock = self.put_lock();
        // A producer that died holding the lock left nothing half-done: its only visible
        // step is the final store to `tail`.
        lock.lock(wait.deadline()).map_err(|e| match e {
            Error::Timeout => Error::Full,
            e => e,
        })?;
        let _held = Unlock(lock);
        let (tail, off, skip) = loop {
            if self.is_closed() {
                return Err(Error::Closed);
            }
            let tail = st.tail.0.load(Ordering::Relaxed);
            let head = st.head.0.load(Ordering::Acquire);
            let used = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
            let items = count(tail).wrapping_sub(count(head)) & COUNT_MASK;
            let off = pos(tail) & (cap - 1);
            // Items never wrap around the ring's end: a JUMP record skips to its start.
            // When little is queued, the producer also wraps early, so that a queue whose
            // consumers keep up reuses its first, resident pages (see `WARM`).
            let fits = |skip: u64| used + skip + rec + st.reserve <= cap;
            let (skip, early) = if off + rec > cap {
                (cap - off, false)
            } else if used <= REWIND_MAX_USED && off >= REWIND_AT && fits(cap - off) {
                (cap - off, true)
            } else {
                (0, false)
            };
            let room = fits(skip);
            let below_max = st.maxsize == 0 || items < st.maxsize;
            if room && below_max {
                if early {
                    st.wrapped_at.store(pos(tail), Ordering::Relaxed);
                    #[cfg(test)]
                    tests::EVENTS.with(|e| e.set((e.get().0 + 1, e.get().1)));
                }
                break (tail, off, skip);
            }
            // The ring space an early wrap skipped counts as used until head passes the
            // JUMP; when that is what stands in the way, give it back now.
            if !room && used > 0 && (self.follow_jump() || self.unwrap()) {
                continue;
            }
            let d = match wait {
                Wait::No => return Err(Error::Full),
                w => w.deadline(),
            };
            // Giving it back needs the consumer lock free: a consumer busy decoding, or one
            // killed in `get` (whose lock the kernel frees without anyone notifying `space`),
            // is retried every RETRY_WRAP rather than waited for forever.
            let retry = (!room && st.wrapped_at.load(Ordering::Relaxed) != NO_WRAP)
                .then(|| Instant::now() + RETRY_WRAP);
            let until = match (d, retry) {
                (Some(d), Some(r)) => Some(d.min(r)),
                (d, r) => d.or(r),
            };
            let woke = st.space.0.wait_until(
                || st.head.0.load(Ordering::Acquire) != head || self.is_closed(),
                until,
                false,
            );
            if woke.is_err() && (retry.is_none() || d.is_some_and(|d| Instant::now() >= d)) {
                return Err(Error::Full);
            }
        };
        let ring = self.ring();
        // The item goes at the ring's start after a JUMP, else at the tail.
        let at = if skip > 0 { 0 } else { off };
        // SAFETY: [at, at + rec) is free ring space (checked against head above under the
        // producer lock; consumers never touch bytes beyond tail) within the ring (items do
        // not wrap), and no other reference to it exists while we hold the producer lock.
        let mut body =
            unsafe { std::slice::from_raw_parts_mut(ring.add(at as usize + REC_HEADER), len) };
        write(&mut body)?;
        let written = len - body.len();
        // SAFETY: as above; the JUMP header goes at the old tail, inside the free space.
        unsafe {
            if skip > 0 {
                write_header(ring.add(off as usize), TAG_JUMP, (skip - 8) as u32);
            }
            write_header(ring.add(at as usize), TAG_ITEM, written as u32);
        }
        if joinable {
            st.unfinished.fetch_add(1, Ordering::SeqCst);
        }
        let rec = (REC_HEADER + written).next_multiple_of(8) as u64;
        st.tail.0.store(
            pack(count(tail) + 1, pos(tail) + skip + rec),
            Ordering::Release,
        );
        if skip > 0 {
            self.follow_jump();
        }
        drop(_held);
        st.data.0.notify_all();
        Ok(())
    }

    /// Takes the oldest item: `read` decodes it straight from the ring, before the item is
    /// let go of, so a consumer killed while decoding loses nothing. The item is consumed
    /// whether `read` succeeds or fails (a bad item fails only its own `get`); if `read`
    /// panics it stays queued.
    fn get_with<R>(&self, wait: Wait, read: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
        let st = self.st();
        let cap = st.capacity;
        let lock = self.get_lock();
        let how = lock.lock(wait.deadline()).map_err(|e| match e {
            Error::Timeout => Error::Empty,
            e => e,
        })?;
        let held = Unlock(lock);
        self.recover_consumer(how);
        // Steps over JUMP and SKIP records to the oldest item.
        let (head, off, len) = loop {
            let head = st.head.0.load(Ordering::Relaxed);
            if pos(st.tail.0.load(Ordering::Acquire)) == pos(head) {
                if self.is_closed() {
                    return Err(Error::Closed);
                }
                let d = match wait {
                    Wait::No => return Err(Error::Empty),
                    w => w.deadline(),
                };
                st.data
                    .0
                    .wait_until(
                        || pos(st.tail.0.load(Ordering::Acquire)) != pos(head) || self.is_closed(),
                        d,
                        true,
                    )
                    .map_err(|_| Error::Empty)?;
                continue;
            }
            let off = pos(head) & (cap - 1);
            // SAFETY: bytes between head and tail were published by a producer (Acquire on
            // tail above) and are not touched by producers until head passes them.
            let (tag, len) = unsafe { read_header(self.ring().add(off as usize)) };
            let skip_to = match tag {
                TAG_JUMP if is_jump(tag, len, off, cap) => cap - off,
                TAG_SKIP if u64::from(len) <= off && len % 8 == 0 => cap - off + u64::from(len),
                TAG_ITEM if off + REC_HEADER as u64 + u64::from(len) <= cap => {
                    break (head, off, len)
                }
                _ => {
                    return Err(Error::Protocol(format!(
                        "queue memory corrupted at offset {off} (tag {tag:#x}, length {len})"
                    )))
                }
            };
            self.advance(
                off,
                jump_punch_end(off, cap),
                pack(count(head), pos(head) + skip_to),
            );
        };
        // SAFETY: as above; the record lies within the ring (checked), and producers leave
        // it alone until `head` moves past it below.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.ring().add(off as usize + REC_HEADER), len as usize)
        };
        let r = read(bytes);
        let rec = (REC_HEADER as u64 + u64::from(len)).next_multiple_of(8);
        self.advance(off, off + rec, pack(count(head) + 1, pos(head) + rec));
        drop(held);
        st.space.0.notify_all();
        r
    }

    /// Completes the step of a consumer that died giving pages back (see `release_pages`):
    /// called by whoever next takes the consumer lock and finds it was its owner's death.
    fn recover_consumer(&self, how: Locked) {
        let st = self.st();
        if how == Locked::OwnerDied && st.commit_pending.load(Ordering::SeqCst) != 0 {
            // The dead consumer had taken its item: its item is gone with it; every other
            // item is intact.
            st.head
                .0
                .store(st.commit_head.load(Ordering::SeqCst), Ordering::Release);
            st.commit_pending.store(0, Ordering::SeqCst);
        }
    }

    /// Called by a producer (holding the producer lock): if `head` is at a JUMP record and
    /// no consumer is busy, moves `head` past it, as the next consumer would. This gives
    /// back at once the ring space an early rewind (see `put_with`) skipped, so capacity
    /// never depends on a consumer coming by.
    fn follow_jump(&self) -> bool {
        let st = self.st();
        let cap = st.capacity;
        // The record at head, if any: (head, its offset), when it is a JUMP.
        let jump_at_head = || {
            let head = st.head.0.load(Ordering::Acquire);
            if pos(st.tail.0.load(Ordering::Relaxed)) == pos(head) {
                return None;
            }
            let off = pos(head) & (cap - 1);
            // SAFETY: `off` is 8-aligned inside the ring. Only producers (and we hold their
            // lock) write the ring; without the consumer lock what we read may be stale or a
            // released page (zeros), which only makes this return None.
            let (tag, len) = unsafe { read_header(self.ring().add(off as usize)) };
            is_jump(tag, len, off, cap).then_some((head, off))
        };
        // A look without the consumer lock first: a blocked producer is woken at every
        // consumer step, and most of the time head is at an item, not a JUMP.
        if jump_at_head().is_none() {
            return false;
        }
        let Some(_held) = self.try_consumer() else {
            return false;
        };
        let Some((head, off)) = jump_at_head() else {
            return false;
        };
        self.advance(
            off,
            jump_punch_end(off, cap),
            pack(count(head), pos(head) + cap - off),
        );
        true
    }

    /// Takes the consumer lock if it is free (finishing a dead consumer's step if need be).
    fn try_consumer(&self) -> Option<Unlock> {
        let glock = self.get_lock();
        let how = glock.try_lock().ok()??;
        let held = Unlock(glock);
        self.recover_consumer(how);
        Some(held)
    }

    /// Moves `head` to `next` past the record at ring offset `off`, first giving back the
    /// pages of `[off, end)` (see `release_pages`). Holding the consumer lock.
    fn advance(&self, off: u64, end: u64, next: u64) {
        let st = self.st();
        let pending = self.release_pages(off, end, next);
        st.head.0.store(next, Ordering::Release);
        if pending {
            st.commit_pending.store(0, Ordering::SeqCst);
        }
    }

    /// Called by a producer (holding the producer lock) that finds no room while items sit
    /// before the JUMP of an early wrap, with no consumer busy: undoes the wrap. The `t`
    /// bytes written at the ring's start since are copied to just after the JUMP, and the
    /// queue goes on in the old lap, with the whole ring available again. A consumer that
    /// stops reading for good therefore never shrinks a producer's room to the warm area.
    ///
    /// Crash safety: the copies and a SKIP record after them (to offset `t` of the next lap,
    /// where `tail` still is) are written first; then one 8-byte store turns the JUMP into the
    /// first copied record's header; then `tail` moves back. Dying before that store leaves
    /// the early wrap as it was; dying after it leaves the copies, then the SKIP to `tail`:
    /// either way every item is read once, in order.
    fn unwrap(&self) -> bool {
        let st = self.st();
        let cap = st.capacity;
        let jump = st.wrapped_at.load(Ordering::Relaxed);
        if jump == NO_WRAP {
            return false;
        }
        let Some(_held) = self.try_consumer() else {
            return false;
        };
        let head = st.head.0.load(Ordering::Relaxed);
        let tail = st.tail.0.load(Ordering::Relaxed);
        let j = jump & (cap - 1);
        let t = pos(tail) & (cap - 1);
        // The wrap must still be pending: head at or before the JUMP in its lap, tail in the
        // next lap, the new lap's data below the JUMP, and room for the copies plus a SKIP
        // record after it. (Positions wrap at `POS_MASK`, hence the masked differences.)
        let to_jump = jump.wrapping_sub(pos(head)) & POS_MASK;
        let past_jump = pos(tail).wrapping_sub(jump) & POS_MASK;
        let pending =
            to_jump < cap && past_jump == cap - j + t && t <= j && j + t + REC_HEADER as u64 <= cap;
        // SAFETY: `j` is 8-aligned and inside the ring.
        let (tag, len) = unsafe { read_header(self.ring().add(j as usize)) };
        if !pending || !is_jump(tag, len, j, cap) {
            st.wrapped_at.store(NO_WRAP, Ordering::Relaxed);
            return false;
        }
        let ring = self.ring();
        // SAFETY: the source [0, t) holds this lap's published records; the destination
        // [j, j + t + 8) is ring space past the JUMP that no record occupies (head is at or
        // before j in the old lap, and the new lap's data ends at t <= head's offset minus the
        // reserve <= j), so the ranges do not overlap. We hold both locks: nobody else reads
        // or writes either range.
        unsafe {
            if t > 0 {
                std::ptr::copy_nonoverlapping(
                    ring.add(REC_HEADER),
                    ring.add(j as usize + REC_HEADER),
                    t as usize - REC_HEADER,
                );
                write_header(ring.add((j + t) as usize), TAG_SKIP, t as u32);
                let (tag0, len0) = read_header(ring);
                write_header(ring.add(j as usize), tag0, len0);
            }
        }
        #[cfg(test)]
        if tests::DIE_BEFORE_TAIL.with(|d| d.get()) {
            return false;
        }
        st.tail
            .0
            .store(pack(count(tail), jump + t), Ordering::Release);
        st.wrapped_at.store(NO_WRAP, Ordering::Relaxed);
        #[cfg(test)]
        tests::EVENTS.with(|e| e.set((e.get().0, e.get().1 + 1)));
        // The ring's start is free now: give back what lies above the warm area.
        self.release_free(t);
        true
    }

    /// Gives back to the kernel the whole `PUNCH` chunks of `[from, to)` (ring offsets just
    /// read), except the warm area. Done before `head` moves past them, so no producer can be
    /// writing there (and producers never fill the last `reserve` bytes, so the chunk `head`
    /// is in is never one they may reuse); `commit_head` lets the next consumer finish the
    /// step if this one dies in the middle. True if it set `commit_pending`.
    fn release_pages(&self, from: u64, to: u64, next_head: u64) -> bool {
        let st = self.st();
        let start = (from as usize / PUNCH * PUNCH).max(WARM);
        let end = to as usize / PUNCH * PUNCH;
        if st.reserve == 0 || start >= end {
            return false;
        }
        st.commit_head.store(next_head, Ordering::SeqCst);
        st.commit_pending.store(1, Ordering::SeqCst);
        self.punch(start, end);
        true
    }

    /// Gives back the pages of the ring's start up to `to` (free after `unwrap`), above the
    /// warm area.
    fn release_free(&self, to: u64) {
        let end = (to as usize).next_multiple_of(PUNCH);
        if self.st().reserve != 0 && end > WARM {
            self.punch(WARM, end);
        }
    }

    /// Releases ring offsets `[start, end)`; failure only means the pages stay resident.
    fn punch(&self, start: usize, end: usize) {
        use rustix::fs::FallocateFlags;
        let _ = rustix::fs::fallocate(
            self.seg.as_fd(),
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            (DATA_AT + start) as u64,
            (end - start) as u64,
        );
    }

    fn task_done(&self) -> Result<()> {
        let st = self.st();
        let mut cur = st.unfinished.load(Ordering::SeqCst);
        loop {
            if cur <= 0 {
                return Err(Error::InvalidArgument(
                    "task_done() called more times than there were items".into(),
                ));
            }
            match st
                .unfinished
                .compare_exchange(cur, cur - 1, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            st.joined.0.notify_all();
        }
        Ok(())
    }

    fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let st = self.st();
        st.joined.0.wait_until(
            || st.unfinished.load(Ordering::SeqCst) <= 0,
            deadline,
            false,
        )
    }
}

/// Whether a record header at ring offset `off` is a valid JUMP (to the ring's end).
fn is_jump(tag: u32, len: u32, off: u64, cap: u64) -> bool {
    tag == TAG_JUMP && off + REC_HEADER as u64 + u64::from(len) == cap
}

/// Where page release stops for a JUMP record at `off`: only the chunk `off` is in holds
/// pages written this lap (the rest of the ring was given back when read in earlier laps).
fn jump_punch_end(off: u64, cap: u64) -> u64 {
    (off / PUNCH as u64 * PUNCH as u64 + PUNCH as u64).min(cap)
}

/// # Safety
/// `at` must point to 8 writable bytes of the ring.
unsafe fn write_header(at: *mut u8, tag: u32, len: u32) {
    let h = (u64::from(tag) << 32) | u64::from(len);
    std::ptr::write_volatile(at.cast::<u64>(), h);
}

/// # Safety
/// `at` must point to 8 readable bytes of the ring, 8-aligned.
unsafe fn read_header(at: *const u8) -> (u32, u32) {
    let h = std::ptr::read_volatile(at.cast::<u64>());
    ((h >> 32) as u32, h as u32)
}

/// Releases a held robust lock when dropped, so an early return or a panicking
/// `Serialize`/`Deserialize` impl never leaves a queue locked by a live process.
struct Unlock(RobustMutex);

impl Drop for Unlock {
    fn drop(&mut self) {
        // Only fails if this thread does not hold the lock, which the callers rule out.
        let _ = self.0.unlock();
    }
}

impl RawQueue {
    fn put_item<T: Serialize>(&self, item: &T, wait: Wait, joinable: bool) -> Result<()> {
        let fail = |e| Error::serialization("a queue item", e);
        let len = bincode::serialized_size(item).map_err(fail)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.put_with(
            len,
            |buf| bincode::serialize_into(buf, item).map_err(fail),
            wait,
            joinable,
        )
    }

    fn get_item<T: DeserializeOwned>(&self, wait: Wait) -> Result<T> {
        self.get_with(wait, |bytes| {
            bincode::deserialize(bytes).map_err(|e| Error::serialization("a queue item", e))
        })
    }
}

/// Options for a new queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    maxsize: usize,
    buffer: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            maxsize: 0,
            buffer: DEFAULT_BUFFER,
        }
    }
}

impl QueueBuilder {
    /// At most this many items at a time; `put` blocks (or fails with `Full`) beyond.
    /// 0, the default, means no limit on the count.
    pub fn maxsize(mut self, n: usize) -> Self {
        self.maxsize = n;
        self
    }

    /// Size of the ring the encoded items live in (default 1 GiB of *virtual* memory; only
    /// pages holding unread items stay resident, plus up to the first 8 MiB, which a queue
    /// whose consumers keep up reuses). Unread items may take this much before `put` blocks;
    /// one item may take half of it.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Creates the queue.
    pub fn build<T>(self) -> Result<Queue<T>> {
        Ok(Queue {
            raw: RawQueue::create(self.maxsize, self.buffer)?,
            _t: PhantomData,
        })
    }

    /// Creates a joinable queue.
    pub fn build_joinable<T>(self) -> Result<JoinableQueue<T>> {
        Ok(JoinableQueue {
            raw: RawQueue::create(self.maxsize, self.buffer)?,
            _t: PhantomData,
        })
    }
}

/// A FIFO queue shared by any number of processes (Python's `multiprocessing.Queue`).
///
/// Create it in one process and pass clones to others as arguments of a
/// [`Process`](crate::Process) or of pool tasks (also allowed here, unlike Python); every
/// process can put and get. Items are encoded with serde; `put` takes the item by reference,
/// so a `put` that fails (full, closed, not serializable) leaves it with the caller.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn produce(q: Queue<u32>, n: u32) {
///     for i in 0..n {
///         q.put(&i).unwrap();
///     }
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let q = Queue::new()?;
///     let mut p = Process::new(produce, (q.clone(), 3))?;
///     p.start()?;
///     let got: Vec<u32> = (0..3).map(|_| q.get()).collect::<Result<_, _>>()?;
///     p.join()?;
///     assert_eq!(got, [0, 1, 2]);
///     Ok(())
/// }
/// ```
pub struct Queue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

/// A [`Queue`] whose consumers confirm each item with `task_done`, so that `join` can wait
/// until every item put has been processed (Python's `JoinableQueue`).
pub struct JoinableQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

/// The plain queue of Python's `SimpleQueue`: `put`, `get`, `empty` and `close`, no limit.
pub struct SimpleQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

macro_rules! queue_common {
    ($ty:ident, $joinable:expr) => {
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    raw: self.raw.clone(),
                    _t: PhantomData,
                }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("qsize", &self.raw.qsize())
                    .field("closed", &self.raw.is_closed())
                    .finish()
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                fds::serialize_fd(self.raw.seg.fd(), stringify!($ty), s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let fd = fds::deserialize_fd(stringify!($ty), d)?;
                let raw = RawQueue::attach(fd).map_err(serde::de::Error::custom)?;
                Ok($ty {
                    raw,
                    _t: PhantomData,
                })
            }
        }

        impl<T: Serialize + DeserializeOwned> $ty<T> {
            /// Puts an item, waiting for room if the queue is full. `Closed` once the queue
            /// is closed.
            pub fn put(&self, item: &T) -> Result<()> {
                self.raw.put_item(item, Wait::Forever, $joinable)
            }

            /// Takes the oldest item, waiting as long as it takes. `Closed` once the queue is
            /// closed and empty.
            pub fn get(&self) -> Result<T> {
                self.raw.get_item(Wait::Forever)
            }

            /// Whether the queue holds no items (a snapshot: other processes may change it).
            pub fn empty(&self) -> bool {
                self.raw.qsize() == 0
            }

            /// Closes the queue for every process: later puts fail with `Closed`; gets return
            /// the items still queued, then `Closed` (consumers waiting in `get` wake up).
            pub fn close(&self) {
                self.raw.close();
            }

            /// Whether some process closed the queue.
            pub fn is_closed(&self) -> bool {
                self.raw.is_closed()
            }
        }
    };
}

queue_common!(Queue, false);
queue_common!(JoinableQueue, true);
queue_common!(SimpleQueue, false);

macro_rules! queue_full_api {
    ($ty:ident, $joinable:expr) => {
        impl<T: Serialize + DeserializeOwned> $ty<T> {
            /// Like `put`, but gives up with `Full` after `timeout`.
            pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
                self.raw
                    .put_item(item, Wait::from_timeout(timeout), $joinable)
            }

            /// Puts an item if there is room now, else fails with `Full`.
            pub fn put_nowait(&self, item: &T) -> Result<()> {
                self.raw.put_item(item, Wait::No, $joinable)
            }

            /// Like `get`, but gives up with `Empty` after `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
                self.raw.get_item(Wait::from_timeout(timeout))
            }

            /// Takes an item if one is there now, else fails with `Empty`.
            pub fn get_nowait(&self) -> Result<T> {
                self.raw.get_item(Wait::No)
            }

            /// Number of items in the queue (a snapshot).
            pub fn qsize(&self) -> usize {
                self.raw.qsize()
            }

            /// Whether the queue holds `maxsize` items (never, without a maxsize).
            pub fn full(&self) -> bool {
                let max = self.raw.st().maxsize;
                max != 0 && self.raw.qsize() as u64 >= max
            }
        }
    };
}

queue_full_api!(Queue, false);
queue_full_api!(JoinableQueue, true);

impl<T> Queue<T> {
    /// A queue without a limit on the number of items.
    pub fn new() -> Result<Queue<T>> {
        QueueBuilder::default().build()
    }

    /// A queue holding at most `maxsize` items (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<Queue<T>> {
        QueueBuilder::default().maxsize(maxsize).build()
    }
}

impl Queue<()> {
    /// Options for a new queue: maxsize and buffer size. The item type is given to
    /// [`QueueBuilder::build`].
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue without a limit on the number of items.
    pub fn new() -> Result<JoinableQueue<T>> {
        QueueBuilder::default().build_joinable()
    }

    /// A joinable queue holding at most `maxsize` items (0: no limit).
    pub fn with_maxsize(maxsize: usize) -> Result<JoinableQueue<T>> {
        QueueBuilder::default().maxsize(maxsize).build_joinable()
    }

    /// Marks one item taken with `get` as processed. An error if called more times than
    /// items were put.
    pub fn task_done(&self) -> Result<()> {
        self.raw.task_done()
    }

    /// Waits until every item put has been marked done with `task_done`.
    pub fn join(&self) -> Result<()> {
        self.raw.join(None)
    }

    /// Like `join`, waiting at most `timeout`: `Ok(false)` if items were still unfinished
    /// then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        match self.raw.join(Wait::from_timeout(timeout).deadline()) {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T> SimpleQueue<T> {
    /// A new simple queue.
    pub fn new() -> Result<SimpleQueue<T>> {
        Ok(SimpleQueue {
            raw: RawQueue::create(0, DEFAULT_BUFFER)?,
            _t: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::io::Write;

    thread_local! {
        /// Makes `unwrap` stop where a producer killed mid-way would.
        pub(super) static DIE_BEFORE_TAIL: Cell<bool> = const { Cell::new(false) };
        /// Early wraps and undone wraps on this thread.
        pub(super) static EVENTS: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
    }

    fn item(seq: u32, len: usize) -> Vec<u8> {
        let mut v = vec![seq as u8; len];
        v[..4].copy_from_slice(&seq.to_le_bytes());
        v
    }

    /// Raw bytes, so that debug builds do not spend minutes encoding byte by byte.
    fn put(q: &RawQueue, v: &[u8]) -> Result<()> {
        q.put_with(v.len(), |buf| Ok(buf.write_all(v)?), Wait::No, false)
    }

    fn get_seq(q: &RawQueue) -> u32 {
        let v = q.get_with(Wait::No, |b| Ok(b.to_vec())).expect("an item");
        let seq = u32::from_le_bytes(v[..4].try_into().unwrap());
        assert!(
            v[4..].iter().all(|&b| b == seq as u8),
            "item {seq} corrupted"
        );
        seq
    }

    fn tail_offset(q: &RawQueue) -> u64 {
        pos(q.st().tail.0.load(Ordering::SeqCst)) & (q.capacity() - 1)
    }

    /// Random puts and gets of mixed sizes on a 16 MiB ring (so ring-end wraps, early wraps,
    /// their undoing and page release all happen many times), with stretches where the
    /// consumer stops, checked against a model FIFO.
    #[test]
    fn random_traffic_matches_a_model_fifo() {
        let q = RawQueue::create(0, 16 << 20).unwrap();
        let mut model = std::collections::VecDeque::new();
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut seq, mut stopped_for) = (0u32, 0u32);
        let (mut puts, mut fulls, mut gets) = (0, 0, 0);
        for _ in 0..10000 {
            if stopped_for == 0 && next() % 400 == 0 {
                stopped_for = 30 + (next() % 120) as u32; // the consumer stops for a while
            }
            let get = stopped_for == 0 && next() % 100 < 58;
            stopped_for = stopped_for.saturating_sub(1);
            if get {
                match q.get_with(Wait::No, |b| Ok(b.to_vec())) {
                    Ok(v) => {
                        let (want, len): (u32, usize) = model.pop_front().expect("model empty");
                        assert_eq!(v.len(), len, "item {want}: wrong length");
                        let got = u32::from_le_bytes(v[..4].try_into().unwrap());
                        assert_eq!(got, want, "out of order");
                        for at in [4, len / 2, len - 1] {
                            assert_eq!(
                                v[at.max(4).min(len - 1)],
                                want as u8,
                                "item {want} corrupted"
                            );
                        }
                        gets += 1;
                    }
                    Err(Error::Empty) => assert!(model.is_empty(), "Empty with items queued"),
                    Err(e) => panic!("{e}"),
                }
            } else {
                let len = match next() % 100 {
                    0..=64 => 8 + (next() % 56) as usize,
                    65..=94 => 1024 + (next() % (63 << 10)) as usize,
                    _ => (256 << 10) + (next() % (1280 << 10)) as usize,
                };
                let item = item(seq, len);
                match put(&q, &item) {
                    Ok(()) => {
                        model.push_back((seq, len));
                        seq += 1;
                        puts += 1;
                    }
                    Err(Error::Full) => fulls += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        while let Some((want, _)) = model.pop_front() {
            assert_eq!(get_seq(&q), want);
        }
        assert!(
            puts > 2000 && gets > 1000 && fulls > 0,
            "{puts} {gets} {fulls}"
        );
        let (early, undone) = EVENTS.with(|e| e.get());
        assert!(
            early > 10 && undone > 0,
            "{early} early wraps, {undone} undone"
        );
    }

    #[test]
    fn a_queue_whose_consumer_keeps_up_stays_in_the_warm_area() {
        let q = RawQueue::create(0, DEFAULT_BUFFER).unwrap();
        // One item in flight, as with a producer running just ahead of its consumer.
        put(&q, &item(0, 1 << 20)).unwrap();
        for i in 1..300u32 {
            put(&q, &item(i, 1 << 20)).unwrap();
            assert!(
                tail_offset(&q) <= WARM as u64,
                "tail went past the warm area"
            );
            assert_eq!(get_seq(&q), i - 1);
        }
        assert_eq!(get_seq(&q), 299);
    }

    /// Queues 8 quarter-MiB items, reads 7, and puts one more: that one wraps early.
    fn early_wrapped_queue() -> RawQueue {
        let q = RawQueue::create(0, DEFAULT_BUFFER).unwrap();
        for i in 0..8 {
            put(&q, &item(i, 256 << 10)).unwrap();
        }
        for i in 0..7 {
            assert_eq!(get_seq(&q), i);
        }
        put(&q, &item(8, 256 << 10)).unwrap();
        let head = pos(q.st().head.0.load(Ordering::SeqCst)) & (q.capacity() - 1);
        assert!(tail_offset(&q) < head, "the ninth item did not wrap early");
        q
    }

    #[test]
    fn an_early_wrap_never_limits_a_producer_whose_consumers_stopped() {
        let q = early_wrapped_queue();
        // Without a consumer, 64 MiB more must fit at once (the ring is 1 GiB).
        for i in 9..265 {
            put(&q, &item(i, 256 << 10)).unwrap();
        }
        for i in 7..265 {
            assert_eq!(get_seq(&q), i);
        }
        assert!(matches!(
            q.get_with(Wait::No, |_| Ok(())),
            Err(Error::Empty)
        ));
    }

    #[test]
    fn rings_over_4_gib_are_refused() {
        // Record lengths are 32-bit.
        assert!(matches!(
            RawQueue::create(0, 5 << 30),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn a_consumer_holding_or_dying_with_its_lock_does_not_block_an_early_wrap_for_good() {
        let q = early_wrapped_queue();
        // A "consumer" that takes the consumer lock and keeps it: the wrap cannot be undone,
        // so the producer finds no room beyond the warm area for now.
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let q2 = q.clone();
        let holder = std::thread::spawn(move || {
            q2.get_lock().lock(None).unwrap();
            held_tx.send(()).unwrap();
            // Then it "dies" holding the lock (a thread exiting with a robust mutex held is
            // reported to the next owner like a killed process).
            let _ = go_rx.recv();
        });
        held_rx.recv().unwrap();
        let mut next = 9;
        while put(&q, &item(next, 256 << 10)).is_ok() {
            next += 1;
        }
        // A producer blocked on the pending wrap: the holder dies meanwhile, and nobody
        // notifies; the producer must still get through.
        let q3 = q.clone();
        let producer = std::thread::spawn(move || {
            for i in next..next + 64 {
                let v = item(i, 256 << 10);
                q3.put_with(
                    v.len(),
                    |buf| Ok(buf.write_all(&v)?),
                    Wait::Until(Instant::now() + Duration::from_secs(120)),
                    false,
                )
                .unwrap();
            }
        });
        go_tx.send(()).unwrap();
        holder.join().unwrap();
        producer.join().unwrap();
        for i in 7..next + 64 {
            assert_eq!(get_seq(&q), i);
        }
    }

    #[test]
    fn a_producer_dying_while_undoing_an_early_wrap_loses_and_repeats_nothing() {
        let q = early_wrapped_queue();
        put(&q, &item(9, 256 << 10)).unwrap();
        DIE_BEFORE_TAIL.with(|d| d.set(true));
        // Fill until the early wrap is in the way: the undo stops before moving the tail.
        let mut next = 10;
        while put(&q, &item(next, 256 << 10)).is_ok() {
            next += 1;
        }
        DIE_BEFORE_TAIL.with(|d| d.set(false));
        assert!(next > 10, "nothing was put after the early wrap");
        // The undo got as far as turning the JUMP into the first copied record.
        let jump = q.st().wrapped_at.load(Ordering::SeqCst);
        assert_ne!(jump, NO_WRAP);
        let at = (jump & (q.capacity() - 1)) as usize;
        // SAFETY: `at` is an 8-aligned offset inside the ring.
        assert_eq!(unsafe { read_header(q.ring().add(at)) }.0, TAG_ITEM);
        for i in 7..next {
            assert_eq!(get_seq(&q), i);
        }
        assert!(matches!(
            q.get_with(Wait::No, |_| Ok(())),
            Err(Error::Empty)
        ));
        // And the queue goes on working.
        put(&q, &item(next, 1000)).unwrap();
        assert_eq!(get_seq(&q), next);
    }
}
