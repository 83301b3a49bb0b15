//! Ranks: whether this process was started by an MPI launcher, MPI's start and end, and
//! the worker ranks' serve loop.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rsmpi::environment::Universe;
use rsmpi::topology::SimpleCommunicator;
use rsmpi::traits::*;
use rsmpi::Threading;

use crate::registry;
use crate::wire::frame::{self, Kind};
use crate::wire::handshake::Hello;
use crate::wire::PROTOCOL_VERSION;

/// Worker → rank 0, once, at start: an encoded `Hello`.
pub(super) const TAG_HELLO: i32 = 1;
/// Rank 0 → worker: a 4-byte thread count, then a RUN frame.
pub(super) const TAG_RUN: i32 = 2;
/// Rank 0 → worker: serve no more; finalize and exit.
pub(super) const TAG_STOP: i32 = 3;
/// Worker → rank 0: the RESULT or JOB_FAILED frame of the last RUN.
pub(super) const TAG_RESULT: i32 = 4;

/// The variables MPI launchers set in the processes they start (Open MPI's `mpirun`,
/// MPICH's Hydra, PMI-1/2 and PMIx, as Slurm's `srun` uses), and ours, to force it.
const LAUNCHER_VARS: [&str; 6] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMI_RANK",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
    "MULTIPROC_MPI",
];

/// How this process was started, as far as MPI goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Launch {
    /// No MPI launcher started it: MPI was not initialised.
    NotLaunched,
    /// Rank 0 of `size`.
    Root { size: usize },
}

static LAUNCH: OnceLock<Launch> = OnceLock::new();
/// Rank 0's MPI environment: dropped (MPI finalised) at exit.
static UNIVERSE: Mutex<Option<Universe>> = Mutex::new(None);

pub(crate) fn launch() -> Launch {
    *LAUNCH.get().unwrap_or(&Launch::NotLaunched)
}

fn launched() -> bool {
    LAUNCHER_VARS.iter().any(|v| std::env::var_os(v).is_some())
}

/// Called by `init()` in a process that plays no other role: under an MPI launcher,
/// initialises MPI; a worker rank then serves and never returns, rank 0 goes on to `main`
/// (and finalises MPI at exit, after telling the workers to stop).
pub(crate) fn enter() {
    if LAUNCH.get().is_some() {
        return;
    }
    if !launched() {
        let _ = LAUNCH.set(Launch::NotLaunched);
        return;
    }
    let Some((universe, threading)) = rsmpi::initialize_with_threading(Threading::Multiple) else {
        // Someone (the program itself) initialised MPI already: leave it theirs.
        let _ = LAUNCH.set(Launch::NotLaunched);
        return;
    };
    let world = universe.world();
    // Rank 0 calls MPI from its driver thread and, at exit, from the main thread, never at
    // the same time: `Serialized` is enough.
    if matches!(threading, Threading::Single | Threading::Funneled) {
        eprintln!(
            "multiproc: this MPI library offers only {threading:?} threading; the MPI pool \
             needs at least Serialized"
        );
        world.abort(2);
    }
    let (rank, size) = (world.rank(), world.size());
    if rank != 0 {
        crate::role::mark_in_worker();
        serve(universe, world, rank);
    }
    *crate::sys::wait::lock(&UNIVERSE) = Some(universe);
    let _ = LAUNCH.set(Launch::Root {
        size: usize::try_from(size).unwrap_or(1),
    });
    extern "C" fn at_exit() {
        let _ = std::panic::catch_unwind(finish);
    }
    // SAFETY: registering a plain extern "C" function without captured state.
    unsafe {
        libc::atexit(at_exit);
    }
    note_sigterm();
}

/// At rank 0's exit: the workers are told to stop (the driver waits a while for any still
/// running a task, then aborts the job rather than hang), then MPI is finalised.
fn finish() {
    super::driver::stop_at_exit();
    drop(crate::sys::wait::lock(&UNIVERSE).take());
}

/// An MPI launcher ends the whole job when one rank dies (MPI is fail-stop), signalling
/// rank 0 with SIGTERM: rank 0 says so before it goes, so the user reads why their
/// program stopped, not only the launcher's summary.
fn note_sigterm() {
    extern "C" fn on_term(_: libc::c_int) {
        const NOTE: &[u8] = b"multiproc: rank 0 was told to stop by the MPI launcher, \
            most likely because another rank died (MPI is fail-stop: one lost rank ends the \
            job; results not yet returned are lost)\n";
        // SAFETY: write(2) and _exit(2) are async-signal-safe; NOTE is static.
        unsafe {
            libc::write(2, NOTE.as_ptr().cast(), NOTE.len());
            libc::_exit(143);
        }
    }
    // SAFETY: installs a handler for SIGTERM only if the program left it at its default.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_term as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        }
    }
}

