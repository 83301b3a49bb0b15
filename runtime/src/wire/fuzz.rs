//! Every decoder of bytes from another process on the worker channels, fed random and
//! mutated input (`sys::fuzz`): frame headers and frames (from a byte stream and through a
//! real socket), RUN bodies, result outcomes, chunk failures, HELLO and WELCOME. None may
//! panic; valid input decodes to what was encoded; a decoder that succeeds on mutated input
//! returns a value it could have been sent.

use std::io::Cursor;

use super::codec::{self, ChunkFailure, PanicInfo};
use super::frame::{self, Kind, HEADER_LEN};
use super::handshake::{self, Hello, ProcessInfo, Welcome, WorkerLimits};
use crate::sys::fuzz::Inputs;

const KINDS: [Kind; 8] = [
    Kind::Hello,
    Kind::Welcome,
    Kind::Ready,
    Kind::Run,
    Kind::Result,
    Kind::JobFailed,
    Kind::Shutdown,
    Kind::Start,
];

fn run_frame(job: u64, task: &str, args: &[(u32, String)]) -> Vec<u8> {
    codec::run_frame(job, task, args).unwrap().bytes.to_vec()
}

fn frames() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = KINDS
        .iter()
        .map(|&k| frame::encode(k, &[k as u8; 12]).unwrap())
        .collect();
    seeds.push(run_frame(7, "square", &[(3, "x".into()), (4, "yz".into())]));
    seeds.push(frame::encode(Kind::Result, &[]).unwrap());
    // Two frames back to back.
    let mut two = seeds[0].clone();
    two.extend_from_slice(&seeds[3]);
    seeds.push(two);
    seeds
}

#[test]
fn frames_from_a_stream() {
    let mut gen = Inputs::new("frames from a stream");
    let seeds = frames();
    for seed in &seeds {
        let f = frame::read_frame(&mut Cursor::new(seed)).unwrap().unwrap();
        assert_eq!(&seed[HEADER_LEN..HEADER_LEN + f.body.len()], &f.body[..]);
    }
    for _ in 0..Inputs::iterations() {
        let input = gen.input(&seeds);
        if let Ok(h) = <[u8; HEADER_LEN]>::try_from(input.get(..HEADER_LEN).unwrap_or(&[])) {
            let _ = frame::parse_header(&h);
        }
        let mut r = Cursor::new(&input);
        // Read frames until the stream ends or fails; each one read lies inside the input.
        while let Ok(Some(f)) = frame::read_frame(&mut r) {
            assert!(f.body.len() + HEADER_LEN <= input.len());
        }
    }
}

#[test]
fn frames_through_a_socket() {
    use std::io::Write;
    let mut gen = Inputs::new("frames through a socket");
    let seeds = frames();
    // Fewer: each one is a socket pair and a few system calls.
    for _ in 0..Inputs::iterations() / 8 {
        let input = gen.input(&seeds);
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut conn = super::conn::Conn::new(a.into()).unwrap();
        // The socket's buffer holds this much: written whole, then closed.
        b.write_all(&input).unwrap();
        drop(b);
        let mut total = 0;
        loop {
            match conn.recv_frame() {
                Ok(Some(f)) => {
                    total += HEADER_LEN + f.body.len();
                    assert!(total <= input.len());
                    assert!(f.fds.is_empty());
                }
                Ok(None) => {
                    assert_eq!(total, input.len(), "a clean end inside the input");
                    break;
                }
                Err(_) => break,
            }
        }
    }
}

#[test]
fn run_bodies() {
    let mut gen = Inputs::new("RUN bodies");
    let seeds: Vec<Vec<u8>> = [
        run_frame(1, "t", &[(1, "a".into())]),
        run_frame(u64::MAX, "a_longer_task_name", &[]),
        run_frame(9, "é", &[(0, String::new()), (5, "bcd".into())]),
    ]
    .iter()
    .map(|f| f[HEADER_LEN..].to_vec())
    .collect();
    let run = codec::parse_run(&seeds[0]).unwrap();
    assert_eq!((run.job_id, run.name), (1, "t"));
    let args: Vec<(u32, String)> = crate::wire::serial::decode(run.args).unwrap();
    assert_eq!(args, vec![(1, "a".to_string())]);
    for _ in 0..Inputs::iterations() {
        let input = gen.input(&seeds);
        let _ = frame::split_job_id(&input);
        if let Ok(run) = codec::parse_run(&input) {
            assert!(run.name.len() + run.args.len() < input.len());
            // What a worker then does with the argument bytes.
            let _ = crate::wire::serial::decode::<Vec<(u32, String)>>(run.args);
        }
    }
}

