//! The ring under every queue: its layout in the segment, records, wrapping (and undoing an
//! early wrap), giving pages back, and the lock-free handshakes between producers and
//! consumers. The public types (`super`) add typing and Python's method names.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::shm::handle::{Shm, ShmState};
use crate::shm::segment::{SegmentKind, HEADER_SPACE};
use crate::sys::futex::{EventCount, Locked, RobustMutex};

/// Default ring size: unread items may take up to this much before `put` blocks. It is
/// virtual memory: only the pages holding unread items, and the warm area's pages once used,
/// are resident (see `PUNCH` and `WARM`).
pub(super) const DEFAULT_BUFFER: usize = 1 << 30;
pub(super) const MIN_BUFFER: usize = 64 * 1024;
/// Record lengths are 32-bit, so a ring (and any JUMP across it) stays under 4 GiB.
pub(super) const MAX_BUFFER: usize = 1 << 32;
/// Rings larger than this give their pages back to the kernel, `PUNCH` bytes at a time, as
/// soon as they have been read; smaller ones stay resident.
pub(super) const PUNCH_ABOVE: usize = 8 << 20;
pub(super) const PUNCH: usize = 1 << 20;
/// The first bytes of the ring are never given back: a producer that finds the queue nearly
/// empty wraps back to the start early (see `put_with`), so a queue that keeps up with its
/// producers reuses these resident pages instead of faulting in fresh ones for every item.
pub(super) const WARM: usize = 8 << 20;
/// A producer wraps back to the ring's start early once it is this far in...
pub(super) const REWIND_AT: u64 = 256 << 10;
/// ...and no more than this is queued (so the consumers are keeping up).
pub(super) const REWIND_MAX_USED: u64 = 2 << 20;
/// How often a producer blocked by a pending early wrap retries undoing it.
pub(super) const RETRY_WRAP: Duration = Duration::from_millis(10);
/// `State::wrapped_at` when there is no early wrap to undo.
pub(super) const NO_WRAP: u64 = u64::MAX;
/// Where the ring starts in the segment (page-aligned, so punched ranges are whole pages).
pub(super) const DATA_AT: usize = 4096;

pub(super) const REC_HEADER: usize = 8;
pub(super) const TAG_ITEM: u32 = 0x4d51_0001;
pub(super) const TAG_JUMP: u32 = 0x4d51_0002;
/// Skips to offset `len` of the next lap (left by `unwrap`, see there).
pub(super) const TAG_SKIP: u32 = 0x4d51_0003;

/// `head` and `tail` pack a message count (high bits) with a byte position (low bits), so
/// one atomic store publishes both an item and the count `qsize` reads.
pub(super) const POS_BITS: u32 = 36;
pub(super) const POS_MASK: u64 = (1 << POS_BITS) - 1;
pub(super) const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// `maxsize` may not exceed this.
pub(super) const MAX_ITEMS: usize = 1 << 26;

pub(super) fn pos(w: u64) -> u64 {
    w & POS_MASK
}
pub(super) fn count(w: u64) -> u64 {
    w >> POS_BITS
}
pub(super) fn pack(count: u64, pos: u64) -> u64 {
    ((count & COUNT_MASK) << POS_BITS) | (pos & POS_MASK)
}

#[repr(C, align(64))]
pub(super) struct Line<T>(pub(super) T);

#[repr(C)]
pub(super) struct State {
    pub(super) put_lock: RobustMutex,
    pub(super) get_lock: RobustMutex,
    pub(super) tail: Line<AtomicU64>,
    pub(super) head: Line<AtomicU64>,
    /// Consumers wait here for items.
    pub(super) data: Line<EventCount>,
    /// Producers wait here for room.
    pub(super) space: Line<EventCount>,
    /// `JoinableQueue::join` waits here.
    pub(super) joined: Line<EventCount>,
    pub(super) closed: AtomicU32,
    /// A consumer is between giving pages back and publishing the new head (see `get`).
    pub(super) commit_pending: AtomicU32,
    pub(super) commit_head: AtomicU64,
    /// Position of the JUMP record of the last early wrap, while it may need undoing (see
    /// `unwrap`); `NO_WRAP` otherwise. Written under the producer lock.
    pub(super) wrapped_at: AtomicU64,
    pub(super) capacity: u64,
    /// Bytes never filled, so pages being given back are never ones a producer may be
    /// writing.
    pub(super) reserve: u64,
    pub(super) maxsize: u64,
    pub(super) unfinished: AtomicI64,
}

const _: () = assert!(std::mem::size_of::<State>() + HEADER_SPACE <= DATA_AT);

/// The untyped queue all three kinds share.
#[derive(Clone)]
pub(super) struct RawQueue {
    pub(super) shm: Shm<State>,
}

