//! The manager's dict and list (Python's `DictProxy` and `ListProxy`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::client::{
    boolean, dec, dec_all, dec_opt, done, enc, len, proxy_common, unexpected, until_swapped,
    Handle, Marker,
};
use super::messages::{DictOp, ListOp, Request, Response};
use crate::error::{Error, Result};

/// A dict held by a [`Manager`](crate::Manager) (Python's `DictProxy`). Keys keep their insertion order.
/// Keys are compared by their encoding, so use key types whose equal values encode alike
/// (integers, strings, tuples of them; not floats that may be `-0.0`).
pub struct DictProxy<K, V> {
    h: Handle,
    _t: Marker<(K, V)>,
}

proxy_common!(DictProxy<K, V>, "dict");

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    fn call(&self, op: DictOp) -> Result<Response> {
        self.h.client.call(&Request::Dict { id: self.h.id, op })
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Get(enc(key)?))?)
    }

    /// Sets `key` to `value`; returns the previous value.
    pub fn insert(&self, key: &K, value: &V) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Insert(enc(key)?, enc(value)?))?)
    }

    /// Removes `key`; returns its value (Python's `pop`).
    pub fn remove(&self, key: &K) -> Result<Option<V>> {
        dec_opt(self.call(DictOp::Remove(enc(key)?))?)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        match self.call(DictOp::Contains(enc(key)?))? {
            Response::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Inserts every pair in one atomic step (Python's `update`); later pairs win.
    pub fn update<'a>(&self, pairs: impl IntoIterator<Item = (&'a K, &'a V)>) -> Result<()>
    where
        K: 'a,
        V: 'a,
    {
        let pairs = pairs
            .into_iter()
            .map(|(k, v)| Ok((enc(k)?, enc(v)?)))
            .collect::<Result<Vec<_>>>()?;
        done(self.call(DictOp::Update(pairs))?)
    }

    /// Removes `key` and returns its value, or `default` if it had none (Python's
    /// `pop(key, default)`; [`remove`](DictProxy::remove) is `pop` without one).
    pub fn pop_or(&self, key: &K, default: V) -> Result<V> {
        Ok(self.remove(key)?.unwrap_or(default))
    }

    /// The value for `key`, inserting `default` first if there is none, in one atomic step
    /// (Python's `setdefault`).
    pub fn setdefault(&self, key: &K, default: &V) -> Result<V> {
        dec_opt(self.call(DictOp::SetDefault(enc(key)?, enc(default)?))?)?
            .ok_or_else(|| Error::Protocol("setdefault returned nothing".into()))
    }

    /// Number of entries.
    pub fn len(&self) -> Result<usize> {
        len(self.call(DictOp::Len)?)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order (a snapshot).
    pub fn keys(&self) -> Result<Vec<K>> {
        dec_all(self.call(DictOp::Keys)?)
    }

    /// The values, in insertion order (a snapshot).
    pub fn values(&self) -> Result<Vec<V>> {
        dec_all(self.call(DictOp::Values)?)
    }

    /// The entries, in insertion order (a snapshot).
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.call(DictOp::Items)? {
            Response::Items(items) => items.iter().map(|(k, v)| Ok((dec(k)?, dec(v)?))).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        done(self.call(DictOp::Clear)?)
    }
}

/// A list held by a [`Manager`](crate::Manager) (Python's `ListProxy`). Indices may be negative, counting
/// from the end, as in Python.
pub struct ListProxy<T> {
    h: Handle,
    _t: Marker<T>,
}

proxy_common!(ListProxy<T>, "list");

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    fn call(&self, op: ListOp) -> Result<Response> {
        self.h.client.call(&Request::List { id: self.h.id, op })
    }

    /// Appends an item (Python's `append`).
    pub fn push(&self, item: &T) -> Result<()> {
        done(self.call(ListOp::Push(enc(item)?))?)
    }

    /// Appends several items in one atomic step.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let items = items.into_iter().map(enc).collect::<Result<Vec<_>>>()?;
        done(self.call(ListOp::Extend(items))?)
    }

    /// The item at `index`, if it is in range.
    pub fn get(&self, index: i64) -> Result<Option<T>> {
        dec_opt(self.call(ListOp::Get(index))?)
    }

    /// Replaces the item at `index`; `InvalidArgument` if out of range.
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        done(self.call(ListOp::Set(index, enc(item)?))?)
    }

    /// Inserts before `index` (past either end: at that end, as in Python).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        done(self.call(ListOp::Insert(index, enc(item)?))?)
    }

    /// Removes and returns the last item, if any.
    pub fn pop(&self) -> Result<Option<T>> {
        dec_opt(self.call(ListOp::Pop(None))?)
    }

    /// Removes and returns the item at `index`; `InvalidArgument` if out of range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        dec_opt(self.call(ListOp::Pop(Some(index)))?)?
            .ok_or_else(|| Error::Protocol("pop returned nothing".into()))
    }

    /// Number of items.
    pub fn len(&self) -> Result<usize> {
        len(self.call(ListOp::Len)?)
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// All items (a snapshot).
    pub fn to_vec(&self) -> Result<Vec<T>> {
        dec_all(self.call(ListOp::All)?)
    }

    /// Removes every item.
    pub fn clear(&self) -> Result<()> {
        done(self.call(ListOp::Clear)?)
    }

    /// Reverses the list in place, in one atomic step.
    pub fn reverse(&self) -> Result<()> {
        done(self.call(ListOp::Reverse)?)
    }

    /// Removes the first item equal to `item`: true if there was one (Python's `remove`,
    /// which raises instead). Items compare by their encoding, as dict keys do.
    pub fn remove(&self, item: &T) -> Result<bool> {
        boolean(self.call(ListOp::Remove(enc(item)?))?)
    }

    /// The position of the first item equal to `item` (Python's `index`, which raises
    /// where this gives `None`).
    pub fn index(&self, item: &T) -> Result<Option<usize>> {
        match self.call(ListOp::Index(enc(item)?))? {
            Response::Position(p) => Ok(p.map(|p| p as usize)),
            other => Err(unexpected(other)),
        }
    }

    /// How many items equal `item`.
    pub fn count(&self, item: &T) -> Result<usize> {
        len(self.call(ListOp::Count(enc(item)?))?)
    }

    /// Sorts the list (stable, by `Ord`) as one atomic change: the server compares bytes,
    /// not values, so the client sorts a snapshot and the server swaps it in only if the
    /// list is still that snapshot; a change in between (another process's push) makes it
    /// sort again, so nothing is lost. After 10,000 changes in a row it gives up
    /// with `Error::Timeout`.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// [`sort`](ListProxy::sort) by a comparison function.
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> std::cmp::Ordering) -> Result<()> {
        until_swapped(|| {
            let snapshot = match self.call(ListOp::All)? {
                Response::Values(vs) => vs,
                other => return Err(unexpected(other)),
            };
            let mut items: Vec<(T, usize)> = snapshot
                .iter()
                .enumerate()
                .map(|(i, b)| Ok((dec::<T>(b)?, i)))
                .collect::<Result<_>>()?;
            items.sort_by(|a, b| compare(&a.0, &b.0));
            let sorted = items.iter().map(|&(_, i)| snapshot[i].clone()).collect();
            Ok(boolean(self.call(ListOp::ReplaceIf(snapshot, sorted))?)?.then_some(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::manager::client::client_for;

    #[test]
    fn a_proxy_received_as_another_type_is_an_error_not_garbage() {
        let client = client_for("@nowhere", b"key", Duration::from_secs(1));
        let d: DictProxy<String, u32> = DictProxy::wrap(Handle { client, id: 3 });
        let bytes = crate::wire::serial::encode(&d).unwrap();
        let back: DictProxy<String, u32> = crate::wire::serial::decode(&bytes).unwrap();
        assert_eq!(back.h.id, 3);
        assert!(crate::wire::serial::decode::<DictProxy<u32, u32>>(&bytes).is_err());
        assert!(crate::wire::serial::decode::<ListProxy<(String, u32)>>(&bytes).is_err());
    }
}