#[test]
fn result_outcomes() {
    let mut gen = Inputs::new("result outcomes");
    let mut seeds = Vec::new();
    let mut one = Vec::new();
    codec::push_ok(&mut one, &42u64);
    seeds.push(one.clone());
    let mut mixed = one.clone();
    codec::push_panic(
        &mut mixed,
        &PanicInfo {
            message: "boom".into(),
            backtrace: Some("at x".into()),
        },
    );
    codec::push_ok(&mut mixed, &7u64);
    seeds.push(mixed.clone());
    let mut text = Vec::new();
    codec::push_ok(&mut text, &"a string".to_string());
    seeds.push(text);
    let got = codec::decode_outcomes::<u64>("t", &mixed, 3).unwrap();
    assert!(matches!(got[..], [Ok(42), Err(_), Ok(7)]));
    assert!(codec::check_single_outcome("t", &one).is_ok());
    for _ in 0..Inputs::iterations() {
        let input = gen.input(&seeds);
        for n in 0..4 {
            let slow = codec::decode_outcomes::<u64>("t", &input, n);
            if let Ok(v) = &slow {
                assert_eq!(v.len(), n);
            }
            // The map's fast path agrees: values exactly when every outcome is a value.
            let mut fast = vec![99u64];
            let all_ok: Option<Vec<u64>> = slow
                .ok()
                .and_then(|v| v.into_iter().map(Result::ok).collect());
            if codec::decode_values_into(&input, n, &mut fast) {
                assert_eq!(Some(fast[1..].to_vec()), all_ok);
            } else {
                assert_eq!(fast, [99], "a failed fast decode left values behind");
                assert_eq!(all_ok, None);
            }
            let _ = codec::decode_outcomes::<String>("t", &input, n);
            let _ = codec::decode_outcomes::<Vec<u8>>("t", &input, n);
        }
        let _ = codec::check_single_outcome("t", &input);
    }
}

#[test]
fn chunk_failures_and_handshakes() {
    let mut gen = Inputs::new("chunk failures and handshakes");
    let info = |name: &str| ProcessInfo {
        name: name.into(),
        pid: 12,
        daemon: true,
    };
    let hello = Hello {
        version: super::PROTOCOL_VERSION,
        build_id: 99,
        pid: 5,
    };
    let welcome = Welcome {
        initializer: Some(("init".into(), vec![1, 2, 3])),
        me: info("SpawnPoolWorker-1"),
        parent: info("MainProcess"),
        limits: WorkerLimits {
            max_rss: Some(1 << 30),
            address_space: None,
        },
        threads: 4,
    };
    let seeds = vec![
        crate::wire::serial::encode(&hello).unwrap(),
        crate::wire::serial::encode(&welcome).unwrap(),
        crate::wire::serial::encode(&ChunkFailure::Unregistered("t".into())).unwrap(),
        crate::wire::serial::encode(&ChunkFailure::BadArgs("bad".into())).unwrap(),
    ];
    let h: Hello = crate::wire::serial::decode(&seeds[0]).unwrap();
    assert!(handshake::check_hello(&h, 99).is_ok());
    assert!(handshake::check_hello(&h, 98).is_err());
    for _ in 0..Inputs::iterations() {
        let input = gen.input(&seeds);
        if let Ok(h) = crate::wire::serial::decode::<Hello>(&input) {
            let _ = handshake::check_hello(&h, 99);
        }
        let _ = crate::wire::serial::decode::<Welcome>(&input);
        if let Ok(f) = crate::wire::serial::decode::<ChunkFailure>(&input) {
            let _ = f.into_error("t").to_string();
        }
    }
}
