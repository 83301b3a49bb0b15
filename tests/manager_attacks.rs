//! A TCP manager under attack: connections held open without authenticating, floods of
//! hostile connections, an authenticated client that stalls half-way through a request or
//! announces more than allowed, messages injected, altered or replayed after the handshake,
//! and a stopped server with many calling threads. The attacker is a client written here
//! from the protocol's description (`runtime/src/manager/proto.rs`), not the library's.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use multiproc::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The library's wire codec, called directly: bincode 1's layout, no preallocation cap.
type Cfg = wincode::config::Configuration<true, { usize::MAX }>;

fn ser<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.serialize(serde_wincode::Serializer::<_, Cfg>::new(&mut out))
        .unwrap();
    out
}

fn de<T: serde::de::DeserializeOwned>(b: &[u8]) -> T {
    T::deserialize(serde_wincode::Deserializer::<_, Cfg>::new(b)).unwrap()
}

const LONG: Duration = Duration::from_secs(120);
const KEY: &[u8] = b"a key for the attack tests, long and random enough";

/// One test at a time: they count connections and descriptors.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// As many descriptors as the hard limit allows (the attacks hold hundreds).
fn raise_descriptor_limit() {
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn tcp_manager(b: multiproc::ManagerBuilder) -> Manager {
    b.tcp("127.0.0.1:0").authkey(KEY).start().unwrap()
}

// --- the protocol, as the attacker speaks it -------------------------------------------------

type H = Hmac<Sha256>;

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <H as Mac>::new_from_slice(key).unwrap();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The library's request and response types, mirrored (the codec encodes by variant index).
#[derive(Serialize, Deserialize, Debug, Clone)]
enum Request {
    Open {
        kind: Kind,
        name: Option<String>,
        tag: u64,
    },
    Dict {
        id: u64,
        op: (),
    },
    List {
        id: u64,
        op: ListOp,
    },
    Lease {
        client: u64,
    },
    Queue {
        id: u64,
        op: (),
    },
    Sync {
        id: u64,
        op: (),
    },
    Cell {
        id: u64,
        op: (),
    },
    Namespace {
        id: u64,
        op: (),
    },
    Method {
        id: u64,
        method: String,
        sig: u64,
        args: serde_bytes::ByteBuf,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
enum Kind {
    Dict,
    List,
    Queue {
        maxsize: u64,
        joinable: bool,
    },
    Lock {
        recursive: bool,
    },
    Semaphore {
        value: u32,
        bounded: bool,
    },
    Event,
    Condition,
    Barrier {
        parties: u32,
    },
    Cell(serde_bytes::ByteBuf),
    Namespace,
    User {
        name: String,
        state: serde_bytes::ByteBuf,
    },
}

#[derive(Serialize, Deserialize, Debug, Clone)]
enum ListOp {
    Push(serde_bytes::ByteBuf),
    Extend(Vec<serde_bytes::ByteBuf>),
    Get(i64),
    Set(i64, serde_bytes::ByteBuf),
    Insert(i64, serde_bytes::ByteBuf),
    Pop(Option<i64>),
    Len,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Response {
    Id(u64),
    Done,
    Bool(bool),
    Len(u64),
    Value(Option<serde_bytes::ByteBuf>),
    Values(Vec<serde_bytes::ByteBuf>),
    Items(Vec<(serde_bytes::ByteBuf, serde_bytes::ByteBuf)>),
    Refused(String),
}

/// A client that authenticated and can then send what it likes.
struct Raw {
    s: TcpStream,
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    sent: u64,
    received: u64,
}

impl Raw {
    fn connect(address: &str, key: &[u8]) -> Raw {
        let mut s = TcpStream::connect(address).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        let mut hello = [0u8; 40];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..8], b"MPMGR005");
        let ns = hello[8..].to_vec();
        let nc = [7u8; 32];
        let mut answer = hmac(key, &[b"client", &ns]);
        answer.extend_from_slice(&nc);
        s.write_all(&answer).unwrap();
        let mut verdict = [0u8; 36];
        s.read_exact(&mut verdict).unwrap();
        assert_eq!(&verdict[..4], b"OK__");
        assert_eq!(verdict[4..].to_vec(), hmac(key, &[b"server", &nc]));
        let to_server = hmac(key, &["client→server".as_bytes(), &ns, &nc]);
        let to_client = hmac(key, &["server→client".as_bytes(), &ns, &nc]);
        let mut raw = Raw {
            s,
            to_server,
            to_client,
            sent: 0,
            received: 0,
        };
        let welcome = raw.recv_body().expect("a welcome");
        let max: u64 = de(&welcome);
        assert!(max > 0);
        raw
    }

    /// The bytes of `body` as the next message this client sends.
    fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        let len = (body.len() as u32).to_le_bytes();
        let tag = hmac(&self.to_server, &[&self.sent.to_le_bytes(), &len, body]);
        self.sent += 1;
        let mut out = len.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&tag);
        out
    }

    fn send(&mut self, req: &Request) -> Vec<u8> {
        let bytes = self.frame(&ser(req));
        self.s.write_all(&bytes).unwrap();
        bytes
    }

    /// The next message's body, tag checked; `None` if the server closed the connection.
    fn recv_body(&mut self) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        self.s.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.s.read_exact(&mut body).ok()?;
        let mut tag = [0u8; 32];
        self.s.read_exact(&mut tag).ok()?;
        let want = hmac(
            &self.to_client,
            &[&self.received.to_le_bytes(), &len, &body],
        );
        assert_eq!(tag.to_vec(), want, "the server's tag does not check out");
        self.received += 1;
        Some(body)
    }

    fn call(&mut self, req: &Request) -> Response {
        self.send(req);
        let body = self.recv_body().expect("a reply");
        de(&body)
    }

    /// Whether the server closed this connection (reads end) within `LONG`.
    fn closed_by_server(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false, // timed out: still open
            }
        }
    }
}

