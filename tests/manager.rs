//! Managers across real processes: shared dicts and lists used from children and pool tasks,
//! TCP with an authentication key, and failures that are errors, not hangs.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use multiproc::prelude::*;
use multiproc::{Manager, ManagerClient};

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn fill(d: DictProxy<String, u64>, l: ListProxy<u64>, who: u64, n: u64) {
    for i in 0..n {
        d.insert(&format!("{who}-{i}"), &(who * 1000 + i)).unwrap();
        l.push(&(who * 1000 + i)).unwrap();
    }
}

#[multiproc::test]
fn children_share_a_dict_and_a_list() {
    let m = Manager::new().unwrap();
    let d = m.dict::<String, u64>().unwrap();
    let l = m.list::<u64>().unwrap();
    let ps: Vec<Process> = (0..3)
        .map(|who| Process::spawn(fill, (d.clone(), l.clone(), who, 100)).unwrap())
        .collect();
    for p in ps {
        assert!(p.join_timeout(LONG).unwrap().unwrap().success());
    }
    assert_eq!(d.len().unwrap(), 300);
    assert_eq!(l.len().unwrap(), 300);
    for who in 0..3u64 {
        for i in 0..100 {
            assert_eq!(d.get(&format!("{who}-{i}")).unwrap(), Some(who * 1000 + i));
        }
    }
    // Each child's pushes keep their order within the list.
    let all = l.to_vec().unwrap();
    for who in 0..3u64 {
        let mine: Vec<u64> = all.iter().copied().filter(|v| v / 1000 == who).collect();
        assert_eq!(mine, (0..100).map(|i| who * 1000 + i).collect::<Vec<_>>());
    }
}

#[pool_task]
fn count_words(words: DictProxy<String, u32>, text: String) -> usize {
    for w in text.split_whitespace() {
        let n = words.get(&w.to_string()).unwrap().unwrap_or(0);
        words.insert(&w.to_string(), &(n + 1)).unwrap();
    }
    text.split_whitespace().count()
}

#[multiproc::test]
fn proxies_go_to_pool_tasks() {
    let m = Manager::new().unwrap();
    let words = m.dict::<String, u32>().unwrap();
    let pool = Pool::new(2).unwrap();
    // One text per call, one call at a time: no lost updates to reason about.
    for text in ["a b a", "b c", "a"] {
        pool.apply(count_words, (words.clone(), text.to_string()))
            .unwrap();
    }
    let mut got = words.items().unwrap();
    got.sort();
    assert_eq!(got, vec![("a".into(), 3), ("b".into(), 2), ("c".into(), 1)]);
}

#[multiproc::test]
fn dict_operations() {
    let m = Manager::new().unwrap();
    let d = m.dict::<(u8, String), Vec<u32>>().unwrap();
    let k = |n: u8| (n, format!("k{n}"));
    assert!(d.is_empty().unwrap());
    assert_eq!(d.insert(&k(2), &vec![2]).unwrap(), None);
    assert_eq!(d.insert(&k(1), &vec![1]).unwrap(), None);
    assert_eq!(d.insert(&k(2), &vec![2, 2]).unwrap(), Some(vec![2]));
    assert_eq!(d.get(&k(3)).unwrap(), None);
    assert!(d.contains_key(&k(1)).unwrap());
    assert_eq!(d.setdefault(&k(1), &vec![9]).unwrap(), vec![1]);
    assert_eq!(d.setdefault(&k(3), &vec![3]).unwrap(), vec![3]);
    // Insertion order, as in Python.
    assert_eq!(d.keys().unwrap(), vec![k(2), k(1), k(3)]);
    assert_eq!(d.values().unwrap(), vec![vec![2, 2], vec![1], vec![3]]);
    assert_eq!(d.remove(&k(1)).unwrap(), Some(vec![1]));
    assert_eq!(d.remove(&k(1)).unwrap(), None);
    assert_eq!(d.len().unwrap(), 2);
    d.clear().unwrap();
    assert!(d.is_empty().unwrap());
    // Named objects: every client opening the name gets the same dict.
    let a = m.dict_named::<String, String>("x").unwrap();
    a.insert(&"k".into(), &"v".into()).unwrap();
    let b = m.dict_named::<String, String>("x").unwrap();
    assert_eq!(b.get(&"k".into()).unwrap().as_deref(), Some("v"));
}

