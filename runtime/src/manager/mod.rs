//! `Manager`: a server process holding shared dicts and lists that any number of processes
//! use through proxies, on this machine (an abstract Unix socket) or across machines (TCP),
//! authenticated with a shared key (Python's `multiprocessing.Manager`).
//!
//! Every operation is one request to the server and is atomic there. Keys, values and items
//! travel encoded (`wire::serial`), so the server needs no types; proxies are typed. Proxies can be
//! sent anywhere a value can go: `Process` and pool task arguments, queue items, pipes. In
//! another process a proxy connects (once per process and manager) when first used.

pub(crate) mod proto;
pub(crate) mod server;
mod stream;

use std::io::{Read, Write};
use std::marker::PhantomData;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;

use crate::error::{Error, Result};
use crate::spawn::WorkerProcess;
use crate::sys::wait::lock;
use proto::{Bytes, Deadlined, DictOp, Kind, ListOp, Request, Response, Session};
use stream::Stream;

/// How long a manager has to start and report its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on one request's round trip (connecting included).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longer limits are this: a century is as good as forever, and an `Instant` holds it.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Default time a peer has for the handshake, and for each request once it began.
const DEFAULT_PEER_DEADLINE: Duration = Duration::from_secs(10);

/// Options for a new [`Manager`].
#[derive(Debug, Clone)]
pub struct ManagerBuilder {
    tcp: Option<String>,
    authkey: Option<Vec<u8>>,
    timeout: Duration,
    limits: server::Limits,
}

impl ManagerBuilder {
    /// Listen on this TCP address (`"127.0.0.1:0"` picks a free port; `"0.0.0.0:5000"`
    /// accepts other machines) instead of a local-only Unix socket.
    pub fn tcp(mut self, address: impl Into<String>) -> Self {
        self.tcp = Some(address.into());
        self
    }

    /// The key clients must prove they hold (default: 32 random bytes). Give clients on
    /// other machines the same key.
    pub fn authkey(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.authkey = Some(key.into());
        self
    }

    /// Limit on each request's round trip through this manager's proxies (default 60 s):
    /// past it, the call fails with `Timeout` instead of waiting for a stuck server.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        // Socket timeouts cannot be zero.
        self.timeout = timeout.clamp(Duration::from_millis(1), FOREVER);
        self
    }

    /// How long a peer may take over the handshake, and over each request once its first
    /// byte has arrived (default 10 s). A peer past it is disconnected: a client that
    /// connects and stalls, or sends part of a request and stalls, holds nothing for longer.
    /// Waiting between requests has no limit.
    pub fn peer_deadline(mut self, d: Duration) -> Self {
        self.limits.deadline = d.clamp(Duration::from_millis(1), FOREVER);
        self
    }

    /// The longest request the server reads (default and most 1 GiB): a longer one fails
    /// in the client with `TooLarge` before it is sent.
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.limits.max_message = bytes.min(proto::MAX_MESSAGE);
        self
    }

    /// Request bytes the server holds at once, all connections together (default 2 GiB).
    /// Memory is taken as bytes arrive, not as a request announces its length; a request
    /// that cannot get its memory within the peer deadline is dropped with its connection.
    /// At least 64 KiB.
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.limits.max_buffered = bytes.max(64 * 1024);
        self
    }

    /// Starts the server process and connects to it.
    pub fn start(self) -> Result<Manager> {
        crate::role::check_can_start_workers()?;
        let authkey = match self.authkey {
            Some(k) if k.is_empty() => {
                return Err(Error::InvalidArgument("an empty authkey".into()));
            }
            Some(k) => k,
            None => proto::random_key()?,
        };
        let (mut child, mut control) = crate::spawn::exec_child(crate::role::MANAGER_FD_ENV)?;
        let started = (|| {
            control.set_read_timeout(Some(START_TIMEOUT))?;
            proto::send_plain(
                &mut control,
                &server::Setup {
                    tcp: self.tcp.clone(),
                    authkey: authkey.clone(),
                    limits: self.limits,
                },
            )?;
            let reply = proto::recv_plain::<std::result::Result<String, String>>(&mut control)
                .map_err(|e| match e {
                    Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                        Error::WorkerStart("the manager did not start in time".into())
                    }
                    e => e,
                })?;
            control.set_read_timeout(None)?;
            match reply {
                Some(Ok(address)) => Ok(address),
                Some(Err(message)) => Err(Error::InvalidArgument(message)),
                None => Err(Error::WorkerStart(
                    "the manager process exited while starting".into(),
                )),
            }
        })();
        let address = match started {
            Ok(a) => a,
            Err(e) => {
                child.kill();
                child.reap(Duration::from_secs(5));
                return Err(e);
            }
        };
        let client = client_for(&address, &authkey, self.timeout);
        Ok(Manager {
            client: ManagerClient { client },
            pid: child.pid,
            server: Mutex::new(Some((child, control))),
        })
    }
}

