//! Slot threads: each one starts a worker process, reads its results, and replaces it when it
//! dies or retires, until the pool stops. The read that waits for results also notices a
//! dead worker: end of stream. The worker's lane then tells exactly which item it was
//! running: that item alone is blamed, everything else it held runs again elsewhere.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sched::{Config, Job, JobDone, Outcome, Shared, SlotSched, State, Writer};
use crate::error::{Error, Result};
use crate::role;
use crate::shm::lane::Lane;
use crate::spawn::{self, StartMethod, WorkerProcess};
use crate::sys::wait::lock;
use crate::wire::codec::ChunkFailure;
use crate::wire::conn::send_frame_with_fds;
use crate::wire::frame::{self, Kind};
use crate::wire::handshake::{check_hello, Hello, ProcessInfo, Welcome};

/// Consecutive failures to start a replacement worker before the pool is declared broken.
const MAX_START_FAILURES: u32 = 3;

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
    match handshake(&stream, &shared.config, &lane) {
        Ok(()) => Ok(Started { proc, stream, lane }),
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

/// Python's names for pool workers, by start method.
fn worker_name(method: StartMethod) -> String {
    let kind = match method {
        StartMethod::Spawn => "Spawn",
        StartMethod::ForkServer => "ForkServer",
    };
    format!("{kind}PoolWorker-{}", role::next_child_number())
}

fn handshake(stream: &UnixStream, config: &Config, lane: &Lane) -> Result<()> {
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
    // A zero timeout would mean "none" to the socket: wait at least a moment.
    stream.set_read_timeout(Some(config.start_timeout.max(Duration::from_millis(1))))?;
    let hello: Hello = bincode::deserialize(&read(Kind::Hello)?)
        .map_err(|e| Error::Protocol(format!("bad HELLO: {e}")))?;
    check_hello(&hello, crate::registry::build_id())?;
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
    };
    let body = bincode::serialize(&welcome).map_err(|e| Error::serialization("welcome", e))?;
    let mut welcome = frame::encode(Kind::Welcome, &body)?;
    frame::set_fd_count(&mut welcome, 0, fds.len())?;
    send_frame_with_fds(stream, &welcome, &fds)?;
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
                if matches!(e, Error::InitializerFailed { .. }) || failures >= MAX_START_FAILURES {
                    shared.mark_broken(format!("could not replace a worker: {e}"));
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
        shared.bury(k, proc, &lane, err);
    }
    let mut io = lock(&shared.slots[k]);
    io.stream = None;
    io.pid = None;
    io.lane = None;
    drop(io);
    *lock(&shared.writers[k]) = Writer::default();
}

impl Shared {
    /// Reads results from slot `k`'s worker until it goes away: at end of stream (`None`), or
    /// at a frame that breaks the protocol (`Some`, and the worker must be killed).
    fn serve(&self, k: usize, reader: UnixStream) -> Option<Error> {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        loop {
            if reader.buffer().is_empty() {
                let fd = std::os::fd::AsFd::as_fd(reader.get_ref());
                // A short job's result usually arrives within moments: see `poll_briefly`.
                crate::sys::wait::poll_briefly(fd);
                // While this worker idles and another sits on jobs it has not started,
                // wake up to take them once that worker has stopped reporting.
                while let Some(at) = self.next_rebalance(k) {
                    // Not sooner than a moment from now: a worker whose unanswered jobs have
                    // all started has nothing to take.
                    let at = at.max(Instant::now() + crate::sys::wait::POLL_BRIEFLY * 16);
                    match crate::sys::wait::readable(fd, Some(at)) {
                        Ok(false) => self.pump(),
                        Ok(true) | Err(_) => break,
                    }
                }
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
                Kind::Result => Outcome::Body(rest.to_vec()),
                Kind::JobFailed => match bincode::deserialize::<ChunkFailure>(rest) {
                    Ok(failure) => Outcome::Failed(failure.into_error(job.task)),
                    Err(e) => Outcome::Failed(Error::Protocol(format!("bad JOB_FAILED: {e}"))),
                },
                other => {
                    // Not an answer: the job goes back with the worker's other jobs, and
                    // the protocol error is blamed on what the worker was running.
                    lock(&self.slots[k]).inflight.push_front(job);
                    return Some(Error::Protocol(format!(
                        "unexpected {other:?} frame from worker"
                    )));
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
            job.sink.complete(JobDone {
                task: job.task,
                part: job.part,
                items: job.items,
                outcome,
            });
            if retire_now {
                self.stop_slot_worker(k);
            } else if reader.buffer().is_empty() {
                // Refill once per burst of results, not once per result.
                self.pump();
            }
        }
    }

    /// Slot `k`'s worker is gone (or broke the protocol, `err`): detaches and reaps it, and
    /// settles its jobs. The item it was running when it died (its lane says which) fails
    /// with `WorkerLost` (or `err`); the other items of that job, the jobs whose results
    /// died unsent and the jobs it never started run again elsewhere.
    fn bury(&self, k: usize, mut proc: WorkerProcess, lane: &Lane, err: Option<Error>) {
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
        if terminated || err.is_some() {
            proc.kill();
        }
        let grace = if retiring || !inflight.is_empty() {
            5
        } else {
            2
        };
        let exit = proc.reap(Duration::from_secs(grace));
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
        let mut err = err;
        let mut again = Vec::with_capacity(inflight.len());
        let mut lost = Vec::new();
        let (mut added, mut finished) = (0, 0);
        for job in inflight {
            match running {
                Some(r) if r.seq == job.seq => {
                    let e = err.take().unwrap_or_else(|| Error::WorkerLost {
                        task: job.task.to_owned(),
                        pid: proc.pid,
                        signal: exit.signal,
                        exit_code: exit.code,
                    });
                    let (pieces, blamed) = job.split_around(r.item, e, || self.next_job_id());
                    finished += 1;
                    added += pieces.len();
                    again.extend(pieces);
                    lost.push(blamed);
                }
                _ => again.push(job),
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
