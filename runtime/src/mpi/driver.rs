//! Rank 0's driver: the one thread that talks MPI. It collects the workers' hellos, keeps
//! one FIFO queue of jobs for every MPI pool of the program, sends each worker rank one job
//! at a time, and probes for results with a backoff (a blocking MPI receive busy-polls a
//! core in most MPI libraries). With nothing queued or running it sleeps on its command
//! channel and makes no MPI call at all.

use std::collections::VecDeque;
use std::sync::{mpsc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rsmpi::topology::SimpleCommunicator;
use rsmpi::traits::*;

use super::rank::{probe_burst, Backoff, TAG_HELLO, TAG_RESULT, TAG_RUN, TAG_STOP};
use crate::error::{Error, Result};
use crate::sys::wait::lock;
use crate::wire::handshake::Hello;

/// How long rank 0 waits at exit for workers still running a task before it aborts the
/// job (a task that never returns must not make the program hang).
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// How a job ended, as its `done` hears.
pub(super) enum Reply {
    /// The worker's RESULT or JOB_FAILED frame.
    Ran(Vec<u8>),
    /// It did not run, or its result will not be waited for (the pool was terminated).
    Failed(Error),
    /// Its call was cancelled before it started: nothing to deliver.
    Dropped,
}

/// One chunk for a worker rank.
pub(super) struct MpiJob {
    /// The pool it belongs to (terminate cancels a pool's jobs only).
    pub pool: u64,
    /// Only this worker (index from 0, rank `index + 1`) may run it: an initializer.
    pub worker: Option<usize>,
    /// A 4-byte thread count, then the RUN frame.
    pub msg: Vec<u8>,
    /// False if its call was cancelled: it is dropped instead of sent.
    pub claim: Box<dyn Fn() -> bool + Send>,
    pub done: Box<dyn FnOnce(Reply) + Send>,
}

enum Cmd {
    Run(Vec<MpiJob>),
    Terminate(u64),
    Exit(mpsc::Sender<()>),
}

/// The worker ranks, as rank 0 met them.
pub(super) struct Cluster {
    tx: Mutex<mpsc::Sender<Cmd>>,
    /// Each worker's pid, by index (rank − 1).
    pub pids: Vec<u32>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

static CLUSTER: OnceLock<std::result::Result<Cluster, Error>> = OnceLock::new();
/// Serialises the first start (the driver thread is made once).
static STARTING: Mutex<()> = Mutex::new(());

/// The worker ranks of this MPI job (`size − 1` of them), the driver started on first use.
pub(super) fn cluster(size: usize, start_timeout: Duration) -> Result<&'static Cluster> {
    let _one = lock(&STARTING);
    let c = CLUSTER.get_or_init(|| start(size - 1, start_timeout));
    c.as_ref().map_err(Clone::clone)
}

fn start(n: usize, start_timeout: Duration) -> std::result::Result<Cluster, Error> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("multiproc-mpi".into())
        .spawn(move || {
            let world = SimpleCommunicator::world();
            let met = gather(&world, n, Instant::now() + start_timeout);
            let ok = met.is_ok();
            let _ = ready_tx.send(met);
            if ok {
                drive(&world, n, &rx);
            }
        })?;
    let pids = match ready_rx.recv() {
        Ok(Ok(pids)) => pids,
        Ok(Err(e)) => {
            let _ = thread.join();
            return Err(e);
        }
        Err(_) => {
            let _ = thread.join();
            return Err(Error::WorkerStart("the MPI driver thread died".into()));
        }
    };
    Ok(Cluster {
        tx: Mutex::new(tx),
        pids,
        thread: Mutex::new(Some(thread)),
    })
}

impl Cluster {
    pub(super) fn submit(&self, jobs: Vec<MpiJob>) {
        if let Err(mpsc::SendError(Cmd::Run(jobs))) = lock(&self.tx).send(Cmd::Run(jobs)) {
            for job in jobs {
                (job.done)(Reply::Failed(Error::PoolTerminated));
            }
        }
    }

    /// Fails pool `pool`'s queued and running jobs with `PoolTerminated` (a running one's
    /// result is dropped when it comes: MPI cannot stop one rank's task).
    pub(super) fn terminate(&self, pool: u64) {
        let _ = lock(&self.tx).send(Cmd::Terminate(pool));
    }
}

/// At rank 0's exit (before MPI is finalised): every worker is told to stop. With the
/// driver running it does so, waiting for the workers still running a task; without it
/// (no pool was made, or the workers never all said hello) this thread does.
pub(super) fn stop_at_exit() {
    match CLUSTER.get() {
        Some(Ok(c)) => {
            let (ack_tx, ack_rx) = mpsc::channel();
            if lock(&c.tx).send(Cmd::Exit(ack_tx)).is_ok() {
                let _ = ack_rx.recv();
            }
            if let Some(t) = lock(&c.thread).take() {
                let _ = t.join();
            }
        }
        _ => {
            let world = SimpleCommunicator::world();
            for r in 1..world.size() {
                world
                    .process_at_rank(r)
                    .send_with_tag(&[0u8; 0][..], TAG_STOP);
            }
        }
    }
}