/// A running manager: the server process and a client of it. Dropping it (or
/// [`shutdown`](Manager::shutdown)) stops the server; proxies then fail with
/// `ManagerLost`. The server also exits if this process dies.
///
/// Shared objects live as long as the manager (there is no reference counting across
/// processes, unlike Python's): create a few long-lived ones, or name them.
///
/// ```
/// use multiproc::prelude::*;
///
/// #[pool_task]
/// fn record(d: DictProxy<String, u32>, who: String, n: u32) {
///     d.insert(&who, &n).unwrap();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let m = Manager::new()?;
///     let d = m.dict::<String, u32>()?;
///     Process::spawn(record, (d.clone(), "child".to_string(), 7))?.join()?;
///     assert_eq!(d.get(&"child".to_string())?, Some(7));
///     Ok(())
/// }
/// ```
pub struct Manager {
    client: ManagerClient,
    pid: u32,
    server: Mutex<Option<(WorkerProcess, UnixStream)>>,
}

impl Manager {
    /// Starts a manager on a local Unix socket with a random key.
    pub fn new() -> Result<Manager> {
        Manager::builder().start()
    }

    /// Options: TCP address, key, timeout.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder {
            tcp: None,
            authkey: None,
            timeout: DEFAULT_TIMEOUT,
            limits: server::Limits {
                deadline: DEFAULT_PEER_DEADLINE,
                max_message: proto::MAX_MESSAGE,
                max_buffered: 2 << 30,
            },
        }
    }

    /// Connects to a running manager, from any process or machine: `address` as its
    /// [`address`](ManagerClient::address) gives it (`"host:port"`, or `"@name"` for a local
    /// one), `authkey` the manager's key. Fails with `AuthenticationFailed` on a wrong key.
    pub fn connect(address: &str, authkey: &[u8]) -> Result<ManagerClient> {
        let client = client_for(address, authkey, DEFAULT_TIMEOUT);
        let c = ManagerClient { client };
        // Connect now, so a bad address or key is reported here.
        let first = c
            .client
            .connect_retrying(Instant::now() + c.client.timeout)?;
        c.client.give_back(first);
        Ok(c)
    }

    /// The key clients must hold.
    pub fn authkey(&self) -> &[u8] {
        &self.client.client.authkey
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server (waiting up to 5 s for it to exit, then killing it). Proxies fail
    /// with `ManagerLost` afterwards. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        if let Some((mut child, control)) = lock(&self.server).take() {
            drop(control);
            child.reap(Duration::from_secs(5));
        }
        self.client.client.forget();
    }
}

impl std::ops::Deref for Manager {
    type Target = ManagerClient;
    fn deref(&self) -> &ManagerClient {
        &self.client
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.address())
            .field("pid", &self.pid)
            .finish()
    }
}

/// A connection to a manager: creates and opens its shared objects. A [`Manager`] is one
/// (through `Deref`); [`Manager::connect`] gives one for a manager started elsewhere.
#[derive(Clone)]
pub struct ManagerClient {
    client: Arc<Client>,
}

impl ManagerClient {
    /// The manager's address, for [`Manager::connect`].
    pub fn address(&self) -> &str {
        &self.client.address
    }

    fn open(&self, kind: Kind, name: Option<&str>) -> Result<u64> {
        match self.client.call(&Request::Open {
            kind,
            name: name.map(str::to_owned),
        })? {
            Response::Id(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// A new, empty shared dict.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(
            self.client.clone(),
            self.open(Kind::Dict, None)?,
        ))
    }

