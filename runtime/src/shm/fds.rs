//! Handles that travel as file descriptors.
//!
//! Queues, pipe ends, shared values and locks are all backed by a descriptor. When such a
//! handle is serialized as part of a `Process`'s or a pool task's arguments, its descriptor is
//! collected on the side and the handle writes only an index; the descriptors then cross with
//! the frame itself (`SCM_RIGHTS`), and the receiving side resolves the indices back into
//! descriptors while it decodes the arguments. Anywhere else (inside a queue item, a result),
//! serializing a handle is a clear error rather than a dangling number.

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use serde::{de, ser, Deserialize, Deserializer, Serializer};

/// A descriptor shared by every clone of one handle.
pub(crate) type SharedFd = Arc<OwnedFd>;

pub(crate) use crate::sys::fds::MAX_FDS;

thread_local! {
    static OUTGOING: RefCell<Option<Vec<SharedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
}

/// Restores the previous context when dropped, even if serialization panicked.
struct Restore<T: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    prev: Option<Option<T>>,
}

impl<T: 'static> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(prev) = self.prev.take() {
            self.key.with(|c| *c.borrow_mut() = prev);
        }
    }
}

/// Runs `encode`, collecting the descriptors of the handles it serializes.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<SharedFd>) {
    let prev = OUTGOING.with(|c| c.replace(Some(Vec::new())));
    let mut restore = Restore {
        key: &OUTGOING,
        prev: Some(prev),
    };
    let r = encode();
    let fds = OUTGOING.with(|c| c.replace(restore.prev.take().flatten()));
    drop(restore);
    (r, fds.unwrap_or_default())
}

/// Runs `decode` with `fds` (received with the message) available to the handles it decodes.
pub(crate) fn provide<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let prev = INCOMING.with(|c| c.replace(Some(fds)));
    let _restore = Restore {
        key: &INCOMING,
        prev: Some(prev),
    };
    decode()
}

/// Serializes a handle's descriptor as its index among the message's descriptors.
pub(crate) fn serialize_fd<S: Serializer>(
    fd: &SharedFd,
    what: &str,
    s: S,
) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|c| -> Result<u32, String> {
        let mut c = c.borrow_mut();
        let Some(list) = c.as_mut() else {
            return Err(format!(
                "a {what} can only be sent to another process as an argument of a Process or \
                 of a pool task (it cannot travel inside a queue item, a pipe message or a \
                 task's result)"
            ));
        };
        if let Some(i) = list.iter().position(|f| Arc::ptr_eq(f, fd)) {
            return Ok(i as u32);
        }
        if list.len() == MAX_FDS {
            return Err(format!(
                "one message can carry at most {MAX_FDS} queues, pipes or shared objects"
            ));
        }
        list.push(fd.clone());
        Ok(list.len() as u32 - 1)
    });
    match index {
        Ok(i) => s.serialize_u32(i),
        Err(msg) => Err(ser::Error::custom(msg)),
    }
}

/// Resolves an index written by [`serialize_fd`] into a descriptor of this process's own.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    what: &str,
    d: D,
) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(d)? as usize;
    INCOMING.with(|c| {
        let c = c.borrow();
        let Some(list) = c.as_ref() else {
            return Err(de::Error::custom(format!(
                "a {what} can only be received as an argument of a Process or a pool task"
            )));
        };
        let fd = list.get(index).ok_or_else(|| {
            de::Error::custom(format!(
                "{what} refers to descriptor #{index}, but the message carried {}",
                list.len()
            ))
        })?;
        rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 3)
            .map_err(|e| de::Error::custom(format!("cannot duplicate a {what}'s descriptor: {e}")))
    })
}
