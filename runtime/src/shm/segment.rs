//! Anonymous shared-memory segments (`memfd`): the storage of every cross-process object.
//!
//! A segment has no name in any file system, so it cannot leak: the kernel frees it when the
//! last descriptor and the last mapping are gone, whichever processes held them and however
//! they ended. It reaches another process as a descriptor passed with the message that
//! carries the handle (see [`super::fds`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{memfd_create, MemfdFlags};

use crate::error::{Error, Result};
use crate::sys::mmap::Mapping;

/// Every segment starts with this header, so a descriptor that is not ours, or an object of
/// another kind, is refused when it is attached.
#[repr(C)]
pub(crate) struct Header {
    magic: u64,
    kind: u32,
    version: u32,
}

const MAGIC: u64 = 0x6d75_6c74_6970_7263; // "multiprc"
/// Bumped whenever the layout of any shared object changes.
const LAYOUT_VERSION: u32 = 2;
/// Bytes reserved for the header; object state starts here, cache-line aligned.
pub(crate) const HEADER_SPACE: usize = 64;

/// What a segment holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub(crate) enum SegmentKind {
    Queue = 1,
    Value = 2,
    Lock = 3,
    RLock = 4,
    Semaphore = 5,
    Event = 6,
    Condition = 7,
    Barrier = 8,
    /// A pool worker's control block (`shm::lane`).
    Lane = 9,
}

/// A mapped segment. Clones share the mapping.
#[derive(Clone)]
pub(crate) struct Segment(Arc<Mapped>);

struct Mapped {
    fd: Arc<OwnedFd>,
    map: Mapping,
}

impl Segment {
    /// Creates a zero-filled segment of `len` bytes (header included) holding a `kind`.
    pub(crate) fn create(kind: SegmentKind, len: usize) -> Result<Segment> {
        let len = len.max(HEADER_SPACE);
        let name = format!("multiproc-{kind:?}");
        let fd = crate::sys::retry_transient(|| {
            memfd_create(name.as_str(), MemfdFlags::CLOEXEC).map_err(Into::into)
        })?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        let seg = Segment::map(Arc::new(fd), len)?;
        // SAFETY: the segment is new and private to this process so far; the header is in
        // bounds and suitably aligned (page-aligned mapping).
        unsafe {
            let h = seg.ptr().cast::<Header>();
            (*h).kind = kind as u32;
            (*h).version = LAYOUT_VERSION;
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            (*h).magic = MAGIC;
        }
        Ok(seg)
    }

    /// Maps a segment received from another process, checking that it holds a `kind`.
    pub(crate) fn attach(fd: OwnedFd, kind: SegmentKind) -> Result<Segment> {
        let bad = |why: &str| Error::Protocol(format!("received a bad {kind:?} handle: {why}"));
        let st = rustix::fs::fstat(&fd).map_err(|e| bad(&e.to_string()))?;
        let len = usize::try_from(st.st_size).map_err(|_| bad("size"))?;
        if len < HEADER_SPACE {
            return Err(bad("too small"));
        }
        let seg = Segment::map(Arc::new(fd), len)?;
        // SAFETY: in bounds (len >= HEADER_SPACE), aligned; read-only look at plain integers.
        let (magic, k, version) = unsafe {
            let h = seg.ptr().cast::<Header>();
            (
                std::ptr::read_volatile(&(*h).magic),
                std::ptr::read_volatile(&(*h).kind),
                std::ptr::read_volatile(&(*h).version),
            )
        };
        if magic != MAGIC || k != kind as u32 {
            return Err(bad("not a multiproc object of this kind"));
        }
        if version != LAYOUT_VERSION {
            return Err(bad("made by another version of multiproc"));
        }
        Ok(seg)
    }

    fn map(fd: Arc<OwnedFd>, len: usize) -> Result<Segment> {
        let map = Mapping::shared(&*fd, len)?;
        Ok(Segment(Arc::new(Mapped { fd, map })))
    }

    /// Start of the mapping (the header).
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.0.map.ptr()
    }

    /// The object's state, `HEADER_SPACE` bytes in.
    pub(crate) fn body(&self) -> *mut u8 {
        // SAFETY: every segment is at least HEADER_SPACE long.
        unsafe { self.ptr().add(HEADER_SPACE) }
    }

    pub(crate) fn len(&self) -> usize {
        self.0.map.len()
    }

    /// The descriptor, shared so that a message carrying this handle keeps it open until sent.
    pub(crate) fn fd(&self) -> &Arc<OwnedFd> {
        &self.0.fd
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd.as_fd()
    }
}
