//! The pool's scheduler: which worker gets which job, shared by callers and slot threads.
//!
//! Callers write RUN frames straight to a worker's socket (no task-handler thread). A worker
//! gets several jobs ahead when its jobs are short (pipelining), but work that has not
//! started is never bound to one worker for good: whenever a worker is idle and nothing is
//! pending, the scheduler takes back the jobs another worker has not started (through that
//! worker's lane, `shm::lane`) and hands them out again. So no job waits behind another on
//! a busy (or stuck) worker while a worker is idle, whatever the mix of durations.

use std::collections::VecDeque;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::fds::SharedFd;
use crate::shm::lane::Lane;
use crate::spawn::forkserver::ForkServer;
use crate::spawn::StartMethod;
use crate::sys::wait::{lock, Bell, Waiters};
use crate::wire::codec;
use crate::wire::conn::send_frame_counted;
use crate::wire::frame::{self, Kind};

pub(crate) use super::job::{Job, JobDone, Outcome, Sink};

/// Jobs written ahead to one worker whose jobs have not been timed yet, or take between
/// [`FAST_JOB`] and [`SLOW_JOB`]: one running, one queued in its socket, so it never waits
/// for the parent between two jobs.
const PIPELINE_DEPTH: usize = 2;
/// Jobs written ahead to a worker whose jobs take microseconds: enough that it always has
/// work while the parent sleeps through a wake-up.
pub(super) const FAST_PIPELINE_DEPTH: usize = 32;
/// A worker finishing queued jobs faster than this counts as fast.
pub(super) const FAST_JOB: Duration = Duration::from_micros(200);
/// Jobs taking longer than this go to a worker one at a time: the round trip it then waits
/// between jobs is under 1% of a job.
pub(super) const SLOW_JOB: Duration = Duration::from_millis(5);

/// Bytes of frames that may sit in a busy worker's socket. A worker reads its socket only
/// between jobs, and the kernel buffers about 200 KiB per socket: staying well below that, a
/// write to a busy worker never blocks (which would hold up the caller, and the jobs behind
/// it, until the worker's current job ends). A frame larger than this goes to idle workers
/// only; they read it as it comes.
pub(super) const PIPELINE_BYTES: usize = 64 * 1024;

/// A worker that has sent no result for this long while it holds jobs it has not started
/// is considered stuck on its current job: an idle worker takes those jobs. Workers busy
/// with short jobs report far more often (a held result waits at most `MAX_HOLD`, 0.5 ms),
/// so streams of fast jobs are never reshuffled for nothing.
pub(super) const STEAL_AFTER: Duration = Duration::from_millis(2);
/// The longest a worker that keeps not starting its jobs is passed over (see
/// `SlotSched::stalls`).
const MAX_EXCLUSION: Duration = Duration::from_secs(1);

/// Everything a pool needs to start a worker.
pub(crate) struct Config {
    pub processes: usize,
    pub method: StartMethod,
    pub maxtasksperchild: Option<u64>,
    pub initializer: Option<Initializer>,
    pub start_timeout: Duration,
    /// Defaults for calls that set none (`kill_after`, `retries`).
    pub policy: crate::exec::options::Policy,
    /// Memory limits for every worker (`max_memory_per_child`, `worker_memory_limit`).
    pub limits: crate::wire::handshake::WorkerLimits,
    /// Threads each worker spreads a chunk's items over (`threads_per_worker`).
    pub threads: usize,
}

/// Task name, encoded argument chunk, descriptors of the handles among the arguments.
pub(crate) type Initializer = (String, Vec<u8>, Vec<SharedFd>);

pub(crate) use crate::exec::lifecycle::State;

#[derive(Default, Clone)]
pub(super) struct SlotSched {
    /// Which worker of this slot the counts below are about: a fresh number each time a
    /// worker is attached or lost, so a caller holding an older assignment cannot corrupt
    /// the counts of its successor.
    pub generation: u64,
    /// A ready worker is attached.
    pub usable: bool,
    /// Jobs written to the worker whose results have not come back.
    pub inflight: usize,
    /// Their frames' bytes.
    pub inflight_bytes: usize,
    /// How many jobs may be in flight: PIPELINE_DEPTH until the worker's jobs have been
    /// timed (0), then FAST_PIPELINE_DEPTH for short jobs, 1 for long ones.
    pub depth: usize,
    /// When the worker started the job it is running, as far as the parent can tell (the
    /// job was sent to an idle worker, or the previous result arrived with more queued).
    pub busy_since: Option<Instant>,
    /// Jobs given to the current worker, for maxtasksperchild.
    pub assigned: u64,
    /// No more jobs for this worker: it is due for replacement.
    pub retiring: bool,
    /// The worker holds one job and an attempt to take it back found it started: not worth
    /// trying again until the count changes.
    pub lone_started: bool,
    /// How many times in a row jobs were taken back from this worker before it started
    /// any, with no answer from it since: it may be stopped, or only slow to wake. Once, it
    /// loses ties (the job taken back goes to the worker that took it); from the second time
    /// on it also gets no job until `excluded_until`, a pause doubling each time from
    /// `STEAL_AFTER` to `MAX_EXCLUSION`, so a stopped worker is handed (and its socket
    /// filled with) a few jobs, not one per job the others finish.
    pub stalls: u32,
    pub excluded_until: Option<Instant>,
    /// The newest job (highest id) given to this worker since it was last idle: a job
    /// taken back and handed out again goes to a worker holding nothing newer if it can,
    /// so it never waits behind a job submitted after it (a long one, maybe).
    pub newest: u64,
}

