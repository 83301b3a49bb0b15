//! Python's `multiprocessing.connection`: a [`Listener`] that accepts authenticated
//! connections, [`Client`] to make one, and [`wait`] for whichever of several connections,
//! listeners, queues and processes is ready.
//!
//! A connection is the same [`Connection`] a [`pipe`](crate::pipe) gives, so code works
//! over either. Both sides prove they hold the key with the Manager's mutual HMAC-SHA256
//! challenge–response (nothing secret crosses the wire); after it, messages are not
//! authenticated or encrypted, as in Python: use it on networks you trust, or tunnel it.
//!
//! Addresses: `"host:port"` is TCP (port 0 picks a free one, which [`Listener::address`]
//! reports); `"@name"` is an abstract Unix socket on this machine, and `"@"` alone picks a
//! fresh name.
//!
//! ```
//! use multiproc::connection::{Client, Listener};
//! use multiproc::prelude::*;
//!
//! #[pool_task]
//! fn ask(address: String, key: Vec<u8>) -> u64 {
//!     let conn: Connection<u64> = Client::connect(&address, &key).unwrap();
//!     conn.send(&21).unwrap();
//!     conn.recv().unwrap()
//! }
//!
//! #[multiproc::main]
//! fn main() -> multiproc::Result<()> {
//!     let listener = Listener::bind("127.0.0.1:0", b"secret")?;
//!     let client = Process::spawn(ask, (listener.address(), b"secret".to_vec()))?;
//!     let conn: Connection<u64> = listener.accept()?;
//!     let x = conn.recv()?;
//!     conn.send(&(x * 2))?;
//!     assert!(client.join()?.success());
//!     Ok(())
//! }
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manager::proto;
use crate::pipe::{Connection, Receiver};
use crate::process::Process;
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::sys::wait::{deadline_after, lock, poll_until};

/// How long a peer may take over its half of the handshake, by default.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// The handshake's session is dropped once it succeeds (a `Connection` carries its values
/// as a pipe does, like Python's), so how its messages would be framed does not matter.
const SESSION_UNUSED: proto::Messages = proto::Messages::Tagged;
/// How often [`wait`] looks at objects without a descriptor (queues).
const QUEUE_POLL: Duration = Duration::from_millis(5);

enum Socket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// Accepts authenticated connections (Python's `multiprocessing.connection.Listener`).
///
/// A peer without the key gets `AuthenticationFailed` and so does the `accept` that met it;
/// the listener serves the next peer as before. A peer is given 10 s (see
/// [`set_handshake_timeout`](Listener::set_handshake_timeout)) for its half of the
/// handshake, and no more memory than the handshake's fixed size. Example: [the module's](self).
pub struct Listener {
    socket: Socket,
    address: String,
    authkey: Vec<u8>,
    handshake: Mutex<Duration>,
    last: Mutex<Option<String>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .finish()
    }
}

impl Listener {
    /// Listens on `address` (`"host:port"`, `"@name"`, `"@"`; see [the module](self)) for
    /// clients holding `authkey`.
    pub fn bind(address: &str, authkey: &[u8]) -> Result<Listener> {
        let (socket, address) = if let Some(name) = address.strip_prefix('@') {
            let name = if name.is_empty() {
                fresh_name()?
            } else {
                name.to_owned()
            };
            let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
            (
                Socket::Unix(UnixListener::bind_addr(&addr)?),
                format!("@{name}"),
            )
        } else {
            let l = TcpListener::bind(address).map_err(|e| {
                Error::InvalidArgument(format!("cannot listen on {address:?}: {e}"))
            })?;
            let bound = l.local_addr()?.to_string();
            (Socket::Tcp(l), bound)
        };
        match &socket {
            Socket::Tcp(l) => l.set_nonblocking(true)?,
            Socket::Unix(l) => l.set_nonblocking(true)?,
        }
        Ok(Listener {
            socket,
            address,
            authkey: authkey.to_vec(),
            handshake: Mutex::new(HANDSHAKE),
            last: Mutex::new(None),
        })
    }