    /// The shared dict called `name`, created empty if there is none: how clients that
    /// connected separately find the same object. `InvalidArgument` if `name` is a list.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(
            self.client.clone(),
            self.open(Kind::Dict, Some(name))?,
        ))
    }

    /// A new shared dict holding `pairs` (Python's `manager.dict(mapping)`).
    pub fn dict_from<'a, K, V>(
        &self,
        pairs: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned + 'a,
        V: Serialize + DeserializeOwned + 'a,
    {
        let d = self.dict()?;
        d.update(pairs)?;
        Ok(d)
    }

    /// A new shared list holding `items` (Python's `manager.list(range(10))`).
    pub fn list_from<'a, T>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<ListProxy<T>>
    where
        T: Serialize + DeserializeOwned + 'a,
    {
        let l = self.list()?;
        l.extend(items)?;
        Ok(l)
    }

    /// A new, empty shared list.
    pub fn list<T>(&self) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(
            self.client.clone(),
            self.open(Kind::List, None)?,
        ))
    }

    /// The shared list called `name`, created empty if there is none.
    pub fn list_named<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(
            self.client.clone(),
            self.open(Kind::List, Some(name))?,
        ))
    }
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("address", &self.address())
            .finish()
    }
}

// --- the client side ---------------------------------------------------------------------

