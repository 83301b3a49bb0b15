//! The manager server's objects and what each request does to them.
//!
//! Every object lives in one table under one mutex; an operation holds it only while it
//! looks and changes, never while it waits. A blocking operation (a queue's `get`, a lock's
//! `acquire`, a condition's `wait`) runs on its connection's thread: it waits on its object's
//! condition variable, which every change to the object signals, so calls on other
//! connections (other threads of the same client, other clients) go on meanwhile.
//!
//! Locks and barrier waits belong to a client, known by its lease ([`Request::Lease`]):
//! when the last lease connection of a client closes (the process died, or dropped its
//! last proxy), [`Store::lease_ended`] releases the locks it held (the next acquirer is
//! told, as with a local lock whose holder died), drops its condition waits, and breaks the
//! barriers it was waiting at.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use indexmap::IndexMap;

use super::managed::{self, Dispatch};
use super::messages::{
    Bytes, CellOp, DictOp, Failure, Kind, ListOp, NamespaceOp, Owner, QueueOp, Request, Response,
    SyncOp, Wait,
};
use crate::sys::wait::Waiters;

struct QueueState {
    items: VecDeque<Bytes>,
    maxsize: usize,
    joinable: bool,
    /// Items put and not yet marked done (joinable queues).
    unfinished: u64,
    closed: bool,
}

#[derive(Default)]
struct LockState {
    holder: Option<Owner>,
    /// Times the holder took it (more than once for a recursive lock).
    count: u32,
    recursive: bool,
    /// Its holder died holding it: the next acquirer is told.
    abandoned: bool,
}

impl LockState {
    /// Takes the lock if it is free (or, recursive, held by `who`): `None` if it is not.
    fn try_take(&mut self, who: Owner) -> Option<Response> {
        match self.holder {
            None => {
                self.holder = Some(who);
                self.count = 1;
                let owner_died = std::mem::take(&mut self.abandoned);
                Some(Response::Acquired { owner_died })
            }
            Some(h) if h == who && self.recursive => {
                self.count = self.count.saturating_add(1);
                Some(Response::Acquired { owner_died: false })
            }
            Some(h) if h == who => Some(Response::Failed(Failure::AlreadyHeld)),
            Some(_) => None,
        }
    }

    fn release(&mut self, who: Owner) -> Response {
        if self.holder != Some(who) {
            return Response::Failed(Failure::NotHeld);
        }
        self.count -= 1;
        if self.count == 0 {
            self.holder = None;
        }
        Response::Done
    }

    fn drop_client(&mut self, client: u64) {
        if self.holder.is_some_and(|h| h.client == client) {
            self.holder = None;
            self.count = 0;
            self.abandoned = true;
        }
    }
}

#[derive(Default)]
struct ConditionState {
    lock: LockState,
    /// Tickets of the waiters, oldest first, with their clients.
    waiters: VecDeque<(u64, u64)>,
    /// Tickets notified and not yet back.
    notified: HashSet<u64>,
    next_ticket: u64,
}

struct BarrierState {
    parties: u32,
    /// Clients of the parties waiting now, in arrival order.
    waiting: Vec<u64>,
    generation: u64,
    broken: bool,
    /// Generations that ended by a `reset` rather than by all parties arriving (rare).
    reset: HashSet<u64>,
}

impl BarrierState {
    fn break_it(&mut self) {
        self.broken = true;
        self.waiting.clear();
    }
}

enum Obj {
    Dict(IndexMap<Bytes, Bytes>),
    List(Vec<Bytes>),
    Queue(QueueState),
    Lock(LockState),
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    Event(bool),
    Condition(ConditionState),
    Barrier(BarrierState),
    Cell(Bytes),
    Namespace(BTreeMap<String, (u64, Bytes)>),
    /// A `#[managed]` object: its own mutex, so a long method holds up no other object.
    User(Arc<Mutex<Box<dyn Dispatch>>>),
}

struct Entry {
    obj: Obj,
    kind: Kind,
    tag: u64,
    /// Signalled on every change to the object (and when a client's lease ends); a change
    /// nobody waits for makes no system call.
    changed: Arc<Waiters>,
}