/// Probes `probe` a few times in a row: Open MPI polls some transports (its shared-memory
/// one among them) only on every eighth call into its progress engine, so a single probe
/// per wake-up would see a waiting message only after several sleeps (measured: a 3.6 ms
/// round trip instead of tens of µs).
pub(super) fn probe_burst<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    const BURST: usize = 16;
    (0..BURST).find_map(|_| probe())
}

/// Sleeps between probes: short while work comes, longer (up to `MAX`) while idle, so an
/// idle rank wakes about a thousand times a second and costs next to no CPU.
pub(super) struct Backoff(u32);

impl Backoff {
    const SPINS: u32 = 64;
    const MAX: Duration = Duration::from_millis(1);

    pub(super) fn new() -> Backoff {
        Backoff(0)
    }

    pub(super) fn reset(&mut self) {
        self.0 = 0;
    }

    pub(super) fn wait(&mut self) {
        self.0 = self.0.saturating_add(1);
        if self.0 <= Self::SPINS {
            std::thread::yield_now();
        } else {
            let shift = (self.0 - Self::SPINS).min(7);
            std::thread::sleep((Duration::from_micros(8) * (1 << shift)).min(Self::MAX));
        }
    }
}

/// A worker rank: says hello, then runs every RUN rank 0 sends until STOP.
fn serve(universe: Universe, world: SimpleCommunicator, rank: i32) -> ! {
    crate::task::panic::install_hook();
    let root = world.process_at_rank(0);
    let hello = Hello {
        version: PROTOCOL_VERSION,
        build_id: registry::build_id(),
        pid: std::process::id(),
    };
    match crate::wire::serial::encode(&hello) {
        Ok(bytes) => root.send_with_tag(&bytes[..], TAG_HELLO),
        Err(e) => fail(&world, rank, &format!("cannot encode its hello: {e}")),
    }
    let mut out = Vec::new();
    let mut backoff = Backoff::new();
    loop {
        let Some((msg, status)) = probe_burst(|| root.immediate_matched_probe()) else {
            backoff.wait();
            continue;
        };
        backoff.reset();
        let tag = status.tag();
        let (buf, _) = (msg, status).matched_receive_vec::<u8>();
        match tag {
            TAG_RUN => {
                out.clear();
                if let Err(e) = run(&buf, &mut out) {
                    fail(&world, rank, &e.to_string());
                }
                root.send_with_tag(&out[..], TAG_RESULT);
                if out.capacity() > crate::wire::conn::IDLE_BUFFER {
                    out = Vec::new();
                }
            }
            TAG_STOP => break,
            other => fail(&world, rank, &format!("unexpected message tag {other}")),
        }
    }
    drop(universe);
    std::process::exit(0)
}

/// Runs one RUN message, leaving its RESULT or JOB_FAILED frame in `out`.
fn run(buf: &[u8], out: &mut Vec<u8>) -> crate::Result<()> {
    let bad = |m: &str| crate::Error::Protocol(format!("bad RUN message: {m}"));
    let (threads, frame) = buf.split_at_checked(4).ok_or_else(|| bad("too short"))?;
    let threads = u32::from_le_bytes([threads[0], threads[1], threads[2], threads[3]]) as usize;
    let (kind, flags, body) = frame::parse_whole(frame)?;
    if kind != Kind::Run {
        return Err(bad("not a RUN frame"));
    }
    let run = crate::wire::codec::parse_run(body)?;
    let pool = crate::task::threads_for(flags, threads);
    if pool.is_some() {
        warn_if_bound(threads);
    }
    crate::task::run_job(&run, out, pool, || {})
}

/// MPI launchers pin each rank to a core or a socket by default (Open MPI binds to a core
/// when there are two ranks or fewer): threads beyond the CPUs the rank may use only take
/// turns. Says so once, with the fix.
fn warn_if_bound(threads: usize) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sched_getaffinity fills the set it is given; CPU_COUNT reads it.
        let cpus = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return;
            }
            libc::CPU_COUNT(&set) as usize
        };
        if cpus < threads {
            eprintln!(
                "multiproc: MPI rank (pid {}) may use {cpus} CPU(s) but runs {threads} threads \
                 per chunk: the launcher bound it; start with `mpirun --bind-to none` (or \
                 `--map-by ppr:1:node:pe={threads}`, `srun --cpus-per-task={threads}`)",
                std::process::id()
            );
        }
    });
}

/// A worker rank that cannot go on ends the job: MPI has no way to lose one rank alone.
fn fail(world: &SimpleCommunicator, rank: i32, why: &str) -> ! {
    eprintln!("multiproc: MPI rank {rank}: {why}; aborting the MPI job");
    world.abort(3)
}