/// One authenticated connection to a manager.
struct Conn {
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
struct Client {
    address: String,
    authkey: Vec<u8>,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

/// The process-wide client for a manager, so proxies share its connections.
fn client_for(address: &str, authkey: &[u8], timeout: Duration) -> Arc<Client> {
    static CLIENTS: Mutex<Vec<Weak<Client>>> = Mutex::new(Vec::new());
    let mut clients = lock(&CLIENTS);
    clients.retain(|w| w.strong_count() > 0);
    if let Some(c) = clients
        .iter()
        .filter_map(Weak::upgrade)
        .find(|c| c.address == address && c.authkey == authkey && c.timeout == timeout)
    {
        return c;
    }
    let c = Arc::new(Client {
        address: address.to_owned(),
        authkey: authkey.to_vec(),
        timeout,
        idle: Mutex::new(Vec::new()),
    });
    clients.push(Arc::downgrade(&c));
    c
}

fn lost(what: impl std::fmt::Display) -> Error {
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
        let writer = s.try_clone()?;
        writer.set_write_timeout(Some(left(deadline)?))?;
        let mut reader = std::io::BufReader::new(Deadlined::new(s));
        reader.get_mut().set_deadline(Some(deadline));
        let mut both = Both {
            r: &mut reader,
            w: &writer,
        };
        let mut session = proto::connect(&mut both, &self.authkey).map_err(|e| match e {
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
        let welcome: proto::Welcome = proto::recv(&mut reader, &mut session, 1 << 16, |_| Ok(()))
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
    fn connect_retrying(&self, deadline: Instant) -> Result<Conn> {
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

    fn give_back(&self, c: Conn) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(c);
        }
    }

    /// Closes the idle connections (the manager was shut down).
    fn forget(&self) {
        lock(&self.idle).clear();
    }

    fn call(&self, req: &Request) -> Result<Response> {
        let deadline = Instant::now() + self.timeout;
        let mut c = self.take(deadline)?;
        let r =
            (|| {
                // A request the socket's buffer takes whole cannot block (the connection
                // holds no unanswered request), and the timeout set at connect bounds it
                // anyway; a larger one may block, and gets what is left of this call's.
                if crate::wire::serial::encoded_len(req).map_or(true, |n| n > SMALL_WRITE) {
                    c.writer.set_write_timeout(Some(left(deadline)?))?;
                }
                proto::send(&mut c.writer, &mut c.session, req, c.max_message)?;
                crate::sys::wait::poll_briefly(c.writer.as_fd());
                c.reader.get_mut().set_deadline(Some(deadline));
                // A closed connection is an error here, so that it is not given back.
                proto::recv::<Response>(&mut c.reader, &mut c.session, proto::MAX_MESSAGE, |_| {
                    Ok(())
                })?
                .ok_or_else(|| lost(format!("manager {} closed the connection", self.address)))
            })();
        match r {
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

fn unexpected(r: Response) -> Error {
    Error::Protocol(format!("unexpected manager response {r:?}"))
}

fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    crate::wire::serial::encode(v)
        .map(ByteBuf::from)
        .map_err(|e| Error::serialization("a manager value", e))
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    crate::wire::serial::decode(b).map_err(|e| Error::serialization("a manager value", e))
}

fn dec_opt<T: DeserializeOwned>(r: Response) -> Result<Option<T>> {
    match r {
        Response::Value(v) => v.map(|b| dec(&b)).transpose(),
        other => Err(unexpected(other)),
    }
}

fn dec_all<T: DeserializeOwned>(r: Response) -> Result<Vec<T>> {
    match r {
        Response::Values(vs) => vs.iter().map(|b| dec(b)).collect(),
        other => Err(unexpected(other)),
    }
}

fn done(r: Response) -> Result<()> {
    match r {
        Response::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn boolean(r: Response) -> Result<bool> {
    match r {
        Response::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

fn len(r: Response) -> Result<usize> {
    match r {
        Response::Len(n) => Ok(n as usize),
        other => Err(unexpected(other)),
    }
}

/// What a proxy is when it travels: where the manager is, the key, and which object.
#[derive(Serialize)]
struct TokenRef<'a> {
    address: &'a str,
    #[serde(with = "serde_bytes")]
    authkey: &'a [u8],
    timeout: Duration,
    id: u64,
}

/// The same, received.
#[derive(Deserialize)]
struct Token {
    address: String,
    authkey: ByteBuf,
    timeout: Duration,
    id: u64,
}

fn token(client: &Client, id: u64) -> TokenRef<'_> {
    TokenRef {
        address: &client.address,
        authkey: &client.authkey,
        timeout: client.timeout,
        id,
    }
}

fn from_token(t: Token) -> (Arc<Client>, u64) {
    // A zero timeout cannot be set on a socket.
    let timeout = t.timeout.clamp(Duration::from_millis(1), FOREVER);
    (client_for(&t.address, &t.authkey, timeout), t.id)
}

/// A proxy's item types: no data, and `Send`/`Sync` whatever they are (proxies hold none).
type Marker<T> = PhantomData<fn(T) -> T>;

macro_rules! proxy_common {
    ($ty:ident < $($p:ident),+ >) => {
        impl<$($p),+> $ty<$($p),+> {
            fn new(client: Arc<Client>, id: u64) -> Self {
                $ty { client, id, _t: PhantomData }
            }
        }

        impl<$($p),+> Clone for $ty<$($p),+> {
            fn clone(&self) -> Self {
                $ty::new(self.client.clone(), self.id)
            }
        }

        impl<$($p),+> std::fmt::Debug for $ty<$($p),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("manager", &self.client.address)
                    .field("id", &self.id)
                    .finish()
            }
        }

        impl<$($p),+> Serialize for $ty<$($p),+> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                token(&self.client, self.id).serialize(s)
            }
        }

        impl<'de, $($p),+> Deserialize<'de> for $ty<$($p),+> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let (client, id) = from_token(Token::deserialize(d)?);
                Ok($ty::new(client, id))
            }
        }
    };
}

/// A dict held by a [`Manager`] (Python's `DictProxy`). Keys keep their insertion order.
/// Keys are compared by their encoding, so use key types whose equal values encode alike
/// (integers, strings, tuples of them; not floats that may be `-0.0`).
pub struct DictProxy<K, V> {
    client: Arc<Client>,
    id: u64,
    _t: Marker<(K, V)>,
}

proxy_common!(DictProxy<K, V>);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    fn call(&self, op: DictOp) -> Result<Response> {
        self.client.call(&Request::Dict { id: self.id, op })
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Get(enc(key)?))?)
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Insert(enc(key)?, enc(value)?))?)
    }

    /// Removes `key`; returns its value (Python's `pop`).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Remove(enc(key)?))?)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        match self.call(DictOp::Contains(enc(key)?))? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Inserts every pair in one atomic step (Python's `update`); later pairs win.
    pub fn update<'a>(&self, pairs: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>>>()?;
        done(self.call(DictOp::Update(pairs))?)
    }

    /// Removes `key` and returns its value, or `default` if it had none (Python's
    /// `pop(key, default)`; [`remove`](DictProxy::remove) is `pop` without one).
    pub fn pop_or(&self, key: &K, default: V) -> Result<V> {
        Ok(self.remove(key)?.unwrap_or(default))
    }

    /// The value for `key`, inserting `default` first if there is none, in one atomic step
    /// (Python's `setdefault`).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        dec_opt(self.call(DictOp::SetDefault(enc(key)?, enc(default)?))?)?
            .ok_or_else(|| Error::Protocol("setdefault returned nothing".into()))
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        len(self.call(DictOp::Len)?)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order (a snapshot).
    pub fn keys(&self) -> Result<Vec<K>> {
        dec_all(self.call(DictOp::Keys)?)
    }

    /// The values, in insertion order (a snapshot).
    pub fn values(&self) -> Result<Vec<V>> {
        dec_all(self.call(DictOp::Values)?)
    }

    /// The entries, in insertion order (a snapshot).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.call(DictOp::Items)? {
            Response::Items(items) => items.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        done(self.call(DictOp::Clear)?)
    }
}