#[multiproc::test]
fn list_operations() {
    let m = Manager::new().unwrap();
    let l = m.list::<String>().unwrap();
    for s in ["a", "b", "c"] {
        l.push(&s.to_string()).unwrap();
    }
    l.extend(&["d".to_string(), "e".to_string()]).unwrap();
    assert_eq!(l.get(0).unwrap().as_deref(), Some("a"));
    assert_eq!(l.get(-1).unwrap().as_deref(), Some("e"));
    assert_eq!(l.get(5).unwrap(), None);
    l.set(-2, &"D".into()).unwrap();
    assert!(matches!(
        l.set(9, &"x".into()),
        Err(Error::InvalidArgument(_))
    ));
    l.insert(0, &"start".into()).unwrap();
    l.insert(100, &"end".into()).unwrap();
    assert_eq!(l.pop().unwrap().as_deref(), Some("end"));
    assert_eq!(l.pop_at(0).unwrap(), "start");
    assert!(matches!(l.pop_at(-10), Err(Error::InvalidArgument(_))));
    assert_eq!(l.to_vec().unwrap(), ["a", "b", "c", "D", "e"]);
    l.clear().unwrap();
    assert_eq!(l.pop().unwrap(), None);
    // Names are per kind.
    m.list_named::<u8>("shared").unwrap();
    assert!(matches!(
        m.dict_named::<u8, u8>("shared"),
        Err(Error::InvalidArgument(_))
    ));
}

#[pool_task]
fn remote_client(address: String, key: Vec<u8>) -> u64 {
    let c: ManagerClient = Manager::connect(&address, &key).unwrap();
    let hits = c.dict_named::<String, u64>("hits").unwrap();
    hits.insert(&"remote".into(), &42).unwrap();
    c.list_named::<u64>("log").unwrap().len().unwrap() as u64
}

#[multiproc::test]
fn tcp_with_an_authkey() {
    let m = Manager::builder()
        .tcp("127.0.0.1:0")
        .authkey(b"correct horse".to_vec())
        .start()
        .unwrap();
    let address = m.address().to_string();
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    m.list_named::<u64>("log")
        .unwrap()
        .extend(&[1, 2, 3])
        .unwrap();
    // Another process that knows only the address and the key.
    let p = Pool::new(1).unwrap();
    let seen = p
        .apply(remote_client, (address.clone(), b"correct horse".to_vec()))
        .unwrap();
    assert_eq!(seen, 3);
    let hits = m.dict_named::<String, u64>("hits").unwrap();
    assert_eq!(hits.get(&"remote".into()).unwrap(), Some(42));
    // A wrong key is refused, and the server serves on.
    assert!(matches!(
        Manager::connect(&address, b"wrong"),
        Err(Error::AuthenticationFailed)
    ));
    // So is a peer that sends garbage instead of the handshake.
    let mut raw = std::net::TcpStream::connect(&address).unwrap();
    raw.set_read_timeout(Some(LONG)).unwrap();
    let mut hello = [0u8; 40];
    raw.read_exact(&mut hello).unwrap();
    raw.write_all(&[0xAB; 64]).unwrap();
    let mut reply = [0u8; 4];
    raw.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"FAIL");
    assert_eq!(hits.len().unwrap(), 1);
    // Nobody listening: an error, not a hang.
    drop(m);
    assert!(matches!(
        Manager::connect(&address, b"correct horse"),
        Err(Error::ManagerLost(_))
    ));
}

