//! The pool's engine: the scheduler shared by callers and slot threads, and the slot threads
//! that start, serve, replace and stop worker processes.
//!
//! Hand-offs are kept to the minimum: a caller writes its RUN frame straight to an idle
//! worker's socket (no task-handler thread), the worker answers on the same socket, and that
//! worker's slot thread (blocked reading it) completes the result and wakes the caller.
//! The same read notices a dead worker: end of stream.

use std::collections::VecDeque;
use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::shm::fds::SharedFd;
use crate::spawn::forkserver::ForkServer;
use crate::spawn::{self, StartMethod, WorkerProcess};
use crate::wait::lock;
use crate::wire::codec::ChunkFailure;
use crate::wire::conn::send_frame_with_fds;
use crate::wire::frame::{self, Kind};
use crate::worker::{Hello, Welcome};

/// Jobs written ahead to one worker: one running, one queued in its socket, so it never
/// waits for the parent between two jobs.
const PIPELINE_DEPTH: usize = 2;
/// Jobs written ahead to a worker whose jobs take microseconds: enough that it always has
/// work while the parent sleeps through a wake-up. Only for fast jobs, so slow jobs are not
/// queued behind each other on one worker while another is idle.
const FAST_PIPELINE_DEPTH: usize = 32;
/// A worker finishing queued jobs faster than this counts as fast.
const FAST_JOB: Duration = Duration::from_micros(200);
/// Jobs taking longer than this go to a worker one at a time: the round trip it then waits
/// between jobs is under 1% of a job, and no job waits queued behind another on one worker
/// while a second worker runs out of work (which would cost whole jobs at the end of a map).
const SLOW_JOB: Duration = Duration::from_millis(5);
/// Consecutive failures to start a replacement worker before the pool is declared broken.
const MAX_START_FAILURES: u32 = 3;

/// Everything a pool needs to start a worker.
pub(crate) struct Config {
    pub processes: usize,
    pub method: StartMethod,
    pub maxtasksperchild: Option<u64>,
    pub initializer: Option<Initializer>,
    pub start_timeout: Duration,
}

/// Task name, encoded argument chunk, descriptors of the handles among the arguments.
pub(crate) type Initializer = (String, Vec<u8>, Vec<SharedFd>);

/// A finished job, handed to its sink.
pub(crate) struct JobDone {
    pub task: &'static str,
    /// Position of the job within its call (chunk index).
    pub part: usize,
    pub items: usize,
    /// The RESULT body after the job id, or the error every item of the job gets.
    pub outcome: Result<Vec<u8>>,
}