fn bytes(b: &[u8]) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(b.to_vec())
}

// --- before authentication -------------------------------------------------------------------

/// Opens a connection and leaves it idle, or speaks garbage, or answers with a wrong key,
/// or sends half an answer; `n` picks which.
fn hostile(address: &str, n: usize) -> Option<TcpStream> {
    let mut s = TcpStream::connect(address).ok()?;
    match n % 4 {
        0 => {}
        1 => {
            let _ = s.write_all(&[0xff; 64]);
        }
        2 => {
            let mut hello = [0u8; 40];
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            if s.read_exact(&mut hello).is_ok() {
                let mut answer = hmac(b"the wrong key", &[b"client", &hello[8..]]);
                answer.extend_from_slice(&[1u8; 32]);
                let _ = s.write_all(&answer);
            }
        }
        _ => {
            let _ = s.write_all(&[0u8; 17]);
        }
    }
    Some(s)
}

#[multiproc::test]
fn held_and_hostile_connections_do_not_keep_clients_out() {
    let _serial = serial();
    raise_descriptor_limit();
    let m = tcp_manager(Manager::builder());
    let address = m.address().to_string();
    // 600 connections held open without authenticating: more than the handshake stage
    // holds, so the oldest are evicted as newer ones come.
    let held: Vec<TcpStream> = (0..600)
        .filter_map(|_| TcpStream::connect(&address).ok())
        .collect();
    assert_eq!(held.len(), 600);
    // A legitimate client gets in at once, and serves.
    let c = Manager::connect(&address, KEY).unwrap();
    let d = c.dict_named::<u32, u32>("d").unwrap();
    d.insert(&0, &0).unwrap();
    // Now 10,000 hostile connections from four threads, while the client keeps working.
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|t| {
            let (address, stop, opened) = (address.clone(), stop.clone(), opened.clone());
            std::thread::spawn(move || {
                let mut kept = std::collections::VecDeque::new();
                for n in 0..2500 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Some(s) = hostile(&address, n + t) {
                        opened.fetch_add(1, Ordering::SeqCst);
                        // Keep the last 50 of each thread open: 200 idle in all.
                        kept.push_back(s);
                        if kept.len() > 50 {
                            kept.pop_front();
                        }
                    }
                }
                kept
            })
        })
        .collect();
    let mut served = 0u32;
    while opened.load(Ordering::SeqCst) < 10_000 && attackers.iter().any(|a| !a.is_finished()) {
        served += 1;
        d.insert(&served, &served).unwrap();
        // A new connection each time too, not only the one already open.
        let fresh = Manager::connect(&address, KEY).unwrap();
        let fd = fresh.dict_named::<u32, u32>("d").unwrap();
        assert_eq!(fd.get(&served).unwrap(), Some(served));
    }
    stop.store(true, Ordering::SeqCst);
    let kept: Vec<_> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    assert!(
        opened.load(Ordering::SeqCst) >= 10_000,
        "the attack did not run"
    );
    assert!(served > 0);
    assert_eq!(d.len().unwrap(), served as usize + 1);
    drop((held, kept));
}

// --- after authentication --------------------------------------------------------------------

