//! Descriptors passed over Unix sockets (`SCM_RIGHTS`): one send and one receive, used by
//! every channel that carries them (a worker's, a `Process`'s, the fork server's, pipes).

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

/// At most this many descriptors ride on one message (the kernel's limit is 253).
pub(crate) const MAX_FDS: usize = 250;

/// One `sendmsg` of `bufs`, with `fds` attached to its first byte (none: a plain vectored
/// send). Returns how many bytes went out; retries when interrupted; never raises SIGPIPE (a
/// closed peer is `EPIPE`).
pub(crate) fn send(
    socket: impl AsFd,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> rustix::io::Result<usize> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Errno::TOOMANYREFS);
    }
    loop {
        match sendmsg(&socket, bufs, &mut control, SendFlags::NOSIGNAL) {
            Err(Errno::INTR) => {}
            other => return other,
        }
    }
}

/// What one [`recv`] got.
pub(crate) struct Received {
    pub bytes: usize,
    /// The kernel dropped descriptors (more came than fit): the frames that needed them
    /// will report it.
    pub truncated: bool,
}

/// One `recvmsg` into `buf`, descriptors that came with the bytes appended to `fds`
/// (close-on-exec). `DONTWAIT` per `flags`.
pub(crate) fn recv(
    socket: impl AsFd,
    buf: &mut [MaybeUninit<u8>],
    fds: &mut impl Extend<OwnedFd>,
    flags: RecvFlags,
) -> rustix::io::Result<Received> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // SAFETY: IoSliceMut over uninitialised bytes is only written by the kernel; callers read
    // back only the `bytes` it reports.
    let slice = unsafe { &mut *(buf as *mut [MaybeUninit<u8>] as *mut [u8]) };
    let mut iov = [IoSliceMut::new(slice)];
    let msg = recvmsg(
        &socket,
        &mut iov,
        &mut control,
        flags | RecvFlags::CMSG_CLOEXEC,
    )?;
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok(Received {
        bytes: msg.bytes,
        truncated: msg.flags.contains(ReturnFlags::CTRUNC),
    })
}
