//! The manager's messages: what a client asks ([`Request`]) and what the server answers
//! ([`Response`]). Values travel as encoded bytes: the server never needs their types, except
//! for user types served by [`#[managed]`](crate::managed), which it decodes by name.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Keys, values and items travel as encoded bytes.
pub(crate) type Bytes = ByteBuf;

/// How long a blocking operation may wait: `None` as long as it takes, zero not at all.
pub(crate) type Wait = Option<Duration>;

/// Which kind of shared object, with what a new one starts from.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) enum Kind {
    Dict,
    List,
    /// `maxsize` 0: unbounded.
    Queue {
        maxsize: u64,
        joinable: bool,
    },
    Lock {
        recursive: bool,
    },
    Semaphore {
        value: u32,
        bounded: bool,
    },
    Event,
    /// A condition variable with its own recursive lock.
    Condition,
    Barrier {
        parties: u32,
    },
    /// One value (`Value<T>`), starting as these bytes.
    Cell(Bytes),
    Namespace,
    /// A `#[managed]` type registered under `name`, starting as this encoded value.
    User {
        name: String,
        state: Bytes,
    },
}

impl Kind {
    /// Whether two kinds are the same kind of object (whatever they start from).
    pub(crate) fn same_as(&self, other: &Kind) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// Who holds a lock or waits at a barrier: a client (one process's connections to one
/// manager, identified by its lease) and a thread of it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Owner {
    pub client: u64,
    pub thread: u64,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Request {
    /// A new object, or (with a name) the object of that name, created if missing. `tag`
    /// names the proxy's type: opening a name with another type's proxy is refused.
    Open {
        kind: Kind,
        name: Option<String>,
        tag: u64,
    },
    Dict {
        id: u64,
        op: DictOp,
    },
    List {
        id: u64,
        op: ListOp,
    },
    /// This connection is the lease of `client`: while one lease connection of it is open,
    /// the client is alive; when the last closes, the server releases what it held.
    Lease {
        client: u64,
    },
    Queue {
        id: u64,
        op: QueueOp,
    },
    Sync {
        id: u64,
        op: SyncOp,
    },
    Cell {
        id: u64,
        op: CellOp,
    },
    Namespace {
        id: u64,
        op: NamespaceOp,
    },
    /// A method of a `#[managed]` object, its arguments encoded as a tuple; `sig` tags the
    /// argument and result types the caller expects.
    Method {
        id: u64,
        method: String,
        sig: u64,
        args: Bytes,
    },
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    Contains(Bytes),
    SetDefault(Bytes, Bytes),
    Len,
    Keys,
    Values,
    Items,
    Clear,
    /// Inserts every pair, in order, in one step.
    Update(Vec<(Bytes, Bytes)>),
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ListOp {
    Push(Bytes),
    Extend(Vec<Bytes>),
    Get(i64),
    Set(i64, Bytes),
    Insert(i64, Bytes),
    Pop(Option<i64>),
    Len,
    All,
    Clear,
    Reverse,
    /// Removes the first item equal (encoded) to this one: `Bool`.
    Remove(Bytes),
    /// The position of the first equal item: `Position`.
    Index(Bytes),
    /// How many items are equal: `Len`.
    Count(Bytes),
    /// Replaces the whole list with the second, if it still is the first: `Bool`. How a
    /// client applies a change it computed (a sort) without losing a concurrent one.
    ReplaceIf(Vec<Bytes>, Vec<Bytes>),
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum QueueOp {
    /// `Done`, or `Failed(Full)` / `Failed(Closed)`.
    Put(Bytes, Wait),
    /// `Value(Some)`, or `Failed(Empty)` / `Failed(Closed)`.
    Get(Wait),
    /// `Len`.
    Size,
    /// `Bool`: whether it holds `maxsize` items (never, unbounded).
    Full,
    Close,
    IsClosed,
    /// `Done`, or `Failed(ReleasedTooOften)`.
    TaskDone,
    /// `Bool`: whether every item put was marked done in time.
    Join(Wait),
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum SyncOp {
    /// Lock, RLock, a condition's lock: `Acquired`, `Failed(Timeout)`, `Failed(AlreadyHeld)`.
    Acquire(Owner, Wait),
    /// `Done`, or `Failed(NotHeld)`.
    Release(Owner),
    /// `Bool`: whether someone holds it.
    Locked,
    /// Semaphore: `Done` or `Failed(Timeout)`.
    Down(Wait),
    /// `Done`, or `Failed(ReleasedTooOften)` past a bounded semaphore's start.
    Up,
    /// `Len`: a semaphore's value.
    Value,
    /// Event.
    Set,
    Clear,
    IsSet,
    /// `Bool`: whether it was set in time.
    WaitSet(Wait),
    /// Condition, its lock held by the owner: releases it, waits for a notify, takes it
    /// back. `Bool` (notified in time), `Failed(NotHeld)`, `Failed(OwnerDied)`.
    CondWait(Owner, Wait),
    /// Wakes up to `n` waiters (all: `u32::MAX`), the lock held by the owner.
    Notify(Owner, u32),
    /// Barrier: `Len` (the arrival index), `Failed(BrokenBarrier)`.
    BarrierWait(Owner, Wait),
    Abort,
    /// `Done`.
    Reset,
    /// `Len` each.
    Parties,
    Waiting,
    /// `Bool`.
    Broken,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum CellOp {
    Get,
    Set(Bytes),
    /// Sets and returns the previous value, in one step.
    Swap(Bytes),
    /// Sets the second if the value still is the first: `Bool`.
    ReplaceIf(Bytes, Bytes),
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum NamespaceOp {
    /// `Tagged`: the attribute's value and type tag, if it has one.
    Get(String),
    /// Sets an attribute with its type tag: `Done`.
    Set(String, u64, Bytes),
    /// `Bool`: whether it was there.
    Remove(String),
    /// `Names`.
    Names,
}

/// The server's first message on a connection: what it accepts.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub(crate) struct Welcome {
    /// The longest request body it reads.
    pub max_message: u64,
}

/// Why an operation did not happen, when that is one of the outcomes the caller branches on.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Timeout,
    Full,
    Empty,
    Closed,
    NotHeld,
    AlreadyHeld,
    ReleasedTooOften,
    BrokenBarrier,
    /// The lock was taken back from a holder that died; the caller holds it now.
    OwnerDied,
    /// A `#[managed]` method panicked on the server: the panic's message.
    Panicked(String),
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Response {
    Id(u64),
    Done,
    Bool(bool),
    Len(u64),
    Value(Option<Bytes>),
    Values(Vec<Bytes>),
    Items(Vec<(Bytes, Bytes)>),
    /// The request was refused (bad index, wrong kind, unknown object).
    Refused(String),
    Position(Option<u64>),
    /// A lock was taken: `owner_died` if it was taken back from a holder that died.
    Acquired {
        owner_died: bool,
    },
    Failed(Failure),
    /// A namespace attribute: its type tag and value.
    Tagged(Option<(u64, Bytes)>),
    Names(Vec<String>),
}
