//! Python's documentation's Manager example, ported: a child process writes a shared dict
//! and reverses a shared list made from `range(10)`; then the list operations Python users
//! reach for next (`sort`, `index`, `count`, `remove`, `update`, `pop` with a default).
//!
//! ```python
//! def f(d, l):
//!     d[1] = '1'; d['2'] = 2; d[0.25] = None
//!     l.reverse()
//! with Manager() as manager:
//!     d = manager.dict(); l = manager.list(range(10))
//!     p = Process(target=f, args=(d, l)); p.start(); p.join()
//! ```
//!
//! Rust values have one type, so the dict maps strings to an enum standing for Python's
//! mixed values.

use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum PyValue {
    Str(String),
    Int(i64),
    None,
}

#[pool_task]
fn f(d: DictProxy<String, PyValue>, l: ListProxy<u32>) {
    d.insert(&"1".into(), &PyValue::Str("1".into()))
        .expect("insert");
    d.insert(&"'2'".into(), &PyValue::Int(2)).expect("insert");
    d.insert(&"0.25".into(), &PyValue::None).expect("insert");
    l.reverse().expect("reverse");
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let manager = Manager::new()?;
    let d = manager.dict::<String, PyValue>()?;
    let l = manager.list_from(&(0..10u32).collect::<Vec<_>>())?;
    let p = Process::new(f, (d.clone(), l.clone()))?;
    p.start()?;
    p.join()?;
    println!("{:?}", d.items()?);
    println!("{:?}", l.to_vec()?);
    assert_eq!(d.len()?, 3);
    assert_eq!(d.get(&"'2'".into())?, Some(PyValue::Int(2)));
    assert_eq!(l.to_vec()?, (0..10u32).rev().collect::<Vec<_>>());

    l.push(&3)?;
    assert_eq!((l.index(&3)?, l.count(&3)?), (Some(6), 2));
    assert!(l.remove(&3)?);
    l.sort()?;
    assert_eq!(l.to_vec()?, (0..10u32).collect::<Vec<_>>());
    assert_eq!(l.index(&42)?, None);

    let extra = [
        ("a".to_string(), PyValue::Int(1)),
        ("b".to_string(), PyValue::None),
    ];
    d.update(extra.iter().map(|(k, v)| (k, v)))?;
    assert_eq!(d.pop_or(&"a".into(), PyValue::None)?, PyValue::Int(1));
    assert_eq!(d.pop_or(&"a".into(), PyValue::None)?, PyValue::None);
    println!("after update and pops: {:?}", d.keys()?);
    Ok(())
}
