//! `Manager`: a server process holding shared dicts, lists, queues, locks, semaphores,
//! events, conditions, barriers, values, namespaces and `#[managed]` user objects that any
//! number of processes use through proxies, on this machine (an abstract Unix socket) or
//! across machines (TCP), authenticated with a shared key (Python's
//! `multiprocessing.Manager`).
//!
//! Every operation is one request to the server and is atomic there. Keys, values and items
//! travel encoded (`wire::serial`), so the server needs no types; proxies are typed. Proxies can be
//! sent anywhere a value can go: `Process` and pool task arguments, queue items, pipes. In
//! another process a proxy connects (once per process and manager) when first used.

pub(crate) mod client;
mod collections;
pub(crate) mod managed;
pub(crate) mod messages;
mod objects;
pub(crate) mod proto;
mod served;
pub(crate) mod server;
mod stream;

use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::spawn::WorkerProcess;
use crate::sys::wait::lock;
use client::{client_for, enc, Client, Handle};
pub use collections::{DictProxy, ListProxy};
pub use managed::{Managed, ManagedProxy};
use messages::Kind;
pub use served::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionGuardProxy, ConditionProxy, EventProxy,
    JoinableQueueProxy, LockGuardProxy, LockProxy, NamespaceProxy, QueueProxy, RLockProxy,
    SemaphoreProxy, ValueProxy,
};

/// How long a manager has to start and report its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit on one request's round trip (connecting included).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longer limits are this: a century is as good as forever, and an `Instant` holds it.
pub(crate) const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
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

    fn open(&self, kind: Kind, name: Option<&str>, tag: u64) -> Result<Handle> {
        Handle::open(&self.client, kind, name, tag)
    }

    /// A new, empty shared dict.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::wrap(self.open(
            Kind::Dict,
            None,
            DictProxy::<K, V>::tag(),
        )?))
    }

    /// The shared dict called `name`, created empty if there is none: how clients that
    /// connected separately find the same object. `InvalidArgument` if `name` is a list, or
    /// a dict of other key or value types.
    pub fn dict_named<K, V>(&self, name: &str) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::wrap(self.open(
            Kind::Dict,
            Some(name),
            DictProxy::<K, V>::tag(),
        )?))
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
        Ok(ListProxy::wrap(self.open(
            Kind::List,
            None,
            ListProxy::<T>::tag(),
        )?))
    }

    /// The shared list called `name`, created empty if there is none.
    pub fn list_named<T>(&self, name: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::wrap(self.open(
            Kind::List,
            Some(name),
            ListProxy::<T>::tag(),
        )?))
    }

    /// A new unbounded FIFO queue (Python's `manager.Queue()`).
    pub fn queue<T>(&self) -> Result<QueueProxy<T>> {
        self.queue_with_maxsize(0)
    }

    /// A new queue holding at most `maxsize` items (0: unbounded); `put` waits for room.
    pub fn queue_with_maxsize<T>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        let kind = Kind::Queue {
            maxsize: maxsize as u64,
            joinable: false,
        };
        Ok(QueueProxy::wrap(self.open(
            kind,
            None,
            QueueProxy::<T>::tag(),
        )?))
    }

    /// A new queue whose items are marked done by consumers, so producers can `join` it
    /// (Python's `manager.JoinableQueue()`); `maxsize` 0: unbounded.
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueueProxy<T>> {
        let kind = Kind::Queue {
            maxsize: maxsize as u64,
            joinable: true,
        };
        Ok(JoinableQueueProxy::wrap(self.open(
            kind,
            None,
            JoinableQueueProxy::<T>::tag(),
        )?))
    }

    /// A new lock (Python's `manager.Lock()`).
    pub fn lock(&self) -> Result<LockProxy> {
        let kind = Kind::Lock { recursive: false };
        Ok(LockProxy::wrap(self.open(kind, None, LockProxy::tag())?))
    }

    /// A new recursive lock: its holder may take it again (Python's `manager.RLock()`).
    pub fn rlock(&self) -> Result<RLockProxy> {
        let kind = Kind::Lock { recursive: true };
        Ok(RLockProxy::wrap(self.open(
            kind,
            None,
            RLockProxy::tag(),
        )?))
    }

    /// A new semaphore starting at `value` (Python's `manager.Semaphore(value)`).
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        let kind = Kind::Semaphore {
            value,
            bounded: false,
        };
        Ok(SemaphoreProxy::wrap(self.open(
            kind,
            None,
            SemaphoreProxy::tag(),
        )?))
    }

    /// A new semaphore that may not be released above `value`
    /// (Python's `manager.BoundedSemaphore(value)`).
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphoreProxy> {
        let kind = Kind::Semaphore {
            value,
            bounded: true,
        };
        Ok(BoundedSemaphoreProxy::wrap(self.open(
            kind,
            None,
            BoundedSemaphoreProxy::tag(),
        )?))
    }

    /// A new event, not set (Python's `manager.Event()`).
    pub fn event(&self) -> Result<EventProxy> {
        Ok(EventProxy::wrap(self.open(
            Kind::Event,
            None,
            EventProxy::tag(),
        )?))
    }

    /// A new condition variable with its own recursive lock (Python's `manager.Condition()`).
    pub fn condition(&self) -> Result<ConditionProxy> {
        Ok(ConditionProxy::wrap(self.open(
            Kind::Condition,
            None,
            ConditionProxy::tag(),
        )?))
    }

    /// A new barrier for `parties` parties (Python's `manager.Barrier(parties)`).
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        let kind = Kind::Barrier { parties };
        Ok(BarrierProxy::wrap(self.open(
            kind,
            None,
            BarrierProxy::tag(),
        )?))
    }

    /// A new shared value starting as `value` (Python's `manager.Value(typecode, value)`;
    /// any serde type here).
    pub fn value<T: Serialize>(&self, value: &T) -> Result<ValueProxy<T>> {
        let kind = Kind::Cell(enc(value)?);
        Ok(ValueProxy::wrap(self.open(
            kind,
            None,
            ValueProxy::<T>::tag(),
        )?))
    }

    /// A new namespace: named attributes of any serde types (Python's
    /// `manager.Namespace()`).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::wrap(self.open(
            Kind::Namespace,
            None,
            NamespaceProxy::tag(),
        )?))
    }

    /// Serves `T::default()` from the manager: its `#[managed]` methods, called through the
    /// proxy, run in the server process (Python's `MyManager.register('Maths', MathsClass)`
    /// then `manager.Maths()`).
    pub fn serve<T: Managed + Default>(&self) -> Result<T::Proxy> {
        self.serve_value(&T::default())
    }

    /// Serves a copy of `value` from the manager.
    pub fn serve_value<T: Managed>(&self, value: &T) -> Result<T::Proxy> {
        let kind = Kind::User {
            name: T::NAME.to_owned(),
            state: enc(value)?,
        };
        let h = self.open(kind, None, managed::tag_of_name(T::NAME))?;
        Ok(T::Proxy::from_object(managed::ObjectProxy::new(h, T::NAME)))
    }
}

impl std::fmt::Debug for ManagerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerClient")
            .field("address", &self.address())
            .finish()
    }
}