#[derive(Default)]
struct Objects {
    next_id: u64,
    by_id: HashMap<u64, Entry>,
    by_name: HashMap<String, u64>,
    /// Open lease connections per client.
    leases: HashMap<u64, usize>,
}

/// What an operation that may wait says after a look at its object.
enum Step {
    Done(Response),
    /// Not yet: wait for a change, until this instant (`None`: as long as it takes).
    Until(Option<Instant>),
    /// The same, after changing the object (a condition wait gave up its lock): others
    /// waiting on it look again.
    ChangedUntil(Option<Instant>),
}

/// How often a waiting operation looks whether its caller is still there.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// The instant a wait of `wait` from now ends (`None`: never).
fn deadline(wait: Wait) -> Option<Instant> {
    wait.and_then(|w| Instant::now().checked_add(w))
}

fn passed(d: Option<Instant>) -> bool {
    d.is_some_and(|d| Instant::now() >= d)
}

/// The objects of one server.
#[derive(Default)]
pub(crate) struct Store {
    objects: Mutex<Objects>,
}

fn refused_id(what: &str, id: u64) -> Response {
    Response::Refused(format!("no shared {what} with id {id}"))
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Objects> {
        crate::sys::wait::lock(&self.objects)
    }

    /// Answers one request. `lease` is the client this connection is a lease of, set by
    /// a `Lease` request; `peer_gone` tells whether the connection's peer hung up (asked
    /// of a request that waited, before it takes anything: a `get` whose caller died while
    /// it waited must leave the item for another).
    pub(crate) fn handle(
        &self,
        req: Request,
        lease: &mut Option<u64>,
        peer_gone: &dyn Fn() -> bool,
    ) -> Response {
        match req {
            Request::Open { kind, name, tag } => self.open(kind, name, tag),
            Request::Lease { client } => {
                if lease.is_some() {
                    return Response::Refused("this connection is a lease already".into());
                }
                *self.lock().leases.entry(client).or_insert(0) += 1;
                *lease = Some(client);
                Response::Done
            }
            Request::Dict { id, op } => self.now(id, "dict", |o| match o {
                Obj::Dict(d) => Some(dict_op(d, op)),
                _ => None,
            }),
            Request::List { id, op } => self.now(id, "list", |o| match o {
                Obj::List(l) => Some(list_op(l, op)),
                _ => None,
            }),
            Request::Cell { id, op } => self.now(id, "value", |o| match o {
                Obj::Cell(c) => Some(cell_op(c, op)),
                _ => None,
            }),
            Request::Namespace { id, op } => self.now(id, "namespace", |o| match o {
                Obj::Namespace(n) => Some(namespace_op(n, op)),
                _ => None,
            }),
            Request::Queue { id, op } => self.queue(id, op, peer_gone),
            Request::Sync { id, op } => self.sync(id, op, peer_gone),
            Request::Method {
                id,
                method,
                sig,
                args,
            } => self.method(id, &method, sig, &args),
        }
    }

    fn open(&self, kind: Kind, name: Option<String>, tag: u64) -> Response {
        let mut objs = self.lock();
        if let Some(name) = &name {
            if let Some(&id) = objs.by_name.get(name) {
                return match objs.by_id.get(&id) {
                    Some(e) if e.kind.same_as(&kind) && e.tag == tag => Response::Id(id),
                    _ => Response::Refused(format!(
                        "`{name}` names an object of another kind or type"
                    )),
                };
            }
        }
        let obj = match &kind {
            Kind::Dict => Obj::Dict(IndexMap::new()),
            Kind::List => Obj::List(Vec::new()),
            Kind::Queue { maxsize, joinable } => Obj::Queue(QueueState {
                items: VecDeque::new(),
                maxsize: usize::try_from(*maxsize).unwrap_or(usize::MAX),
                joinable: *joinable,
                unfinished: 0,
                closed: false,
            }),
            Kind::Lock { recursive } => Obj::Lock(LockState {
                recursive: *recursive,
                ..LockState::default()
            }),
            Kind::Semaphore { value, bounded } => Obj::Semaphore {
                value: *value,
                bound: bounded.then_some(*value),
            },
            Kind::Event => Obj::Event(false),
            Kind::Condition => Obj::Condition(ConditionState {
                lock: LockState {
                    recursive: true,
                    ..LockState::default()
                },
                ..ConditionState::default()
            }),
            Kind::Barrier { parties } => {
                if *parties == 0 {
                    return Response::Refused("a barrier needs at least one party".into());
                }
                Obj::Barrier(BarrierState {
                    parties: *parties,
                    waiting: Vec::new(),
                    generation: 0,
                    broken: false,
                    reset: HashSet::new(),
                })
            }
            Kind::Cell(v) => Obj::Cell(v.clone()),
            Kind::Namespace => Obj::Namespace(BTreeMap::new()),
            Kind::User { name, state } => {
                let Some(t) = managed::lookup(name) else {
                    return Response::Refused(format!(
                        "the manager's program has no #[managed] type `{name}`"
                    ));
                };
                if tag != managed::tag_of_name(t.name) {
                    return Response::Refused(format!("a proxy of another type for `{name}`"));
                }
                match (t.decode)(state) {
                    Ok(v) => Obj::User(Arc::new(Mutex::new(v))),
                    Err(e) => {
                        return Response::Refused(format!("a `{name}` that does not decode: {e}"))
                    }
                }
            }
        };
        objs.next_id += 1;
        let id = objs.next_id;
        objs.by_id.insert(
            id,
            Entry {
                obj,
                kind,
                tag,
                changed: Arc::new(Waiters::default()),
            },
        );
        if let Some(name) = name {
            objs.by_name.insert(name, id);
        }
        Response::Id(id)
    }

    /// An operation that never waits: `f` gives `None` if the object is of another kind.
    fn now(&self, id: u64, what: &str, f: impl FnOnce(&mut Obj) -> Option<Response>) -> Response {
        let mut objs = self.lock();
        match objs.by_id.get_mut(&id) {
            Some(e) => match f(&mut e.obj) {
                Some(r) => {
                    e.changed.notify_all();
                    r
                }
                None => refused_id(what, id),
            },
            None => refused_id(what, id),
        }
    }

    /// An operation that may wait: `f` looks at the object (`None`: another kind), told
    /// whether the caller is gone (the client `who`'s lease ended, or, after a wait, the
    /// connection's peer hung up); a gone caller's step must end, taking nothing. Each look
    /// after a change, or after [`HEARTBEAT`] without one.
    fn blocking(
        &self,
        id: u64,
        what: &str,
        who: Option<u64>,
        peer_gone: &dyn Fn() -> bool,
        mut f: impl FnMut(&mut Obj, bool) -> Option<Step>,
    ) -> Response {
        let mut objs = self.lock();
        let mut waited = false;
        loop {
            let gone =
                who.is_some_and(|c| !objs.leases.contains_key(&c)) || (waited && peer_gone());
            let Some(e) = objs.by_id.get_mut(&id) else {
                return refused_id(what, id);
            };
            let until = match f(&mut e.obj, gone) {
                None => return refused_id(what, id),
                Some(Step::Done(r)) => {
                    e.changed.notify_all();
                    return r;
                }
                Some(Step::Until(until)) => until,
                Some(Step::ChangedUntil(until)) => {
                    e.changed.notify_all();
                    until
                }
            };
            let cv = e.changed.clone();
            // Woken by a change, the deadline, or the heartbeat (to notice a caller gone).
            let beat = Instant::now() + HEARTBEAT;
            let d = until.map_or(beat, |u| u.min(beat));
            objs = cv.wait(objs, Some(d)).unwrap_or_else(|g| g);
            waited = true;
        }
    }

    fn queue(&self, id: u64, op: QueueOp, peer_gone: &dyn Fn() -> bool) -> Response {
        let until = deadline(match &op {
            QueueOp::Put(_, w) | QueueOp::Get(w) | QueueOp::Join(w) => *w,
            _ => Some(std::time::Duration::ZERO),
        });
        // Taken by the look that does it, put back by one that must wait (a put's item is
        // moved into the queue, not copied).
        let mut op = Some(op);
        self.blocking(id, "queue", None, peer_gone, |o, gone| {
            let Obj::Queue(q) = o else { return None };
            if gone {
                return Some(Step::Done(gone_response()));
            }
            let timed_out = passed(until);
            Some(match op.take()? {
                QueueOp::Put(item, w) => {
                    if q.closed {
                        Step::Done(Response::Failed(Failure::Closed))
                    } else if q.maxsize == 0 || q.items.len() < q.maxsize {
                        q.items.push_back(item);
                        if q.joinable {
                            q.unfinished += 1;
                        }
                        Step::Done(Response::Done)
                    } else if timed_out {
                        Step::Done(Response::Failed(Failure::Full))
                    } else {
                        op = Some(QueueOp::Put(item, w));
                        Step::Until(until)
                    }
                }
                QueueOp::Get(w) => match q.items.pop_front() {
                    Some(item) => Step::Done(Response::Value(Some(item))),
                    None if q.closed => Step::Done(Response::Failed(Failure::Closed)),
                    None if timed_out => Step::Done(Response::Failed(Failure::Empty)),
                    None => {
                        op = Some(QueueOp::Get(w));
                        Step::Until(until)
                    }
                },
                QueueOp::Join(w) => {
                    if q.unfinished == 0 {
                        Step::Done(Response::Bool(true))
                    } else if timed_out {
                        Step::Done(Response::Bool(false))
                    } else {
                        op = Some(QueueOp::Join(w));
                        Step::Until(until)
                    }
                }
                QueueOp::Size => Step::Done(Response::Len(q.items.len() as u64)),
                QueueOp::Full => {
                    Step::Done(Response::Bool(q.maxsize != 0 && q.items.len() >= q.maxsize))
                }
                QueueOp::Close => {
                    q.closed = true;
                    Step::Done(Response::Done)
                }
                QueueOp::IsClosed => Step::Done(Response::Bool(q.closed)),
                QueueOp::TaskDone => {
                    if q.unfinished == 0 {
                        Step::Done(Response::Failed(Failure::ReleasedTooOften))
                    } else {
                        q.unfinished -= 1;
                        Step::Done(Response::Done)
                    }
                }
            })
        })
    }

    fn sync(&self, id: u64, op: SyncOp, peer_gone: &dyn Fn() -> bool) -> Response {
        match op {
            SyncOp::Acquire(who, wait) => {
                let until = deadline(wait);
                self.blocking(id, "lock", Some(who.client), peer_gone, |o, gone| {
                    let lock = match o {
                        Obj::Lock(l) => l,
                        Obj::Condition(c) => &mut c.lock,
                        _ => return None,
                    };
                    Some(if gone {
                        Step::Done(gone_response())
                    } else if let Some(r) = lock.try_take(who) {
                        Step::Done(r)
                    } else if passed(until) {
                        Step::Done(Response::Failed(Failure::Timeout))
                    } else {
                        Step::Until(until)
                    })
                })
            }
            SyncOp::Release(who) => self.now(id, "lock", |o| match o {
                Obj::Lock(l) => Some(l.release(who)),
                Obj::Condition(c) => Some(c.lock.release(who)),
                _ => None,
            }),
            SyncOp::Locked => self.now(id, "lock", |o| match o {
                Obj::Lock(l) => Some(Response::Bool(l.holder.is_some())),
                Obj::Condition(c) => Some(Response::Bool(c.lock.holder.is_some())),
                _ => None,
            }),
            SyncOp::Down(wait) => {
                let until = deadline(wait);
                self.blocking(id, "semaphore", None, peer_gone, |o, gone| {
                    let Obj::Semaphore { value, .. } = o else {
                        return None;
                    };
                    Some(if gone {
                        Step::Done(gone_response())
                    } else if *value > 0 {
                        *value -= 1;
                        Step::Done(Response::Done)
                    } else if passed(until) {
                        Step::Done(Response::Failed(Failure::Timeout))
                    } else {
                        Step::Until(until)
                    })
                })
            }
            SyncOp::Up => self.now(id, "semaphore", |o| match o {
                Obj::Semaphore { value, bound } => Some(if bound.is_some_and(|b| *value >= b) {
                    Response::Failed(Failure::ReleasedTooOften)
                } else {
                    *value = value.saturating_add(1);
                    Response::Done
                }),
                _ => None,
            }),
            SyncOp::Value => self.now(id, "semaphore", |o| match o {
                Obj::Semaphore { value, .. } => Some(Response::Len(u64::from(*value))),
                _ => None,
            }),
            SyncOp::Set | SyncOp::Clear | SyncOp::IsSet => self.now(id, "event", |o| match o {
                Obj::Event(flag) => Some(match op {
                    SyncOp::Set => {
                        *flag = true;
                        Response::Done
                    }
                    SyncOp::Clear => {
                        *flag = false;
                        Response::Done
                    }
                    _ => Response::Bool(*flag),
                }),
                _ => None,
            }),
            SyncOp::WaitSet(wait) => {
                let until = deadline(wait);
                self.blocking(id, "event", None, peer_gone, |o, gone| {
                    let Obj::Event(flag) = o else { return None };
                    Some(if gone {
                        Step::Done(gone_response())
                    } else if *flag {
                        Step::Done(Response::Bool(true))
                    } else if passed(until) {
                        Step::Done(Response::Bool(false))
                    } else {
                        Step::Until(until)
                    })
                })
            }
            SyncOp::CondWait(who, wait) => self.cond_wait(id, who, wait, peer_gone),
            SyncOp::Notify(who, n) => self.now(id, "condition", |o| {
                let Obj::Condition(c) = o else { return None };
                if c.lock.holder != Some(who) {
                    return Some(Response::Failed(Failure::NotHeld));
                }
                for _ in 0..n {
                    match c.waiters.pop_front() {
                        Some((ticket, _)) => {
                            c.notified.insert(ticket);
                        }
                        None => break,
                    }
                }
                Some(Response::Done)
            }),
            SyncOp::BarrierWait(who, wait) => self.barrier_wait(id, who, wait, peer_gone),
            SyncOp::Abort | SyncOp::Reset => self.now(id, "barrier", |o| {
                let Obj::Barrier(b) = o else { return None };
                if matches!(op, SyncOp::Abort) {
                    b.break_it();
                } else {
                    // The parties waiting now see a broken barrier (the generation moves
                    // on without them); later ones find it whole.
                    b.break_it();
                    b.reset.insert(b.generation);
                    b.generation += 1;
                    b.broken = false;
                }
                Some(Response::Done)
            }),
            SyncOp::Parties | SyncOp::Waiting | SyncOp::Broken => {
                self.now(id, "barrier", |o| match o {
                    Obj::Barrier(b) => Some(match op {
                        SyncOp::Parties => Response::Len(u64::from(b.parties)),
                        SyncOp::Waiting => Response::Len(b.waiting.len() as u64),
                        _ => Response::Bool(b.broken),
                    }),
                    _ => None,
                })
            }
        }
    }

    fn cond_wait(&self, id: u64, who: Owner, wait: Wait, peer_gone: &dyn Fn() -> bool) -> Response {
        let until = deadline(wait);
        // First the wait for a notify, then taking the lock back (without a deadline, as in
        // Python: the caller must hold the lock when its wait returns).
        let mut ticket = None;
        let mut notified = false;
        let mut reacquiring = false;
        let mut saved = 0;
        self.blocking(id, "condition", Some(who.client), peer_gone, |o, gone| {
            let Obj::Condition(c) = o else { return None };
            if gone {
                if let Some(t) = ticket {
                    c.waiters.retain(|w| w.0 != t);
                    c.notified.remove(&t);
                }
                return Some(Step::Done(gone_response()));
            }
            let Some(t) = ticket else {
                if c.lock.holder != Some(who) {
                    return Some(Step::Done(Response::Failed(Failure::NotHeld)));
                }
                let t = c.next_ticket;
                c.next_ticket += 1;
                saved = c.lock.count;
                c.lock.holder = None;
                c.lock.count = 0;
                c.waiters.push_back((t, who.client));
                ticket = Some(t);
                return Some(Step::ChangedUntil(until));
            };
            if !reacquiring {
                if c.notified.remove(&t) {
                    notified = true;
                } else if passed(until) {
                    c.waiters.retain(|w| w.0 != t);
                } else {
                    return Some(Step::Until(until));
                }
                reacquiring = true;
            }
            // Notified or out of time: the lock back.
            Some(match c.lock.try_take(who) {
                Some(Response::Acquired { owner_died }) => {
                    c.lock.count = saved;
                    Step::Done(if owner_died {
                        Response::Failed(Failure::OwnerDied)
                    } else {
                        Response::Bool(notified)
                    })
                }
                Some(other) => Step::Done(other),
                None => Step::Until(None),
            })
        })
    }

    fn barrier_wait(
        &self,
        id: u64,
        who: Owner,
        wait: Wait,
        peer_gone: &dyn Fn() -> bool,
    ) -> Response {
        let until = deadline(wait);
        let mut arrived: Option<(u64, u32)> = None;
        self.blocking(id, "barrier", Some(who.client), peer_gone, |o, gone| {
            let Obj::Barrier(b) = o else { return None };
            let Some((gen, index)) = arrived else {
                if b.broken {
                    return Some(Step::Done(Response::Failed(Failure::BrokenBarrier)));
                }
                let index = b.waiting.len() as u32;
                if index + 1 == b.parties {
                    b.waiting.clear();
                    b.generation += 1;
                    return Some(Step::Done(Response::Len(u64::from(index))));
                }
                b.waiting.push(who.client);
                arrived = Some((b.generation, index));
                return Some(Step::Until(until));
            };
            Some(if b.generation != gen {
                // A reset moved the generation on while parties waited: they see it broken.
                Step::Done(if b.reset.contains(&gen) {
                    Response::Failed(Failure::BrokenBarrier)
                } else {
                    Response::Len(u64::from(index))
                })
            } else if b.broken {
                Step::Done(Response::Failed(Failure::BrokenBarrier))
            } else if gone || passed(until) {
                // A party gone or out of time breaks the barrier for all, as in Python.
                b.break_it();
                Step::Done(Response::Failed(Failure::BrokenBarrier))
            } else {
                Step::Until(until)
            })
        })
    }

    fn method(&self, id: u64, method: &str, sig: u64, args: &[u8]) -> Response {
        let obj = {
            let objs = self.lock();
            match objs.by_id.get(&id).map(|e| &e.obj) {
                Some(Obj::User(o)) => o.clone(),
                _ => return refused_id("managed object", id),
            }
        };
        let mut o = crate::sys::wait::lock(&obj);
        // Under the worker's panic hook: the message and its location come back to the
        // caller instead of being printed by the server.
        let outcome = crate::task::panic::in_task(|| {
            catch_unwind(AssertUnwindSafe(|| o.call(method, sig, args)))
        });
        match outcome {
            Ok(Ok(out)) => Response::Value(Some(Bytes::from(out))),
            Ok(Err(why)) => Response::Refused(why),
            Err(p) => Response::Failed(Failure::Panicked(crate::task::panic::take(p).message)),
        }
    }

    /// A lease connection of `client` closed: when it was the last, what the client held
    /// is released, and every waiter looks again.
    pub(crate) fn lease_ended(&self, client: u64) {
        let mut objs = self.lock();
        let Some(n) = objs.leases.get_mut(&client) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        objs.leases.remove(&client);
        for e in objs.by_id.values_mut() {
            match &mut e.obj {
                Obj::Lock(l) => l.drop_client(client),
                Obj::Condition(c) => {
                    c.lock.drop_client(client);
                    let gone: Vec<u64> = c
                        .waiters
                        .iter()
                        .filter(|w| w.1 == client)
                        .map(|w| w.0)
                        .collect();
                    c.waiters.retain(|w| w.1 != client);
                    for t in gone {
                        c.notified.remove(&t);
                    }
                }
                Obj::Barrier(b) if b.waiting.contains(&client) => b.break_it(),
                _ => {}
            }
            e.changed.notify_all();
        }
    }

    /// Whether every name refers to an object (for the fuzz test).
    #[cfg(test)]
    pub(crate) fn consistent(&self) -> bool {
        let objs = self.lock();
        objs.by_name.values().all(|id| objs.by_id.contains_key(id))
    }
}

