//! `Pipe`: a connection between two processes carrying whole messages, both ways
//! ([`pipe`]) or one way ([`pipe_oneway`], where the direction is in the types).
//!
//! Each end is one end of a Unix stream socket; every message is a 4-byte length and the
//! bytes, so boundaries are kept and a zero-length message is a message. When the other end
//! is closed (dropped, or its process exited), `recv` returns the messages still in transit
//! and then `Eof`. A receiver waiting for the reply to a message it just sent spins briefly
//! before sleeping: on a small machine waking a sleeping process costs more than the whole
//! round trip.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::RecvFlags;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::shm::fds::{self, SharedFd};
use crate::sys::wait::lock;

/// Largest message: lengths travel as 31 bits.
const MAX_MESSAGE: usize = (1 << 31) - 1;
/// How long `recv` polls before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// One end of a pipe, untyped.
struct End {
    fd: SharedFd,
    rx: Mutex<ReadBuf>,
    tx: Mutex<()>,
    /// Set by `close`: every later call on this end is `Closed`.
    closed: AtomicBool,
}

#[derive(Default)]
struct ReadBuf {
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

fn map_send_err(e: Errno) -> Error {
    match e {
        Errno::PIPE | Errno::CONNRESET => Error::Eof,
        e => e.into(),
    }
}

impl End {
    fn new(fd: OwnedFd) -> End {
        End {
            fd: Arc::new(fd),
            rx: Mutex::new(ReadBuf::default()),
            tx: Mutex::new(()),
            closed: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Ends the connection: the peer sees the end of the stream once the messages in transit
    /// are read, and every later call here is `Closed`.
    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = rustix::net::shutdown(&*self.fd, rustix::net::Shutdown::Both);
        }
    }

    /// Whether a whole message (or the end of the stream) is already buffered here, where
    /// polling the descriptor would not see it; false if another thread is reading.
    fn buffered(&self) -> bool {
        match self.rx.try_lock() {
            Ok(rb) => rb.eof || matches!(rb.whole_message(), Ok(Some(_)) | Err(_)),
            Err(_) => false,
        }
    }

    fn pair() -> Result<(End, End)> {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        for fd in [&a, &b] {
            // Bigger buffers mean fewer wake-ups for bulk data; the kernel caps the values.
            let _ = rustix::net::sockopt::set_socket_send_buffer_size(fd, 4 << 20);
            let _ = rustix::net::sockopt::set_socket_recv_buffer_size(fd, 4 << 20);
        }
        Ok((End::new(a), End::new(b)))
    }

    fn send(&self, payload: &[u8]) -> Result<()> {
        self.check_open()?;
        if payload.len() > MAX_MESSAGE {
            return Err(Error::TooLarge {
                what: format!("a message of {} bytes", payload.len()),
                limit: MAX_MESSAGE,
            });
        }
        let header = (payload.len() as u32).to_le_bytes();
        let _g = lock(&self.tx);
        let mut bufs = [
            std::io::IoSlice::new(&header),
            std::io::IoSlice::new(payload),
        ];
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            match crate::sys::fds::send(&*self.fd, bufs, &[]) {
                Ok(n) => std::io::IoSlice::advance_slices(&mut bufs, n),
                Err(e) => return Err(map_send_err(e)),
            }
        }
        Ok(())
    }

    /// Receives one whole message, waiting until `deadline`.
    fn recv(&self, deadline: Option<Instant>) -> Result<Vec<u8>> {
        self.check_open()?;
        let mut rb = lock(&self.rx);
        loop {
            if let Some(len) = rb.whole_message()? {
                let start = rb.pos + 4;
                let msg = rb.buf[start..start + len].to_vec();
                rb.pos = start + len;
                return Ok(msg);
            }
            if rb.eof {
                return Err(if rb.pos == rb.buf.len() {
                    Error::Eof
                } else {
                    Error::Protocol("the pipe closed in the middle of a message".into())
                });
            }
            self.fill(&mut rb, deadline)?;
        }
    }

