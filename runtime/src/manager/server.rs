//! The manager's server process: holds the shared objects and answers requests until its
//! owner's control channel closes.
//!
//! One thread, the doorman, accepts connections and takes every one through the handshake
//! with non-blocking reads and writes under `poll`: a connection that has not authenticated
//! costs a descriptor and a few dozen bytes, never a thread. At most [`MAX_PENDING`] may be
//! in their handshake; a new one beyond that evicts the oldest, so peers holding connections
//! open cannot keep a legitimate client out for longer than its own handshake takes. Each
//! authenticated connection gets a thread of its own.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use serde::{Deserialize, Serialize};

use super::messages::{Request, Response, Welcome};
use super::objects::Store;
use super::proto::{self, Deadlined, Session, ANSWER_LEN, HELLO_LEN};
use super::stream::Stream;
use crate::error::{Error, Result};
use crate::sys::wait::Waiters;

/// Connections in their handshake at once, at most; a new one past this evicts the oldest.
pub(crate) const MAX_PENDING: usize = 1024;

/// What the owner asks for, first thing on the control channel.
#[derive(Serialize, Deserialize)]
pub(crate) struct Setup {
    /// `None`: an abstract Unix socket with a fresh name; else a TCP address to bind.
    pub tcp: Option<String>,
    pub authkey: Vec<u8>,
    pub limits: Limits,
}

/// What the server allows its peers.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// For the whole handshake, and for each message once its first byte has arrived.
    pub deadline: Duration,
    /// The longest request body.
    pub max_message: usize,
    /// Request bytes held at once, all connections together (reserved as they arrive).
    pub max_buffered: usize,
}

struct Server {
    store: Store,
    authkey: Vec<u8>,
    limits: Limits,
    budget: Budget,
}

/// Request memory, all connections together.
struct Budget {
    used: Mutex<usize>,
    /// Signalled when bytes are given back; a give-back nobody waits for makes no system
    /// call (one per request otherwise).
    freed: Waiters,
    limit: usize,
}

impl Budget {
    /// Takes `n` bytes, waiting for others to give some back until `deadline`.
    fn take(&self, n: usize, deadline: Instant) -> bool {
        let mut used = crate::sys::wait::lock(&self.used);
        loop {
            if *used + n <= self.limit {
                *used += n;
                return true;
            }
            used = match self.freed.wait(used, Some(deadline)) {
                Ok(g) => g,
                Err(_) => return false,
            };
        }
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            *crate::sys::wait::lock(&self.used) -= n;
            self.freed.notify_all();
        }
    }
}

/// The bytes one request holds of the [`Budget`], given back on drop.
struct Held<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.n);
    }
}

/// The server process's main. Never returns.
pub(crate) fn manager_main(fd: OwnedFd) -> ! {
    crate::task::panic::install_hook();
    let mut control = UnixStream::from(fd);
    let code = match run(&mut control) {
        Ok(()) => 0,
        Err(e) => {
            let _ = proto::send_plain(&mut control, &Err::<String, String>(e.to_string()));
            1
        }
    };
    std::process::exit(code)
}

/// As many descriptors as the hard limit allows: each connection holds one.
fn raise_descriptor_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }
            Listener::Unix(l) => Stream::Unix(l.accept()?.0),
        })
    }

    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }
}