impl SlotSched {
    fn allowed(&self) -> usize {
        if self.depth == 0 {
            PIPELINE_DEPTH
        } else {
            self.depth
        }
    }

    /// Times the job (of `bytes`) whose result just arrived: how deep to fill this worker
    /// from now on.
    pub(super) fn timed(&mut self, now: Instant, bytes: usize) {
        if let Some(since) = self.busy_since {
            let took = now - since;
            self.depth = if took < FAST_JOB {
                FAST_PIPELINE_DEPTH
            } else if took < SLOW_JOB {
                PIPELINE_DEPTH
            } else {
                1
            };
        }
        // A job queued behind this one starts now.
        self.busy_since = (self.inflight > 1).then_some(now);
        self.inflight -= 1;
        if self.inflight == 0 {
            self.newest = 0;
        }
        self.lone_started = false;
        self.stalls = 0;
        self.excluded_until = None;
        self.inflight_bytes = self.inflight_bytes.saturating_sub(bytes);
    }

    /// Whether this worker may be given a job whose frame is `bytes` long now.
    fn has_room(&self, now: Instant, bytes: usize) -> bool {
        self.usable
            && !self.retiring
            && self.excluded_until.is_none_or(|t| t <= now)
            && self.inflight < if self.stalls > 0 { 1 } else { self.allowed() }
            && (self.inflight == 0 || self.inflight_bytes + bytes <= PIPELINE_BYTES)
    }

    fn is_idle(&self) -> bool {
        self.usable && !self.retiring && self.inflight == 0
    }

    /// From when jobs queued on this worker may be taken back (it holds some that may not
    /// have started, and has been on its current job since then minus `STEAL_AFTER`). A lone
    /// job counts too until an attempt found it started: a worker stopped (or starved of
    /// CPU) between jobs would otherwise hold the job written to it for as long as it stays
    /// stopped, out of reach of `kill_after`, which only counts time a job runs.
    fn stealable_from(&self) -> Option<Instant> {
        if !self.usable || self.inflight == 0 || (self.inflight == 1 && self.lone_started) {
            return None;
        }
        Some(self.busy_since? + STEAL_AFTER)
    }
}

pub(super) struct Sched {
    pub pending: VecDeque<Job>,
    pub slots: Vec<SlotSched>,
    pub state: State,
    pub broken: Option<String>,
    /// Submitted jobs not yet completed (pending + in flight).
    pub outstanding: usize,
    /// Slot threads exit once their worker has stopped.
    pub stopping: bool,
}

pub(super) struct SlotIo {
    /// Generation of the attached worker (see `SlotSched::generation`).
    pub generation: u64,
    pub stream: Option<UnixStream>,
    /// Jobs written to the current worker and not answered, in write order (= the order
    /// the worker takes them, and increasing lane sequence numbers).
    pub inflight: VecDeque<Job>,
    pub pid: Option<u32>,
    pub lane: Option<Lane>,
    /// The lane epoch new jobs are written under, and the next sequence number.
    pub epoch: u32,
    pub next_seq: u32,
    /// The parent broke the channel of a healthy worker (a write failed half-way): the
    /// item it is running is not to blame and runs again.
    pub cut_off: bool,
}

/// The write side of a worker's channel (a clone of its socket), locked for the length of a
/// write so frames never interleave. Kept apart from [`SlotIo`] so that a write blocked on a
/// worker that is not reading (it runs a long job) holds up nobody but other writers to the
/// same worker: results are still read, jobs still taken back, the pool still terminated.
#[derive(Default)]
pub(super) struct Writer {
    pub generation: u64,
    pub stream: Option<UnixStream>,
    /// Small frames stamped for the write in progress, one after the other.
    pub scratch: Vec<u8>,
}

/// A frame no larger than this is copied, stamped, into the writer's scratch buffer (its
/// descriptors ride along all the same); a larger one is written from the job's own bytes
/// (shared with the job, which may be taken back meanwhile), after a stamped copy of its
/// head.
const COPY_FRAMES_UP_TO: usize = 4096;
/// Past a write, a scratch buffer that a burst grew beyond this goes.
const SCRATCH_KEPT: usize = 256 * 1024;