    /// Reads what is available, waiting for something until `deadline` (spinning briefly
    /// first).
    fn fill(&self, rb: &mut ReadBuf, deadline: Option<Instant>) -> Result<()> {
        if rb.pos == rb.buf.len() {
            rb.buf.clear();
            rb.pos = 0;
        } else if rb.pos > rb.buf.len() / 2 {
            rb.buf.drain(..rb.pos);
            rb.pos = 0;
        }
        let spin_until = Instant::now() + SPIN;
        let mut blocking = false;
        loop {
            if rb.buf.capacity() - rb.buf.len() < 64 * 1024 {
                rb.buf.reserve(256 * 1024);
            }
            let spare: &mut [MaybeUninit<u8>] = rb.buf.spare_capacity_mut();
            let flags = if blocking {
                RecvFlags::empty()
            } else {
                RecvFlags::DONTWAIT
            };
            match rustix::net::recv(&*self.fd, spare, flags) {
                Ok(((filled, _), _)) => {
                    let n = filled.len();
                    if n == 0 {
                        rb.eof = true;
                    } else {
                        // SAFETY: recv initialised the first n spare bytes.
                        unsafe { rb.buf.set_len(rb.buf.len() + n) };
                    }
                    return Ok(());
                }
                Err(Errno::AGAIN) => {}
                Err(Errno::INTR) => continue,
                Err(Errno::CONNRESET) => {
                    rb.eof = true;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            if now < spin_until {
                std::hint::spin_loop();
                continue;
            }
            // Sleep until readable (or the deadline), then read with a blocking call.
            if !crate::sys::wait::readable(std::os::fd::AsFd::as_fd(&*self.fd), deadline)? {
                return Err(Error::Timeout);
            }
            blocking = true;
        }
    }

    /// Whether a message (or the end of the stream) can be received without waiting,
    /// waiting up to `timeout` for one (`None`: forever).
    fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_open()?;
        let deadline = timeout.and_then(crate::sys::wait::deadline_after);
        let mut rb = lock(&self.rx);
        loop {
            if rb.eof || rb.whole_message()?.is_some() {
                return Ok(true);
            }
            match self.fill(&mut rb, deadline) {
                Ok(()) => {}
                Err(Error::Timeout) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

impl ReadBuf {
    /// The length of the message at the read position, if all of it is buffered.
    fn whole_message(&self) -> Result<Option<usize>> {
        let avail = &self.buf[self.pos..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(Error::Protocol(format!(
                "corrupted pipe stream (message length {len})"
            )));
        }
        Ok((avail.len() >= 4 + len).then_some(len))
    }
}

pub(crate) fn check_range(
    len: usize,
    offset: usize,
    size: Option<usize>,
) -> Result<std::ops::Range<usize>> {
    let out = |what: String| Error::OutOfRange {
        what,
        object: "buffer",
        len,
    };
    if offset > len {
        return Err(out(format!("offset {offset}")));
    }
    let size = size.unwrap_or(len - offset);
    if size > len - offset {
        return Err(out(format!("offset {offset} + size {size}")));
    }
    Ok(offset..offset + size)
}

macro_rules! end_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        pub struct $ty<T> {
            end: Arc<End>,
            _t: PhantomData<fn(T) -> T>,
        }

        impl<T> $ty<T> {
            fn from_end(end: End) -> Self {
                $ty { end: Arc::new(end), _t: PhantomData }
            }

            /// An end over a connected stream socket (a listener's or client's connection).
            #[allow(dead_code)]
            pub(crate) fn from_socket(fd: OwnedFd) -> Self {
                $ty::from_end(End::new(fd))
            }

            /// Closes this end (Python's `close()`): the other side sees the end of the
            /// stream, and every later call on this end, or on a clone of it, is
            /// [`Error::Closed`]. Idempotent. Dropping the last clone closes it too.
            pub fn close(&self) {
                self.end.close();
            }

            /// Whether [`close`](Self::close) was called on this end or a clone of it.
            pub fn is_closed(&self) -> bool {
                self.end.closed.load(Ordering::Acquire)
            }

            /// For `wait`: a descriptor that is readable when this end may be, and whether a
            /// message is buffered already (or the end is closed, which answers at once).
            #[allow(dead_code)]
            pub(crate) fn readiness(&self) -> (Option<OwnedFd>, bool) {
                if self.is_closed() {
                    return (None, true);
                }
                let fd = self.end.fd.try_clone().ok();
                let ready = self.end.buffered() || fd.is_none();
                (fd, ready)
            }
        }

        /// A second handle to the same end, in this process (Python passes one connection
        /// to several holders): the clones share the end's buffer, so each message goes to
        /// exactly one `recv`, and closing one closes them all. To hand the end to another
        /// process, pass it (or a clone) as an argument; read it from one process at a time.
        impl<T> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty { end: self.end.clone(), _t: PhantomData }
            }
        }

        impl<T> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("fd", &std::os::fd::AsRawFd::as_raw_fd(&*self.end.fd))
                    .finish()
            }
        }