fn run(control: &mut UnixStream) -> Result<()> {
    let Some(setup) = proto::recv_plain::<Setup>(control)? else {
        return Ok(());
    };
    raise_descriptor_limit();
    let server = Arc::new(Server {
        store: Store::default(),
        authkey: setup.authkey,
        limits: setup.limits,
        budget: Budget {
            used: Mutex::new(0),
            freed: Waiters::default(),
            limit: setup.limits.max_buffered,
        },
    });
    let (listener, address) = match setup.tcp {
        Some(addr) => {
            let l = TcpListener::bind(&addr)
                .map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
            let address = format!("{}", l.local_addr()?);
            (Listener::Tcp(l), address)
        }
        None => {
            use std::os::linux::net::SocketAddrExt;
            let name = format!(
                "multiproc-manager-{}-{}",
                std::process::id(),
                hex(&proto::random_key()?[..8])
            );
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            (
                Listener::Unix(UnixListener::bind_addr(&addr)?),
                format!("@{name}"),
            )
        }
    };
    match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true)?,
        Listener::Unix(l) => l.set_nonblocking(true)?,
    }
    let s = server.clone();
    spawn_thread(move || doorman(&s, &listener))?;
    proto::send_plain(control, &Ok::<String, String>(address))?;
    // Serve until the owner closes the channel (drops the manager, or dies).
    let mut sink = [0u8; 64];
    while matches!(control.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

fn spawn_thread(f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name("multiproc-manager".into())
        .spawn(f)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A connection in its handshake.
struct Pending {
    peer: Stream,
    until: Instant,
    ours: [u8; 32],
    /// Bytes of the hello still to write.
    hello: [u8; HELLO_LEN],
    hello_sent: usize,
    answer: [u8; ANSWER_LEN],
    got: usize,
}

/// What became of a pending connection after an event.
enum Step {
    Wait,
    Drop,
    Serve(Box<Session>),
}

/// Writes what a non-blocking socket takes; `Err` if it failed or is gone.
fn write_some(peer: &mut Stream, bytes: &[u8]) -> std::io::Result<usize> {
    match peer.write(bytes) {
        Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

impl Pending {
    fn new(peer: Stream, deadline: Duration) -> Result<Pending> {
        let (hello, ours) = proto::hello()?;
        let mut p = Pending {
            peer,
            until: Instant::now() + deadline,
            ours,
            hello,
            hello_sent: 0,
            answer: [0; ANSWER_LEN],
            got: 0,
        };
        p.hello_sent = write_some(&mut p.peer, &p.hello)?;
        Ok(p)
    }

    fn wants(&self) -> PollFlags {
        if self.hello_sent < HELLO_LEN {
            PollFlags::IN | PollFlags::OUT
        } else {
            PollFlags::IN
        }
    }

    fn step(&mut self, key: &[u8]) -> Step {
        if self.hello_sent < HELLO_LEN {
            match write_some(&mut self.peer, &self.hello[self.hello_sent..]) {
                Ok(n) => self.hello_sent += n,
                Err(_) => return Step::Drop,
            }
            if self.hello_sent < HELLO_LEN {
                return Step::Wait;
            }
        }
        match self.peer.read(&mut self.answer[self.got..]) {
            Ok(0) => return Step::Drop,
            Ok(n) => self.got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Step::Wait,
            Err(_) => return Step::Drop,
        }
        if self.got < ANSWER_LEN {
            return Step::Wait;
        }
        let Ok((verdict, session)) =
            proto::verdict(key, &self.ours, &self.answer, self.peer.messages())
        else {
            return Step::Drop;
        };
        // A fresh socket's buffer takes these few bytes whole; if not, the peer is not
        // reading, and goes.
        if !matches!(write_some(&mut self.peer, &verdict), Ok(n) if n == verdict.len()) {
            return Step::Drop;
        }
        match session {
            Some(s) => Step::Serve(Box::new(s)),
            None => Step::Drop,
        }
    }
}

/// Accepts connections and takes them through the handshake, for as long as the process
/// lives; hands each authenticated one to a thread of its own.
fn doorman(server: &Arc<Server>, listener: &Listener) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // After `accept` failed for want of descriptors with nobody to evict: when to retry.
    let mut accept_paused: Option<Instant> = None;
    loop {
        let now = Instant::now();
        pending.retain(|p| p.until > now);
        if accept_paused.is_some_and(|t| t <= now) {
            accept_paused = None;
        }
        let wake = pending.iter().map(|p| p.until).chain(accept_paused).min();
        let mut ready: Vec<bool> = Vec::with_capacity(pending.len());
        let listener_fd = listener.fd();
        let listener_ready = {
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(pending.len() + 1);
            let listening = accept_paused.is_none();
            if listening {
                fds.push(PollFd::new(&listener_fd, PollFlags::IN));
            }
            let first = fds.len();
            for p in &pending {
                fds.push(PollFd::new(&p.peer, p.wants()));
            }
            if crate::sys::wait::poll_until(&mut fds, wake).is_err() {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            ready.extend(fds[first..].iter().map(|f| !f.revents().is_empty()));
            listening && !fds[0].revents().is_empty()
        };
        // Handshake steps first: the oldest connections are the closest to their deadline.
        let mut k = 0;
        pending.retain_mut(|p| {
            let was_ready = ready.get(k).copied().unwrap_or(false);
            k += 1;
            if !was_ready {
                return true;
            }
            match p.step(&server.authkey) {
                Step::Wait => true,
                Step::Drop => false,
                Step::Serve(session) => {
                    if let Ok(peer) = p.peer.try_clone() {
                        start_serving(server, peer, *session);
                    }
                    false
                }
            }
        });
        if listener_ready {
            loop {
                match listener.accept() {
                    Ok(peer) => {
                        if pending.len() >= MAX_PENDING {
                            pending.pop_front();
                        }
                        if peer.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if let Ok(p) = Pending::new(peer, server.limits.deadline) {
                            pending.push_back(p);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(_) => {
                        // Out of descriptors (or the like): make room by evicting the
                        // oldest handshake, or pause accepting a moment.
                        if pending.pop_front().is_none() {
                            accept_paused = Some(Instant::now() + Duration::from_millis(50));
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// Whether the peer of a connection with no request in flight closed it (or it broke):
/// a peek that finds the end of the stream.
fn hung_up(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut b = [0u8; 1];
    // SAFETY: a valid descriptor and a one-byte buffer; MSG_PEEK leaves the data in place.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n == 0
        || (n < 0
            && !matches!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN | libc::EINTR)
            ))
}

fn start_serving(server: &Arc<Server>, peer: Stream, session: Session) {
    if peer.set_nonblocking(false).is_err() {
        return;
    }
    let s = server.clone();
    let _ = spawn_thread(move || serve(&s, peer, session));
}

/// One authenticated connection: the welcome, then requests until the client goes away or
/// misbehaves. Waiting for a request has no limit; a request, once its first byte is in,
/// has the deadline to arrive whole, and the memory it takes is reserved as it comes.
fn serve(server: &Server, peer: Stream, session: Session) {
    let mut lease = None;
    serve_requests(server, peer, session, &mut lease);
    if let Some(client) = lease {
        server.store.lease_ended(client);
    }
}

fn serve_requests(server: &Server, peer: Stream, mut session: Session, lease: &mut Option<u64>) {
    let limits = server.limits;
    let Ok(reader) = peer.try_clone() else { return };
    // A client that does not read its replies holds a write no longer than the deadline.
    if peer.set_write_timeout(Some(limits.deadline)).is_err() {
        return;
    }
    let mut reader = BufReader::with_capacity(64 * 1024, Deadlined::new(reader));
    let mut writer = BufWriter::new(peer);
    let welcome = Welcome {
        max_message: limits.max_message as u64,
    };
    if proto::send(&mut writer, &mut session, &welcome, proto::MAX_MESSAGE).is_err() {
        return;
    }
    // A malformed or unauthentic message ends the connection: the stream can no longer be
    // trusted.
    loop {
        if reader.buffer().is_empty() {
            // A client's next request often follows its last reply at once.
            reader.get_mut().poll_next();
        }
        reader.get_mut().set_deadline(None);
        match reader.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(_) => {}
        }
        let deadline = Instant::now() + limits.deadline;
        reader.get_mut().set_deadline(Some(deadline));
        let mut held = Held {
            budget: &server.budget,
            n: 0,
        };
        let req = proto::recv::<Request>(&mut reader, &mut session, limits.max_message, |n| {
            if server.budget.take(n, deadline) {
                held.n += n;
                Ok(())
            } else {
                Err(Error::TooLarge {
                    what: "requests waiting for the manager's memory".into(),
                    limit: limits.max_buffered,
                })
            }
        });
        let Ok(Some(req)) = req else { return };
        let peer = reader.get_ref().s.as_fd();
        let resp = server.store.handle(req, lease, &|| hung_up(peer));
        drop(held);
        let sent = match proto::send(&mut writer, &mut session, &resp, proto::MAX_MESSAGE) {
            // Too big to send (nothing was written): say so instead.
            Err(e @ Error::TooLarge { .. }) => proto::send(
                &mut writer,
                &mut session,
                &Response::Refused(e.to_string()),
                proto::MAX_MESSAGE,
            ),
            other => other,
        };
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::messages::{Bytes, DictOp, Kind, ListOp, Owner, QueueOp, SyncOp};
    use crate::sys::fuzz::Inputs;

    /// Whatever an authenticated client sends that decodes as a request, the server answers
    /// without panicking, and stays consistent.
    #[test]
    fn any_decodable_request_is_answered() {
        let mut gen = Inputs::new("manager requests");
        let server = Server {
            store: Store::default(),
            authkey: Vec::new(),
            limits: Limits {
                deadline: Duration::from_secs(1),
                max_message: 1 << 20,
                max_buffered: 1 << 20,
            },
            budget: Budget {
                used: Mutex::new(0),
                freed: Waiters::default(),
                limit: 1 << 20,
            },
        };
        let b = |v: &[u8]| Bytes::from(v.to_vec());
        let seeds: Vec<Vec<u8>> = [
            Request::Open {
                kind: Kind::Dict,
                name: None,
                tag: 1,
            },
            Request::Open {
                kind: Kind::List,
                name: Some("l".into()),
                tag: 2,
            },
            Request::Open {
                kind: Kind::Queue {
                    maxsize: 2,
                    joinable: true,
                },
                name: None,
                tag: 3,
            },
            Request::Lease { client: 7 },
            Request::Sync {
                id: 3,
                op: SyncOp::Acquire(
                    Owner {
                        client: 7,
                        thread: 1,
                    },
                    Some(Duration::ZERO),
                ),
            },
            Request::Queue {
                id: 3,
                op: QueueOp::Get(Some(Duration::ZERO)),
            },
            Request::Method {
                id: 1,
                method: "m".into(),
                sig: 0,
                args: b(&[1]),
            },
            Request::Dict {
                id: 1,
                op: DictOp::SetDefault(b(&[1]), b(&[2, 3])),
            },
            Request::Dict {
                id: 1,
                op: DictOp::Items,
            },
            Request::List {
                id: 2,
                op: ListOp::Insert(i64::MIN, b(&[4])),
            },
            Request::List {
                id: 2,
                op: ListOp::Pop(Some(-1)),
            },
            Request::List {
                id: 2,
                op: ListOp::Set(i64::MAX, b(&[])),
            },
        ]
        .iter()
        .map(|r| crate::wire::serial::encode(r).unwrap())
        .collect();
        let mut answered = 0;
        let mut lease = None;
        for _ in 0..Inputs::iterations() {
            let input = gen.input(&seeds);
            if let Ok(req) = crate::wire::serial::decode::<Request>(&input) {
                // Nothing waits: the fuzzed requests must not hang the test.
                let waits = match &req {
                    Request::Queue {
                        op: QueueOp::Put(_, w) | QueueOp::Get(w) | QueueOp::Join(w),
                        ..
                    } => w,
                    Request::Sync {
                        op:
                            SyncOp::Acquire(_, w)
                            | SyncOp::Down(w)
                            | SyncOp::WaitSet(w)
                            | SyncOp::BarrierWait(_, w),
                        ..
                    } => w,
                    // Takes its lock back without a deadline: may wait for another owner.
                    Request::Sync {
                        op: SyncOp::CondWait(..),
                        ..
                    } => continue,
                    _ => &Some(Duration::ZERO),
                };
                if waits.is_none_or(|w| w > Duration::from_millis(1)) {
                    continue;
                }
                let _ = server.store.handle(req, &mut lease, &|| false);
                answered += 1;
            }
        }
        assert!(answered > 0);
        assert!(server.store.consistent());
    }

    #[test]
    fn the_budget_is_given_back() {
        let budget = Budget {
            used: Mutex::new(0),
            freed: Waiters::default(),
            limit: 100,
        };
        let soon = Instant::now() + Duration::from_millis(1);
        assert!(budget.take(60, soon));
        assert!(!budget.take(60, soon), "over the limit");
        {
            let _held = Held {
                budget: &budget,
                n: 60,
            };
        }
        assert!(budget.take(100, soon));
    }
}
