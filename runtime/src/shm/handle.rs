//! [`Shm<S>`]: a segment known to hold an `S` after its header, the typed handle every
//! cross-process object is built on. The one place that turns a segment's bytes into a
//! typed state, checks the layout of a segment received from another process, and sends
//! the handle as a descriptor.

use std::marker::PhantomData;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fds::SharedFd;
use super::segment::{Segment, SegmentKind, HEADER_SPACE};
use crate::error::{Error, Result};

/// A state type that lives in a shared segment.
///
/// # Safety
/// The implementing type must be `repr(C)` (one layout in every process of a build), valid
/// when all its bytes are zero (segments start zeroed), and every field that processes share
/// after creation must be an atomic, a robust mutex, or data touched only while holding one
/// (behind an `UnsafeCell`): [`Shm::state`] hands out shared references to it in any number
/// of processes at once.
pub(crate) unsafe trait ShmState: Sized {
    /// What the segment is tagged as (checked on attach).
    const KIND: SegmentKind;
    /// The object's name in error messages.
    const WHAT: &'static str;
}

/// A mapped segment holding an `S` after its header (and possibly more bytes after it: a
/// queue's ring, an array's elements). Clones share the mapping.
pub(crate) struct Shm<S> {
    seg: Segment,
    _state: PhantomData<fn() -> S>,
}

impl<S> Clone for Shm<S> {
    fn clone(&self) -> Self {
        Shm {
            seg: self.seg.clone(),
            _state: PhantomData,
        }
    }
}

impl<S> std::fmt::Debug for Shm<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shm").field("len", &self.seg.len()).finish()
    }
}

/// Bytes a segment holding an `S` needs, with `extra` more after the state.
fn needed<S>(extra: usize) -> Option<usize> {
    (HEADER_SPACE + std::mem::size_of::<S>()).checked_add(extra)
}

impl<S: ShmState> Shm<S> {
    /// A fresh, zeroed segment for an `S` and `extra` bytes after it; `init` sets it up
    /// while no other process (or handle) can see it yet.
    pub(crate) fn create(
        extra: usize,
        init: impl FnOnce(&mut S, *mut u8) -> Result<()>,
    ) -> Result<Shm<S>> {
        let len = needed::<S>(extra).ok_or_else(|| Error::TooLarge {
            what: format!("a {} of {extra} extra bytes", S::WHAT),
            limit: usize::MAX - HEADER_SPACE - std::mem::size_of::<S>(),
        })?;
        let seg = Segment::create(S::KIND, len)?;
        // SAFETY: the segment is new, zeroed (a valid S, by the trait's contract), large
        // enough for S (and `extra` bytes, which start where `after` points), and its body is
        // 64-aligned; no other handle exists, so the `&mut` is unique while `init` runs.
        unsafe {
            let st = &mut *seg.body().cast::<S>();
            let after = seg.body().add(std::mem::size_of::<S>());
            init(st, after)?;
        }
        Ok(Shm {
            seg,
            _state: PhantomData,
        })
    }

    /// A segment received from another process: refused unless it is tagged as an `S` of
    /// this layout version and holds at least an `S` and `min_extra` more bytes.
    pub(crate) fn attach(fd: OwnedFd, min_extra: usize) -> Result<Shm<S>> {
        let seg = Segment::attach(fd, S::KIND)?;
        if needed::<S>(min_extra).is_none_or(|n| seg.len() < n) {
            return Err(Error::Protocol(format!("received a truncated {}", S::WHAT)));
        }
        Ok(Shm {
            seg,
            _state: PhantomData,
        })
    }

    /// The shared state.
    pub(crate) fn state(&self) -> &S {
        // SAFETY: `create` and `attach` made sure the segment holds an S after its header,
        // 64-aligned; the trait's contract makes shared references to it sound.
        unsafe { &*self.seg.body().cast::<S>() }
    }

    /// The first byte after the state (a queue's ring header, an array's elements): the
    /// owner of the layout knows what lies there and how far it goes ([`len`](Shm::len)).
    pub(crate) fn after_state(&self) -> *mut u8 {
        // SAFETY: within the segment (create/attach reserved the state's bytes).
        unsafe { self.seg.body().add(std::mem::size_of::<S>()) }
    }

    /// Bytes after the state.
    pub(crate) fn extra_len(&self) -> usize {
        self.seg.len() - HEADER_SPACE - std::mem::size_of::<S>()
    }

    /// The segment itself (its start, for layouts that place data at fixed offsets).
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The descriptor (shared with messages in flight that carry this handle).
    pub(crate) fn fd(&self) -> &SharedFd {
        self.seg.fd()
    }
}

/// A handle travels as a descriptor, with the frame that carries it (see `shm::fds`).
impl<S: ShmState> Serialize for Shm<S> {
    fn serialize<Se: Serializer>(&self, s: Se) -> std::result::Result<Se::Ok, Se::Error> {
        super::fds::serialize_fd(self.seg.fd(), S::WHAT, s)
    }
}

impl<'de, S: ShmState> Deserialize<'de> for Shm<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let fd = super::fds::deserialize_fd(S::WHAT, d)?;
        Shm::attach(fd, 0).map_err(serde::de::Error::custom)
    }
}
