//! `SharedMemory`: named blocks of raw bytes in `/dev/shm` (Python's
//! `multiprocessing.shared_memory`).
//!
//! The creating handle owns the block: dropping it unlinks the name (handles attached in
//! other processes keep their mapping). If the owner never gets to drop it (SIGKILL,
//! `std::process::exit`, a leaked handle), a small tracker process, started with the first
//! block and holding one end of a socket, unlinks whatever its owner left when that socket
//! closes. Attaching never registers anything, so there are neither premature unlinks nor
//! false leak warnings. Blocks are created with mode 0600.

mod shareable_list;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sys::mmap::Mapping;
pub use shareable_list::{ShareableItem, ShareableList};

/// A named shared-memory block.
///
/// ```
/// use multiproc::prelude::*;
/// use multiproc::SharedMemory;
///
/// #[pool_task]
/// fn fill(block: SharedMemory, byte: u8) {
///     block.write(0, &[byte; 16]).unwrap();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let block = SharedMemory::create(4096)?;
///     Process::spawn(fill, (block.clone(), 7))?.join()?;
///     let mut buf = [0u8; 16];
///     block.read(0, &mut buf)?;
///     assert_eq!(buf, [7; 16]);
///     Ok(())
/// }
/// ```
///
/// Clones share one mapping; the block's name is unlinked when the creating process drops
/// its last handle.
#[derive(Clone)]
pub struct SharedMemory(std::sync::Arc<Block>);

struct Block {
    name: String,
    map: Mapping,
    owner: bool,
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.0.name)
            .field("size", &self.0.map.len())
            .field("owner", &self.0.owner)
            .finish()
    }
}

fn c_name(name: &str) -> Result<std::ffi::CString> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > 250 || bare.contains('/') || bare.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "`{name}` is not a valid shared memory name (1-250 characters, no '/')"
        )));
    }
    std::ffi::CString::new(format!("/{bare}"))
        .map_err(|_| Error::InvalidArgument("name contains NUL".into()))
}

impl SharedMemory {
    /// Creates a block of `size` bytes (zero-filled) under a fresh unique name.
    pub fn create(size: usize) -> Result<SharedMemory> {
        loop {
            let mut r = [0u8; 8];
            rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::empty())?;
            let name = format!("mp-{}-{:016x}", std::process::id(), u64::from_ne_bytes(r));
            match SharedMemory::create_named(&name, size) {
                Err(Error::SegmentExists { .. }) => continue,
                other => return other,
            }
        }
    }

    /// Creates a block of `size` bytes under `name`. `SegmentExists` if the name is taken.
    pub fn create_named(name: &str, size: usize) -> Result<SharedMemory> {
        if size == 0 {
            return Err(Error::InvalidArgument(
                "a shared memory block needs a size above 0".into(),
            ));
        }
        let cname = c_name(name)?;
        let display = cname.to_string_lossy()[1..].to_owned();
        // Register first: if we die between creating and registering, nothing leaks.
        tracker_send(b'+', &display);
        // SAFETY: plain syscall with a valid C string.
        let fd = unsafe {
            libc::shm_open(
                cname.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            tracker_send(b'-', &display);
            return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                Error::SegmentExists { name: display }
            } else {
                e.into()
            });
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let mapped = rustix::fs::ftruncate(&fd, size as u64)
            .map_err(Error::from)
            .and_then(|()| Ok(Mapping::shared(&fd, size)?));
        match mapped {
            Ok(map) => Ok(SharedMemory(std::sync::Arc::new(Block {
                name: display,
                map,
                owner: true,
            }))),
            Err(e) => {
                // SAFETY: unlinking the name we just created.
                unsafe { libc::shm_unlink(cname.as_ptr()) };
                tracker_send(b'-', &display);
                Err(e)
            }
        }
    }

    /// Attaches to an existing block. `SegmentNotFound` if there is none by that name.
    pub fn attach(name: &str) -> Result<SharedMemory> {
        let cname = c_name(name)?;
        let display = cname.to_string_lossy()[1..].to_owned();
        // SAFETY: plain syscall with a valid C string.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC, 0) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::ENOENT) {
                Error::SegmentNotFound { name: display }
            } else {
                e.into()
            });
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let size = usize::try_from(rustix::fs::fstat(&fd)?.st_size)
            .map_err(|_| Error::Protocol("negative segment size".into()))?;
        if size == 0 {
            return Err(Error::SegmentNotFound { name: display });
        }
        Ok(SharedMemory(std::sync::Arc::new(Block {
            map: Mapping::shared(&fd, size)?,
            name: display,
            owner: false,
        })))
    }

    /// The block's name (without the leading '/'), what `attach` takes.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.0.map.len()
    }

    /// Whether this handle created the block (and unlinks it when dropped).
    pub fn is_owner(&self) -> bool {
        self.0.owner
    }

    fn check(&self, offset: usize, n: usize) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.0.map.len() => Ok(()),
            _ => Err(Error::OutOfRange {
                what: format!("byte range {offset}..{}", offset.saturating_add(n)),
                object: "block",
                len: self.0.map.len(),
            }),
        }
    }

    /// Copies bytes out of the block.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: in bounds (checked); a byte copy tolerates concurrent writers.
        unsafe { std::ptr::copy(self.0.map.ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies bytes into the block.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: in bounds (checked).
        unsafe { std::ptr::copy(data.as_ptr(), self.0.map.ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.0.map.ptr()
    }

    /// The block as a slice.
    ///
    /// # Safety
    /// No other process or thread may write the block while the slice is alive.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for as long as `self`; the caller's contract rules out
        // writers.
        unsafe { std::slice::from_raw_parts(self.0.map.ptr(), self.0.map.len()) }
    }

    /// The block as a mutable slice.
    ///
    /// # Safety
    /// No other process or thread may read or write the block while the slice is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [u8] {
        // SAFETY: the mapping is live for as long as `self`; the caller's contract rules out
        // any other access.
        unsafe { std::slice::from_raw_parts_mut(self.0.map.ptr(), self.0.map.len()) }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if self.owner {
            if let Ok(c) = c_name(&self.name) {
                // SAFETY: unlinking the name this handle created.
                unsafe { libc::shm_unlink(c.as_ptr()) };
            }
            tracker_send(b'-', &self.name);
        }
    }
}