/// A list held by a [`Manager`] (Python's `ListProxy`). Indices may be negative, counting
/// from the end, as in Python.
pub struct ListProxy<T> {
    client: Arc<Client>,
    id: u64,
    _t: Marker<T>,
}

proxy_common!(ListProxy<T>);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn call(&self, op: ListOp) -> Result<Response> {
        self.client.call(&Request::List { id: self.id, op })
    }

    /// Appends an item (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        done(self.call(ListOp::Push(enc(item)?))?)
    }

    /// Appends several items in one atomic step.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let items = items.into_iter().map(enc).collect::<Result<Vec<_>>>()?;
        done(self.call(ListOp::Extend(items))?)
    }

    /// The item at `index`, if it is in range.
    pub fn get(&self, index: i64) -> Result<Option<T>> {
        dec_opt(self.call(ListOp::Get(index))?)
    }

    /// Replaces the item at `index`; `InvalidArgument` if out of range.
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        done(self.call(ListOp::Set(index, enc(item)?))?)
    }

    /// Inserts before `index` (past either end: at that end, as in Python).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        done(self.call(ListOp::Insert(index, enc(item)?))?)
    }

    /// Removes and returns the last item, if any.
    pub fn pop(&self) -> Result<Option<T>> {
        dec_opt(self.call(ListOp::Pop(None))?)
    }

    /// Removes and returns the item at `index`; `InvalidArgument` if out of range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        dec_opt(self.call(ListOp::Pop(Some(index)))?)?
            .ok_or_else(|| Error::Protocol("pop returned nothing".into()))
    }

    /// Number of items.
    pub fn len(&self) -> Result<usize> {
        len(self.call(ListOp::Len)?)
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// All items (a snapshot).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        dec_all(self.call(ListOp::All)?)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        done(self.call(ListOp::Clear)?)
    }

    /// Reverses the list in place, in one atomic step.
    pub fn reverse(&self) -> Result<()> {
        done(self.call(ListOp::Reverse)?)
    }

    /// Removes the first item equal to `item`: true if there was one (Python's `remove`,
    /// which raises instead). Items compare by their encoding, as dict keys do.
    pub fn remove(&self, item: &T) -> Result<bool> {
        boolean(self.call(ListOp::Remove(enc(item)?))?)
    }

    /// The position of the first item equal to `item` (Python's `index`, which raises
    /// where this gives `None`).
    pub fn index(&self, item: &T) -> Result<Option<usize>> {
        match self.call(ListOp::Index(enc(item)?))? {
            Response::Position(p) => Ok(p.map(|p| p as usize)),
            other => Err(unexpected(other)),
        }
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        len(self.call(ListOp::Count(enc(item)?))?)
    }

    /// Sorts the list (stable, by `Ord`) as one atomic change: the server compares bytes,
    /// not values, so the client sorts a snapshot and the server swaps it in only if the
    /// list is still that snapshot; a change in between (another process's push) makes it
    /// sort again, so nothing is lost. After 10,000 changes in a row it gives up
    /// with `Error::Timeout`.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// [`sort`](ListProxy::sort) by a comparison function.
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> {
        const SORT_ATTEMPTS: usize = 10_000;
        for _ in 0..SORT_ATTEMPTS {
            let snapshot = match self.call(ListOp::All)? {
                Response::Values(vs) => vs,
                other => return Err(unexpected(other)),
            };
            let mut items: Vec<(T, usize)> = snapshot
                .iter()
                .enumerate()
                .map(|(i, b)| Ok((dec::<T>(b)?, i)))
                .collect::<Result<_>>()?;
            items.sort_by(|a, b| compare(&a.0, &b.0));
            let sorted = items.iter().map(|&(_, i)| snapshot[i].clone()).collect();
            if boolean(self.call(ListOp::ReplaceIf(snapshot, sorted))?)? {
                return Ok(());
            }
        }
        Err(Error::Timeout)
    }
}