        impl<T> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                fds::serialize_fd(&self.end.fd, $what, s)
            }
        }

        impl<'de, T> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let fd = fds::deserialize_fd($what, d)?;
                let st = rustix::fs::fstat(&fd).map_err(serde::de::Error::custom)?;
                if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket {
                    return Err(serde::de::Error::custom(concat!("received a bad ", $what)));
                }
                Ok($ty::from_end(End::new(fd)))
            }
        }
    };
}

macro_rules! send_api {
    ($ty:ident) => {
        impl<T: Serialize> $ty<T> {
            /// Sends one message: `item`, encoded with serde.
            pub fn send(&self, item: &T) -> Result<()> {
                let bytes = crate::wire::serial::encode(item)
                    .map_err(|e| Error::serialization("a pipe message", e))?;
                self.end.send(&bytes)
            }
        }

        impl<T> $ty<T> {
            /// Sends raw bytes as one message (a zero-length message is a message).
            pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
                self.end.send(bytes)
            }

            /// Sends `size` bytes of `buf` from `offset` (all the rest if `size` is `None`) as
            /// one message; a range outside `buf` is an error.
            pub fn send_bytes_range(
                &self,
                buf: &[u8],
                offset: usize,
                size: Option<usize>,
            ) -> Result<()> {
                let r = check_range(buf.len(), offset, size)?;
                self.end.send(&buf[r])
            }
        }
    };
}

macro_rules! recv_api {
    ($ty:ident) => {
        impl<T: DeserializeOwned> $ty<T> {
            /// Receives one message and decodes it; `Eof` once the other end is closed and
            /// nothing is left. A message that does not decode is an error for this call
            /// only: the next message is unaffected.
            pub fn recv(&self) -> Result<T> {
                decode(&self.end.recv(None)?)
            }

            /// Like `recv`, waiting at most `timeout` (then `Timeout`).
            pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
                decode(&self.end.recv(crate::sys::wait::deadline_after(timeout))?)
            }
        }

        impl<T> $ty<T> {
            /// Receives one message as raw bytes.
            pub fn recv_bytes(&self) -> Result<Vec<u8>> {
                self.end.recv(None)
            }

            /// Receives one message into `buf`, returning its length. If it does not fit,
            /// the error carries the whole message (it is not lost).
            pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
                let msg = self.end.recv(None)?;
                if msg.len() > buf.len() {
                    return Err(Error::BufferTooSmall {
                        message: msg,
                        capacity: buf.len(),
                    });
                }
                buf[..msg.len()].copy_from_slice(&msg);
                Ok(msg.len())
            }

            /// Whether a message (or the end of the stream) is ready, waiting up to `timeout`
            /// (`None`: until one is).
            pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
                self.end.poll(timeout)
            }
        }
    };
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::wire::serial::decode(bytes).map_err(|e| Error::serialization("a pipe message", e))
}

