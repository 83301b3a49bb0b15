//! `ShareableList`: a fixed-length list of numbers, bools, short strings and bytes in one
//! [`SharedMemory`] block, attachable by name from any process (Python's
//! `multiprocessing.shared_memory.ShareableList`).
//!
//! Layout (all little-endian): a 16-byte header (`MAGIC`, the item count), then one
//! 24-byte slot per item (a sequence counter, the item's kind, its length, its capacity and
//! the offset of its bytes), then the items' bytes, each slot's capacity a multiple of 8.
//! A slot's capacity is fixed at creation, as in Python: numbers take 8 bytes, strings and
//! bytes their length rounded up to 8; a slot may later hold an item of another kind if it
//! fits. Each slot is a sequence lock: a reader never returns half of a concurrent write,
//! and a writer that died mid-write is taken over after [`STUCK`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SharedMemory;
use crate::error::{Error, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"MPSHLST1");
const HEADER: usize = 16;
const SLOT: usize = 24;
/// How long a slot may stay mid-write before its writer is presumed dead.
const STUCK: Duration = Duration::from_secs(1);

/// One item of a [`ShareableList`]: the types Python's `ShareableList` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShareableItem {
    /// An integer (Python's `int` within 64 bits).
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// Python's `None`.
    None,
}

impl ShareableItem {
    fn kind(&self) -> u8 {
        match self {
            ShareableItem::Int(_) => 1,
            ShareableItem::Float(_) => 2,
            ShareableItem::Bool(_) => 3,
            ShareableItem::Str(_) => 4,
            ShareableItem::Bytes(_) => 5,
            ShareableItem::None => 6,
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            ShareableItem::Int(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Float(v) => v.to_le_bytes().to_vec(),
            ShareableItem::Bool(v) => vec![u8::from(*v)],
            ShareableItem::Str(s) => s.as_bytes().to_vec(),
            ShareableItem::Bytes(b) => b.clone(),
            ShareableItem::None => Vec::new(),
        }
    }

    fn decode(kind: u8, bytes: &[u8]) -> Option<ShareableItem> {
        let eight = || <[u8; 8]>::try_from(bytes).ok();
        Some(match kind {
            1 => ShareableItem::Int(i64::from_le_bytes(eight()?)),
            2 => ShareableItem::Float(f64::from_le_bytes(eight()?)),
            3 => match bytes {
                [0] => ShareableItem::Bool(false),
                [1] => ShareableItem::Bool(true),
                _ => return None,
            },
            4 => ShareableItem::Str(String::from_utf8(bytes.to_vec()).ok()?),
            5 => ShareableItem::Bytes(bytes.to_vec()),
            6 if bytes.is_empty() => ShareableItem::None,
            _ => return None,
        })
    }
}

macro_rules! item_from {
    ($($t:ty => $v:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for ShareableItem {
            fn from(x: $t) -> ShareableItem {
                let f: fn($t) -> _ = $conv;
                ShareableItem::$v(f(x))
            }
        })*
    };
}

item_from!(
    i64 => Int(|x| x),
    i32 => Int(i64::from),
    u32 => Int(i64::from),
    f64 => Float(|x| x),
    bool => Bool(|x| x),
    String => Str(|x| x),
    &str => Str(str::to_owned),
    Vec<u8> => Bytes(|x| x),
    &[u8] => Bytes(<[u8]>::to_vec),
);

impl From<()> for ShareableItem {
    fn from(_: ()) -> ShareableItem {
        ShareableItem::None
    }
}

/// A fixed-length list in shared memory (Python's `ShareableList`).
///
/// ```
/// use multiproc::prelude::*;
/// use multiproc::{ShareableItem, ShareableList};
///
/// #[pool_task]
/// fn shout(name: String) {
///     let l = ShareableList::attach(&name).unwrap();
///     let ShareableItem::Str(s) = l.get(0).unwrap() else { panic!() };
///     l.set(0, s.to_uppercase()).unwrap();
///     l.set(-1, l.len() as i64).unwrap();
/// }
///
/// #[multiproc::main]
/// fn main() -> multiproc::Result<()> {
///     let l = ShareableList::new(["howdy".into(), ShareableItem::Float(2.5), 0i64.into()])?;
///     Process::spawn(shout, (l.name().to_string(),))?.join()?;
///     assert_eq!(l.to_vec()?, ["HOWDY".into(), ShareableItem::Float(2.5), 3i64.into()]);
///     Ok(())
/// }
/// ```
///
/// It also travels as a task argument (attaching on arrival). The block belongs to the
/// list that created it, as with [`SharedMemory`]: it is unlinked when that one is dropped.
#[derive(Clone, Debug)]
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
}