    /// The address clients connect to (with the port or name chosen, if it was left open).
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The address of the last peer accepted (`None` before the first, and for local
    /// clients, whose sockets have no name).
    pub fn last_accepted(&self) -> Option<String> {
        lock(&self.last).clone()
    }

    /// How long a peer may take over the handshake before `accept` gives up on it (with
    /// `Timeout`).
    pub fn set_handshake_timeout(&self, timeout: Duration) {
        *lock(&self.handshake) = timeout;
    }

    /// Waits for the next client and authenticates it.
    pub fn accept<T>(&self) -> Result<Connection<T>> {
        self.accept_until(None)
    }

    /// [`accept`](Listener::accept), waiting at most `timeout` for a client to arrive
    /// (then `Timeout`); its handshake has its own limit.
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<Connection<T>> {
        self.accept_until(deadline_after(timeout))
    }

    fn accept_until<T>(&self, deadline: Option<Instant>) -> Result<Connection<T>> {
        loop {
            let accepted = match &self.socket {
                Socket::Tcp(l) => l.accept().map(|(s, a)| {
                    let _ = s.set_nodelay(true);
                    (Peer::Tcp(s), Some(a.to_string()))
                }),
                Socket::Unix(l) => l.accept().map(|(s, _)| (Peer::Unix(s), None)),
            };
            match accepted {
                Ok((peer, from)) => {
                    *lock(&self.last) = from;
                    let limit = *lock(&self.handshake);
                    return peer.authenticate(limit, |mut s| {
                        proto::serve(&mut s, &self.authkey, SESSION_UNUSED).map(drop)
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let fd = self.listening_fd();
                    if !crate::sys::wait::readable(fd.as_fd(), deadline)? {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A peer that left before we took it (ECONNABORTED): take the next.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn listening_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.socket {
            Socket::Tcp(l) => l.as_fd(),
            Socket::Unix(l) => l.as_fd(),
        }
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`). Example:
/// [the module's](self).
#[derive(Debug)]
pub struct Client;

impl Client {
    /// Connects to the listener at `address` and proves it holds `authkey` (and that the
    /// listener does): `AuthenticationFailed` if either does not.
    pub fn connect<T>(address: &str, authkey: &[u8]) -> Result<Connection<T>> {
        Client::connect_timeout(address, authkey, HANDSHAKE)
    }

    /// [`connect`](Client::connect), giving up after `timeout` (connecting and the
    /// handshake together) with `Timeout`.
    pub fn connect_timeout<T>(
        address: &str,
        authkey: &[u8],
        timeout: Duration,
    ) -> Result<Connection<T>> {
        let deadline = Instant::now() + timeout;
        let peer = if let Some(name) = address.strip_prefix('@') {
            let addr = UnixAddr::from_abstract_name(name.as_bytes())?;
            Peer::Unix(UnixStream::connect_addr(&addr).map_err(|e| refused(address, e))?)
        } else {
            let addrs: Vec<_> = address
                .to_socket_addrs()
                .map_err(|e| Error::InvalidArgument(format!("bad address {address:?}: {e}")))?
                .collect();
            let mut last = None;
            let mut found = None;
            for a in addrs {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout);
                }
                match TcpStream::connect_timeout(&a, left) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (found, last) {
                (Some(s), _) => {
                    let _ = s.set_nodelay(true);
                    Peer::Tcp(s)
                }
                (None, Some(e)) if proto::is_timeout(&e) => return Err(Error::Timeout),
                (None, Some(e)) => return Err(refused(address, e)),
                (None, None) => {
                    return Err(Error::InvalidArgument(format!(
                        "no address for {address:?}"
                    )))
                }
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        peer.authenticate(left, |mut s| {
            proto::connect(&mut s, authkey, SESSION_UNUSED).map(drop)
        })
    }
}

fn refused(address: &str, e: std::io::Error) -> Error {
    Error::Io(std::sync::Arc::new(std::io::Error::new(
        e.kind(),
        format!("cannot connect to {address}: {e}"),
    )))
}

/// A connected socket, before and during the handshake.
enum Peer {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Peer {
    /// Runs `handshake` under `limit` (each read and write), then gives the socket to a
    /// `Connection`, blocking and without timeouts.
    fn authenticate<T>(
        self,
        limit: Duration,
        handshake: impl FnOnce(&mut dyn ReadWrite) -> Result<()>,
    ) -> Result<Connection<T>> {
        let limit = Some(limit.max(Duration::from_millis(1)));
        let outcome = match &self {
            Peer::Tcp(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(limit)?;
                s.set_write_timeout(limit)?;
                let mut s: &TcpStream = s;
                handshake(&mut s)
            }
            Peer::Unix(s) => {
                s.set_nonblocking(false)?;
                s.set_read_timeout(limit)?;
                s.set_write_timeout(limit)?;
                let mut s: &UnixStream = s;
                handshake(&mut s)
            }
        };
        outcome.map_err(|e| match e {
            Error::Io(io) if proto::is_timeout(&io) => Error::Timeout,
            Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                Error::Protocol("the peer closed the connection during the handshake".into())
            }
            e => e,
        })?;
        let fd: OwnedFd = match self {
            Peer::Tcp(s) => {
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
                s.into()
            }
            Peer::Unix(s) => {
                s.set_read_timeout(None)?;
                s.set_write_timeout(None)?;
                s.into()
            }
        };
        Ok(Connection::from_socket(fd))
    }
}

/// A blocking byte stream, for the handshake.
trait ReadWrite: Read + Write {}
impl<S: Read + Write> ReadWrite for S {}

fn fresh_name() -> Result<String> {
    let mut r = [0u8; 8];
    rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty())?;
    Ok(format!(
        "multiproc-listener-{}-{:016x}",
        std::process::id(),
        u64::from_le_bytes(r)
    ))
}

mod sealed {
    pub trait Sealed {}
}

/// What [`wait`] can wait for: pipe and listener [`Connection`]s and [`Receiver`]s (a
/// message, or the end of the stream), a [`Listener`] (a client arriving), queues (an item,
/// or closed) and a started [`Process`] (its end: Python's `sentinel`).
pub trait Waitable: sealed::Sealed {
    /// A descriptor readable when the object may be ready, and whether it is ready now.
    #[doc(hidden)]
    fn readiness(&self) -> (Option<OwnedFd>, bool);
}

impl<T> sealed::Sealed for Connection<T> {}
impl<T> Waitable for Connection<T> {
    fn readiness(&self) -> (Option<OwnedFd>, bool) {
        Connection::readiness(self)
    }
}
impl<T> sealed::Sealed for Receiver<T> {}
impl<T> Waitable for Receiver<T> {
    fn readiness(&self) -> (Option<OwnedFd>, bool) {
        Receiver::readiness(self)
    }
}
impl sealed::Sealed for Listener {}
impl Waitable for Listener {
    fn readiness(&self) -> (Option<OwnedFd>, bool) {
        (self.listening_fd().try_clone_to_owned().ok(), false)
    }
}
impl sealed::Sealed for Process {}
impl Waitable for Process {
    fn readiness(&self) -> (Option<OwnedFd>, bool) {
        self.readiness()
    }
}
macro_rules! waitable_queue {
    ($($q:ident),*) => {$(
        impl<T> sealed::Sealed for $q<T> {}
        impl<T: Serialize + DeserializeOwned> Waitable for $q<T> {
            fn readiness(&self) -> (Option<OwnedFd>, bool) {
                (None, !self.empty() || self.is_closed())
            }
        }
    )*};
}
waitable_queue!(Queue, JoinableQueue, SimpleQueue);

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit),
/// and returns the positions of those ready, in order (empty on timeout): Python's
/// `multiprocessing.connection.wait`. A connection is ready when a message has arrived, or
/// some of one, or its other end closed (so `recv` will not wait long, or says `Eof`); a
/// listener when a client is waiting to be accepted; a queue when it has an item or is
/// closed; a process when it has ended. Descriptors are polled by the kernel; queues, which
/// live in shared memory, are looked at every 5 ms.
///
/// ```
/// use multiproc::connection::wait;
/// use multiproc::prelude::*;
/// use std::time::Duration;
///
/// #[pool_task]
/// fn reply_later(conn: Connection<u32>, x: u32) {
///     conn.send(&x).unwrap();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let (a, a_child) = multiproc::pipe::<u32>()?;
///     let (b, _b_child) = multiproc::pipe::<u32>()?;
///     let p = Process::spawn(reply_later, (a_child, 7))?;
///     let ready = wait(&[&b, &a], Some(Duration::from_secs(60)))?;
///     assert_eq!(ready, [1]); // `a`: its child wrote; nobody writes to `b`
///     assert_eq!(a.recv()?, 7);
///     p.join()?;
///     assert_eq!(wait(&[&p], Some(Duration::ZERO))?, [0]); // ended
///     Ok(())
/// }
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let deadline = timeout.and_then(deadline_after);
    loop {
        let mut ready = Vec::new();
        let mut fds = Vec::new();
        let mut unpolled = false;
        for (i, o) in objects.iter().enumerate() {
            match o.readiness() {
                (_, true) => ready.push(i),
                (Some(fd), false) => fds.push((i, fd)),
                (None, false) => unpolled = true,
            }
        }
        if !ready.is_empty() {
            return Ok(ready);
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Ok(ready);
        }
        let until = match (unpolled, deadline) {
            (true, Some(d)) => Some(d.min(now + QUEUE_POLL)),
            (true, None) => Some(now + QUEUE_POLL),
            (false, d) => d,
        };
        let mut polls: Vec<PollFd<'_>> = fds
            .iter()
            .map(|(_, fd)| PollFd::new(fd, PollFlags::IN))
            .collect();
        if polls.is_empty() {
            if until.is_none() {
                // Nothing that could ever become ready: unstarted processes only.
                return Err(Error::InvalidArgument(
                    "wait() without a timeout on objects that cannot become ready (processes \
                     not started)"
                        .into(),
                ));
            }
            std::thread::sleep(until.map_or(QUEUE_POLL, |u| u.saturating_duration_since(now)));
            continue;
        }
        if poll_until(&mut polls, until)? > 0 {
            let hit: Vec<usize> = polls
                .iter()
                .zip(&fds)
                .filter(|(p, _)| !p.revents().is_empty())
                .map(|(_, (i, _))| *i)
                .collect();
            if !hit.is_empty() {
                return Ok(hit);
            }
        }
    }
}