/// What a waiter whose client is gone is answered (nobody reads it).
fn gone_response() -> Response {
    Response::Refused("the client's lease ended".into())
}

/// Python-style index: negative counts from the end. `None` if out of range.
fn index(i: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if i < 0 { i + len } else { i };
    (0..len).contains(&i).then_some(i as usize)
}

fn dict_op(d: &mut IndexMap<Bytes, Bytes>, op: DictOp) -> Response {
    match op {
        DictOp::Get(k) => Response::Value(d.get(&k).cloned()),
        DictOp::Insert(k, v) => Response::Value(d.insert(k, v)),
        DictOp::Remove(k) => Response::Value(d.shift_remove(&k)),
        DictOp::Contains(k) => Response::Bool(d.contains_key(&k)),
        DictOp::SetDefault(k, v) => Response::Value(Some(d.entry(k).or_insert(v).clone())),
        DictOp::Len => Response::Len(d.len() as u64),
        DictOp::Keys => Response::Values(d.keys().cloned().collect()),
        DictOp::Values => Response::Values(d.values().cloned().collect()),
        DictOp::Items => Response::Items(d.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        DictOp::Clear => {
            d.clear();
            Response::Done
        }
        DictOp::Update(pairs) => {
            d.extend(pairs);
            Response::Done
        }
    }
}

fn list_op(l: &mut Vec<Bytes>, op: ListOp) -> Response {
    let out_of_range = |i: i64, len: usize| {
        Response::Refused(format!("list index {i} out of range for length {len}"))
    };
    match op {
        ListOp::Push(v) => {
            l.push(v);
            Response::Done
        }
        ListOp::Extend(vs) => {
            l.extend(vs);
            Response::Done
        }
        ListOp::Get(i) => Response::Value(index(i, l.len()).map(|i| l[i].clone())),
        ListOp::Set(i, v) => match index(i, l.len()) {
            Some(i) => {
                l[i] = v;
                Response::Done
            }
            None => out_of_range(i, l.len()),
        },
        ListOp::Insert(i, v) => {
            // As Python: an index past either end inserts at that end.
            let len = l.len() as i64;
            let at = if i < 0 { (i + len).max(0) } else { i.min(len) };
            l.insert(at as usize, v);
            Response::Done
        }
        ListOp::Pop(i) => match i {
            None => Response::Value(l.pop()),
            Some(i) => match index(i, l.len()) {
                Some(i) => Response::Value(Some(l.remove(i))),
                None => out_of_range(i, l.len()),
            },
        },
        ListOp::Len => Response::Len(l.len() as u64),
        ListOp::All => Response::Values(l.clone()),
        ListOp::Clear => {
            l.clear();
            Response::Done
        }
        ListOp::Reverse => {
            l.reverse();
            Response::Done
        }
        ListOp::Remove(v) => match l.iter().position(|x| *x == v) {
            Some(i) => {
                l.remove(i);
                Response::Bool(true)
            }
            None => Response::Bool(false),
        },
        ListOp::Index(v) => Response::Position(l.iter().position(|x| *x == v).map(|i| i as u64)),
        ListOp::Count(v) => Response::Len(l.iter().filter(|x| **x == v).count() as u64),
        ListOp::ReplaceIf(expected, with) => {
            if *l == expected {
                *l = with;
                Response::Bool(true)
            } else {
                Response::Bool(false)
            }
        }
    }
}

fn cell_op(c: &mut Bytes, op: CellOp) -> Response {
    match op {
        CellOp::Get => Response::Value(Some(c.clone())),
        CellOp::Set(v) => {
            *c = v;
            Response::Done
        }
        CellOp::Swap(v) => Response::Value(Some(std::mem::replace(c, v))),
        CellOp::ReplaceIf(expected, with) => {
            if *c == expected {
                *c = with;
                Response::Bool(true)
            } else {
                Response::Bool(false)
            }
        }
    }
}

fn namespace_op(n: &mut BTreeMap<String, (u64, Bytes)>, op: NamespaceOp) -> Response {
    match op {
        NamespaceOp::Get(name) => Response::Tagged(n.get(&name).cloned()),
        NamespaceOp::Set(name, tag, v) => {
            n.insert(name, (tag, v));
            Response::Done
        }
        NamespaceOp::Remove(name) => Response::Bool(n.remove(&name).is_some()),
        NamespaceOp::Names => Response::Names(n.keys().cloned().collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_style_indices() {
        assert_eq!(index(0, 3), Some(0));
        assert_eq!(index(-1, 3), Some(2));
        assert_eq!(index(-3, 3), Some(0));
        assert_eq!(index(3, 3), None);
        assert_eq!(index(-4, 3), None);
        assert_eq!(index(0, 0), None);
    }

    #[test]
    fn a_lock_held_by_a_client_whose_lease_ended_is_taken_over() {
        let store = Store::default();
        let mut lease_a = None;
        let mut lease_b = None;
        store.handle(Request::Lease { client: 1 }, &mut lease_a, &|| false);
        store.handle(Request::Lease { client: 2 }, &mut lease_b, &|| false);
        let Response::Id(id) = store.open(Kind::Lock { recursive: false }, None, 0) else {
            panic!()
        };
        let a = Owner {
            client: 1,
            thread: 1,
        };
        let b = Owner {
            client: 2,
            thread: 1,
        };
        let acquire = |who, wait| {
            store.handle(
                Request::Sync {
                    id,
                    op: SyncOp::Acquire(who, wait),
                },
                &mut None,
                &|| false,
            )
        };
        assert!(matches!(
            acquire(a, None),
            Response::Acquired { owner_died: false }
        ));
        assert!(matches!(
            acquire(b, Some(std::time::Duration::ZERO)),
            Response::Failed(Failure::Timeout)
        ));
        store.lease_ended(1);
        assert!(matches!(
            acquire(b, None),
            Response::Acquired { owner_died: true }
        ));
        // A client without a lease cannot take a lock it would never give back.
        store.lease_ended(2);
        assert!(matches!(acquire(a, None), Response::Refused(_)));
    }
}

#[cfg(test)]
mod waits {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// A `get` waiting for a caller that hung up takes nothing when the item comes: the
    /// item stays for the next caller.
    #[test]
    fn a_get_whose_caller_hung_up_leaves_the_item() {
        let store = Store::default();
        let Response::Id(id) = store.open(
            Kind::Queue {
                maxsize: 0,
                joinable: false,
            },
            None,
            0,
        ) else {
            panic!()
        };
        let hung_up = AtomicBool::new(false);
        let queue = |op| store.handle(Request::Queue { id, op }, &mut None, &|| false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                store.handle(
                    Request::Queue {
                        id,
                        op: QueueOp::Get(None),
                    },
                    &mut None,
                    &|| hung_up.load(Ordering::SeqCst),
                )
            });
            // Once the waiter sleeps (it holds a second handle on the queue's condition
            // variable), its first look found nothing; then its caller hangs up.
            while store
                .lock()
                .by_id
                .get(&id)
                .map(|e| Arc::strong_count(&e.changed))
                == Some(1)
            {
                std::thread::yield_now();
            }
            hung_up.store(true, Ordering::SeqCst);
            assert!(matches!(
                queue(QueueOp::Put(Bytes::from(vec![7]), None)),
                Response::Done
            ));
            let got = waiter.join().unwrap();
            assert!(matches!(got, Response::Refused(_)), "{got:?}");
            assert!(matches!(
                queue(QueueOp::Get(Some(Duration::ZERO))),
                Response::Value(Some(v)) if v[..] == [7]
            ));
        });
    }
}