/// Travels by name: attaching happens in the receiving process, which never owns it.
impl Serialize for SharedMemory {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.name)
    }
}

impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        SharedMemory::attach(&name).map_err(serde::de::Error::custom)
    }
}

// --- the tracker -------------------------------------------------------------------------

static TRACKER: Mutex<Option<UnixStream>> = Mutex::new(None);

fn tracker() -> MutexGuard<'static, Option<UnixStream>> {
    crate::sys::wait::lock(&TRACKER)
}

/// Tells the tracker about a name (`+` created, `-` unlinked). Best effort: without a
/// tracker, only the last-resort cleanup is lost.
fn tracker_send(op: u8, name: &str) {
    let mut t = tracker();
    // Without `init()` the tracker could not start as one (the program would run again
    // instead): blocks then have no tracker, and are unlinked by their owner's drop only.
    if t.is_none() && op == b'+' && crate::role::may_reexec() {
        if let Ok((child, stream)) = crate::spawn::exec_child(crate::role::TRACKER_FD_ENV) {
            // The tracker exits only when this process is gone; never wait for it.
            std::mem::forget(child);
            *t = Some(stream);
        }
    }
    if let Some(s) = t.as_mut() {
        let mut line = Vec::with_capacity(name.len() + 2);
        line.push(op);
        line.extend_from_slice(name.as_bytes());
        line.push(b'\n');
        if s.write_all(&line).is_err() {
            *t = None;
        }
    }
}

/// The tracker process: records names until its owner's end of the socket closes, then
/// unlinks those still registered. Never returns.
pub(crate) fn tracker_main(fd: std::os::fd::OwnedFd) -> ! {
    use std::io::BufRead;
    let mut live = std::collections::BTreeSet::new();
    let reader = std::io::BufReader::new(UnixStream::from(fd));
    for line in reader.split(b'\n') {
        let Ok(line) = line else { break };
        match line.split_first() {
            Some((b'+', name)) => {
                live.insert(name.to_vec());
            }
            Some((b'-', name)) => {
                live.remove(name);
            }
            _ => {}
        }
    }
    for name in live {
        let mut c = vec![b'/'];
        c.extend(name);
        if let Ok(c) = std::ffi::CString::new(c) {
            // SAFETY: plain syscall with a valid C string.
            unsafe { libc::shm_unlink(c.as_ptr()) };
        }
    }
    std::process::exit(0)
}
