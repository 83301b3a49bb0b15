//! `Value` and `Array`: plain data in shared memory (Python's `multiprocessing.Value`,
//! `Array`, `RawValue`, `RawArray`).
//!
//! Only [`Shareable`] types may live there: integers, floats, `bool`, arrays of them, and
//! `#[repr(C)]` structs of them marked with `#[derive(Shareable)]`. No pointers (an address
//! means nothing in another process), no enums or `char` (a process killed mid-write could
//! leave an invalid value). The compiler checks it.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::error::{LockResult, TryLockResult};
use crate::shm::handle::{Shm, ShmState};
use crate::shm::segment::{SegmentKind, HEADER_SPACE};
use crate::synchronize::{deadline_after, lock_robust};
use crate::sys::futex::RobustMutex;

/// Plain data that may live in shared memory and be read by other processes.
///
/// # Safety
/// The type must hold no pointers or references and no padding-sensitive invariants, and
/// every byte-wise mix of two valid values must be a valid value (so that a process killed
/// in the middle of a write cannot leave undefined behaviour behind). Implement it with
/// `#[derive(Shareable)]`, which checks this for `#[repr(C)]` structs: see
/// [its example](macro@crate::Shareable).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory",
    label = "not Shareable",
    note = "shared memory holds integers, floats, bool, arrays of them and #[repr(C)] structs \
            with #[derive(Shareable)]; no references, heap pointers (String, Vec, Box), char \
            or enums"
)]
pub unsafe trait Shareable: Copy + Send + Sync + 'static {}

macro_rules! shareable {
    ($($t:ty),*) => { $(
        // SAFETY: plain integers, floats and bool: no pointers; every byte mix is valid
        // (for bool, each value is one byte, which is written whole).
        unsafe impl Shareable for $t {}
    )* };
}
shareable!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool);
// SAFETY: an array of shareable values is shareable.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {}

#[repr(C)]
struct State {
    lock: RobustMutex,
    elem_size: u64,
    elem_align: u64,
    type_hash: u64,
    len: u64,
}

/// Where the data starts: after the header and state, aligned for any element.
const DATA_AT: usize = 256;
const _: () = assert!(HEADER_SPACE + std::mem::size_of::<State>() <= DATA_AT);

fn type_hash<T>() -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in std::any::type_name::<T>().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The untyped segment behind every Value/Array.
#[derive(Clone)]
struct Cells<T> {
    shm: Shm<State>,
    _t: PhantomData<T>,
}

// SAFETY: repr(C), valid when zeroed; after creation only the robust lock and the elements
// (read and written under it, or racily for the Raw* types, which `Shareable` allows) change.
unsafe impl ShmState for State {
    const KIND: SegmentKind = SegmentKind::Value;
    const WHAT: &'static str = "shared value";
}

/// Bytes between the state and the elements.
const PAD: usize = DATA_AT - HEADER_SPACE - std::mem::size_of::<State>();