/// Waits for every worker's hello: same protocol, same build.
fn gather(world: &SimpleCommunicator, n: usize, deadline: Instant) -> Result<Vec<u32>> {
    let mut pids: Vec<Option<u32>> = vec![None; n];
    let mut backoff = Backoff::new();
    while pids.iter().any(Option::is_none) {
        let hello = || {
            world
                .any_process()
                .immediate_matched_probe_with_tag(TAG_HELLO)
        };
        let Some((msg, status)) = probe_burst(hello) else {
            if Instant::now() >= deadline {
                let missing: Vec<usize> = (0..n)
                    .filter(|&i| pids[i].is_none())
                    .map(|i| i + 1)
                    .collect();
                return Err(Error::WorkerStart(format!(
                    "MPI ranks {missing:?} did not say hello in time: is `main` a \
                     #[multiproc::main] (or does it call multiproc::init() first)?"
                )));
            }
            backoff.wait();
            continue;
        };
        backoff.reset();
        let rank = status.source_rank();
        let (buf, _) = (msg, status).matched_receive_vec::<u8>();
        let hello: Hello = crate::wire::serial::decode(&buf)
            .map_err(|e| Error::Handshake(format!("bad hello from MPI rank {rank}: {e}")))?;
        if hello.version != crate::wire::PROTOCOL_VERSION
            || hello.build_id != crate::registry::build_id()
        {
            return Err(Error::Handshake(format!(
                "MPI rank {rank} runs another build of the program: start the same binary \
                 on every node"
            )));
        }
        let i = usize::try_from(rank - 1)
            .ok()
            .filter(|&i| i < n)
            .ok_or_else(|| Error::Handshake(format!("a hello from unexpected MPI rank {rank}")))?;
        pids[i] = Some(hello.pid);
    }
    Ok(pids.into_iter().flatten().collect())
}

/// A job a worker runs: whose it is and who waits for it (none once terminated).
struct Busy {
    pool: u64,
    done: Option<Box<dyn FnOnce(Reply) + Send>>,
}

fn drive(world: &SimpleCommunicator, n: usize, rx: &mpsc::Receiver<Cmd>) {
    let mut queue: VecDeque<MpiJob> = VecDeque::new();
    let mut busy: Vec<Option<Busy>> = (0..n).map(|_| None).collect();
    let mut exiting: Option<(mpsc::Sender<()>, Instant)> = None;
    let mut backoff = Backoff::new();
    loop {
        let running = busy.iter().any(Option::is_some);
        if exiting.is_some() && !running {
            break;
        }
        let first = if running || !queue.is_empty() || exiting.is_some() {
            rx.try_recv().ok()
        } else {
            match rx.recv() {
                Ok(cmd) => Some(cmd),
                Err(_) => return, // cannot happen: the sender lives in a static
            }
        };
        let mut progress = first.is_some();
        for cmd in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match cmd {
                Cmd::Run(jobs) if exiting.is_none() => queue.extend(jobs),
                Cmd::Run(jobs) => {
                    for job in jobs {
                        (job.done)(Reply::Failed(Error::PoolTerminated));
                    }
                }
                Cmd::Terminate(pool) => {
                    let (gone, kept): (Vec<MpiJob>, Vec<MpiJob>) =
                        queue.drain(..).partition(|j| j.pool == pool);
                    queue.extend(kept);
                    for job in gone {
                        (job.done)(Reply::Failed(Error::PoolTerminated));
                    }
                    for b in busy.iter_mut().flatten().filter(|b| b.pool == pool) {
                        if let Some(done) = b.done.take() {
                            done(Reply::Failed(Error::PoolTerminated));
                        }
                    }
                }
                Cmd::Exit(ack) => {
                    for job in queue.drain(..) {
                        (job.done)(Reply::Failed(Error::PoolTerminated));
                    }
                    for r in 1..=n {
                        world
                            .process_at_rank(r as i32)
                            .send_with_tag(&[0u8; 0][..], TAG_STOP);
                    }
                    exiting = Some((ack, Instant::now() + EXIT_GRACE));
                }
            }
        }
        if exiting.is_none() {
            for (w, slot) in busy.iter_mut().enumerate() {
                while slot.is_none() {
                    let Some(at) = queue.iter().position(|j| j.worker.is_none_or(|k| k == w))
                    else {
                        break;
                    };
                    let Some(job) = queue.remove(at) else { break };
                    progress = true;
                    if !(job.claim)() {
                        (job.done)(Reply::Dropped);
                        continue;
                    }
                    world
                        .process_at_rank(w as i32 + 1)
                        .send_with_tag(&job.msg[..], TAG_RUN);
                    *slot = Some(Busy {
                        pool: job.pool,
                        done: Some(job.done),
                    });
                }
            }
        }
        let result = || {
            world
                .any_process()
                .immediate_matched_probe_with_tag(TAG_RESULT)
        };
        while let Some((msg, status)) = probe_burst(result) {
            progress = true;
            let w = usize::try_from(status.source_rank() - 1).ok();
            let (buf, _) = (msg, status).matched_receive_vec::<u8>();
            let job = w.and_then(|w| busy.get_mut(w)).and_then(Option::take);
            if let Some(done) = job.and_then(|b| b.done) {
                done(Reply::Ran(buf));
            }
        }
        if let Some((_, deadline)) = &exiting {
            if Instant::now() >= *deadline {
                let still: Vec<usize> = (0..n)
                    .filter(|&w| busy[w].is_some())
                    .map(|w| w + 1)
                    .collect();
                eprintln!(
                    "multiproc: MPI ranks {still:?} are still running a task {EXIT_GRACE:?} \
                     after rank 0's main returned; aborting the MPI job"
                );
                world.abort(4);
            }
        }
        if progress {
            backoff.reset();
        } else {
            backoff.wait();
        }
    }
    if let Some((ack, _)) = exiting {
        let _ = ack.send(());
    }
}