/// A frame on its way to a worker, with its descriptors and its job's id.
struct OutFrame {
    id: u64,
    body: OutBody,
    fds: Vec<SharedFd>,
}

enum OutBody {
    /// Bytes `range` of the writer's scratch buffer.
    Copied(std::ops::Range<usize>),
    /// The stamped head, then the job's bytes after theirs.
    Shared {
        head: [u8; codec::RUN_STAMPED],
        bytes: Arc<Vec<u8>>,
    },
}

impl OutFrame {
    /// The frame's bytes, in two pieces (the second empty for a copied frame).
    fn pieces<'a>(&'a self, scratch: &'a [u8]) -> [&'a [u8]; 2] {
        match &self.body {
            OutBody::Copied(r) => [&scratch[r.clone()], &[]],
            OutBody::Shared { head, bytes } => [head, &bytes[codec::RUN_STAMPED..]],
        }
    }
}

/// How a write of frames to a worker failed.
struct WriteFailure {
    /// The frame it failed in.
    index: usize,
    /// Some of that frame went out: the stream cannot be used again.
    partial: bool,
    error: std::io::Error,
}

pub(crate) struct Shared {
    pub(super) sched: Mutex<Sched>,
    /// Signalled when `outstanding` reaches 0 or the state changes (no system call unless
    /// someone waits: a pool reaches 0 outstanding after every lone `apply`).
    pub(super) idle: Waiters,
    pub(super) slots: Vec<Mutex<SlotIo>>,
    pub(super) writers: Vec<Mutex<Writer>>,
    pub config: Config,
    next_id: AtomicU64,
    next_generation: AtomicU64,
    /// The shortest `kill_after` (in nanoseconds) of any job ever submitted, `u64::MAX`
    /// if none: while set, slot threads look at what their worker runs at least a quarter
    /// that often (see `watch.rs`).
    pub(super) shortest_limit: AtomicU64,
    /// One per slot: rung to wake its thread out of a wait on its worker with no deadline
    /// (when jobs with a shorter `kill_after` come).
    pub(super) bells: Vec<Bell>,
    /// A thread is in `pump`; `repump`: someone asked for another round meanwhile.
    pumping: AtomicBool,
    repump: AtomicBool,
    pub(super) server: Option<Arc<ForkServer>>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Result<Arc<Shared>> {
        let server = match config.method {
            StartMethod::ForkServer => Some(ForkServer::shared()?),
            StartMethod::Spawn => None,
        };
        let n = config.processes;
        let shortest_limit = super::watch::nanos(config.policy.kill_after);
        Ok(Arc::new(Shared {
            sched: Mutex::new(Sched {
                pending: VecDeque::new(),
                slots: (0..n).map(|_| SlotSched::default()).collect(),
                state: State::Running,
                broken: None,
                outstanding: 0,
                stopping: false,
            }),
            idle: Waiters::default(),
            slots: (0..n)
                .map(|_| {
                    Mutex::new(SlotIo {
                        generation: 0,
                        stream: None,
                        inflight: VecDeque::new(),
                        pid: None,
                        lane: None,
                        epoch: 0,
                        next_seq: 1,
                        cut_off: false,
                    })
                })
                .collect(),
            writers: (0..n).map(|_| Mutex::new(Writer::default())).collect(),
            config,
            next_id: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            shortest_limit: AtomicU64::new(shortest_limit),
            bells: (0..n)
                .map(|_| Bell::new())
                .collect::<std::io::Result<_>>()?,
            pumping: AtomicBool::new(false),
            repump: AtomicBool::new(false),
            server,
        }))
    }