impl<T: Shareable> Cells<T> {
    fn create(values: impl ExactSizeIterator<Item = T>) -> Result<Cells<T>> {
        if std::mem::align_of::<T>() > 64 {
            return Err(Error::InvalidArgument(
                "types aligned to more than 64 bytes cannot be shared".into(),
            ));
        }
        let len = values.len();
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(PAD))
            .ok_or_else(|| Error::TooLarge {
                what: format!("an array of {len} elements"),
                limit: (usize::MAX - PAD) / std::mem::size_of::<T>().max(1),
            })?;
        let shm = Shm::create(bytes, |st: &mut State, after| {
            st.elem_size = std::mem::size_of::<T>() as u64;
            st.elem_align = std::mem::align_of::<T>() as u64;
            st.type_hash = type_hash::<T>();
            st.len = len as u64;
            // SAFETY: the fresh segment has room for len T's from DATA_AT (64-aligned, and
            // T's alignment is at most 64), and nobody else sees it yet.
            unsafe {
                let data = after.add(PAD).cast::<T>();
                for (i, v) in values.enumerate().take(len) {
                    data.add(i).write(v);
                }
            }
            st.lock.init(false)
        })?;
        Ok(Cells {
            shm,
            _t: PhantomData,
        })
    }

    /// Checks that a received segment holds `T`s, as many as it says.
    fn from_shm(shm: Shm<State>) -> Result<Cells<T>> {
        let st = shm.state();
        let fits = (st.len as usize)
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(PAD))
            .is_some_and(|b| b <= shm.extra_len());
        if st.elem_size != std::mem::size_of::<T>() as u64
            || st.elem_align != std::mem::align_of::<T>() as u64
            || st.type_hash != type_hash::<T>()
            || !fits
        {
            return Err(Error::Protocol(format!(
                "received a shared value that does not hold `{}`",
                std::any::type_name::<T>()
            )));
        }
        Ok(Cells {
            shm,
            _t: PhantomData,
        })
    }

    fn st(&self) -> &State {
        self.shm.state()
    }

    fn len(&self) -> usize {
        self.st().len as usize
    }

    fn data(&self) -> *mut T {
        // SAFETY: PAD bytes past the state is DATA_AT, within the segment (create, and
        // from_shm's size check).
        unsafe { self.shm.after_state().add(PAD).cast::<T>() }
    }

    fn read(&self, i: usize) -> T {
        debug_assert!(i < self.len());
        // SAFETY: i < len; the memory holds a valid T (Shareable: any byte mix is valid).
        unsafe { self.data().add(i).read_volatile() }
    }

    fn write(&self, i: usize, v: T) {
        debug_assert!(i < self.len());
        // SAFETY: as in read.
        unsafe { self.data().add(i).write_volatile(v) }
    }

    /// Takes the lock (at most `timeout`), then makes the guard.
    fn lock<'a, G>(
        &'a self,
        timeout: Option<Duration>,
        guard: impl FnOnce(&'a Self) -> G,
    ) -> TryLockResult<G> {
        lock_robust(&self.st().lock, timeout.and_then(deadline_after), || {
            guard(self)
        })
    }

    fn unlock(&self) {
        let _ = self.st().lock.unlock();
    }

    fn check_index(&self, i: usize) -> Result<()> {
        if i < self.len() {
            Ok(())
        } else {
            Err(Error::OutOfRange {
                what: format!("index {i}"),
                object: "array",
                len: self.len(),
            })
        }
    }
}

impl<T> Serialize for Cells<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de, T: Shareable> Deserialize<'de> for Cells<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Cells::from_shm(Shm::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $ty:ident) => {
        $(#[$doc])*
        #[derive(Serialize, Deserialize)]
        #[serde(bound = "T: Shareable")]
        pub struct $ty<T: Shareable> {
            cells: Cells<T>,
        }

        impl<T: Shareable> std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("type", &std::any::type_name::<T>())
                    .field("len", &self.cells.len())
                    .finish()
            }
        }

        impl<T: Shareable> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    cells: self.cells.clone(),
                }
            }
        }
    };
}

