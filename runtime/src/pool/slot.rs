//! Slot threads: each one starts a worker process, reads its results, and replaces it when it
//! dies or retires, until the pool stops. The read that waits for results also notices a
//! dead worker: end of stream. The worker's lane then tells exactly which item it was
//! running: that item alone is blamed, everything else it held runs again elsewhere.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::Fate;
use super::sched::{Config, Job, JobDone, Outcome, Shared, SlotSched, State, Writer};
use super::watch::{Look, Watch};
use crate::error::{Error, Result};
use crate::role;
use crate::shm::lane::{Lane, Running};
use crate::spawn::{self, StartMethod, WorkerProcess};
use crate::sys::wait::lock;
use crate::wire::codec::ChunkFailure;
use crate::wire::conn::send_frame_with_fds;
use crate::wire::frame::{self, Kind};
use crate::wire::handshake::{check_hello, Hello, ProcessInfo, Welcome};

/// Consecutive failures to start a replacement worker, with no other worker serving, before
/// the pool is declared broken (the waits between them add up to about 2.5 s). While another
/// worker serves, a slot keeps trying, every `MAX_BACKOFF` at most.
const MAX_LONE_START_FAILURES: u32 = 8;
/// The wait after the first failed start; it doubles with each failure after it.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Why a slot stopped reading its worker.
enum End {
    /// End of stream: the worker exited or was killed.
    Gone,
    /// It broke the protocol (it must be killed).
    Broken(Error),
    /// It ran an item past its `kill_after` and was killed.
    TimedOut(Running, Error),
}

/// A started worker, ready to serve.
struct Started {
    proc: WorkerProcess,
    stream: UnixStream,
    lane: Lane,
}

/// Starts a worker and runs the handshake (and initializer).
fn start_worker(shared: &Shared) -> Result<Started> {
    let lane = Lane::create()?;
    let (mut proc, stream) = spawn::start(shared.config.method, shared.server.as_ref())?;
    let mut greeted = false;
    match handshake(&stream, &shared.config, &lane, &mut greeted) {
        Ok(()) => Ok(Started { proc, stream, lane }),
        Err(e) => {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            drop(stream);
            let exit = proc.reap(Duration::from_secs(2));
            Err(match e {
                Error::WorkerStart(msg) => {
                    let how = match (exit.signal, exit.code) {
                        (Some(sig), _) => format!("killed by signal {sig}"),
                        (None, Some(code)) => format!("exited with code {code}"),
                        _ => "did not answer".to_owned(),
                    };
                    // A worker that exits on its own without a word is most likely running
                    // the program's main instead of serving.
                    let hint = if !greeted && exit.signal.is_none() {
                        "; a program that starts workers must call multiproc::init() first \
                         thing in main (#[multiproc::main]), so the worker does not run main's \
                         own code"
                    } else {
                        ""
                    };
                    Error::WorkerStart(format!("{msg} (worker {} {how}){hint}", proc.pid))
                }
                other => other,
            })
        }
    }
}

/// Python's names for pool workers, by start method.
fn worker_name(method: StartMethod) -> String {
    let kind = match method {
        StartMethod::Spawn => "Spawn",
        StartMethod::ForkServer => "ForkServer",
    };
    format!("{kind}PoolWorker-{}", role::next_child_number())
}