#[multiproc::test]
fn a_dead_or_stopped_manager_is_an_error_not_a_hang() {
    let m = Manager::new().unwrap();
    let d = m.dict::<u32, u32>().unwrap();
    d.insert(&1, &1).unwrap();
    // Killed from outside.
    let pid = m.pid();
    // SAFETY: plain syscall on a child we started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(common::wait_exit(pid, LONG));
    assert!(matches!(d.get(&1), Err(Error::ManagerLost(_))));
    assert!(matches!(d.len(), Err(Error::ManagerLost(_))));
    drop(m);
    // Shut down by its owner: its proxies fail the same way, and its process is gone.
    let m = Manager::new().unwrap();
    let l = m.list::<u32>().unwrap();
    l.push(&1).unwrap();
    let pid = m.pid();
    m.shutdown();
    assert!(matches!(l.len(), Err(Error::ManagerLost(_))));
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[pool_task]
fn start_and_exit(report: Queue<u32>) {
    let m = Manager::new().unwrap();
    report.put(&m.pid()).unwrap();
    // Exit without dropping the manager: its server must go too.
    std::mem::forget(m);
    std::process::exit(0);
}

#[multiproc::test]
fn a_manager_exits_with_its_owner() {
    let q = Queue::new().unwrap();
    let p = Process::spawn(start_and_exit, (q.clone(),)).unwrap();
    let server = q.get_timeout(LONG).unwrap();
    assert!(p.join_timeout(LONG).unwrap().unwrap().success());
    assert!(
        common::wait_exit(server, LONG),
        "manager {server} outlived its owner"
    );
}

#[pool_task]
fn push_many(l: ListProxy<u64>, from: u64, n: u64) {
    for i in from..from + n {
        l.push(&i).unwrap();
    }
}

#[multiproc::test]
fn list_and_dict_operations_beyond_get_and_set() {
    let m = Manager::new().unwrap();
    let l = m.list_from(&[5u64, 3, 5, 1]).unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 3, 5, 1]);
    l.reverse().unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 5, 3, 5]);
    assert_eq!(l.count(&5).unwrap(), 2);
    assert_eq!(l.index(&5).unwrap(), Some(1));
    assert_eq!(l.index(&9).unwrap(), None);
    assert!(l.remove(&5).unwrap());
    assert!(!l.remove(&9).unwrap());
    assert_eq!(l.to_vec().unwrap(), [1, 3, 5]);
    l.sort_by(|a, b| b.cmp(a)).unwrap();
    assert_eq!(l.to_vec().unwrap(), [5, 3, 1]);

    let pairs = [(1u32, "one".to_string()), (2, "two".to_string())];
    let d = m.dict_from(pairs.iter().map(|(k, v)| (k, v))).unwrap();
    assert_eq!(d.items().unwrap(), pairs);
    let more = [(2u32, "deux".to_string()), (3, "three".to_string())];
    d.update(more.iter().map(|(k, v)| (k, v))).unwrap();
    assert_eq!(d.get(&2).unwrap().as_deref(), Some("deux"));
    assert_eq!(d.len().unwrap(), 3);
    assert_eq!(d.pop_or(&3, "none".into()).unwrap(), "three");
    assert_eq!(d.pop_or(&3, "none".into()).unwrap(), "none");
}

/// `sort` swaps its result in only if the list did not change meanwhile: pushes from two
/// other processes during many sorts are all still there at the end.
#[multiproc::test]
fn sorting_while_others_push_loses_nothing() {
    let m = Manager::new().unwrap();
    let l = m.list_from(&(0..200u64).rev().collect::<Vec<_>>()).unwrap();
    let pool = Pool::new(2).unwrap();
    let a = pool.apply_async(push_many, (l.clone(), 1000, 300)).unwrap();
    let b = pool.apply_async(push_many, (l.clone(), 2000, 300)).unwrap();
    while !(a.ready() && b.ready()) {
        l.sort().unwrap();
    }
    a.get().unwrap();
    b.get().unwrap();
    l.sort().unwrap();
    let mut want: Vec<u64> = (0..200).chain(1000..1300).chain(2000..2300).collect();
    want.sort_unstable();
    assert_eq!(l.to_vec().unwrap(), want);
}
