//! The worker's side of the process pool: the handshake, then the loop that serves RUN
//! frames until the parent says SHUTDOWN or goes away.

use std::os::fd::OwnedFd;

use super::outbox::Outbox;
use crate::error::{Error, Result};
use crate::registry;
use crate::role;
use crate::shm::lane::{self, Claim, Lane};
use crate::wire::codec;
use crate::wire::conn::Conn;
use crate::wire::conn::{BUFFER, IDLE_BUFFER};
use crate::wire::frame::{self, Kind};
use crate::wire::handshake::{Hello, Welcome};
use crate::wire::PROTOCOL_VERSION;

/// Worker main loop. Never returns.
pub(crate) fn serve(fd: OwnedFd) -> ! {
    role::mark_in_worker();
    crate::task::panic::install_hook();
    let code = match serve_inner(fd) {
        Ok(()) => 0,
        // The parent closed the channel while this worker was answering (terminate, or the
        // parent exited): nobody is left to tell.
        Err(Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            0
        }
        Err(e) => {
            eprintln!("multiproc worker {}: {e}", std::process::id());
            3
        }
    };
    std::process::exit(code)
}

fn serve_inner(fd: OwnedFd) -> Result<()> {
    let mut conn = Conn::new(fd)?;
    role::start_watchdog(&conn)?;
    let hello = Hello {
        version: PROTOCOL_VERSION,
        build_id: registry::build_id(),
        pid: std::process::id(),
    };
    let body = crate::wire::serial::encode(&hello).map_err(|e| Error::serialization("hello", e))?;
    conn.send_all(&frame::encode(Kind::Hello, &body)?)?;
    let (welcome, mut init_fds) = match conn.recv_frame()? {
        Some(f) if f.kind == Kind::Welcome => (
            crate::wire::serial::decode::<Welcome>(&f.body)
                .map_err(|e| Error::Protocol(format!("bad WELCOME: {e}")))?,
            f.fds,
        ),
        Some(f) => {
            return Err(Error::Protocol(format!(
                "expected WELCOME, got {:?}",
                f.kind
            )))
        }
        None => return Ok(()),
    };
    // The lane rides last, after the initializer's own descriptors.
    let lane = init_fds
        .pop()
        .ok_or_else(|| Error::Protocol("WELCOME without a lane".into()))?;
    let lane = lane::install(Lane::attach(lane)?);
    if let Some(bytes) = welcome.limits.address_space {
        crate::sys::limit_address_space(bytes)?;
    }
    let max_rss = welcome.limits.max_rss;
    let threads = welcome.threads as usize;
    let mut me = welcome.me;
    me.pid = std::process::id();
    role::set_identity(me, welcome.parent);
    let ready: std::result::Result<(), String> = match welcome.initializer {
        None => Ok(()),
        Some((name, args)) => crate::shm::fds::provide(init_fds, || run_initializer(&name, &args)),
    };
    let failed = ready.is_err();
    let body = crate::wire::serial::encode(&ready).map_err(|e| Error::serialization("ready", e))?;
    conn.send_all(&frame::encode(Kind::Ready, &body)?)?;
    if failed {
        // The parent will not send work; wait for it to close the channel.
        while conn.recv_frame()?.is_some() {}
        return Ok(());
    }
    // A job slower than this is not held back: the one behind it is likely slow too.
    const SHORT_JOB: std::time::Duration = std::time::Duration::from_micros(200);
    let outbox = Outbox::new();
    let mut out = Vec::with_capacity(BUFFER);
    loop {
        // Held results go out before the worker could block waiting for its next job.
        if outbox.holding() && !conn.frame_ready()? {
            outbox.flush(&mut conn)?;
        }
        // Out of work for a while: give back what big results grew (see `IDLE_GRACE` and
        // `Conn::trim_heap`).
        if (out.capacity() > IDLE_BUFFER || outbox.grown()) && conn.idle_for_grace()? {
            out = Vec::with_capacity(BUFFER);
            outbox.shrink();
            conn.trim_heap();
        }
        let Some(f) = conn.recv_frame()? else {
            return Ok(()); // parent closed the channel
        };
        match f.kind {
            Kind::Run => {
                let run = codec::parse_run(&f.body)?;
                match lane.claim(run.epoch, run.seq) {
                    Claim::Granted => {}
                    // The parent took this job back to run it elsewhere.
                    Claim::Withdrawn => continue,
                    Claim::OutOfOrder { epoch, seq } => {
                        return Err(Error::Protocol(format!(
                            "job ({}, {}) arrived with the lane at ({epoch}, {seq})",
                            run.epoch, run.seq
                        )))
                    }
                }
                let started = std::time::Instant::now();
                let threads = crate::task::threads_for(f.flags, threads);
                let mark = if threads.is_some() { lane::PARALLEL } else { 0 };
                lane.running(run.seq, mark);
                crate::shm::fds::provide(f.fds, || {
                    crate::task::run_job(&run, &mut out, threads, || lane.running(run.seq, 0))
                })?;
                lane.idle(run.seq);
                let hold = f.flags & frame::FLAG_MAY_DELAY != 0 && started.elapsed() < SHORT_JOB;
                outbox.push(&mut conn, &mut out, hold)?;
                // Over its memory cap: hand in what it has and exit, before the next job.
                // The parent sees the end of stream with nothing running and replaces this
                // worker; the jobs it had not started run elsewhere.
                if max_rss
                    .is_some_and(|cap| crate::sys::resident_bytes().is_some_and(|rss| rss > cap))
                {
                    outbox.flush(&mut conn)?;
                    return Ok(());
                }
            }
            Kind::Shutdown => {
                outbox.flush(&mut conn)?;
                return Ok(());
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected {other:?} frame in worker"
                )))
            }
        }
    }
}

fn run_initializer(name: &str, args: &[u8]) -> std::result::Result<(), String> {
    let entry = registry::lookup_name(name)
        .ok_or_else(|| format!("initializer `{name}` is not a registered task"))?;
    let mut out = Vec::new();
    (entry.run_chunk)(args, &mut out)?;
    codec::check_single_outcome(name, &out).map_err(|e| match e {
        Error::TaskPanicked { message, .. } => message,
        other => other.to_string(),
    })
}