handle!(
    /// One `T` in shared memory with a lock of its own (Python's `Value`).
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[pool_task]
    /// fn add(counter: Value<u64>, n: u64) {
    ///     for _ in 0..n {
    ///         *counter.lock().unwrap() += 1;
    ///     }
    /// }
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let counter = Value::new(0u64)?;
    ///     let ps: Vec<Process> = (0..2)
    ///         .map(|_| Process::spawn(add, (counter.clone(), 1000)))
    ///         .collect::<multiproc::Result<_>>()?;
    ///     for p in ps {
    ///         p.join()?;
    ///     }
    ///     assert_eq!(counter.get()?, 2000);
    ///     Ok(())
    /// }
    /// ```
    Value
);
handle!(
    /// A fixed-length array of `T` in shared memory with a lock of its own (Python's
    /// `Array`).
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[pool_task]
    /// fn square_all(a: Array<f64>) {
    ///     for x in a.lock().unwrap().iter_mut() {
    ///         *x *= *x;
    ///     }
    /// }
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let a = Array::from_slice(&[1.0, 2.0, 3.0])?;
    ///     assert!(Process::spawn(square_all, (a.clone(),))?.join()?.success());
    ///     assert_eq!(a.to_vec()?, [1.0, 4.0, 9.0]);
    ///     Ok(())
    /// }
    /// ```
    Array
);
handle!(
    /// One `T` in shared memory without a lock (Python's `RawValue`): reads and writes of
    /// types larger than a machine word may interleave with other processes' writes. The
    /// integer types have atomic operations for lock-free counters.
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let hits = RawValue::new(0u64)?;
    ///     hits.fetch_add(2); // atomic: safe from many processes without a lock
    ///     assert_eq!(hits.load(), 2);
    ///     let ratio = RawValue::new(0.5f64)?;
    ///     ratio.set(0.25);
    ///     assert_eq!(ratio.get(), 0.25);
    ///     Ok(())
    /// }
    /// ```
    RawValue
);
handle!(
    /// A fixed-length array of `T` in shared memory without a lock (Python's `RawArray`).
    ///
    /// ```
    /// use multiproc::prelude::*;
    ///
    /// #[multiproc::main]
    /// fn main() -> multiproc::Result<()> {
    ///     let a = RawArray::new(4, 0u32)?;
    ///     a.set(2, 7)?;
    ///     assert_eq!(a.to_vec(), [0, 0, 7, 0]);
    ///     assert!(a.get(4).is_err()); // out of range is an error, not a panic
    ///     Ok(())
    /// }
    /// ```
    RawArray
);

/// The lock of a [`Value`], held: dereferences to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Shareable> {
    cells: &'a Cells<T>,
    value: T,
    _not_send: PhantomData<*const ()>,
}

impl<T: Shareable> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Shareable> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Shareable> Drop for ValueGuard<'_, T> {
    fn drop(&mut self) {
        self.cells.write(0, self.value);
        self.cells.unlock();
    }
}

impl<T: Shareable + std::fmt::Debug> std::fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.value).finish()
    }
}

/// The lock of an [`Array`], held: dereferences to the elements. Example: [`Array`].
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Shareable> {
    cells: &'a Cells<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Shareable> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: len valid Ts at data(); the lock is held, so no cooperating process
        // writes them meanwhile.
        unsafe { std::slice::from_raw_parts(self.cells.data(), self.cells.len()) }
    }
}

impl<T: Shareable> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref; the guard is unique.
        unsafe { std::slice::from_raw_parts_mut(self.cells.data(), self.cells.len()) }
    }
}

impl<T: Shareable + std::fmt::Debug> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}

impl<T: Shareable> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.cells.unlock();
    }
}

impl<T: Shareable> Value<T> {
    /// A shared value, initially `value`.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value {
            cells: Cells::create(std::iter::once(value))?,
        })
    }

    /// Takes the value's lock (Python's `with v.get_lock():`); the guard reads and writes
    /// the value. [`LockError::OwnerDied`](crate::LockError) with the guard if a process
    /// died holding it: the value may be half-updated, and the guard is how to repair it.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.cells
            .lock(None, Self::guard)?
            .ok_or(crate::LockError::Failed(Error::Timeout))
    }

    /// Like `lock`, waiting at most `timeout`: `Ok(None)` if the lock was not free by then.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ValueGuard<'_, T>> {
        self.cells.lock(Some(timeout), Self::guard)
    }

    fn guard(cells: &Cells<T>) -> ValueGuard<'_, T> {
        ValueGuard {
            cells,
            value: cells.read(0),
            _not_send: PhantomData,
        }
    }

    /// Reads the value under the lock.
    pub fn get(&self) -> Result<T> {
        Ok(*self.lock()?)
    }

    /// Writes the value under the lock.
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }
}