/// Runs the handshake; `greeted` tells whether the worker said HELLO.
fn handshake(stream: &UnixStream, config: &Config, lane: &Lane, greeted: &mut bool) -> Result<()> {
    let timeout_msg = || {
        Error::WorkerStart(format!(
            "no handshake within {} s",
            config.start_timeout.as_secs()
        ))
    };
    let read = |what: Kind, greeted: bool| -> Result<Vec<u8>> {
        match frame::read_frame(&mut &*stream) {
            Ok(Some(f)) if f.kind == what => Ok(f.body),
            Ok(Some(f)) => Err(Error::Protocol(format!(
                "expected {what:?}, got {:?}",
                f.kind
            ))),
            Ok(None) if !greeted => Err(Error::WorkerStart(
                "the worker exited before the handshake".into(),
            )),
            Ok(None) => Err(Error::WorkerStart(if config.initializer.is_some() {
                "the worker exited during its start (in the initializer)".into()
            } else {
                "the worker exited during its start".into()
            })),
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
    // A zero timeout would mean "none" to the socket: wait at least a moment.
    stream.set_read_timeout(Some(config.start_timeout.max(Duration::from_millis(1))))?;
    let hello: Hello = crate::wire::serial::decode(&read(Kind::Hello, false)?)
        .map_err(|e| Error::Protocol(format!("bad HELLO: {e}")))?;
    check_hello(&hello, crate::registry::build_id())?;
    *greeted = true;
    let (initializer, mut fds) = match &config.initializer {
        Some((name, args, fds)) => (Some((name.clone(), args.clone())), fds.clone()),
        None => (None, Vec::new()),
    };
    // The lane goes last: the initializer's handles keep their indices.
    fds.push(lane.fd().clone());
    let welcome = Welcome {
        initializer,
        me: ProcessInfo {
            name: worker_name(config.method),
            pid: hello.pid,
            daemon: true,
        },
        parent: role::current_process(),
        limits: config.limits,
        threads: u32::try_from(config.threads).unwrap_or(u32::MAX),
    };
    let body =
        crate::wire::serial::encode(&welcome).map_err(|e| Error::serialization("welcome", e))?;
    let mut welcome = frame::encode(Kind::Welcome, &body)?;
    frame::set_fd_count(&mut welcome, 0, fds.len())?;
    send_frame_with_fds(stream, &welcome, &fds)?;
    let ready: std::result::Result<(), String> =
        crate::wire::serial::decode(&read(Kind::Ready, true)?)
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
        let Started {
            mut proc,
            stream,
            lane,
        } = match start_worker(&shared) {
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
                tracing::warn!(target: "multiproc::pool", slot = k, failures, error = %e, "a worker failed to start");
                // An initializer that fails will fail again; anything else (a start killed,
                // a process limit reached) may pass, and other workers may serve meanwhile.
                let alone = !lock(&shared.sched).slots.iter().any(|s| s.usable);
                if matches!(e, Error::InitializerFailed { .. })
                    || (alone && failures >= MAX_LONE_START_FAILURES)
                {
                    shared.mark_broken(format!("could not replace a worker: {e}"));
                    break;
                }
                let backoff = FIRST_BACKOFF.saturating_mul(1 << (failures - 1).min(16));
                if shared.pause(backoff.min(MAX_BACKOFF)) {
                    break;
                }
                continue;
            }
        };
        let clones = stream
            .try_clone()
            .and_then(|r| Ok((r, stream.try_clone()?)));
        let (reader, writer) = match clones {
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
            io.lane = Some(lane.clone());
            io.epoch = 0;
            io.next_seq = 1;
            io.cut_off = false;
        }
        *lock(&shared.writers[k]) = Writer {
            generation,
            stream: Some(writer),
            scratch: Vec::new(),
        };
        let stop_now = {
            let mut s = lock(&shared.sched);
            s.slots[k] = SlotSched {
                generation,
                usable: true,
                ..SlotSched::default()
            };
            s.stopping
        };
        tracing::debug!(target: "multiproc::pool", slot = k, pid = proc.pid, "worker started");
        // Only now is the worker visible to callers and `pids()`: report readiness.
        if let Some(tx) = first.take() {
            let _ = tx.send(Ok(()));
        }
        if stop_now {
            shared.stop_slot_worker(k);
        } else {
            shared.pump();
        }
        let end = shared.serve(k, reader, &proc, &lane);
        shared.bury(k, proc, &lane, end);
    }
    let mut io = lock(&shared.slots[k]);
    io.stream = None;
    io.pid = None;
    io.lane = None;
    drop(io);
    *lock(&shared.writers[k]) = Writer::default();
}

impl Shared {
    /// Reads results from slot `k`'s worker until it goes away (end of stream), breaks the
    /// protocol, or runs an item past its `kill_after` (then it has been killed).
    fn serve(&self, k: usize, reader: UnixStream, proc: &WorkerProcess, lane: &Lane) -> End {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        let mut watch = Watch::default();
        // Results read since this thread last waited: more than one, and the worker is
        // sending batches (see `Outbox`), the next of which is most of a millisecond away.
        let mut since_wait = 0u32;
        // The sink of the job completed last, dropped once the next result is in or the
        // worker has been quiet for a moment. A caller woken by a result usually allocates
        // its next call at once; freeing the finished call's memory (allocated on the
        // caller's thread) at that very moment had the two threads contend for the
        // allocator's lock, a sleep and a wake-up on most round trips.
        let mut spent: Option<Arc<dyn super::job::Sink>> = None;
        loop {
            if reader.buffer().is_empty() {
                let fd = std::os::fd::AsFd::as_fd(reader.get_ref());
                // A short job's result usually arrives within moments (see `poll_briefly`),
                // unless it comes in a batch: polling for it would only burn the CPU.
                let batched = std::mem::take(&mut since_wait) > 1;
                let polled = !batched && crate::sys::wait::poll_briefly(fd);
                drop(spent.take()); // before a wait that may be long
                if !polled {
                    if let Some(end) = self.wait_on_worker(k, fd, proc, lane, &mut watch) {
                        return end;
                    }
                }
            } else {
                drop(spent.take()); // the next result is in
            }
            since_wait += 1;
            let settled =
                frame::with_frame_buffered(&mut reader, |kind, body| self.settle(k, kind, body));
            let (sink, retire_now) = match settled {
                Ok(Some(Ok(done))) => done,
                Ok(Some(Err(end))) => return end,
                Ok(None) | Err(Error::Io(_)) => return End::Gone,
                Err(e) => return End::Broken(e),
            };
            spent = Some(sink);
            if retire_now {
                self.stop_slot_worker(k);
            } else if reader.buffer().is_empty() {
                // Refill once per burst of results, not once per result.
                self.pump();
            }
        }
    }

