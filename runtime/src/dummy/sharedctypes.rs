//! Thread versions of `Value` and `Array` (the process ones are `crate::sharedctypes`): any
//! `T: Send`, behind a mutex.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, LockResult, Result};
use crate::sys::wait::lock;

/// A value shared by threads, with its lock (the thread version of [`crate::Value`]).
pub struct Value<T> {
    m: Arc<Mutex<T>>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value { m: self.m.clone() }
    }
}

impl<T: Send> Value<T> {
    /// A shared value.
    pub fn new(value: T) -> Result<Value<T>> {
        Ok(Value {
            m: Arc::new(Mutex::new(value)),
        })
    }
    /// Locks the value; the guard dereferences to it. (Never `OwnerDied`: a thread that
    /// panics holding it releases it; the type is the process version's.)
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        Ok(lock(&self.m))
    }
    /// A copy of the value.
    pub fn get(&self) -> Result<T>
    where
        T: Clone,
    {
        Ok(self.lock()?.clone())
    }
    /// Replaces the value.
    pub fn set(&self, value: T) -> Result<()> {
        *self.lock()? = value;
        Ok(())
    }
}

/// A fixed-length array shared by threads, with its lock.
/// The calls are the process version's: see [its example](crate::Array).
pub struct Array<T> {
    m: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array { m: self.m.clone() }
    }
}

impl<T: Send + Clone> Array<T> {
    /// `len` copies of `fill`.
    pub fn new(len: usize, fill: T) -> Result<Array<T>> {
        Ok(Array {
            m: Arc::new(Mutex::new(vec![fill; len])),
        })
    }
    /// A copy of `values`.
    pub fn from_slice(values: &[T]) -> Result<Array<T>> {
        Ok(Array {
            m: Arc::new(Mutex::new(values.to_vec())),
        })
    }
    /// Locks the array; the guard dereferences to the elements (a slice of fixed length).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        Ok(ArrayGuard(lock(&self.m)))
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        lock(&self.m).len()
    }
    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i`; out of range is an error.
    pub fn get(&self, i: usize) -> Result<T> {
        let g = self.lock()?;
        g.get(i).cloned().ok_or_else(|| out_of_range(i, g.len()))
    }
    /// Writes element `i`.
    pub fn set(&self, i: usize, value: T) -> Result<()> {
        let mut g = self.lock()?;
        let len = g.len();
        let slot = g.get_mut(i).ok_or_else(|| out_of_range(i, len))?;
        *slot = value;
        Ok(())
    }
    /// A copy of the elements.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

/// A thread [`Array`]'s lock, held.
/// The calls are the process version's: see [its example](crate::Array).
pub struct ArrayGuard<'a, T>(MutexGuard<'a, Vec<T>>);

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}
impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

debug_by_name!(<T> Value, Array);

impl<T> std::fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dummy::ArrayGuard")
    }
}

fn out_of_range(i: usize, len: usize) -> Error {
    Error::OutOfRange {
        what: format!("index {i}"),
        object: "array",
        len,
    }
}
