//! `multiproc::connection` through real processes: authenticated listeners and clients over
//! TCP and abstract Unix sockets, refusals on both sides, bounded handshakes, `wait` over
//! every kind of object, and connection ends cloned and closed.

use std::io::{Read, Write};
use std::time::Duration;

use multiproc::connection::{wait, Client, Listener};
use multiproc::prelude::*;

const KEY: &[u8] = b"the key";
const LONG: Duration = Duration::from_secs(60);

/// A client process: connects, sends `x`, returns what comes back (or the error's text).
#[pool_task]
fn ask(address: String, key: Vec<u8>, x: u64) -> Result<u64, String> {
    let conn: Connection<u64> = Client::connect(&address, &key).map_err(|e| e.to_string())?;
    conn.send(&x).map_err(|e| e.to_string())?;
    conn.recv().map_err(|e| e.to_string())
}

#[pool_task]
fn serve_one(conn: Connection<u64>) {
    while let Ok(x) = conn.recv() {
        conn.send(&(x + 1)).unwrap();
    }
}

fn doubling_server(listener: &Listener, clients: usize) {
    for _ in 0..clients {
        let conn: Connection<u64> = listener.accept().unwrap();
        let x = conn.recv().unwrap();
        conn.send(&(x * 2)).unwrap();
    }
}

#[multiproc::test]
fn clients_in_other_processes_authenticate_over_tcp_and_abstract_sockets() {
    for address in ["127.0.0.1:0", "@"] {
        let listener = Listener::bind(address, KEY).unwrap();
        let at = listener.address();
        assert!(
            at.starts_with("127.0.0.1:") || at.starts_with("@multiproc-listener-"),
            "{at}"
        );
        assert!(!at.ends_with(":0"));
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (1..=3u64)
            .map(|x| {
                pool.apply_async(ask, (at.clone(), KEY.to_vec(), x))
                    .unwrap()
            })
            .collect();
        doubling_server(&listener, 3);
        let mut got: Vec<u64> = rs.into_iter().map(|r| r.get().unwrap().unwrap()).collect();
        got.sort();
        assert_eq!(got, [2, 4, 6]);
        if address.starts_with("127") {
            assert!(listener.last_accepted().unwrap().starts_with("127.0.0.1:"));
        } else {
            assert_eq!(listener.last_accepted(), None);
        }
    }
}

#[multiproc::test]
fn a_wrong_key_is_refused_on_both_sides_and_the_listener_serves_on() {
    let listener = Listener::bind("127.0.0.1:0", KEY).unwrap();
    let at = listener.address();
    let intruder = Process::spawn(ask_and_report, (at.clone(), b"not the key".to_vec())).unwrap();
    let e = listener.accept::<u64>().unwrap_err();
    assert!(matches!(e, Error::AuthenticationFailed), "{e:?}");
    assert!(
        intruder.join().unwrap().success(),
        "the client saw AuthenticationFailed"
    );
    // The next, rightful client is served.
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(ask, (at, KEY.to_vec(), 21)).unwrap();
    doubling_server(&listener, 1);
    assert_eq!(r.get().unwrap(), Ok(42));
}