    /// Hands the answer to one of slot `k`'s jobs (a frame of `kind` from its worker, its
    /// body perhaps borrowed from the reader's buffer) to the job's sink. Returns the sink,
    /// to drop later (see `serve`), and whether the worker retires now; or how the worker
    /// broke the protocol.
    fn settle(
        &self,
        k: usize,
        kind: Kind,
        body: &[u8],
    ) -> std::result::Result<(Arc<dyn super::job::Sink>, bool), End> {
        let (id, rest) = frame::split_job_id(body).map_err(End::Broken)?;
        let outcomes_at = body.len() - rest.len();
        let job = {
            let mut io = lock(&self.slots[k]);
            match io.inflight.iter().position(|j| j.id == id) {
                Some(pos) => io.inflight.remove(pos),
                None => None,
            }
        };
        let Some(job) = job else {
            return Err(End::Broken(Error::Protocol(format!(
                "result for unknown job {id}"
            ))));
        };
        let outcome = match kind {
            Kind::Result => Outcome::Body(body.into(), outcomes_at),
            Kind::JobFailed => Outcome::Failed(ChunkFailure::decode_error(rest, job.task)),
            other => {
                // Not an answer: the job goes back with the worker's other jobs, and
                // the protocol error is blamed on what the worker was running.
                lock(&self.slots[k]).inflight.push_front(job);
                return Err(End::Broken(Error::Protocol(format!(
                    "unexpected {other:?} frame from worker"
                ))));
            }
        };
        // Counts first: a caller woken by this result and submitting at once must see
        // this worker as free.
        let now = Instant::now();
        let retire_now = {
            let mut s = lock(&self.sched);
            s.outstanding -= 1;
            if s.outstanding == 0 {
                self.idle.notify_all();
            }
            let slot = &mut s.slots[k];
            slot.timed(now, job.run.bytes.len());
            slot.retiring && slot.inflight == 0
        };
        let Job {
            task,
            part,
            items,
            sink,
            run,
            ..
        } = job;
        drop(run);
        sink.complete(JobDone {
            task,
            part,
            items,
            outcome,
        });
        Ok((sink, retire_now))
    }

    /// Waits until slot `k`'s worker has something to read. Meanwhile, while this worker
    /// idles and another sits on jobs it has not started, wakes up to take them once that
    /// worker has stopped reporting; and watches the `kill_after` of what it runs (`Some`
    /// once it has killed it).
    fn wait_on_worker(
        &self,
        k: usize,
        fd: std::os::fd::BorrowedFd<'_>,
        proc: &WorkerProcess,
        lane: &Lane,
        watch: &mut Watch,
    ) -> Option<End> {
        use crate::sys::wait::{readable_or_rung, Wake, POLL_BRIEFLY};
        loop {
            let look = match self.look(k, lane, watch) {
                Look::Quiet => None,
                Look::Again(at) => Some(at),
                Look::Expired(running, e) => {
                    proc.kill();
                    return Some(End::TimedOut(running, e));
                }
            };
            // Not sooner than a moment from now: a worker whose unanswered jobs have all
            // started has nothing to take.
            let rebalance = self
                .next_rebalance(k)
                .map(|at| at.max(Instant::now() + POLL_BRIEFLY * 16));
            let at = [look, rebalance].into_iter().flatten().min();
            match readable_or_rung(fd, self.bells[k].fd(), at) {
                Ok(Wake::TimedOut) => {
                    if rebalance.is_some_and(|r| r <= Instant::now()) {
                        self.pump();
                    }
                }
                Ok(Wake::Rung) => self.bells[k].silence(),
                // Readable, or a poll error the read reports.
                Ok(Wake::Readable) | Err(_) => return None,
            }
        }
    }