/// Receives the outcome of jobs; implemented by each kind of call.
pub(crate) trait Sink: Send + Sync {
    fn complete(&self, done: JobDone);
    /// A cancelled call's jobs that have not started are dropped instead of run.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// One unit of work: a chunk of calls of one task, ready to write.
pub(crate) struct Job {
    pub id: u64,
    pub task: &'static str,
    pub frame: Vec<u8>,
    /// Descriptors of the handles among the arguments, sent with the frame.
    pub fds: Vec<SharedFd>,
    pub items: usize,
    pub part: usize,
    pub sink: Arc<dyn Sink>,
}

impl Job {
    pub(crate) fn fail(self, e: Error) {
        self.sink.complete(JobDone {
            task: self.task,
            part: self.part,
            items: self.items,
            outcome: Err(e),
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Running,
    Closed,
    Terminated,
}

#[derive(Default)]
struct SlotSched {
    /// Which worker of this slot the counts below are about: a fresh number each time a
    /// worker is attached or lost, so a caller holding an older assignment cannot corrupt
    /// the counts of its successor.
    generation: u64,
    /// A ready worker is attached.
    usable: bool,
    inflight: usize,
    /// How many jobs may be in flight: PIPELINE_DEPTH until the worker's jobs have been
    /// timed (0), then FAST_PIPELINE_DEPTH for short jobs, 1 for long ones.
    depth: usize,
    /// When the worker started the job it is running, as far as the parent can tell (the
    /// job was sent to an idle worker, or the previous result arrived with more queued).
    busy_since: Option<Instant>,
    /// Jobs given to the current worker, for maxtasksperchild.
    assigned: u64,
    /// No more jobs for this worker: it is due for replacement.
    retiring: bool,
}

impl SlotSched {
    fn allowed(&self) -> usize {
        if self.depth == 0 {
            PIPELINE_DEPTH
        } else {
            self.depth
        }
    }
}

pub(crate) struct Sched {
    pending: VecDeque<Job>,
    slots: Vec<SlotSched>,
    pub state: State,
    broken: Option<String>,
    /// Submitted jobs not yet completed (pending + in flight).
    outstanding: usize,
    /// Slot threads exit once their worker has stopped.
    stopping: bool,
}

struct SlotIo {
    /// Generation of the attached worker (see `SlotSched::generation`).
    generation: u64,
    stream: Option<UnixStream>,
    /// Jobs written to the current worker, in write order (= execution order).
    inflight: VecDeque<Job>,
    pid: Option<u32>,
}

pub(crate) struct Shared {
    sched: Mutex<Sched>,
    /// Signalled when `outstanding` reaches 0 or the state changes.
    idle: Condvar,
    slots: Vec<Mutex<SlotIo>>,
    pub config: Config,
    next_id: AtomicU64,
    next_generation: AtomicU64,
    server: Option<Arc<ForkServer>>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Result<Arc<Shared>> {
        let server = match config.method {
            StartMethod::ForkServer => Some(ForkServer::shared()?),
            StartMethod::Spawn => None,
        };
        let n = config.processes;
        Ok(Arc::new(Shared {
            sched: Mutex::new(Sched {
                pending: VecDeque::new(),
                slots: (0..n).map(|_| SlotSched::default()).collect(),
                state: State::Running,
                broken: None,
                outstanding: 0,
                stopping: false,
            }),
            idle: Condvar::new(),
            slots: (0..n)
                .map(|_| {
                    Mutex::new(SlotIo {
                        generation: 0,
                        stream: None,
                        inflight: VecDeque::new(),
                        pid: None,
                    })
                })
                .collect(),
            config,
            next_id: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            server,
        }))
    }

    fn fresh_generation(&self) -> u64 {
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
            s.outstanding += jobs.len();
            s.pending.extend(jobs);
        }
        self.pump();
        Ok(())
    }

    /// Moves pending jobs to workers with room, then writes them (outside the scheduler lock).
    fn pump(&self) {
        loop {
            let mut batch: Vec<(usize, u64, Job)> = Vec::new();
            let mut per_slot = vec![0usize; self.slots.len()];
            let mut dropped = 0;
            {
                let mut s = lock(&self.sched);
                let max = self.config.maxtasksperchild;
                while let Some(k) = pick_slot(&s.slots) {
                    let Some(job) = s.pending.pop_front() else {
                        break;
                    };
                    if job.sink.is_cancelled() {
                        dropped += 1;
                        continue;
                    }
                    let slot = &mut s.slots[k];
                    if slot.inflight == 0 {
                        slot.busy_since = Some(Instant::now());
                    }
                    slot.inflight += 1;
                    slot.assigned += 1;
                    if max.is_some_and(|m| slot.assigned >= m) {
                        slot.retiring = true;
                    }
                    batch.push((k, slot.generation, job));
                    per_slot[k] += 1;
                }
                if dropped > 0 {
                    s.outstanding -= dropped;
                    if s.outstanding == 0 {
                        self.idle.notify_all();
                    }
                }
            }
            if batch.is_empty() {
                return;
            }
            // One write per worker: group the batch by slot, keeping each slot's order.
            batch.sort_by_key(|(k, _, _)| *k);
            let mut requeue = Vec::new();
            let mut rest = batch.into_iter().peekable();
            while let Some((k, generation, first)) = rest.next() {
                let mut jobs = Vec::with_capacity(per_slot[k]);
                jobs.push(first);
                while let Some((_, _, job)) = rest.next_if(|(k2, _, _)| *k2 == k) {
                    jobs.push(job);
                }
                if let Err(jobs) = self.write_jobs(k, generation, jobs) {
                    requeue.extend(jobs.into_iter().map(|job| (k, generation, job)));
                }
            }
            if requeue.is_empty() {
                return;
            }
            // Those workers are gone: put the jobs back in front, in order, and try again
            // (their slots are no longer usable, so others, or replacements, take them).
            let mut s = lock(&self.sched);
            for (k, generation, job) in requeue.into_iter().rev() {
                let slot = &mut s.slots[k];
                if slot.generation == generation {
                    slot.inflight -= 1;
                    slot.usable = false;
                }
                s.pending.push_front(job);
            }
        }
    }

    /// Writes jobs to slot `k`'s worker of the given generation, in one vectored write.
    /// Gives the jobs back if that worker is gone.
    fn write_jobs(
        &self,
        k: usize,
        generation: u64,
        jobs: Vec<Job>,
    ) -> std::result::Result<(), Vec<Job>> {
        let mut io = lock(&self.slots[k]);
        if io.generation != generation {
            return Err(jobs);
        }
        let Some(stream) = io.stream.as_ref() else {
            return Err(jobs);
        };
        let sent = if jobs.iter().any(|j| !j.fds.is_empty()) {
            jobs.iter()
                .try_for_each(|j| send_frame_with_fds(stream, &j.frame, &j.fds))
        } else {
            let frames: Vec<&[u8]> = jobs.iter().map(|j| j.frame.as_slice()).collect();
            send_all_vectored(stream, &frames)
        };
        if sent.is_err() {
            // A half-written frame cannot be taken back: make sure the worker is replaced.
            let _ = stream.shutdown(std::net::Shutdown::Both);
            io.stream = None;
            return Err(jobs);
        }
        io.inflight.extend(jobs);
        Ok(())
    }

    /// Fails everything not yet started with `e` (terminate, broken pool).
    fn fail_pending(&self, e: &Error) {
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

    fn finish_jobs(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut s = lock(&self.sched);
        s.outstanding -= n;
        if s.outstanding == 0 {
            self.idle.notify_all();
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
        let mut s = lock(&self.sched);
        while s.outstanding > 0 && s.state != State::Terminated {
            s = self.idle.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        s.stopping = true;
        drop(s);
        for slot in &self.slots {
            let io = lock(slot);
            if let Some(stream) = io.stream.as_ref() {
                if let Ok(bytes) = frame::encode(Kind::Shutdown, &[]) {
                    let _ = send_all(stream, &bytes);
                }
            }
        }
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.slots.iter().filter_map(|s| lock(s).pid).collect()
    }

    fn mark_broken(&self, reason: String) {
        {
            let mut s = lock(&self.sched);
            if s.broken.is_none() {
                s.broken = Some(reason.clone());
            }
        }
        self.fail_pending(&Error::PoolBroken { reason });
    }
}

fn pick_slot(slots: &[SlotSched]) -> Option<usize> {
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.usable && !s.retiring && s.inflight < s.allowed())
        .min_by_key(|(_, s)| s.inflight)
        .map(|(k, _)| k)
}

/// Writes all of several buffers with as few system calls as the kernel allows.
pub(crate) fn send_all_vectored(stream: &UnixStream, bufs: &[&[u8]]) -> std::io::Result<()> {
    use std::io::{IoSlice, Write};
    if let [one] = bufs {
        return send_all(stream, one);
    }
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    // std's write_vectored uses writev; SIGPIPE is ignored by the Rust runtime, and a closed
    // peer comes back as EPIPE.
    let mut w = stream;
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
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

/// Validates a worker's (or fork server's) greeting.
pub(crate) fn check_hello(h: &Hello) -> Result<()> {
    if h.version != crate::wire::PROTOCOL_VERSION {
        return Err(Error::Handshake(format!(
            "worker speaks protocol {}, this process speaks {}",
            h.version,
            crate::wire::PROTOCOL_VERSION
        )));
    }
    if h.build_id != crate::registry::build_id() {
        return Err(Error::Handshake(format!(
            "worker {} runs a different build of the program (task table {:016x}, expected \
             {:016x}); was the executable replaced while running?",
            h.pid,
            h.build_id,
            crate::registry::build_id()
        )));
    }
    Ok(())
}

/// Starts a worker and runs the handshake (and initializer).
fn start_worker(shared: &Shared) -> Result<(WorkerProcess, UnixStream)> {
    let (mut proc, stream) = spawn::start(shared.config.method, shared.server.as_ref())?;
    match handshake(&stream, &shared.config) {
        Ok(()) => Ok((proc, stream)),
        Err(e) => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            drop(stream);
            let exit = proc.reap(Duration::from_secs(2));
            Err(match e {
                Error::WorkerStart(msg) => Error::WorkerStart(format!(
                    "{msg} (worker {} {}); a program that starts workers must call \
                     multiproc::init() first thing in main (#[multiproc::main]), so the worker \
                     does not run main's own code",
                    proc.pid,
                    match (exit.signal, exit.code) {
                        (Some(sig), _) => format!("killed by signal {sig}"),
                        (None, Some(code)) => format!("exited with code {code}"),
                        _ => "did not answer".to_owned(),
                    }
                )),
                other => other,
            })
        }
    }
}

fn handshake(stream: &UnixStream, config: &Config) -> Result<()> {
    let timeout_msg = || {
        Error::WorkerStart(format!(
            "no handshake within {} s",
            config.start_timeout.as_secs()
        ))
    };
    let read = |what: Kind| -> Result<Vec<u8>> {
        match frame::read_frame(&mut &*stream) {
            Ok(Some(f)) if f.kind == what => Ok(f.body),
            Ok(Some(f)) => Err(Error::Protocol(format!(
                "expected {what:?}, got {:?}",
                f.kind
            ))),
            Ok(None) => Err(Error::WorkerStart(
                "the worker exited before the handshake".into(),
            )),
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(timeout_msg())
            }
            Err(e) => Err(e),
        }
    };
    stream.set_read_timeout(Some(config.start_timeout))?;
    let hello: Hello = bincode::deserialize(&read(Kind::Hello)?)
        .map_err(|e| Error::Protocol(format!("bad HELLO: {e}")))?;
    check_hello(&hello)?;
    let (initializer, fds) = match &config.initializer {
        Some((name, args, fds)) => (Some((name.clone(), args.clone())), fds.as_slice()),
        None => (None, &[][..]),
    };
    let body = bincode::serialize(&Welcome { initializer })
        .map_err(|e| Error::serialization("welcome", e))?;
    let mut welcome = frame::encode(Kind::Welcome, &body)?;
    frame::set_fd_count(&mut welcome, 0, fds.len())?;
    send_frame_with_fds(stream, &welcome, fds)?;
    let ready: std::result::Result<(), String> = bincode::deserialize(&read(Kind::Ready)?)
        .map_err(|e| Error::Protocol(format!("bad READY: {e}")))?;
    stream.set_read_timeout(None)?;
    ready.map_err(|message| Error::InitializerFailed { message })
}

/// The life of one slot: start a worker, serve it, replace it when it dies or retires,
/// until the pool stops. `first` reports the first start to `Pool::build`.
pub(crate) fn slot_main(shared: Arc<Shared>, k: usize, first: std::sync::mpsc::Sender<Result<()>>) {
    let mut first = Some(first);
    let mut failures = 0;
    loop {
        if lock(&shared.sched).stopping {
            break;
        }
        let (mut proc, stream) = match start_worker(&shared) {
            Ok(v) => {
                failures = 0;
                v
            }
            Err(e) => {
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                failures += 1;
                if matches!(e, Error::InitializerFailed { .. }) || failures >= MAX_START_FAILURES {
                    shared.mark_broken(format!("could not replace a worker: {e}"));
                    break;
                }
                continue;
            }
        };
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                proc.kill();
                proc.reap(Duration::ZERO);
                let e = Error::from(e);
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
                shared.mark_broken(format!("could not clone a worker channel: {e}"));
                break;
            }
        };
        let generation = shared.fresh_generation();
        {
            let mut io = lock(&shared.slots[k]);
            io.generation = generation;
            io.stream = Some(stream);
            io.pid = Some(proc.pid);
        }
        let stop_now = {
            let mut s = lock(&shared.sched);
            s.slots[k] = SlotSched {
                generation,
                usable: true,
                ..SlotSched::default()
            };
            s.stopping
        };
        // Only now is the worker visible to callers and `pids()`: report readiness.
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        if stop_now {
            shared.stop_slot_worker(k);
        } else {
            shared.pump();
        }
        let err = shared.serve(k, reader);
        // Detach the worker so no caller writes to it any more.
        let inflight: Vec<Job> = {
            let mut io = lock(&shared.slots[k]);
            io.stream = None;
            io.pid = None;
            io.inflight.drain(..).collect()
        };
        let (terminated, retiring) = {
            let mut s = lock(&shared.sched);
            let retiring = s.slots[k].retiring;
            s.slots[k] = SlotSched {
                generation: shared.fresh_generation(),
                ..SlotSched::default()
            };
            (s.state == State::Terminated, retiring)
        };
        if terminated || err.is_some() {
            proc.kill();
        }
        let grace = if retiring || !inflight.is_empty() {
            5
        } else {
            2
        };
        let exit = proc.reap(Duration::from_secs(grace));
        let mut jobs = inflight.into_iter();
        if let Some(running) = jobs.next() {
            let e = if terminated {
                Error::PoolTerminated
            } else if let Some(e) = err {
                e
            } else {
                Error::WorkerLost {
                    task: running.task.to_owned(),
                    pid: proc.pid,
                    signal: exit.signal,
                    exit_code: exit.code,
                }
            };
            running.fail(e);
            shared.finish_jobs(1);
        }
        // The rest never started: run them elsewhere (or fail them if terminating).
        let rest: Vec<Job> = jobs.collect();
        if terminated {
            let n = rest.len();
            for job in rest {
                job.fail(Error::PoolTerminated);
            }
            shared.finish_jobs(n);
        } else if !rest.is_empty() {
            let mut s = lock(&shared.sched);
            for job in rest.into_iter().rev() {
                s.pending.push_front(job);
            }
            drop(s);
            shared.pump();
        }
    }
    let mut io = lock(&shared.slots[k]);
    io.stream = None;
    io.pid = None;
}

impl Shared {
    /// Reads results from slot `k`'s worker until it goes away: at end of stream (`None`), or
    /// at a frame that breaks the protocol (`Some`, and the worker must be killed).
    fn serve(&self, k: usize, reader: UnixStream) -> Option<Error> {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        loop {
            if reader.buffer().is_empty() {
                // A short job's result usually arrives within moments: see `poll_briefly`.
                crate::wait::poll_briefly(std::os::fd::AsFd::as_fd(reader.get_ref()));
            }
            let f = match frame::read_frame(&mut reader) {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(Error::Io(_)) => return None,
                Err(e) => return Some(e),
            };
            let (id, rest) = match frame::split_job_id(&f.body) {
                Ok(v) => v,
                Err(e) => return Some(e),
            };
            let job = {
                let mut io = lock(&self.slots[k]);
                match io.inflight.iter().position(|j| j.id == id) {
                    Some(pos) => io.inflight.remove(pos),
                    None => None,
                }
            };
            let Some(job) = job else {
                return Some(Error::Protocol(format!("result for unknown job {id}")));
            };
            let outcome = match f.kind {
                Kind::Result => Ok(rest.to_vec()),
                Kind::JobFailed => match bincode::deserialize::<ChunkFailure>(rest) {
                    Ok(failure) => Err(failure.into_error(job.task)),
                    Err(e) => Err(Error::Protocol(format!("bad JOB_FAILED: {e}"))),
                },
                other => {
                    let e = Error::Protocol(format!("unexpected {other:?} frame from worker"));
                    job.fail(e.clone());
                    self.finish_jobs(1);
                    return Some(e);
                }
            };
            job.sink.complete(JobDone {
                task: job.task,
                part: job.part,
                items: job.items,
                outcome,
            });
            let now = Instant::now();
            let retire_now = {
                let mut s = lock(&self.sched);
                s.outstanding -= 1;
                if s.outstanding == 0 {
                    self.idle.notify_all();
                }
                let slot = &mut s.slots[k];
                // The time since the worker started this job decides how deep to fill it.
                if let Some(since) = slot.busy_since {
                    let took = now - since;
                    slot.depth = if took < FAST_JOB {
                        FAST_PIPELINE_DEPTH
                    } else if took < SLOW_JOB {
                        PIPELINE_DEPTH
                    } else {
                        1
                    };
                }
                // A job queued behind this one starts now.
                slot.busy_since = (slot.inflight > 1).then_some(now);
                slot.inflight -= 1;
                slot.retiring && slot.inflight == 0
            };
            if retire_now {
                self.stop_slot_worker(k);
            } else if reader.buffer().is_empty() {
                // Refill once per burst of results, not once per result.
                self.pump();
            }
        }
    }