/// Exits 0 only if connecting with `key` fails with `AuthenticationFailed`.
#[pool_task]
fn ask_and_report(address: String, key: Vec<u8>) {
    match Client::connect::<u64>(&address, &key) {
        Err(Error::AuthenticationFailed) => {}
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
}

#[multiproc::test]
fn silent_and_garbage_peers_cost_a_bounded_handshake_only() {
    let listener = Listener::bind("127.0.0.1:0", KEY).unwrap();
    listener.set_handshake_timeout(Duration::from_millis(300));
    let at = listener.address();
    // Says nothing: the accept gives up on it.
    let _silent = std::net::TcpStream::connect(&at).unwrap();
    assert!(matches!(listener.accept::<u64>(), Err(Error::Timeout)));
    // Sends a megabyte of garbage: only the answer's size is read, and it fails.
    let mut garbage = std::net::TcpStream::connect(&at).unwrap();
    let writer = std::thread::spawn(move || {
        let mut hello = [0u8; 40];
        garbage.read_exact(&mut hello).unwrap();
        let _ = garbage.write_all(&vec![0xAB; 1 << 20]);
    });
    assert!(matches!(
        listener.accept::<u64>(),
        Err(Error::AuthenticationFailed)
    ));
    writer.join().unwrap();
    // Not a multiproc peer at all, from the client's side.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_at = plain.local_addr().unwrap().to_string();
    let talker = std::thread::spawn(move || {
        let (mut s, _) = plain.accept().unwrap();
        let _ = s.write_all(&[0u8; 40]);
    });
    assert!(matches!(
        Client::connect::<u64>(&plain_at, KEY),
        Err(Error::Protocol(_))
    ));
    talker.join().unwrap();
    // And the listener still serves.
    let pool = Pool::new(1).unwrap();
    let r = pool.apply_async(ask, (at, KEY.to_vec(), 5)).unwrap();
    doubling_server(&listener, 1);
    assert_eq!(r.get().unwrap(), Ok(10));
    assert!(matches!(
        listener.accept_timeout::<u64>(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
}

#[multiproc::test]
fn an_accepted_connection_is_a_pipe_end_that_travels_to_a_child() {
    let listener = Listener::bind("@", KEY).unwrap();
    let at = listener.address();
    let client = std::thread::spawn(move || {
        let c: Connection<u64> = Client::connect(&at, KEY).unwrap();
        c.send(&1).unwrap();
        let back = c.recv().unwrap();
        c.close();
        back
    });
    let conn: Connection<u64> = listener.accept().unwrap();
    // The server hands the connection to a child process, as it would a pipe end.
    let child = Process::spawn(serve_one, (conn.clone(),)).unwrap();
    drop(conn);
    assert_eq!(client.join().unwrap(), 2);
    assert!(
        child.join().unwrap().success(),
        "the child saw the end of the stream"
    );
}

#[multiproc::test]
fn clones_share_an_end_and_close_ends_it_for_all() {
    let (a, b) = multiproc::pipe::<u32>().unwrap();
    let a2 = a.clone();
    a.send(&1).unwrap();
    a2.send(&2).unwrap();
    let b2 = b.clone();
    assert_eq!((b.recv().unwrap(), b2.recv().unwrap()), (1, 2));
    a.close();
    a.close(); // idempotent
    assert!(a2.is_closed());
    assert!(matches!(a2.send(&3), Err(Error::Closed)));
    assert!(matches!(a.recv(), Err(Error::Closed)));
    assert!(matches!(a.poll(Some(Duration::ZERO)), Err(Error::Closed)));
    assert!(matches!(b.recv(), Err(Error::Eof)), "the peer sees the end");
}

/// Sends `x` once `go` is set, then keeps its end open until `done` is.
#[pool_task]
fn send_after(conn: Connection<u32>, go: Event, x: u32, done: Event) {
    go.wait_timeout(LONG).unwrap();
    conn.send(&x).unwrap();
    done.wait_timeout(LONG).unwrap();
}

#[pool_task]
fn put_after(q: Queue<u32>, go: Event) {
    go.wait_timeout(LONG).unwrap();
    q.put(&9).unwrap();
}

#[pool_task]
fn exit_after(go: Event) {
    go.wait_timeout(LONG).unwrap();
}

#[multiproc::test]
fn wait_returns_exactly_what_became_ready() {
    let (a, a_child) = multiproc::pipe::<u32>().unwrap();
    let (b, b_child) = multiproc::pipe::<u32>().unwrap();
    let q: Queue<u32> = Queue::new().unwrap();
    let listener = Listener::bind("@", KEY).unwrap();
    let (go_a, go_q, go_p) = (
        Event::new().unwrap(),
        Event::new().unwrap(),
        Event::new().unwrap(),
    );
    let done = Event::new().unwrap();
    let pa = Process::spawn(send_after, (a_child, go_a.clone(), 1, done.clone())).unwrap();
    let pq = Process::spawn(put_after, (q.clone(), go_q.clone())).unwrap();
    let pp = Process::spawn(exit_after, (go_p.clone(),)).unwrap();
    let objects: [&dyn multiproc::connection::Waitable; 5] = [&a, &b, &q, &listener, &pp];
    // Nothing is ready yet.
    assert!(wait(&objects, Some(Duration::from_millis(50)))
        .unwrap()
        .is_empty());
    go_a.set();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [0]);
    assert_eq!(a.recv().unwrap(), 1);
    go_q.set();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [2]);
    assert_eq!(q.get().unwrap(), 9);
    let at = listener.address();
    let client = std::thread::spawn(move || Client::connect::<u32>(&at, KEY).map(|_| ()));
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [3]);
    listener.accept::<u32>().unwrap();
    client.join().unwrap().unwrap();
    go_p.set();
    assert_eq!(wait(&objects, Some(LONG)).unwrap(), [4]);
    // The other end of `b` closes: ready (recv says Eof); then `a`'s writer exits too.
    drop(b_child);
    assert_eq!(wait(&objects[..2], Some(LONG)).unwrap(), [1]);
    assert!(matches!(b.recv(), Err(Error::Eof)));
    done.set();
    assert_eq!(wait(&objects[..1], Some(LONG)).unwrap(), [0]);
    assert!(matches!(a.recv(), Err(Error::Eof)));
    for p in [pa, pq, pp] {
        assert!(p.join().unwrap().success());
    }
}
