//! The client side of a manager: one process's connections to one manager, the calls made
//! on them, and what every proxy shares (its token, its type tag).

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::messages::{Bytes, Failure, Owner, Request, Response, Wait};
use super::proto::{self, Deadlined, Session};
use super::stream::Stream;
use super::FOREVER;
use crate::error::{Error, Result};
use crate::sys::wait::lock;

/// One authenticated connection to a manager.
pub(crate) struct Conn {
    /// Buffered: a reply comes in one read, length, body and tag together.
    reader: std::io::BufReader<Deadlined<Stream>>,
    writer: Stream,
    session: Session,
    /// The longest request the server reads (its welcome says).
    max_message: usize,
}

/// Why a handshake failed when the server closed the connection during it.
const CUT_SHORT: &str = "the server closed the connection during the handshake";

/// Requests up to this long go out under the write timeout set at connect (see `call`).
const SMALL_WRITE: u64 = 32 * 1024;

/// Connections kept open for later calls, at most; calls running at once beyond this open
/// connections of their own and close them after.
const MAX_IDLE: usize = 16;

/// One process's client of one manager, shared by all its proxies of that manager. Each call
/// takes a connection of its own (an idle one, or a new one), so calls from many threads
/// neither wait for each other nor share a deadline.
pub(crate) struct Client {
    pub(crate) address: String,
    pub(crate) authkey: Vec<u8>,
    pub(crate) timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Who this client is to the server (random), for the locks it holds.
    id: u64,
    /// The process it belongs to: a forked child makes a client of its own.
    pid: u32,
    /// A connection held open, unused, while this client may hold locks: the server
    /// releases them when it closes (when this process dies).
    lease: Mutex<Option<Conn>>,
}

/// The process-wide client for a manager, so proxies share its connections.
pub(crate) fn client_for(address: &str, authkey: &[u8], timeout: Duration) -> Arc<Client> {
    static CLIENTS: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());
    let mut clients = lock(&CLIENTS);
    clients.retain(|w| w.strong_count() > 0);
    if let Some(c) = clients.iter().filter_map(Weak::upgrade).find(|c| {
        c.address == address
            && c.authkey == authkey
            && c.timeout == timeout
            && c.pid == std::process::id()
    }) {
        return c;
    }
    let c = Arc::new(Client {
        address: address.to_owned(),
        authkey: authkey.to_vec(),
        timeout,
        idle: Mutex::new(Vec::new()),
        id: client_id(),
        pid: std::process::id(),
        lease: Mutex::new(None),
    });
    clients.push(Arc::downgrade(&c));
    c
}

pub(crate) fn lost(what: impl std::fmt::Display) -> Error {
    Error::ManagerLost(what.to_string())
}

/// What is left until `deadline`, or `Timeout` if nothing.
fn left(deadline: Instant) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Error::Timeout)
    } else {
        Ok(left)
    }
}

/// An error of a call as the caller sees it: a socket timeout is a `Timeout` (the manager
/// may only be slow), another I/O failure means the manager is gone.
fn call_error(e: Error, address: &str) -> Error {
    match e {
        Error::Io(io) if proto::is_timeout(&io) => Error::Timeout,
        Error::Io(io) => lost(format!("manager {address}: {io}")),
        e => e,
    }
}