// SAFETY: repr(C), valid when zeroed (then set up before sharing: `create`); after creation
// the shared fields are atomics, robust mutexes and event counts, and the ring bytes are
// handed between processes by the head/tail protocol.
unsafe impl ShmState for State {
    const KIND: SegmentKind = SegmentKind::Queue;
    const WHAT: &'static str = "Queue";
}

/// Bytes between the state and the ring (which starts at `DATA_AT`).
const PAD: usize = DATA_AT - HEADER_SPACE - std::mem::size_of::<State>();

/// How long a blocking call may wait.
#[derive(Clone, Copy)]
pub(super) enum Wait {
    No,
    Until(Instant),
    Forever,
}

impl Wait {
    pub(super) fn from_timeout(t: Duration) -> Wait {
        crate::sys::wait::deadline_after(t).map_or(Wait::Forever, Wait::Until)
    }
    pub(super) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        }
    }
}

impl RawQueue {
    pub(super) fn create(maxsize: usize, buffer: usize) -> Result<RawQueue> {
        if maxsize > MAX_ITEMS {
            return Err(Error::TooLarge {
                what: format!("a queue maxsize of {maxsize}"),
                limit: MAX_ITEMS,
            });
        }
        if !(MIN_BUFFER..=MAX_BUFFER).contains(&buffer) {
            return Err(Error::InvalidArgument(format!(
                "a queue buffer of {buffer} bytes is outside {MIN_BUFFER}..={MAX_BUFFER}"
            )));
        }
        let capacity = buffer.next_power_of_two();
        let shm = Shm::create(PAD + capacity, |st: &mut State, _| {
            st.capacity = capacity as u64;
            st.reserve = if capacity > PUNCH_ABOVE {
                PUNCH as u64
            } else {
                0
            };
            st.maxsize = maxsize as u64;
            *st.wrapped_at.get_mut() = NO_WRAP;
            st.put_lock.init(false)?;
            st.get_lock.init(false)
        })?;
        Ok(RawQueue { shm })
    }

    /// A queue received from another process (its ring checked against the segment).
    pub(super) fn from_shm(shm: Shm<State>) -> Result<RawQueue> {
        let cap = shm.state().capacity as usize;
        if !cap.is_power_of_two() || PAD + cap > shm.extra_len() {
            return Err(Error::Protocol("received a corrupted queue".into()));
        }
        Ok(RawQueue { shm })
    }

    pub(super) fn st(&self) -> &State {
        self.shm.state()
    }

    pub(super) fn put_lock(&self) -> &RobustMutex {
        &self.st().put_lock
    }

    pub(super) fn get_lock(&self) -> &RobustMutex {
        &self.st().get_lock
    }

    pub(super) fn ring(&self) -> *mut u8 {
        // SAFETY: PAD past the state is DATA_AT, within the segment (create, from_shm).
        unsafe { self.shm.after_state().add(PAD) }
    }

    pub(super) fn capacity(&self) -> u64 {
        self.st().capacity
    }

    /// Largest encoded item accepted.
    pub(super) fn max_item(&self) -> usize {
        ((self.capacity() - self.st().reserve) / 2) as usize - REC_HEADER
    }

    pub(super) fn is_closed(&self) -> bool {
        self.st().closed.load(Ordering::SeqCst) != 0
    }

    pub(super) fn close(&self) {
        self.st().closed.store(1, Ordering::SeqCst);
        self.st().data.0.notify_all();
        self.st().space.0.notify_all();
    }

    pub(super) fn qsize(&self) -> usize {
        let st = self.st();
        let head = st.head.0.load(Ordering::Acquire);
        let tail = st.tail.0.load(Ordering::Acquire);
        (count(tail).wrapping_sub(count(head)) & COUNT_MASK) as usize
    }