    /// Asks slot `k`'s worker to exit (its slot thread then replaces it or stops).
    fn stop_slot_worker(&self, k: usize) {
        let io = lock(&self.slots[k]);
        if let Some(stream) = io.stream.as_ref() {
            let sent = frame::encode(Kind::Shutdown, &[]).map(|b| send_all(stream, &b));
            if !matches!(sent, Ok(Ok(()))) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_rejects_another_protocol_or_build() {
        let good = Hello {
            version: crate::wire::PROTOCOL_VERSION,
            build_id: crate::registry::build_id(),
            pid: 1,
        };
        assert!(check_hello(&good).is_ok());
        let old = Hello {
            version: crate::wire::PROTOCOL_VERSION + 1,
            ..good
        };
        assert!(matches!(check_hello(&old), Err(Error::Handshake(m)) if m.contains("protocol")));
        let other = Hello {
            build_id: crate::registry::build_id() ^ 1,
            ..good
        };
        assert!(
            matches!(check_hello(&other), Err(Error::Handshake(m)) if m.contains("different build"))
        );
    }

    #[test]
    fn pick_slot_prefers_the_least_loaded_usable_worker() {
        let slot = |usable, inflight, retiring| SlotSched {
            usable,
            inflight,
            retiring,
            ..SlotSched::default()
        };
        assert_eq!(
            pick_slot(&[slot(true, 1, false), slot(true, 0, false)]),
            Some(1)
        );
        assert_eq!(
            pick_slot(&[slot(false, 0, false), slot(true, 1, false)]),
            Some(1)
        );
        assert_eq!(
            pick_slot(&[slot(true, 0, true), slot(true, PIPELINE_DEPTH, false)]),
            None
        );
    }
}