impl<T: Shareable> Array<T> {
    /// A shared array of `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Result<Array<T>> {
        Ok(Array {
            cells: Cells::create(std::iter::repeat_n(fill, len))?,
        })
    }

    /// A shared array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Ok(Array {
            cells: Cells::create(values.iter().copied())?,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the array's lock; the guard dereferences to the elements.
    /// [`LockError::OwnerDied`](crate::LockError) with the guard if a process died holding
    /// it (the elements may be half-updated).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.cells
            .lock(None, Self::guard)?
            .ok_or(crate::LockError::Failed(Error::Timeout))
    }

    /// Like `lock`, waiting at most `timeout`: `Ok(None)` if the lock was not free by then.
    pub fn lock_timeout(&self, timeout: Duration) -> TryLockResult<ArrayGuard<'_, T>> {
        self.cells.lock(Some(timeout), Self::guard)
    }

    fn guard(cells: &Cells<T>) -> ArrayGuard<'_, T> {
        ArrayGuard {
            cells,
            _not_send: PhantomData,
        }
    }

    /// Element `i`, read under the lock; out of range is an error.
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check_index(i)?;
        Ok(self.lock()?[i])
    }

    /// Writes element `i` under the lock.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.cells.check_index(i)?;
        self.lock()?[i] = value;
        Ok(())
    }

    /// A copy of all elements, taken under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

impl<T: Shareable> RawValue<T> {
    /// A shared value without a lock.
    pub fn new(value: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::create(std::iter::once(value))?,
        })
    }

    /// Reads the value (no lock).
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Writes the value (no lock).
    pub fn set(&self, value: T) {
        self.cells.write(0, value)
    }
}

impl<T: Shareable> RawArray<T> {
    /// A shared array of `len` copies of `fill`, without a lock.
    pub fn new(len: usize, fill: T) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::create(std::iter::repeat_n(fill, len))?,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` (no lock); out of range is an error.
    pub fn get(&self, i: usize) -> Result<T> {
        self.cells.check_index(i)?;
        Ok(self.cells.read(i))
    }

    /// Writes element `i` (no lock).
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        self.cells.check_index(i)?;
        self.cells.write(i, value);
        Ok(())
    }

    /// A copy of all elements (no lock: concurrent writes may show partly).
    pub fn to_vec(&self) -> Vec<T> {
        (0..self.len()).map(|i| self.cells.read(i)).collect()
    }
}

macro_rules! atomic_ops {
    ($($t:ty => $atomic:ty),*) => { $(
        impl RawValue<$t> {
            fn atomic(&self) -> &$atomic {
                // SAFETY: the value is at DATA_AT, 64-aligned, and the atomic type has the
                // integer's size; all access to it from now on is atomic or volatile.
                unsafe { &*self.cells.data().cast::<$atomic>() }
            }

            /// Atomically adds `v` (wrapping), returning the previous value. No lock needed.
            pub fn fetch_add(&self, v: $t) -> $t {
                self.atomic().fetch_add(v, std::sync::atomic::Ordering::SeqCst)
            }

            /// Atomically subtracts `v` (wrapping), returning the previous value.
            pub fn fetch_sub(&self, v: $t) -> $t {
                self.atomic().fetch_sub(v, std::sync::atomic::Ordering::SeqCst)
            }

            /// Atomically reads the value.
            pub fn load(&self) -> $t {
                self.atomic().load(std::sync::atomic::Ordering::SeqCst)
            }

            /// Atomically writes the value.
            pub fn store(&self, v: $t) {
                self.atomic().store(v, std::sync::atomic::Ordering::SeqCst)
            }

            /// Atomically replaces `current` by `new`; `Err(actual)` if the value was not
            /// `current`.
            pub fn compare_exchange(&self, current: $t, new: $t) -> std::result::Result<$t, $t> {
                self.atomic().compare_exchange(
                    current,
                    new,
                    std::sync::atomic::Ordering::SeqCst,
                    std::sync::atomic::Ordering::SeqCst,
                )
            }
        }
    )* };
}

atomic_ops!(
    u32 => std::sync::atomic::AtomicU32,
    i32 => std::sync::atomic::AtomicI32,
    u64 => std::sync::atomic::AtomicU64,
    i64 => std::sync::atomic::AtomicI64,
    usize => std::sync::atomic::AtomicUsize,
    isize => std::sync::atomic::AtomicIsize
);

#[doc(hidden)]
pub fn assert_shareable<T: Shareable>() {}