    /// Puts one item of at most `len` encoded bytes: `write` encodes it straight into the
    /// ring (no intermediate buffer, so no fresh memory per item), advancing the slice it is
    /// given past what it wrote. Nothing is published if `write` fails or panics.
    pub(super) fn put_with(
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
            return Err(Error::TooLarge {
                what: format!(
                    "a queue item of {len} bytes (build the queue with a larger buffer_bytes)"
                ),
                limit: self.max_item(),
            });
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
                    super::tests::EVENTS.with(|e| e.set((e.get().0 + 1, e.get().1)));
                }
                break (tail, off, skip);
            }
            // The ring space an early wrap skipped counts as used until head passes the
            // JUMP; when that is what stands in the way, give it back now.
            if !room && used > 0 && (self.follow_jump() || self.undo_early_wrap()) {
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
    pub(super) fn get_with<R>(
        &self,
        wait: Wait,
        read: impl FnOnce(&[u8]) -> Result<R>,
    ) -> Result<R> {
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
    pub(super) fn recover_consumer(&self, how: Locked) {
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
    pub(super) fn follow_jump(&self) -> bool {
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
    pub(super) fn try_consumer(&self) -> Option<Unlock<'_>> {
        let glock = self.get_lock();
        let how = glock.try_lock().ok()??;
        let held = Unlock(glock);
        self.recover_consumer(how);
        Some(held)
    }

    /// Moves `head` to `next` past the record at ring offset `off`, first giving back the
    /// pages of `[off, end)` (see `release_pages`). Holding the consumer lock.
    pub(super) fn advance(&self, off: u64, end: u64, next: u64) {
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
    pub(super) fn undo_early_wrap(&self) -> bool {
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
        if super::tests::DIE_BEFORE_TAIL.with(|d| d.get()) {
            return false;
        }
        st.tail
            .0
            .store(pack(count(tail), jump + t), Ordering::Release);
        st.wrapped_at.store(NO_WRAP, Ordering::Relaxed);
        #[cfg(test)]
        super::tests::EVENTS.with(|e| e.set((e.get().0, e.get().1 + 1)));
        // The ring's start is free now: give back what lies above the warm area.
        self.release_free(t);
        true
    }

    /// Gives back to the kernel the whole `PUNCH` chunks of `[from, to)` (ring offsets just
    /// read), except the warm area. Done before `head` moves past them, so no producer can be
    /// writing there (and producers never fill the last `reserve` bytes, so the chunk `head`
    /// is in is never one they may reuse); `commit_head` lets the next consumer finish the
    /// step if this one dies in the middle. True if it set `commit_pending`.
    pub(super) fn release_pages(&self, from: u64, to: u64, next_head: u64) -> bool {
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
    pub(super) fn release_free(&self, to: u64) {
        let end = (to as usize).next_multiple_of(PUNCH);
        if self.st().reserve != 0 && end > WARM {
            self.punch(WARM, end);
        }
    }

    /// Releases ring offsets `[start, end)`; failure only means the pages stay resident.
    pub(super) fn punch(&self, start: usize, end: usize) {
        use rustix::fs::FallocateFlags;
        let _ = rustix::fs::fallocate(
            self.shm.segment().as_fd(),
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            (DATA_AT + start) as u64,
            (end - start) as u64,
        );
    }

    pub(super) fn task_done(&self) -> Result<()> {
        let st = self.st();
        let mut cur = st.unfinished.load(Ordering::SeqCst);
        loop {
            if cur <= 0 {
                return Err(Error::ReleasedTooOften {
                    what: "a joinable queue's task_done",
                });
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

    pub(super) fn join(&self, deadline: Option<Instant>) -> Result<()> {
        let st = self.st();
        st.joined.0.wait_until(
            || st.unfinished.load(Ordering::SeqCst) <= 0,
            deadline,
            false,
        )
    }
}

/// Whether a record header at ring offset `off` is a valid JUMP (to the ring's end).
pub(super) fn is_jump(tag: u32, len: u32, off: u64, cap: u64) -> bool {
    tag == TAG_JUMP && off + REC_HEADER as u64 + u64::from(len) == cap
}

/// Where page release stops for a JUMP record at `off`: only the chunk `off` is in holds
/// pages written this lap (the rest of the ring was given back when read in earlier laps).
pub(super) fn jump_punch_end(off: u64, cap: u64) -> u64 {
    (off / PUNCH as u64 * PUNCH as u64 + PUNCH as u64).min(cap)
}

/// # Safety
/// `at` must point to 8 writable bytes of the ring.
pub(super) unsafe fn write_header(at: *mut u8, tag: u32, len: u32) {
    let h = (u64::from(tag) << 32) | u64::from(len);
    // SAFETY: the caller's contract.
    unsafe { std::ptr::write_volatile(at.cast::<u64>(), h) };
}

/// # Safety
/// `at` must point to 8 readable bytes of the ring, 8-aligned.
pub(super) unsafe fn read_header(at: *const u8) -> (u32, u32) {
    // SAFETY: the caller's contract.
    let h = unsafe { std::ptr::read_volatile(at.cast::<u64>()) };
    ((h >> 32) as u32, h as u32)
}

/// Releases a held robust lock when dropped, so an early return or a panicking
/// `Serialize`/`Deserialize` impl never leaves a queue locked by a live process.
pub(super) struct Unlock<'a>(&'a RobustMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // Only fails if this thread does not hold the lock, which the callers rule out.
        let _ = self.0.unlock();
    }
}

impl RawQueue {
    pub(super) fn put_item<T: Serialize>(
        &self,
        item: &T,
        wait: Wait,
        joinable: bool,
    ) -> Result<()> {
        let fail = |e| Error::serialization("a queue item", e);
        let len = crate::wire::serial::encoded_len(item).map_err(fail)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.put_with(
            len,
            |buf| crate::wire::serial::encode_to_slice(buf, item).map_err(fail),
            wait,
            joinable,
        )
    }

    pub(super) fn get_item<T: DeserializeOwned>(&self, wait: Wait) -> Result<T> {
        self.get_with(wait, |bytes| {
            crate::wire::serial::decode(bytes).map_err(|e| Error::serialization("a queue item", e))
        })
    }
}