    pub(super) fn fresh_generation(&self) -> u64 {
        self.next_generation.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_job_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> State {
        lock(&self.sched).state
    }

    /// Queues jobs and starts as many as workers can take.
    pub(crate) fn submit(&self, jobs: Vec<Job>) -> Result<()> {
        {
            let mut s = lock(&self.sched);
            if s.state != State::Running {
                return Err(Error::PoolClosed);
            }
            if let Some(reason) = &s.broken {
                return Err(Error::PoolBroken {
                    reason: reason.clone(),
                });
            }
            self.note_limits(&jobs);
            s.outstanding += jobs.len();
            s.pending.extend(jobs);
        }
        self.pump();
        Ok(())
    }

    /// Puts jobs back at the front of the pending queue, in order (they were submitted
    /// before anything pending now), adjusting `outstanding` by `added - finished`.
    pub(super) fn requeue_front(&self, jobs: Vec<Job>, added: usize, finished: usize) {
        let doomed = {
            let mut s = lock(&self.sched);
            s.outstanding = s.outstanding + added - finished;
            let doomed = self.push_front_locked(&mut s, jobs);
            if s.outstanding == 0 {
                self.idle.notify_all();
            }
            doomed
        };
        Self::fail_terminated(doomed);
    }

    /// Moves pending jobs to workers with room and writes them (outside the scheduler
    /// lock); then, if a worker is left idle with nothing pending, takes back jobs another
    /// worker has not started and hands them out again.
    ///
    /// One thread pumps at a time: jobs are given sequence numbers as they are written, so
    /// two pumps writing to one worker at once could put a job behind one handed out after
    /// it (a job taken back, behind a long job submitted later). A thread that finds a pump
    /// running asks it to go round once more and returns, never waiting: a slot thread must
    /// stay free to read its worker's results, or a pump blocked writing to that worker
    /// would wait for ever.
    pub(super) fn pump(&self) {
        self.repump.store(true, Ordering::SeqCst);
        if self.pumping.swap(true, Ordering::SeqCst) {
            return; // the running pump sees `repump` before it stops
        }
        loop {
            self.repump.store(false, Ordering::SeqCst);
            loop {
                self.assign();
                if !self.rebalance() {
                    break;
                }
            }
            self.pumping.store(false, Ordering::SeqCst);
            if !self.repump.load(Ordering::SeqCst) || self.pumping.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }

    fn assign(&self) {
        loop {
            // One write per worker: each slot's jobs in the order they were pending, with
            // the generation of the worker they were booked on.
            let mut per_slot: Vec<(u64, Vec<Job>)> = Vec::new();
            let mut dropped = 0;
            {
                let mut s = lock(&self.sched);
                let max = self.config.maxtasksperchild;
                let now = Instant::now();
                while let Some((bytes, id)) = s.pending.front().map(|j| (j.run.bytes.len(), j.id)) {
                    let Some(k) = pick_slot_for(&s.slots, now, bytes, id) else {
                        break;
                    };
                    let Some(job) = s.pending.pop_front() else {
                        break;
                    };
                    if !job.sink.claim() {
                        dropped += 1;
                        continue;
                    }
                    let slot = &mut s.slots[k];
                    if slot.inflight == 0 {
                        slot.busy_since = Some(now);
                    }
                    slot.inflight += 1;
                    slot.lone_started = false;
                    slot.newest = slot.newest.max(id);
                    slot.inflight_bytes += bytes;
                    slot.assigned += 1;
                    if max.is_some_and(|m| slot.assigned >= m) {
                        slot.retiring = true;
                    }
                    if per_slot.is_empty() {
                        per_slot.resize_with(s.slots.len(), Default::default);
                    }
                    let (generation, jobs) = &mut per_slot[k];
                    *generation = s.slots[k].generation;
                    jobs.push(job);
                }
                if dropped > 0 {
                    s.outstanding -= dropped;
                    if s.outstanding == 0 {
                        self.idle.notify_all();
                    }
                }
            }
            let mut gone = Vec::new();
            for (k, (generation, jobs)) in per_slot.into_iter().enumerate() {
                if jobs.is_empty() {
                    continue;
                }
                let load = Load::of(&jobs);
                match self.write_jobs(k, generation, jobs) {
                    Ok(true) => {}
                    Ok(false) => gone.push((k, generation, Load::default(), Vec::new())),
                    Err(jobs) => gone.push((k, generation, load, jobs)),
                }
            }
            if gone.is_empty() {
                return;
            }
            // Those workers are gone (their slot threads are about to notice): take nothing
            // more to them, and run the jobs that never reached them elsewhere.
            let mut doomed = Vec::new();
            {
                let mut s = lock(&self.sched);
                for (k, generation, load, jobs) in gone {
                    let slot = &mut s.slots[k];
                    if slot.generation == generation {
                        slot.usable = false;
                        load.unbook(slot);
                    }
                    doomed.extend(self.push_front_locked(&mut s, jobs));
                }
            }
            Self::fail_terminated(doomed);
        }
    }

    /// Writes jobs to slot `k`'s worker of the given generation, in as few writes as the
    /// kernel allows, each stamped with the lane's epoch and its sequence number. Gives the
    /// jobs back if that worker is no longer attached. The jobs are in flight (where the
    /// slot thread looks up results) before their first byte is written.
    ///
    /// A failed write: if nothing of a frame went out, the worker keeps serving and only
    /// that frame's job fails (its descriptors could not be sent, say). If a frame went out
    /// in part, or the worker is gone, the worker is detached (`Ok(false)`): its slot thread
    /// then sorts out through the lane which jobs it started.
    fn write_jobs(
        &self,
        k: usize,
        generation: u64,
        mut jobs: Vec<Job>,
    ) -> std::result::Result<bool, Vec<Job>> {
        let mut guard = lock(&self.writers[k]);
        let w = &mut *guard;
        let Some(stream) = w.stream.as_ref().filter(|_| w.generation == generation) else {
            return Err(jobs);
        };
        let scratch = &mut w.scratch;
        scratch.clear();
        let frames: Vec<OutFrame> = {
            let mut io = lock(&self.slots[k]);
            if io.generation != generation || io.stream.is_none() {
                return Err(jobs);
            }
            let mut frames = Vec::with_capacity(jobs.len());
            for job in &mut jobs {
                job.seq = io.next_seq;
                io.next_seq = io.next_seq.wrapping_add(1);
                // Items run at once only where each needs no timer of its own and no
                // earlier death in this job asks for them one by one.
                let parallel = self.config.threads > 1
                    && job.items > 1
                    && !job.alone
                    && job.policy.kill_after.is_none();
                let head = job.run.stamped_head(io.epoch, job.seq, parallel);
                let bytes = &mut job.run.bytes;
                let body = if bytes.len() <= COPY_FRAMES_UP_TO {
                    let at = scratch.len();
                    scratch.extend_from_slice(&head);
                    scratch.extend_from_slice(&bytes[codec::RUN_STAMPED..]);
                    OutBody::Copied(at..scratch.len())
                } else {
                    OutBody::Shared {
                        head,
                        bytes: bytes.share(),
                    }
                };
                frames.push(OutFrame {
                    id: job.id,
                    body,
                    fds: job.run.fds.clone(),
                });
            }
            io.inflight.extend(jobs);
            frames
        };
        let sent = send_frames(stream, scratch, &frames);
        if scratch.capacity() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        let Err(failure) = sent else {
            // A worker that was idle starts now, not when its (maybe long) frame began to
            // go out: the time it has before its job may be taken back counts from here.
            let mut s = lock(&self.sched);
            let slot = &mut s.slots[k];
            if slot.generation == generation && slot.inflight == frames.len() {
                slot.busy_since = Some(Instant::now());
            }
            return Ok(true);
        };
        use std::io::ErrorKind::{BrokenPipe, ConnectionReset};
        let gone = matches!(failure.error.kind(), BrokenPipe | ConnectionReset);
        if failure.partial || gone {
            // A half-written frame cannot be taken back: the worker must be replaced.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            drop(guard);
            let mut io = lock(&self.slots[k]);
            if io.generation == generation {
                io.stream = None;
                io.cut_off = !gone;
            }
            return Ok(false);
        }
        drop(guard);
        // The stream is intact, but frames after the failed one were not sent either: take
        // back everything the worker has not started, fail the job that cannot be sent, and
        // run the rest again.
        let failed_id = frames[failure.index].id;
        let mut taken = self.take_unstarted(k, generation, 1);
        let Some(pos) = taken.iter().position(|j| j.id == failed_id) else {
            // Not taken back (the worker went away meanwhile): its slot thread settles it.
            self.take_back(k, generation, taken);
            return Ok(true);
        };
        let job = taken.remove(pos);
        let load = Load::of(std::slice::from_ref(&job));
        self.take_back(k, generation, taken);
        {
            let mut s = lock(&self.sched);
            let slot = &mut s.slots[k];
            if slot.generation == generation {
                load.unbook(slot);
            }
        }
        self.finish_jobs(1);
        job.fail(Error::from(failure.error));
        Ok(true)
    }

    /// If a worker is idle while nothing is pending, takes back the jobs that the busiest
    /// worker stuck on its current job (no result for `STEAL_AFTER`) has not started, and
    /// puts them in front of the pending queue. True if it moved any.
    fn rebalance(&self) -> bool {
        let victims: Vec<(usize, u64, u64)> = {
            let s = lock(&self.sched);
            let now = Instant::now();
            // Jobs taken back go to an idle worker that may take them (not one passed over).
            if !s.pending.is_empty()
                || s.state == State::Terminated
                || !s.slots.iter().any(|x| x.is_idle() && x.has_room(now, 0))
            {
                return false;
            }
            let mut v: Vec<(usize, usize, u64, u64)> = s
                .slots
                .iter()
                .enumerate()
                .filter(|(_, x)| x.stealable_from().is_some_and(|t| t <= now))
                .map(|(k, x)| (k, x.inflight, x.generation, x.assigned))
                .collect();
            v.sort_by_key(|&(_, n, _, _)| std::cmp::Reverse(n));
            v.into_iter().map(|(k, _, g, a)| (k, g, a)).collect()
        };
        for (j, generation, assigned) in victims {
            let taken = self.withdraw(j, generation, 1);
            if !taken.is_empty() {
                self.take_back(j, generation, taken);
                let mut s = lock(&self.sched);
                let slot = &mut s.slots[j];
                if slot.generation == generation && slot.inflight == 0 {
                    slot.stalls += 1;
                    if slot.stalls >= 2 {
                        let pause = STEAL_AFTER.saturating_mul(1 << (slot.stalls - 2).min(16));
                        slot.excluded_until = Some(Instant::now() + pause.min(MAX_EXCLUSION));
                    }
                }
                drop(s);
                // Its thread may be asleep on the worker with no deadline (it had a job):
                // wake it, so that it looks for work again once the worker may take some.
                self.bells[j].ring();
                return true;
            }
            let mut s = lock(&self.sched);
            let slot = &mut s.slots[j];
            // (Unless it was given another job meanwhile.)
            if slot.generation == generation && slot.inflight == 1 && slot.assigned == assigned {
                slot.lone_started = true;
            }
        }
        false
    }

    /// Books jobs taken back from slot `j`'s worker (of `generation`) and puts them in front
    /// of the pending queue, to run again.
    fn take_back(&self, j: usize, generation: u64, jobs: Vec<Job>) {
        let load = Load::of(&jobs);
        let doomed = {
            let mut s = lock(&self.sched);
            let max = self.config.maxtasksperchild;
            let slot = &mut s.slots[j];
            if slot.generation == generation {
                load.unbook(slot);
                slot.assigned = slot.assigned.saturating_sub(load.jobs as u64);
                slot.retiring = max.is_some_and(|m| slot.assigned >= m);
            }
            self.push_front_locked(&mut s, jobs)
        };
        Self::fail_terminated(doomed);
    }

    /// Puts jobs in front of the pending queue, in order — or, once the pool is terminated,
    /// hands them back to be failed (nobody would run them any more).
    fn push_front_locked(&self, s: &mut Sched, jobs: Vec<Job>) -> Vec<Job> {
        if s.state == State::Terminated {
            s.outstanding -= jobs.len();
            if s.outstanding == 0 {
                self.idle.notify_all();
            }
            return jobs;
        }
        for job in jobs.into_iter().rev() {
            s.pending.push_front(job);
        }
        Vec::new()
    }

    fn fail_terminated(jobs: Vec<Job>) {
        for job in jobs {
            job.fail(Error::PoolTerminated);
        }
    }

    /// When slot `k`'s thread, whose worker is idle, should next look for jobs to take
    /// back from a worker that stopped reporting (`None`: nothing to wait for).
    pub(super) fn next_rebalance(&self, k: usize) -> Option<Instant> {
        let s = lock(&self.sched);
        if !s.slots[k].is_idle() || s.state == State::Terminated {
            return None;
        }
        let now = Instant::now();
        if !s.pending.is_empty() {
            // Someone is about to hand work out (or the pending jobs were all cancelled):
            // look again in a moment rather than sleep on a stale view. If every worker is
            // busy, a result will; if some are passed over, look when the first may serve.
            return if s.slots.iter().any(|x| x.has_room(now, 0)) {
                Some(now)
            } else {
                s.slots.iter().filter_map(|x| x.excluded_until).min()
            };
        }
        if !s.slots[k].has_room(now, 0) {
            // Passed over itself: it may take jobs back once it may run them.
            return s.slots[k].excluded_until;
        }
        s.slots.iter().filter_map(SlotSched::stealable_from).min()
    }

    /// Takes back the jobs slot `j`'s worker (of `generation`) has not started, if it has
    /// at least `min` unanswered.
    fn withdraw(&self, j: usize, generation: u64, min: usize) -> Vec<Job> {
        // A write in progress: its jobs cannot have started, and are not late either (a big
        // frame takes its time to arrive). The clock starts when the write is done.
        let Ok(_writing) = self.writers[j].try_lock() else {
            return Vec::new();
        };
        self.take_unstarted(j, generation, min)
    }

    /// [`withdraw`](Shared::withdraw), whether or not a write to the worker is in progress.
    fn take_unstarted(&self, j: usize, generation: u64, min: usize) -> Vec<Job> {
        let mut io = lock(&self.slots[j]);
        if io.generation != generation || io.stream.is_none() || io.inflight.len() < min {
            return Vec::new();
        }
        let Some(lane) = io.lane.clone() else {
            return Vec::new();
        };
        match lane.withdraw(io.epoch) {
            Ok(last) => {
                io.epoch = io.epoch.wrapping_add(1);
                io.next_seq = last.wrapping_add(1);
                let keep = io
                    .inflight
                    .iter()
                    .position(|job| job.seq.wrapping_sub(last) as i32 > 0)
                    .unwrap_or(io.inflight.len());
                io.inflight.split_off(keep).into()
            }
            Err(_) => {
                // The lane is out of step with what was written: replace the worker.
                if let Some(stream) = io.stream.take() {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
                Vec::new()
            }
        }
    }

    /// Fails everything not yet started with `e` (terminate, broken pool).
    pub(crate) fn fail_pending(&self, e: &Error) {
        let jobs: Vec<Job> = {
            let mut s = lock(&self.sched);
            let jobs: Vec<Job> = s.pending.drain(..).collect();
            s.outstanding -= jobs.len();
            self.idle.notify_all();
            jobs
        };
        for job in jobs {
            job.fail(e.clone());
        }
    }

    pub(super) fn finish_jobs(&self, n: usize) {
        if n > 0 {
            self.requeue_front(Vec::new(), 0, n);
        }
    }

    pub(crate) fn close(&self) {
        let mut s = lock(&self.sched);
        if s.state == State::Running {
            s.state = State::Closed;
        }
        self.idle.notify_all();
    }

    /// Stops everything now: pending and running jobs fail with `PoolTerminated`.
    pub(crate) fn terminate(&self) {
        tracing::info!(target: "multiproc::pool", "pool terminated");
        {
            let mut s = lock(&self.sched);
            s.state = State::Terminated;
            s.stopping = true;
        }
        self.fail_pending(&Error::PoolTerminated);
        for slot in &self.slots {
            if let Some(stream) = lock(slot).stream.as_ref() {
                // The worker's watchdog sees the hang-up and exits at once; the slot thread
                // sees end of stream, kills and reaps it.
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        self.idle.notify_all();
    }

    /// Waits until every submitted job has completed, then asks workers to exit.
    pub(crate) fn drain_and_stop(&self) {
        tracing::debug!(target: "multiproc::pool", "pool closing: waiting for submitted work");
        let mut s = lock(&self.sched);
        while s.outstanding > 0 && s.state != State::Terminated {
            s = self.idle.wait(s, None).unwrap_or_else(|g| g);
        }
        s.stopping = true;
        drop(s);
        self.idle.notify_all();
        for k in 0..self.slots.len() {
            self.stop_slot_worker(k);
        }
    }

    /// Asks slot `k`'s worker to exit (its slot thread then replaces it or stops).
    pub(super) fn stop_slot_worker(&self, k: usize) {
        let w = lock(&self.writers[k]);
        if let Some(stream) = w.stream.as_ref() {
            let sent = frame::encode(Kind::Shutdown, &[]).map(|b| send_all(stream, &b));
            if !matches!(sent, Ok(Ok(()))) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| lock(s).pid).collect()
    }

    /// Waits `d`, or less if the pool stops meanwhile: true if it stops.
    pub(super) fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut s = lock(&self.sched);
        while !s.stopping {
            match self.idle.wait(s, Some(deadline)) {
                Ok(g) => s = g,
                Err(g) => return g.stopping,
            }
        }
        true
    }

    pub(super) fn mark_broken(&self, reason: String) {
        tracing::error!(target: "multiproc::pool", %reason, "pool broken");
        {
            let mut s = lock(&self.sched);
            if s.broken.is_none() {
                s.broken = Some(reason.clone());
            }
        }
        self.fail_pending(&Error::PoolBroken { reason });
    }
}

/// Jobs and frame bytes booked on a worker.
#[derive(Default, Clone, Copy)]
struct Load {
    jobs: usize,
    bytes: usize,
}

impl Load {
    fn of(jobs: &[Job]) -> Load {
        Load {
            jobs: jobs.len(),
            bytes: jobs.iter().map(|j| j.run.bytes.len()).sum(),
        }
    }

    fn unbook(self, slot: &mut SlotSched) {
        slot.inflight -= self.jobs;
        if slot.inflight == 0 {
            slot.newest = 0;
        }
        slot.lone_started = false;
        slot.inflight_bytes = slot.inflight_bytes.saturating_sub(self.bytes);
    }
}

/// The worker to give the next job (of a `bytes`-long frame): the least loaded with room,
/// preferring workers that are not stuck (no result for `STEAL_AFTER` while holding jobs), so
/// jobs just taken back from one do not flow straight back to it.
#[cfg(test)]
fn pick_slot(slots: &[SlotSched], now: Instant, bytes: usize) -> Option<usize> {
    pick_slot_for(slots, now, bytes, u64::MAX)
}

/// [`pick_slot`] for job `id`: a worker holding a newer job comes last, so that a job taken
/// back and handed out again does not queue behind work submitted after it.
fn pick_slot_for(slots: &[SlotSched], now: Instant, bytes: usize, id: u64) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.has_room(now, bytes))
        .min_by_key(|(_, s)| {
            let stuck = s.inflight > 0 && s.busy_since.is_some_and(|t| t + STEAL_AFTER <= now);
            let behind_newer = s.inflight > 0 && s.newest > id;
            (behind_newer, stuck, s.inflight, s.stalls > 0)
        })
        .map(|(k, _)| k)
}

/// Writes frames in order with as few system calls as the kernel allows (one `writev` when
/// no descriptors ride along), telling on failure which frame it failed in and whether part
/// of it went out.
fn send_frames(
    stream: &UnixStream,
    scratch: &[u8],
    frames: &[OutFrame],
) -> std::result::Result<(), WriteFailure> {
    use std::io::{IoSlice, Write};
    if frames.iter().any(|f| !f.fds.is_empty()) {
        for (index, f) in frames.iter().enumerate() {
            let whole;
            let bytes = match f.pieces(scratch) {
                [all, []] => all,
                pieces => {
                    whole = pieces.concat();
                    &whole[..]
                }
            };
            send_frame_counted(stream, bytes, &f.fds).map_err(|(n, error)| WriteFailure {
                index,
                partial: n > 0,
                error,
            })?;
        }
        return Ok(());
    }
    // Neighbouring copied frames go as one slice.
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len().min(64));
    let mut copied: Option<std::ops::Range<usize>> = None;
    for f in frames {
        if let OutBody::Copied(r) = &f.body {
            copied = Some(copied.map_or(r.clone(), |c| c.start..r.end));
            continue;
        }
        if let Some(c) = copied.take() {
            slices.push(IoSlice::new(&scratch[c]));
        }
        slices.extend(f.pieces(scratch).map(IoSlice::new));
    }
    if let Some(c) = copied {
        slices.push(IoSlice::new(&scratch[c]));
    }
    let mut slices = &mut slices[..];
    let mut written = 0usize;
    // std's write_vectored uses writev; SIGPIPE is ignored by the Rust runtime, and a closed
    // peer comes back as EPIPE.
    let mut w = stream;
    while !slices.is_empty() {
        let error = match w.write_vectored(slices) {
            Ok(0) => std::io::ErrorKind::WriteZero.into(),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut slices, n);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => e,
        };
        // Which frame the failure fell in, and whether it had begun.
        let mut start = 0;
        for (index, f) in frames.iter().enumerate() {
            let len: usize = f.pieces(scratch).iter().map(|p| p.len()).sum();
            if written < start + len {
                return Err(WriteFailure {
                    index,
                    partial: written > start,
                    error,
                });
            }
            start += len;
        }
        break;
    }
    Ok(())
}