impl Client {
    /// Opens and authenticates a connection, all of it by `deadline`.
    fn connect(&self, deadline: Instant) -> Result<Conn> {
        let s = if let Some(name) = self.address.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            let s = UnixStream::connect_addr(&addr)
                .map_err(|e| lost(format!("cannot connect to manager {}: {e}", self.address)))?;
            Stream::Unix(s)
        } else {
            let addrs = self.address.to_socket_addrs().map_err(|e| {
                Error::InvalidArgument(format!("bad address {}: {e}", self.address))
            })?;
            let mut last = None;
            let mut found = None;
            for a in addrs {
                match TcpStream::connect_timeout(&a, left(deadline)?) {
                    Ok(s) => {
                        found = Some(s);
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            let s = match (found, last) {
                (Some(s), _) => s,
                (None, Some(e)) if proto::is_timeout(&e) => return Err(Error::Timeout),
                (None, last) => {
                    return Err(lost(format!(
                        "cannot connect to manager {}: {}",
                        self.address,
                        last.map_or("no address".into(), |e| e.to_string())
                    )))
                }
            };
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        };
        let messages = s.messages();
        let writer = s.try_clone()?;
        writer.set_write_timeout(Some(left(deadline)?))?;
        let mut reader = std::io::BufReader::new(Deadlined::new(s));
        reader.get_mut().set_deadline(Some(deadline));
        let mut both = Both {
            r: &mut reader,
            w: &writer,
        };
        let mut session =
            proto::connect(&mut both, &self.authkey, messages).map_err(|e| match e {
                Error::Io(io)
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    lost(format!("manager {}: {CUT_SHORT}", self.address))
                }
                e => call_error(e, &self.address),
            })?;
        let welcome: super::messages::Welcome =
            proto::recv(&mut reader, &mut session, 1 << 16, |_| Ok(()))
                .map_err(|e| call_error(e, &self.address))?
                .ok_or_else(|| lost(format!("manager {} closed the connection", self.address)))?;
        Ok(Conn {
            reader,
            writer,
            session,
            max_message: welcome.max_message as usize,
        })
    }

    /// A connection for one call: an idle one, or a new one. A handshake the server cut
    /// short (it evicts the oldest when many peers are in their handshake, as under a flood
    /// of connections) is tried again while the deadline allows.
    fn take(&self, deadline: Instant) -> Result<Conn> {
        if let Some(c) = lock(&self.idle).pop() {
            return Ok(c);
        }
        self.connect_retrying(deadline)
    }

    /// A new connection, its handshake tried again while the server cuts it short and the
    /// deadline allows.
    pub(crate) fn connect_retrying(&self, deadline: Instant) -> Result<Conn> {
        let mut pause = Duration::from_millis(5);
        loop {
            match self.connect(deadline) {
                Err(Error::ManagerLost(why)) if why.contains(CUT_SHORT) => {
                    std::thread::sleep(pause.min(left(deadline)?));
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    pub(crate) fn give_back(&self, c: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Closes the idle connections (the manager was shut down).
    pub(crate) fn forget(&self) {
        lock(&self.idle).clear();
        lock(&self.lease).take();
    }

    /// This client's identity for a lock or barrier call by the current thread, its lease
    /// opened first if need be.
    pub(crate) fn owner(&self) -> Result<Owner> {
        let mut lease = lock(&self.lease);
        if lease.is_none() {
            let deadline = Instant::now() + self.timeout;
            let mut c = self.connect_retrying(deadline)?;
            let r = self
                .exchange(&mut c, &Request::Lease { client: self.id }, deadline)
                .map_err(|e| call_error(e, &self.address))?;
            done(r)?;
            *lease = Some(c);
        }
        Ok(Owner {
            client: self.id,
            thread: thread_id(),
        })
    }

    pub(crate) fn call(&self, req: &Request) -> Result<Response> {
        self.call_waiting(req, Some(Duration::ZERO))
    }

    /// A call that may wait on the server for `wait` (`None`: as long as it takes) before it
    /// answers: the round trip's own limit comes on top.
    pub(crate) fn call_waiting(&self, req: &Request, wait: Wait) -> Result<Response> {
        let deadline = Instant::now()
            + wait
                .map_or(FOREVER, |w| w.min(FOREVER))
                .saturating_add(self.timeout)
                .min(FOREVER);
        let mut c = self.take(deadline)?;
        match self.exchange(&mut c, req, deadline) {
            Ok(resp) => {
                self.give_back(c);
                match resp {
                    Response::Refused(why) => Err(Error::InvalidArgument(why)),
                    resp => Ok(resp),
                }
            }
            // Refused before anything was written: the connection is as good as before.
            Err(e @ (Error::Serialization { .. } | Error::TooLarge { .. })) => {
                self.give_back(c);
                Err(e)
            }
            Err(e) => Err(call_error(e, &self.address)),
        }
    }

    /// One request and its response on `c`, by `deadline`.
    fn exchange(&self, c: &mut Conn, req: &Request, deadline: Instant) -> Result<Response> {
        let r =
            (|| {
                // A request the socket's buffer takes whole cannot block (the connection
                // holds no unanswered request), and the timeout set at connect bounds it
                // anyway; a larger one may block, and gets what is left of this call's.
                if crate::wire::serial::encoded_len(req).map_or(true, |n| n > SMALL_WRITE) {
                    c.writer.set_write_timeout(Some(left(deadline)?))?;
                }
                proto::send(&mut c.writer, &mut c.session, req, c.max_message)?;
                c.reader.get_mut().poll_next();
                c.reader.get_mut().set_deadline(Some(deadline));
                // A closed connection is an error here, so that it is not given back.
                proto::recv::<Response>(&mut c.reader, &mut c.session, proto::MAX_MESSAGE, |_| {
                    Ok(())
                })?
                .ok_or_else(|| lost(format!("manager {} closed the connection", self.address)))
            })();
        r
    }
}

/// A connection's two halves as one stream, for the handshake.
struct Both<'a> {
    r: &'a mut std::io::BufReader<Deadlined<Stream>>,
    w: &'a Stream,
}

impl Read for Both<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for Both<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.w;
        w.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected manager response {r:?}"))
}

pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    crate::wire::serial::encode(v)
        .map(ByteBuf::from)
        .map_err(|e| Error::serialization("a manager value", e))
}

pub(crate) fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    crate::wire::serial::decode(b).map_err(|e| Error::serialization("a manager value", e))
}

pub(crate) fn dec_opt<T: DeserializeOwned>(r: Response) -> Result<Option<T>> {
    match r {
        Response::Value(v) => v.map(|b| dec(&b)).transpose(),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn dec_all<T: DeserializeOwned>(r: Response) -> Result<Vec<T>> {
    match r {
        Response::Values(vs) => vs.iter().map(|b| dec(b)).collect(),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn done(r: Response) -> Result<()> {
    match r {
        Response::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn boolean(r: Response) -> Result<bool> {
    match r {
        Response::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn len(r: Response) -> Result<usize> {
    match r {
        Response::Len(n) => Ok(n as usize),
        other => Err(unexpected(other)),
    }
}

/// Runs a read-compute-swap `attempt` until the swap takes (`Some`), as the sort of a list
/// and the update of a value do: a change by another client in between makes it start
/// over, so nothing concurrent is lost. After 10,000 such changes in a row, `Timeout`.
pub(crate) fn until_swapped<R>(mut attempt: impl FnMut() -> Result<Option<R>>) -> Result<R> {
    for _ in 0..10_000 {
        if let Some(r) = attempt()? {
            return Ok(r);
        }
    }
    Err(Error::Timeout)
}

/// The error a [`Failure`] stands for.
pub(crate) fn failure(f: Failure, what: &'static str) -> Error {
    match f {
        Failure::Timeout => Error::Timeout,
        Failure::Full => Error::Full,
        Failure::Empty => Error::Empty,
        Failure::Closed => Error::Closed,
        Failure::NotHeld => Error::NotHeld,
        Failure::AlreadyHeld => Error::AlreadyHeld,
        Failure::ReleasedTooOften => Error::ReleasedTooOften { what },
        Failure::BrokenBarrier => Error::BrokenBarrier,
        Failure::OwnerDied => Error::OwnerDied,
        Failure::Panicked(message) => Error::TaskPanicked {
            task: what.to_owned(),
            message,
            backtrace: None,
        },
    }
}

/// `Done`, or the failure it was instead.
pub(crate) fn done_or(r: Response, what: &'static str) -> Result<()> {
    match r {
        Response::Done => Ok(()),
        Response::Failed(f) => Err(failure(f, what)),
        other => Err(unexpected(other)),
    }
}

/// A random identity for a client, so that the server tells the clients of many processes
/// and machines apart.
fn client_id() -> u64 {
    let mut b = [0u8; 8];
    match proto::random_key() {
        Ok(k) => b.copy_from_slice(&k[..8]),
        // No randomness: time and pid still differ between live processes.
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64;
            b = (t ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
        }
    }
    u64::from_le_bytes(b)
}

/// A number for the current thread, unique in this process (a lock's holder is a thread).
fn thread_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static ID: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ID.with(|id| *id)
}

/// A stable tag for a proxy of `kind` holding `T`: the server refuses to open a named
/// object for another type's proxy, and a proxy received as another type fails to decode.
/// (Type names are the same in builds of the same code.)
pub(crate) fn tag_of<T: ?Sized>(kind: &str) -> u64 {
    fnv(&[
        kind.as_bytes(),
        b"\0",
        std::any::type_name::<T>().as_bytes(),
    ])
}

/// 64-bit FNV-1a of the parts, in order.
pub(crate) fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// What a proxy is when it travels: where the manager is, the key, which object, and the
/// proxy's type tag.
#[derive(Serialize)]
struct TokenRef<'a> {
    address: &'a str,
    #[serde(with = "serde_bytes")]
    authkey: &'a [u8],
    timeout: Duration,
    id: u64,
    tag: u64,
}

/// The same, received.
#[derive(Deserialize)]
struct Token {
    address: String,
    authkey: ByteBuf,
    timeout: Duration,
    id: u64,
    tag: u64,
}

/// A proxy's connection to its object: the process's client of the manager, and the
/// object's id there. Every proxy type wraps one.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) client: Arc<Client>,
    pub(crate) id: u64,
}

impl Handle {
    /// Opens (creates, or with a name finds) an object of `kind` for a proxy tagged `tag`.
    pub(crate) fn open(
        client: &Arc<Client>,
        kind: super::messages::Kind,
        name: Option<&str>,
        tag: u64,
    ) -> Result<Handle> {
        match client.call(&Request::Open {
            kind,
            name: name.map(str::to_owned),
            tag,
        })? {
            Response::Id(id) => Ok(Handle {
                client: client.clone(),
                id,
            }),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) fn serialize<S: serde::Serializer>(
        &self,
        tag: u64,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        TokenRef {
            address: &self.client.address,
            authkey: &self.client.authkey,
            timeout: self.client.timeout,
            id: self.id,
            tag,
        }
        .serialize(s)
    }

    /// The handle a token names, if it was made for a proxy of this `tag`.
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        tag: u64,
        proxy: &str,
        d: D,
    ) -> std::result::Result<Handle, D::Error> {
        let t = Token::deserialize(d)?;
        if t.tag != tag {
            return Err(serde::de::Error::custom(format!(
                "a manager proxy of another type received as {proxy}"
            )));
        }
        // A zero timeout cannot be set on a socket.
        let timeout = t.timeout.clamp(Duration::from_millis(1), FOREVER);
        Ok(Handle {
            client: client_for(&t.address, &t.authkey, timeout),
            id: t.id,
        })
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("manager", &self.client.address)
            .field("id", &self.id)
            .finish()
    }
}

/// A proxy's item types: no data, and `Send`/`Sync` whatever they are (proxies hold none).
pub(crate) type Marker<T> = PhantomData<fn(T) -> T>;

/// `Clone`, `Debug`, `Serialize` and `Deserialize` for a proxy `{ h: Handle, _t: Marker }`,
/// and its type tag (`kind` and its type parameters).
macro_rules! proxy_common {
    ($ty:ident $(< $($p:ident),+ >)?, $kind:literal) => {
        impl$(<$($p),+>)? $ty$(<$($p),+>)? {
            pub(crate) fn wrap(h: $crate::manager::client::Handle) -> Self {
                $ty { h, _t: ::std::marker::PhantomData }
            }

            pub(crate) fn tag() -> u64 {
                $crate::manager::client::tag_of::<($($($p,)+)?)>($kind)
            }
        }

        impl$(<$($p),+>)? Clone for $ty$(<$($p),+>)? {
            fn clone(&self) -> Self {
                $ty::wrap(self.h.clone())
            }
        }

        impl$(<$($p),+>)? std::fmt::Debug for $ty$(<$($p),+>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("manager", &self.h.client.address)
                    .field("id", &self.h.id)
                    .finish()
            }
        }

        impl$(<$($p),+>)? ::serde::Serialize for $ty$(<$($p),+>)? {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.h.serialize(Self::tag(), s)
            }
        }

        impl<'de, $($($p),+)?> ::serde::Deserialize<'de> for $ty$(<$($p),+>)? {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                $crate::manager::client::Handle::deserialize(Self::tag(), stringify!($ty), d)
                    .map($ty::wrap)
            }
        }
    };
}
pub(crate) use proxy_common;