end_type!(
    /// One end of a two-way pipe ([`pipe`]): sends and receives.
    Connection,
    "pipe Connection"
);
end_type!(
    /// The sending end of a one-way pipe ([`pipe_oneway`]).
    Sender,
    "pipe Sender"
);
end_type!(
    /// The receiving end of a one-way pipe ([`pipe_oneway`]).
    Receiver,
    "pipe Receiver"
);
send_api!(Connection);
send_api!(Sender);
recv_api!(Connection);
recv_api!(Receiver);

/// A two-way pipe (Python's `Pipe()`): two connected ends, each can send and receive.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn echo(conn: Connection<String>) {
///     while let Ok(s) = conn.recv() {
///         conn.send(&s.to_uppercase()).unwrap();
///     }
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let (here, there) = multiproc::pipe()?;
///     let p = Process::spawn(echo, (there,))?;
///     here.send(&"ping".to_string())?;
///     assert_eq!(here.recv()?, "PING");
///     drop(here); // the child sees the end of the stream and returns
///     assert!(p.join()?.success());
///     Ok(())
/// }
/// ```
pub fn pipe<T>() -> Result<(Connection<T>, Connection<T>)> {
    let (a, b) = End::pair()?;
    Ok((Connection::from_end(a), Connection::from_end(b)))
}

/// A one-way pipe (Python's `Pipe(duplex=False)`): returns `(receiver, sender)`, in Python's
/// order. Sending on the receiver or receiving on the sender does not compile.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let (rx, tx) = multiproc::pipe_oneway::<String>()?;
///     tx.send(&"hello".to_string())?;
///     assert_eq!(rx.recv()?, "hello");
///     Ok(())
/// }
/// ```
pub fn pipe_oneway<T>() -> Result<(Receiver<T>, Sender<T>)> {
    let (a, b) = End::pair()?;
    let _ = rustix::net::shutdown(&*a.fd, rustix::net::Shutdown::Write);
    let _ = rustix::net::shutdown(&*b.fd, rustix::net::Shutdown::Read);
    Ok((Receiver::from_end(a), Sender::from_end(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_empty_messages_and_eof() {
        let (a, b) = pipe::<u32>().unwrap();
        a.send_bytes(b"").unwrap();
        a.send_bytes_range(b"hello", 1, Some(3)).unwrap();
        a.send(&7).unwrap();
        assert!(a.send_bytes_range(b"hello", 3, Some(3)).is_err());
        assert!(a.send_bytes_range(b"hello", 6, None).is_err());
        assert_eq!(b.recv_bytes().unwrap(), b"");
        let mut small = [0u8; 2];
        match b.recv_bytes_into(&mut small) {
            Err(Error::BufferTooSmall { message, .. }) => assert_eq!(message, b"ell"),
            other => panic!("{other:?}"),
        }
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(b.recv().unwrap(), 7);
        assert!(!b.poll(Some(Duration::from_millis(1))).unwrap());
        assert!(matches!(
            b.recv_timeout(Duration::from_millis(1)),
            Err(Error::Timeout)
        ));
        drop(a);
        assert!(b.poll(None).unwrap());
        assert!(matches!(b.recv(), Err(Error::Eof)));
        assert!(matches!(b.send(&1), Err(Error::Eof)));
    }

    #[test]
    fn a_bad_message_spoils_only_itself() {
        let (a, b) = pipe::<String>().unwrap();
        a.send_bytes(&[0xff; 3]).unwrap();
        a.send(&"ok".to_string()).unwrap();
        assert!(matches!(b.recv(), Err(Error::Serialization { .. })));
        assert_eq!(b.recv().unwrap(), "ok");
    }

    #[test]
    fn handles_do_not_travel_inside_messages() {
        let (a, b) = pipe::<Connection<u8>>().unwrap();
        let (c, _d) = pipe::<u8>().unwrap();
        assert!(matches!(a.send(&c), Err(Error::Serialization { .. })));
        drop(b);
    }
}