/// Writes all of `bytes`; never raises SIGPIPE.
pub(crate) fn send_all(stream: &UnixStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use rustix::net::{send, SendFlags};
    while !bytes.is_empty() {
        match send(stream, bytes, SendFlags::NOSIGNAL) {
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_slot_prefers_the_least_loaded_usable_worker() {
        let slot = |usable, inflight, retiring| SlotSched {
            usable,
            inflight,
            retiring,
            ..SlotSched::default()
        };
        let now = Instant::now();
        assert_eq!(
            pick_slot(&[slot(true, 1, false), slot(true, 0, false)], now, 10),
            Some(1)
        );
        assert_eq!(
            pick_slot(&[slot(false, 0, false), slot(true, 1, false)], now, 10),
            Some(1)
        );
        assert_eq!(
            pick_slot(
                &[slot(true, 0, true), slot(true, PIPELINE_DEPTH, false)],
                now,
                10
            ),
            None
        );
        // A frame too big to sit in a busy worker's socket goes to an idle worker only.
        assert_eq!(
            pick_slot(&[slot(true, 1, false)], now, PIPELINE_BYTES + 1),
            None
        );
        let (busy, idle) = (slot(true, 1, false), slot(true, 0, false));
        assert_eq!(pick_slot(&[busy, idle], now, 10 * PIPELINE_BYTES), Some(1));
        // A worker stuck on its job gets work only when no other has room.
        let stuck = SlotSched {
            busy_since: Some(now - STEAL_AFTER * 2),
            ..slot(true, 1, false)
        };
        assert_eq!(pick_slot(&[stuck, slot(true, 1, false)], now, 10), Some(1));
        // One whose jobs were taken back before it started any loses ties, and holds one
        // job at a time; after a second time, it is passed over for a while.
        let stalled = SlotSched {
            stalls: 1,
            ..slot(true, 0, false)
        };
        assert_eq!(
            pick_slot(&[stalled.clone(), slot(true, 0, false)], now, 10),
            Some(1)
        );
        assert_eq!(
            pick_slot(&[stalled.clone(), slot(true, 1, false)], now, 10),
            Some(0)
        );
        let stalled_busy = SlotSched {
            inflight: 1,
            ..stalled.clone()
        };
        let full = slot(true, PIPELINE_DEPTH, false);
        assert_eq!(pick_slot(&[stalled_busy, full.clone()], now, 10), None);
        let excluded = SlotSched {
            stalls: 2,
            excluded_until: Some(now + STEAL_AFTER),
            ..slot(true, 0, false)
        };
        assert_eq!(pick_slot(&[excluded.clone(), full], now, 10), None);
        assert_eq!(pick_slot(&[excluded], now + STEAL_AFTER, 10), Some(0));
        // A job taken back goes to a worker holding nothing newer, even a busier one.
        let newer = SlotSched {
            newest: 9,
            ..slot(true, 1, false)
        };
        let older = SlotSched {
            newest: 3,
            depth: FAST_PIPELINE_DEPTH,
            ..slot(true, 2, false)
        };
        assert_eq!(pick_slot_for(&[newer.clone(), older], now, 10, 5), Some(1));
        assert_eq!(
            pick_slot_for(&[newer, slot(true, 1, false)], now, 10, 5),
            Some(1)
        );
    }
}