#[multiproc::test]
fn a_client_stalling_mid_request_is_cut_off_and_its_memory_given_back() {
    let _serial = serial();
    let m = tcp_manager(
        Manager::builder()
            .peer_deadline(Duration::from_secs(1))
            .max_buffered(8 << 20),
    );
    let l = m.list_named::<Vec<u8>>("l").unwrap();
    let mut raw = Raw::connect(m.address(), KEY);
    // Announce 64 MiB, send 5 MiB of it, stall.
    raw.s.write_all(&(64u32 << 20).to_le_bytes()).unwrap();
    raw.s.write_all(&vec![0u8; 5 << 20]).unwrap();
    // The server's memory is mostly taken, but small requests still pass...
    l.push(&vec![1; 10]).unwrap();
    // ...and one that needs more than is left gets it once the staller is cut off.
    l.push(&vec![2; 6 << 20]).unwrap();
    assert!(raw.closed_by_server(), "a stalled request was kept");
    assert_eq!(l.len().unwrap(), 2);
    assert_eq!(l.get(1).unwrap().map(|v| v.len()), Some(6 << 20));
}

#[multiproc::test]
fn requests_over_the_limit_are_refused_and_the_connection_lives() {
    let _serial = serial();
    let m = tcp_manager(Manager::builder().max_message(1 << 20));
    let l = m.list_named::<Vec<u8>>("l").unwrap();
    // The library's client refuses before sending, and its connection serves on.
    match l.push(&vec![0; 2 << 20]) {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("{other:?}"),
    }
    l.push(&vec![0; 1000]).unwrap();
    assert_eq!(l.len().unwrap(), 1);
    // A client announcing more is disconnected without the server reading it.
    let mut raw = Raw::connect(m.address(), KEY);
    raw.s.write_all(&(2u32 << 20).to_le_bytes()).unwrap();
    assert!(raw.closed_by_server());
    assert_eq!(l.len().unwrap(), 1);
}

#[multiproc::test]
fn messages_injected_altered_or_replayed_after_the_handshake_are_rejected() {
    let _serial = serial();
    let m = tcp_manager(Manager::builder());
    let log = m.list_named::<u32>("log").unwrap();
    let open = Request::Open {
        kind: Kind::List,
        name: Some("log".into()),
        // The type tag of a `ListProxy<u32>` (FNV-1a of its kind and item type), as the
        // library's own proxy of this list has.
        tag: fnv(b"list\0(u32,)"),
    };
    let push = |id, v: u32| Request::List {
        id,
        op: ListOp::Push(bytes(&ser(&v))),
    };
    // A genuine exchange works.
    let mut raw = Raw::connect(m.address(), KEY);
    let Response::Id(id) = raw.call(&open) else {
        panic!("no id")
    };
    assert_eq!(raw.call(&push(id, 1)), Response::Done);
    assert_eq!(log.to_vec().unwrap(), vec![1]);

    // A replayed message: the server closes the connection, and did not run it again.
    let mut raw = Raw::connect(m.address(), KEY);
    let sent = raw.send(&push(id, 2));
    assert!(raw.recv_body().is_some());
    raw.s.write_all(&sent).unwrap();
    assert!(raw.closed_by_server(), "a replayed message was taken");
    assert_eq!(log.to_vec().unwrap(), vec![1, 2]);

    // An altered one (one bit of its body).
    let mut raw = Raw::connect(m.address(), KEY);
    let mut bad = raw.frame(&ser(&push(id, 3)));
    bad[6] ^= 1;
    raw.s.write_all(&bad).unwrap();
    assert!(raw.closed_by_server(), "an altered message was taken");

    // One made for another connection (injected by someone who saw that one's traffic).
    let mut other = Raw::connect(m.address(), KEY);
    let mut raw = Raw::connect(m.address(), KEY);
    let foreign = other.frame(&ser(&push(id, 4)));
    raw.s.write_all(&foreign).unwrap();
    assert!(
        raw.closed_by_server(),
        "another connection's message was taken"
    );

    // One with no valid tag at all, as an injector without the key would write.
    let mut raw = Raw::connect(m.address(), KEY);
    let body = ser(&push(id, 5));
    let mut forged = (body.len() as u32).to_le_bytes().to_vec();
    forged.extend_from_slice(&body);
    forged.extend_from_slice(&[0u8; 32]);
    raw.s.write_all(&forged).unwrap();
    assert!(raw.closed_by_server(), "a forged message was taken");

    assert_eq!(log.to_vec().unwrap(), vec![1, 2], "a rejected message ran");
    // The legitimate client was never disturbed.
    log.push(&6).unwrap();
    assert_eq!(log.len().unwrap(), 3);
}

// --- a stopped server ------------------------------------------------------------------------

