//! The worker's end of its channel: a non-blocking socket driven by `poll`.
//!
//! While a large result is being written, the worker keeps reading whatever the parent sends
//! into its input buffer. So a parent blocked writing a large argument frame to a worker that
//! is itself blocked writing a large result can never deadlock: one of the two always drains.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::error::Error;
use crate::wire::frame::{self, Frame, HEADER_LEN};

/// A buffer's usual size; one grown beyond `IDLE_BUFFER` is replaced when the worker goes
/// idle (has had nothing to do for `IDLE_GRACE`).
pub(crate) const BUFFER: usize = 64 * 1024;
pub(crate) const IDLE_BUFFER: usize = 128 * 1024;
/// How long a worker out of work keeps what big frames grew before giving it back: a caller
/// running map after map reuses the buffers (and the heap pages behind them) instead of
/// faulting fresh ones in for every map. Idle longer, the worker is as small as before.
pub(crate) const IDLE_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// Most reserved at once for the rest of a frame still arriving.
const RESERVE_AHEAD: usize = 64 << 20;

pub(crate) struct Conn {
    fd: OwnedFd,
    inbuf: Vec<u8>,
    /// Start of unconsumed bytes in `inbuf`.
    pos: usize,
    eof: bool,
    /// Descriptors received and not yet claimed by a frame, in arrival order.
    fds: VecDeque<OwnedFd>,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Conn> {
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Conn {
            fd,
            inbuf: Vec::with_capacity(BUFFER),
            pos: 0,
            eof: false,
            fds: VecDeque::new(),
        })
    }

    /// Reads whatever is available without blocking. Returns false if nothing was.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.pos > 0 && self.pos == self.inbuf.len() {
            self.inbuf.clear();
            self.pos = 0;
        }
        let mut got_any = false;
        loop {
            if self.inbuf.capacity() - self.inbuf.len() < 16 * 1024 {
                self.inbuf.reserve(64 * 1024);
            }
            let spare = self.inbuf.spare_capacity_mut();
            let spare_len = spare.len();
            let got = crate::sys::fds::recv(&self.fd, spare, &mut self.fds, RecvFlags::empty());
            if got.as_ref().is_ok_and(|r| r.truncated) {
                // Descriptors were dropped by the kernel: the frames that needed them will
                // report it.
                self.fds.clear();
            }
            match got.map(|r| r.bytes) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(got_any);
                }
                Ok(n) => {
                    let drained = n < spare_len;
                    // SAFETY: recvmsg initialised the first n spare bytes.
                    unsafe { self.inbuf.set_len(self.inbuf.len() + n) };
                    got_any = true;
                    if drained {
                        // The socket held less than there was room for: it is empty now,
                        // and asking again would only hear so (one syscall saved per fill).
                        return Ok(true);
                    }
                }
                Err(Errno::AGAIN) => return Ok(got_any),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn take_buffered_frame(&mut self) -> Result<Option<Frame>, Error> {
        let avail = &self.inbuf[self.pos..];
        if avail.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&avail[..HEADER_LEN]);
        let (kind, flags, len) = frame::parse_header(&header)?;
        if avail.len() < HEADER_LEN + len {
            // Room for the rest, but not on the word of a length alone: past 64 MiB the
            // buffer grows as bytes arrive.
            self.inbuf
                .reserve((HEADER_LEN + len - avail.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let nfds = frame::fd_count(&header);
        if self.fds.len() < nfds {
            return Err(Error::Protocol(format!(
                "a {kind:?} frame announced {nfds} descriptors, {} arrived",
                self.fds.len()
            )));
        }
        let fds = self.fds.drain(..nfds).collect();
        let body = avail[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.pos += HEADER_LEN + len;
        Ok(Some(Frame {
            kind,
            flags,
            body,
            fds,
        }))
    }

    /// Whether a whole frame is buffered, reading what the socket holds if none is yet.
    pub(crate) fn frame_ready(&mut self) -> Result<bool, Error> {
        if self.whole_frame_buffered() {
            return Ok(true);
        }
        if !self.eof {
            self.fill()?;
        }
        Ok(self.whole_frame_buffered())
    }

    fn whole_frame_buffered(&self) -> bool {
        let avail = &self.inbuf[self.pos..];
        if avail.len() < HEADER_LEN {
            return false;
        }
        let len = u32::from_le_bytes([avail[4], avail[5], avail[6], avail[7]]) as usize;
        avail.len() >= HEADER_LEN + len
    }

    /// Blocks until a whole frame arrives. `Ok(None)`: the parent closed the channel.
    pub(crate) fn recv_frame(&mut self) -> Result<Option<Frame>, Error> {
        let mut polled = false;
        loop {
            if let Some(f) = self.take_buffered_frame()? {
                return Ok(Some(f));
            }
            if self.eof {
                return if self.pos == self.inbuf.len() {
                    Ok(None)
                } else {
                    Err(Error::Protocol("channel closed inside a frame".into()))
                };
            }
            if !self.fill()? && !self.eof {
                // A worker that just sent a result is usually sent its next job within
                // microseconds: polling briefly saves the wake-up of a sleeping process.
                // The poll reads what comes, so taking it needs no second call.
                if !std::mem::replace(&mut polled, true) {
                    let mut failed = None;
                    crate::sys::wait::poll_briefly_for(None, || match self.fill() {
                        Ok(got) => got || self.eof,
                        Err(e) => {
                            failed = Some(e);
                            true
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e);
                    }
                    continue;
                }
                if self.holds_idle_memory() {
                    if !self.quiet_for_grace()? {
                        continue; // work came within the grace: keep the buffer
                    }
                    self.release_idle_memory(false);
                }
                self.wait(PollFlags::IN)?;
            }
        }
    }

    /// True when nothing arrives within `IDLE_GRACE` (a whole frame buffered, some bytes
    /// or the end of stream count as something): the worker may give back its own buffers.
    /// Polls briefly first (see `poll_briefly`), so a job sent right away is not waited for
    /// asleep.
    pub(crate) fn idle_for_grace(&mut self) -> Result<bool, Error> {
        if self.frame_ready()? || self.eof || self.pos < self.inbuf.len() {
            return Ok(false);
        }
        if crate::sys::wait::poll_briefly(self.fd.as_fd()) {
            return Ok(false);
        }
        self.quiet_for_grace()
    }

    /// Sleeps until input arrives or `IDLE_GRACE` passes; true if none came.
    fn quiet_for_grace(&self) -> Result<bool, Error> {
        let deadline = std::time::Instant::now() + IDLE_GRACE;
        Ok(!crate::sys::wait::readable(
            self.fd.as_fd(),
            Some(deadline),
        )?)
    }

    /// Whether a receive buffer that a burst of big frames grew is empty and could go.
    fn holds_idle_memory(&self) -> bool {
        self.pos == self.inbuf.len() && self.inbuf.capacity() > IDLE_BUFFER
    }

    /// After the worker dropped big buffers of its own (idle for `IDLE_GRACE`): gives them
    /// and this connection's grown receive buffer back to the kernel now.
    pub(crate) fn trim_heap(&mut self) {
        self.release_idle_memory(true);
    }

    /// About to sleep with nothing buffered: gives back a receive buffer that a burst of
    /// big frames grew, and the heap memory freed since (`trim`: the caller freed some), so an idle
    /// worker stays small.
    fn release_idle_memory(&mut self, mut trim: bool) {
        if self.holds_idle_memory() {
            self.inbuf = Vec::with_capacity(BUFFER);
            self.pos = 0;
            trim = true;
        }
        if trim {
            #[cfg(target_env = "gnu")]
            // SAFETY: glibc's malloc_trim only returns free heap memory to the kernel.
            unsafe {
                libc::malloc_trim(64 * 1024);
            }
        }
    }

    /// Writes all of `bytes`, draining input into the buffer whenever the socket is full.
    pub(crate) fn send_all(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        while !bytes.is_empty() {
            match rustix::net::send(&self.fd, bytes, SendFlags::NOSIGNAL) {
                Ok(n) => bytes = &bytes[n..],
                Err(Errno::AGAIN) => {
                    let flags = if self.eof {
                        PollFlags::OUT
                    } else {
                        PollFlags::OUT | PollFlags::IN
                    };
                    let revents = self.wait(flags)?;
                    if revents.intersects(PollFlags::IN | PollFlags::HUP) && !self.eof {
                        self.fill()?;
                    }
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn wait(&self, flags: PollFlags) -> Result<PollFlags, Error> {
        let mut fds = [PollFd::new(&self.fd, flags)];
        loop {
            match poll(&mut fds, None) {
                Ok(_) => return Ok(fds[0].revents()),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Writes a whole frame to a blocking stream, its descriptors attached to its first bytes.
pub(crate) fn send_frame_with_fds(
    stream: &impl AsFd,
    bytes: &[u8],
    fds: &[crate::shm::fds::SharedFd],
) -> io::Result<()> {
    send_frame_counted(stream, bytes, fds).map_err(|(_, e)| e)
}

/// [`send_frame_with_fds`], telling on failure how many bytes of the frame went out.
pub(crate) fn send_frame_counted(
    stream: &impl AsFd,
    bytes: &[u8],
    fds: &[crate::shm::fds::SharedFd],
) -> Result<(), (usize, io::Error)> {
    let mut sent = 0;
    if !fds.is_empty() {
        let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
        sent = crate::sys::fds::send(stream, &[io::IoSlice::new(bytes)], &borrowed)
            .map_err(|e| (0, e.into()))?;
    }
    while sent < bytes.len() {
        match rustix::net::send(stream, &bytes[sent..], SendFlags::NOSIGNAL) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err((sent, e.into())),
        }
    }
    Ok(())
}