    /// Slot `k`'s worker is gone (`end` says how): detaches and reaps it, and settles its
    /// jobs. The item it was running when it died (its lane says which) fails with
    /// `WorkerLost` (or runs again, if its retry policy allows), with the protocol error
    /// it broke, or with `TaskTimedOut`; the other items of that job, the jobs whose results
    /// died unsent and the jobs it never started run again elsewhere.
    fn bury(&self, k: usize, mut proc: WorkerProcess, lane: &Lane, end: End) {
        let (inflight, cut_off) = {
            let mut io = lock(&self.slots[k]);
            io.stream = None;
            io.pid = None;
            io.lane = None;
            let cut_off = std::mem::take(&mut io.cut_off);
            (io.inflight.drain(..).collect::<Vec<Job>>(), cut_off)
        };
        let (terminated, retiring) = {
            let mut s = lock(&self.sched);
            let retiring = s.slots[k].retiring;
            s.slots[k] = SlotSched {
                generation: self.fresh_generation(),
                ..SlotSched::default()
            };
            (s.state == State::Terminated, retiring)
        };
        if terminated || !matches!(end, End::Gone) {
            proc.kill();
        }
        let grace = if retiring || !inflight.is_empty() {
            5
        } else {
            2
        };
        let exit = proc.reap(Duration::from_secs(grace));
        match (&end, retiring) {
            (End::Gone, true) => tracing::debug!(
                target: "multiproc::pool", slot = k, pid = proc.pid, "worker retired"
            ),
            (End::Gone, false) => tracing::warn!(
                target: "multiproc::pool", slot = k, pid = proc.pid, signal = ?exit.signal,
                exit_code = ?exit.code, "worker died"
            ),
            (End::Broken(e), _) => tracing::warn!(
                target: "multiproc::pool", slot = k, pid = proc.pid, error = %e,
                "worker channel broke; worker killed"
            ),
            (End::TimedOut(_, e), _) => tracing::warn!(
                target: "multiproc::pool", slot = k, pid = proc.pid, error = %e,
                "task ran past kill_after; worker killed"
            ),
        }
        // A writer blocked on the dead worker has failed by now: the lock is free.
        *lock(&self.writers[k]) = Writer::default();
        if terminated {
            let n = inflight.len();
            for job in inflight {
                job.fail(Error::PoolTerminated);
            }
            self.finish_jobs(n);
            return;
        }
        // Read once the worker is dead: its last word on what it was running. (If the parent
        // cut a healthy worker off, what it was running is not to blame: it runs again.)
        let running = lane.running_now().filter(|_| !cut_off);
        // Its items were running at once: which one killed it is not known. That job runs
        // again with its items one by one, so that, if one of them kills a worker again,
        // exactly that one is blamed.
        let parallel = running.filter(|r| r.item == crate::shm::lane::PARALLEL);
        let running = running.filter(|r| r.item != crate::shm::lane::PARALLEL);
        let (running, mut err) = match end {
            End::Gone => (running, None),
            End::Broken(e) => (running, Some(e)),
            End::TimedOut(late, e) if running == Some(late) => (running, Some(e)),
            // The late item finished just before the kill: what the worker ran instead is
            // not to blame, and runs again.
            End::TimedOut(..) => (None, None),
        };
        let mut again = Vec::with_capacity(inflight.len());
        let mut lost = Vec::new();
        let (mut added, mut finished) = (0, 0);
        for job in inflight {
            match running {
                Some(r) if r.seq == job.seq => {
                    let fate = match err.take() {
                        Some(e) => Fate::Fail(e),
                        None if job.lost < job.policy.retries.unwrap_or(0) => {
                            tracing::warn!(
                                target: "multiproc::pool", task = job.task, pid = proc.pid,
                                attempt = job.lost + 1, "task lost with its worker; retrying"
                            );
                            Fate::Retry
                        }
                        None => Fate::Fail(Error::WorkerLost {
                            task: job.task.to_owned(),
                            pid: proc.pid,
                            signal: exit.signal,
                            exit_code: exit.code,
                            attempts: job.lost + 1,
                        }),
                    };
                    let (pieces, blamed) = job.split_around(r.item, fate, || self.next_job_id());
                    finished += 1;
                    added += pieces.len();
                    again.extend(pieces);
                    lost.extend(blamed);
                }
                _ => {
                    let mut job = job;
                    if parallel.is_some_and(|r| r.seq == job.seq) {
                        tracing::warn!(
                            target: "multiproc::pool", task = job.task, pid = proc.pid,
                            "worker lost running a chunk on its threads; its items run again \
                             one at a time"
                        );
                        job.alone = true;
                    }
                    again.push(job);
                }
            }
        }
        if let Some(e) = err {
            // A protocol error with nothing running: the first unanswered job is the one
            // whose answer broke it; the rest run again.
            if !again.is_empty() {
                lost.push(again.remove(0).failure(e));
                finished += 1;
            }
        }
        // Everything is booked before anyone hears of the loss.
        self.requeue_front(again, added, finished);
        for blamed in lost {
            blamed.deliver();
        }
        self.pump();
    }
}