/// Waits until every thread of `pid` is stopped (a stop signal takes effect a moment after
/// `kill` returns).
fn wait_stopped(pid: u32) {
    let deadline = Instant::now() + LONG;
    loop {
        let all = std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
                state == Some('T')
            });
        if all {
            return;
        }
        assert!(Instant::now() < deadline, "{pid} did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[multiproc::test]
fn calls_on_a_stopped_manager_time_out_each_on_its_own_and_stay_timeouts() {
    let _serial = serial();
    let timeout = Duration::from_secs(3);
    let m = tcp_manager(Manager::builder().timeout(timeout));
    let d = m.dict_named::<u32, u32>("d").unwrap();
    d.insert(&1, &1).unwrap();
    // SAFETY: plain syscall on the manager process this test started.
    unsafe { libc::kill(m.pid() as i32, libc::SIGSTOP) };
    wait_stopped(m.pid());
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                let r = d.get(&1);
                (r, started.elapsed())
            })
        })
        .collect();
    let ends: Vec<(multiproc::Result<Option<u32>>, Duration)> =
        calls.into_iter().map(|c| c.join().unwrap()).collect();
    for (r, _) in &ends {
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    }
    // They waited side by side, not one after another: the first and the last ended less
    // than one timeout apart (one after another, they would be three timeouts apart).
    let first = ends.iter().map(|e| e.1).min().unwrap();
    let last = ends.iter().map(|e| e.1).max().unwrap();
    assert!(
        last - first < timeout,
        "calls waited for each other: {ends:?}"
    );
    // The next call connects afresh, and a server that is only stopped is still a timeout.
    assert!(matches!(d.get(&1), Err(Error::Timeout)));
    // SAFETY: as above.
    unsafe { libc::kill(m.pid() as i32, libc::SIGCONT) };
    assert_eq!(d.get(&1).unwrap(), Some(1));
}

// --- bad requests from an authenticated client ------------------------------------------------

#[derive(Default, Serialize, Deserialize)]
struct Calc {
    n: i64,
}

#[managed]
impl Calc {
    fn add(&mut self, x: i64) -> i64 {
        self.n += x;
        self.n
    }
}

#[multiproc::test]
fn bad_requests_are_refused_to_their_client_and_the_server_serves_on() {
    let _serial = serial();
    let m = tcp_manager(Manager::builder());
    let calc = m.serve::<Calc>().unwrap();
    let name = "manager_attacks::Calc";
    let tag = fnv(format!("managed\0{name}").as_bytes());
    let user = |name: &str, state: &[u8]| Request::Open {
        kind: Kind::User {
            name: name.into(),
            state: bytes(state),
        },
        name: None,
        tag: fnv(format!("managed\0{name}").as_bytes()),
    };
    let refused = |r: Response| assert!(matches!(r, Response::Refused(_)), "{r:?}");
    let mut raw = Raw::connect(m.address(), KEY);
    // A type the manager's program does not have; a value that does not decode.
    refused(raw.call(&user("manager_attacks::Nope", &[])));
    refused(raw.call(&user(name, &[1])));
    // A proxy of another type for a real one.
    refused(raw.call(&Request::Open {
        kind: Kind::User {
            name: name.into(),
            state: bytes(&ser(&Calc { n: 0 })),
        },
        name: None,
        tag: tag ^ 1,
    }));
    let Response::Id(id) = raw.call(&user(name, &ser(&Calc { n: 10 }))) else {
        panic!("no id")
    };
    // The signature tag of `add(i64) -> i64`, as the generated proxy computes it.
    let sig = fnv(b"add\0((i64,), i64)");
    let method = |id, m: &str, sig, args: Vec<u8>| Request::Method {
        id,
        method: m.into(),
        sig,
        args: bytes(&args),
    };
    refused(raw.call(&method(id, "nope", sig, ser(&(1i64,)))));
    refused(raw.call(&method(id, "add", sig ^ 1, ser(&(1i64,)))));
    refused(raw.call(&method(id, "add", sig, vec![1, 2])));
    refused(raw.call(&method(9999, "add", sig, ser(&(1i64,)))));
    // A dict's id used as a list, a lock call without a lease.
    let Response::Id(dict) = raw.call(&Request::Open {
        kind: Kind::Dict,
        name: None,
        tag: 1,
    }) else {
        panic!("no id")
    };
    refused(raw.call(&Request::List {
        id: dict,
        op: ListOp::Len,
    }));
    // The same connection serves a good call after all of these.
    match raw.call(&method(id, "add", sig, ser(&(5i64,)))) {
        Response::Value(Some(v)) => assert_eq!(de::<i64>(&v), 15),
        other => panic!("{other:?}"),
    }
    // And the library's own client never noticed.
    assert_eq!(calc.add(1).unwrap(), 1);
}