/// Where a slot's fields are, from the block's start.
fn slot_at(i: usize) -> usize {
    HEADER + i * SLOT
}

fn read_u32(shm: &SharedMemory, at: usize) -> Result<u32> {
    let mut b = [0u8; 4];
    shm.read(at, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(shm: &SharedMemory, at: usize) -> Result<u64> {
    let mut b = [0u8; 8];
    shm.read(at, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn corrupted(why: &str) -> Error {
    Error::Protocol(format!("a ShareableList block is corrupted: {why}"))
}

impl ShareableList {
    /// A new list holding `items`, in a fresh block.
    pub fn new(items: impl IntoIterator<Item = ShareableItem>) -> Result<ShareableList> {
        Self::create(None, items)
    }

    /// The same under `name` (`SegmentExists` if taken).
    pub fn new_named(
        name: &str,
        items: impl IntoIterator<Item = ShareableItem>,
    ) -> Result<ShareableList> {
        Self::create(Some(name), items)
    }

    fn create(
        name: Option<&str>,
        items: impl IntoIterator<Item = ShareableItem>,
    ) -> Result<ShareableList> {
        let items: Vec<ShareableItem> = items.into_iter().collect();
        let encoded: Vec<Vec<u8>> = items.iter().map(ShareableItem::encode).collect();
        let caps: Vec<usize> = encoded
            .iter()
            .map(|e| e.len().max(8).div_ceil(8) * 8)
            .collect();
        let data_start = slot_at(items.len());
        let too_big = || Error::TooLarge {
            what: "a ShareableList".into(),
            limit: u32::MAX as usize,
        };
        let size = caps
            .iter()
            .try_fold(data_start, |n, c| n.checked_add(*c))
            .ok_or_else(too_big)?;
        if caps.iter().any(|&c| c > u32::MAX as usize) {
            return Err(too_big());
        }
        let shm = match name {
            Some(n) => SharedMemory::create_named(n, size.max(HEADER))?,
            None => SharedMemory::create(size.max(HEADER))?,
        };
        shm.write(0, &MAGIC.to_le_bytes())?;
        shm.write(8, &(items.len() as u64).to_le_bytes())?;
        let mut offset = data_start;
        for (i, ((item, bytes), cap)) in items.iter().zip(&encoded).zip(&caps).enumerate() {
            let at = slot_at(i);
            let mut slot = [0u8; SLOT];
            slot[4] = item.kind();
            slot[8..12].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            slot[12..16].copy_from_slice(&(*cap as u32).to_le_bytes());
            slot[16..24].copy_from_slice(&(offset as u64).to_le_bytes());
            shm.write(at, &slot)?;
            shm.write(offset, bytes)?;
            offset += cap;
        }
        Ok(ShareableList {
            shm,
            len: items.len(),
        })
    }

    /// Attaches to the list in the block called `name`, checking its layout.
    pub fn attach(name: &str) -> Result<ShareableList> {
        Self::from_block(SharedMemory::attach(name)?)
    }

    fn from_block(shm: SharedMemory) -> Result<ShareableList> {
        if shm.size() < HEADER || read_u64(&shm, 0)? != MAGIC {
            return Err(Error::InvalidArgument(format!(
                "shared memory block `{}` holds no ShareableList",
                shm.name()
            )));
        }
        let len = usize::try_from(read_u64(&shm, 8)?).map_err(|_| corrupted("length"))?;
        let fits = len
            .checked_mul(SLOT)
            .and_then(|n| n.checked_add(HEADER))
            .is_some_and(|end| end <= shm.size());
        if !fits {
            return Err(corrupted("more slots than the block holds"));
        }
        Ok(ShareableList { shm, len })
    }

    /// The block's name, what [`attach`](ShareableList::attach) takes.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The block itself (Python's `.shm`).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// Number of items (fixed at creation).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Python-style index: negative counts from the end.
    fn slot(&self, index: i64) -> Result<usize> {
        let len = self.len as i64;
        let i = if index < 0 { index + len } else { index };
        if (0..len).contains(&i) {
            Ok(i as usize)
        } else {
            Err(Error::OutOfRange {
                what: format!("index {index}"),
                object: "ShareableList",
                len: self.len,
            })
        }
    }

    fn seq(&self, i: usize) -> &AtomicU32 {
        // SAFETY: the slot table lies within the block (checked at creation and attach),
        // the mapping lives as long as `self.shm`, and slots are 8-aligned in a
        // page-aligned mapping; the counter is only ever accessed atomically.
        unsafe { &*(self.shm.as_ptr().add(slot_at(i)) as *const AtomicU32) }
    }

    /// The slot's kind, length, capacity and data offset, checked against the block.
    fn fields(&self, i: usize) -> Result<(u8, usize, usize, usize)> {
        let at = slot_at(i);
        let mut kind = [0u8; 1];
        self.shm.read(at + 4, &mut kind)?;
        let len = read_u32(&self.shm, at + 8)? as usize;
        let cap = read_u32(&self.shm, at + 12)? as usize;
        let offset =
            usize::try_from(read_u64(&self.shm, at + 16)?).map_err(|_| corrupted("an offset"))?;
        let in_block = offset
            .checked_add(cap)
            .is_some_and(|end| end <= self.shm.size());
        if len > cap || !in_block {
            return Err(corrupted("a slot outside the block"));
        }
        Ok((kind[0], len, cap, offset))
    }

    /// The item at `index` (negative: from the end).
    pub fn get(&self, index: i64) -> Result<ShareableItem> {
        let i = self.slot(index)?;
        let seq = self.seq(i);
        let since = Instant::now();
        loop {
            let before = seq.load(Ordering::Acquire);
            // Mid-write for longer than `STUCK`: its writer died, and what is there is all
            // there will be.
            let stuck = !before.is_multiple_of(2) && since.elapsed() > STUCK;
            if before.is_multiple_of(2) || stuck {
                let (kind, len, _, offset) = self.fields(i)?;
                let mut bytes = vec![0u8; len];
                self.shm.read(offset, &mut bytes)?;
                std::sync::atomic::fence(Ordering::Acquire);
                if stuck || seq.load(Ordering::Relaxed) == before {
                    return ShareableItem::decode(kind, &bytes)
                        .ok_or_else(|| corrupted("an item that does not decode"));
                }
            }
            std::thread::yield_now();
        }
    }

    /// Replaces the item at `index`. `TooLarge` if it does not fit the slot's capacity
    /// (fixed at creation: a string or bytes at most as long as the first one, rounded up
    /// to 8 bytes; any number); the slot is then unchanged.
    pub fn set(&self, index: i64, item: impl Into<ShareableItem>) -> Result<()> {
        let item = item.into();
        let i = self.slot(index)?;
        let bytes = item.encode();
        let (_, _, cap, offset) = self.fields(i)?;
        if bytes.len() > cap {
            return Err(Error::TooLarge {
                what: format!("an item of {} bytes for slot {i}", bytes.len()),
                limit: cap,
            });
        }
        let seq = self.seq(i);
        let since = Instant::now();
        let mut stuck_at = None;
        let mine = loop {
            let now = seq.load(Ordering::Relaxed);
            let free = now.is_multiple_of(2);
            // An odd count that has not moved for `STUCK`: its writer died; take over.
            let dead = !free && stuck_at == Some(now) && since.elapsed() > STUCK;
            if (free || dead)
                && seq
                    .compare_exchange(
                        now,
                        now.wrapping_add(if free { 1 } else { 2 }),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                break now.wrapping_add(if free { 1 } else { 2 });
            }
            if !free && stuck_at != Some(now) {
                stuck_at = Some(now);
            }
            std::thread::yield_now();
        };
        let at = slot_at(i);
        let written = self
            .shm
            .write(at + 4, &[item.kind()])
            .and_then(|()| self.shm.write(at + 8, &(bytes.len() as u32).to_le_bytes()))
            .and_then(|()| self.shm.write(offset, &bytes));
        seq.store(mine.wrapping_add(1), Ordering::Release);
        written
    }

    /// Every item (each read whole; the list as a whole is not one snapshot).
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>> {
        (0..self.len as i64).map(|i| self.get(i)).collect()
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &ShareableItem) -> Result<usize> {
        Ok(self.to_vec()?.iter().filter(|x| *x == item).count())
    }

    /// The position of the first item equal to `item` (Python's `index`, which raises
    /// where this gives `None`).
    pub fn index(&self, item: &ShareableItem) -> Result<Option<usize>> {
        Ok(self.to_vec()?.iter().position(|x| x == item))
    }
}

impl Serialize for ShareableList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::from_block(shm).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_slots_keep_their_capacity() {
        let l = ShareableList::new([
            ShareableItem::Int(-3),
            ShareableItem::Float(1.5),
            ShareableItem::Bool(true),
            "ab".into(),
            ShareableItem::Bytes(vec![1; 9]),
            ShareableItem::None,
        ])
        .unwrap();
        assert_eq!(l.len(), 6);
        assert_eq!(l.get(-1).unwrap(), ShareableItem::None);
        assert_eq!(l.get(3).unwrap(), "ab".into());
        // A short string slot holds up to 8 bytes; longer is refused, the slot unchanged.
        l.set(3, "12345678").unwrap();
        assert!(matches!(l.set(3, "123456789"), Err(Error::TooLarge { .. })));
        assert_eq!(l.get(3).unwrap(), "12345678".into());
        // Another kind that fits is fine, as in Python.
        l.set(0, "x").unwrap();
        l.set(4, 7i64).unwrap();
        assert_eq!(l.get(0).unwrap(), "x".into());
        assert_eq!(l.get(4).unwrap(), ShareableItem::Int(7));
        assert!(matches!(l.get(6), Err(Error::OutOfRange { .. })));
        assert_eq!(l.count(&ShareableItem::Int(7)).unwrap(), 1);
        assert_eq!(l.index(&ShareableItem::Bool(true)).unwrap(), Some(2));
        let again = ShareableList::attach(l.name()).unwrap();
        assert_eq!(again.to_vec().unwrap(), l.to_vec().unwrap());
    }

    #[test]
    fn a_block_that_is_not_a_list_or_is_corrupted_is_an_error() {
        let raw = SharedMemory::create(64).unwrap();
        assert!(matches!(
            ShareableList::attach(raw.name()),
            Err(Error::InvalidArgument(_))
        ));
        let l = ShareableList::new(["abc".into()]).unwrap();
        // A slot claiming more bytes than its capacity.
        l.shm()
            .write(slot_at(0) + 8, &100u32.to_le_bytes())
            .unwrap();
        assert!(matches!(l.get(0), Err(Error::Protocol(_))));
        // A count of slots past the block's end.
        l.shm().write(8, &u64::MAX.to_le_bytes()).unwrap();
        assert!(ShareableList::attach(l.name()).is_err());
    }

    #[test]
    fn a_slot_left_mid_write_by_a_dead_writer_is_taken_over() {
        let l = ShareableList::new([ShareableItem::Int(1)]).unwrap();
        l.seq(0).store(5, Ordering::SeqCst);
        assert_eq!(l.get(0).unwrap(), ShareableItem::Int(1));
        l.set(0, 2i64).unwrap();
        assert!(l.seq(0).load(Ordering::SeqCst).is_multiple_of(2));
        assert_eq!(l.get(0).unwrap(), ShareableItem::Int(2));
    }
}
