//! What happens when things go wrong: workers that die mid-task, values that do not cross
//! the process boundary. Nothing may hang, nothing may be lost silently, and the pool keeps
//! serving afterwards.

use std::time::Duration;

use multiproc::prelude::*;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[pool_task]
fn kill_self(signal: i32) -> u32 {
    // SAFETY: plain syscalls on our own process.
    unsafe { libc::kill(libc::getpid(), signal) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

#[pool_task]
fn abort_now() {
    std::process::abort();
}

#[pool_task]
fn exit_now(code: i32) {
    std::process::exit(code);
}

#[pool_task]
fn announce_then_sleep(started: Event) -> u32 {
    started.set();
    std::thread::sleep(Duration::from_secs(300));
    0
}

/// Serializes to an error, always.
#[derive(Debug)]
struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("Unserializable refuses"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|_| Unserializable)
    }
}

/// Serializes fine, never deserializes: does not round-trip.
#[derive(Debug)]
struct OneWay(u8);

impl Serialize for OneWay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.0)
    }
}

impl<'de> Deserialize<'de> for OneWay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        Err(D::Error::custom(format!("OneWay({v}) does not come back")))
    }
}

#[pool_task]
fn make_unserializable(_x: u8) -> Unserializable {
    Unserializable
}

#[pool_task]
fn take_unserializable(_u: Unserializable) -> u8 {
    1
}

#[pool_task]
fn halve_wide(x: u128) -> u128 {
    x / 2
}

#[pool_task]
fn wide_of(x: u64) -> i128 {
    -i128::from(x)
}

#[pool_task]
fn take_one_way(_o: OneWay) -> u8 {
    1
}

#[pool_task]
fn make_one_way(x: u8) -> OneWay {
    OneWay(x)
}

#[pool_task]
fn make_maybe_one_way(x: u8) -> Result<u8, OneWay> {
    if x == 2 {
        Err(OneWay(x))
    } else {
        Ok(x)
    }
}

#[multiproc::test]
fn a_worker_killed_mid_task_is_reported_and_replaced() {
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    match pool.apply(kill_self, (libc::SIGKILL,)) {
        Err(Error::WorkerLost {
            task, pid, signal, ..
        }) => {
            assert!(task.ends_with("::kill_self"), "{task}");
            assert_eq!(vec![pid], before);
            assert_eq!(signal, Some(libc::SIGKILL));
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(
        pool.apply(add, (1, 2)).unwrap(),
        3,
        "the pool keeps serving"
    );
    assert_ne!(pool.pids(), before, "with a new worker");
}

#[multiproc::test]
fn abort_and_exit_are_worker_losses_too() {
    let pool = Pool::new(2).unwrap();
    match pool.apply(abort_now, ()) {
        Err(Error::WorkerLost { signal, .. }) => assert_eq!(signal, Some(libc::SIGABRT)),
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    match pool.apply(exit_now, (7,)) {
        Err(Error::WorkerLost {
            signal, exit_code, ..
        }) => {
            assert_eq!((signal, exit_code), (None, Some(7)))
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    assert_eq!(pool.starmap(add, vec![(1, 1), (2, 2)]).unwrap(), vec![2, 4]);
}

/// A worker that dies at once, while its caller polls the channel for the result: the
/// caller gets `WorkerLost` (not a hang, not a protocol error), a replacement serves, and
/// callers around it get their results.
#[multiproc::test]
fn a_worker_dying_while_its_caller_reads_for_the_result_is_a_loss() {
    let pool = Pool::new(2).unwrap();
    for round in 0..10i64 {
        let fine = pool.apply_async(add, (round, 1)).unwrap();
        let lost = pool.apply_async(abort_now, ()).unwrap();
        match lost.get_timeout(LONG) {
            Err(Error::WorkerLost { .. }) => {}
            other => panic!("round {round}: expected WorkerLost, got {other:?}"),
        }
        assert_eq!(fine.get_timeout(LONG).unwrap(), round + 1);
    }
    assert_eq!(pool.apply(add, (2, 2)).unwrap(), 4);
}

#[multiproc::test]
fn killing_a_busy_worker_from_outside_fails_only_its_task() {
    let pool = Pool::new(1).unwrap();
    let victim = pool.pids()[0];
    let started = Event::new().unwrap();
    let stuck = pool
        .apply_async(announce_then_sleep, (started.clone(),))
        .unwrap();
    let queued = pool.apply_async(add, (20, 22)).unwrap();
    // Kill it once it is inside the task (killed before, it was running nothing, and its
    // jobs would simply run again on the replacement).
    assert!(started.wait_timeout(LONG).unwrap());
    // SAFETY: plain syscall on our own worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    match stuck.get_timeout(LONG) {
        Err(Error::WorkerLost { pid, signal, .. }) => {
            assert_eq!((pid, signal), (victim, Some(libc::SIGKILL)))
        }
        other => panic!("expected WorkerLost, got {other:?}"),
    }
    // The job queued behind it never started: it runs on the replacement.
    assert_eq!(queued.get_timeout(LONG).unwrap(), 42);
}

#[multiproc::test]
fn a_map_with_a_lost_worker_fails_instead_of_hanging() {
    let pool = Pool::new(2).unwrap();
    let r = pool.map_with(kill_self, vec![libc::SIGKILL; 4], Opts::new().chunksize(1));
    assert!(matches!(r, Err(Error::WorkerLost { .. })), "{r:?}");
    let items: Vec<_> = pool
        .imap(kill_self, vec![libc::SIGKILL; 3])
        .unwrap()
        .collect();
    assert_eq!(items.len(), 3);
    assert!(items
        .iter()
        .all(|r| matches!(r, Err(Error::WorkerLost { .. }))));
    assert_eq!(pool.apply(add, (2, 2)).unwrap(), 4);
}

#[multiproc::test]
fn an_argument_that_does_not_serialize_fails_at_the_call() {
    let pool = Pool::new(1).unwrap();
    let e = pool
        .apply_async(take_unserializable, (Unserializable,))
        .unwrap_err();
    assert!(matches!(e, Error::Serialization { .. }), "{e:?}");
    let e = pool
        .map(take_unserializable, vec![Unserializable])
        .unwrap_err();
    assert!(matches!(e, Error::Serialization { .. }), "{e:?}");
    let items: Vec<_> = pool
        .imap(take_unserializable, vec![Unserializable])
        .unwrap()
        .collect();
    assert!(
        matches!(items[..], [Err(Error::Serialization { .. })]),
        "{items:?}"
    );
    assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
}

#[multiproc::test]
fn a_result_that_does_not_serialize_is_an_error_and_the_worker_serves_on() {
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    match pool.apply(make_unserializable, (1,)) {
        Err(Error::ResultEncoding { task, message }) => {
            assert!(task.ends_with("::make_unserializable"));
            assert!(message.contains("refuses"), "{message}");
        }
        other => panic!("expected ResultEncoding, got {other:?}"),
    }
    assert_eq!(pool.pids(), before);
    assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
}

#[multiproc::test]
fn wide_integers_are_refused_with_advice_and_the_pool_serves_on() {
    // The codec (bincode 1's layout, via serde-wincode) has no 128-bit integers: the call
    // fails before it is sent, or its result fails in the worker, saying what to send instead.
    let pool = Pool::new(1).unwrap();
    let before = pool.pids();
    let e = pool.apply(halve_wide, (10,)).unwrap_err();
    assert!(
        matches!(&e, Error::Serialization { message, .. } if message.contains("u128") && message.contains("[u64; 2]")),
        "{e:?}"
    );
    match pool.apply(wide_of, (3,)) {
        Err(Error::ResultEncoding { message, .. }) => {
            assert!(message.contains("i128"), "{message}")
        }
        other => panic!("expected ResultEncoding, got {other:?}"),
    }
    assert_eq!(pool.pids(), before);
    assert_eq!(pool.apply(add, (1, 1)).unwrap(), 2);
}

#[multiproc::test]
fn values_that_do_not_round_trip_are_errors_for_their_item_only() {
    let pool = Pool::new(1).unwrap();
    let e = pool.apply(take_one_way, (OneWay(5),)).unwrap_err();
    assert!(
        matches!(&e, Error::Serialization { message, .. } if message.contains("does not come back")),
        "{e:?}"
    );
    let e = pool.apply(make_one_way, (5,)).unwrap_err();
    assert!(matches!(e, Error::Serialization { .. }), "{e:?}");
    let items: Vec<_> = pool
        .imap_with(make_maybe_one_way, 0..4u8, Opts::new().chunksize(4))
        .unwrap()
        .collect();
    assert!(
        matches!(items[2], Err(Error::Serialization { .. })),
        "{items:?}"
    );
    for i in [0, 1, 3] {
        assert_eq!(items[i].as_ref().unwrap().as_ref().unwrap(), &(i as u8));
    }
}

#[pool_task]
fn claim_once(path: String) {
    // Succeeds for the first worker only: replacements find the marker and fail.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("marker already claimed by an earlier worker");
}

#[multiproc::test]
fn a_replacement_whose_initializer_fails_breaks_the_pool_instead_of_looping() {
    let marker = std::env::temp_dir().join(format!("multiproc-claim-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let pool = Pool::builder()
        .processes(1)
        .initializer(claim_once, (marker.display().to_string(),))
        .build()
        .unwrap();
    assert_eq!(pool.apply(add, (1, 2)).unwrap(), 3);
    assert!(matches!(
        pool.apply(kill_self, (libc::SIGKILL,)),
        Err(Error::WorkerLost { .. })
    ));
    // The replacement cannot initialise: the pool says so instead of respawning forever.
    match pool.apply(add, (1, 2)) {
        Err(Error::PoolBroken { reason }) => {
            assert!(reason.contains("already claimed"), "{reason}")
        }
        other => panic!("expected PoolBroken, got {other:?}"),
    }
    let _ = std::fs::remove_file(&marker);
}

#[pool_task]
fn start_nested_pool() -> String {
    match Pool::new(1) {
        Ok(_) => "a worker started a pool".to_owned(),
        Err(e) => e.to_string(),
    }
}

#[multiproc::test]
fn workers_cannot_start_pools_of_their_own() {
    let pool = Pool::new(1).unwrap();
    let msg = pool.apply(start_nested_pool, ()).unwrap();
    assert!(msg.contains("inside a pool worker"), "{msg}");
}

#[pool_task]
fn reverse_bytes(mut v: Vec<u8>) -> Vec<u8> {
    v.reverse();
    v
}

#[multiproc::test]
fn big_frames_both_ways_do_not_deadlock() {
    // Arguments and results ten times the socket buffer, several in flight on each worker at
    // once: a parent
    // blocked writing an argument and a worker blocked writing a result must both progress.
    let pool = Pool::new(2).unwrap();
    let big: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 251) as u8).collect();
    let back = pool.apply(reverse_bytes, (big.clone(),)).unwrap();
    assert_eq!(back.len(), big.len());
    assert!(back.iter().rev().eq(big.iter()));
    let inputs: Vec<Vec<u8>> = (0..6u8).map(|k| vec![k; 1 << 20]).collect();
    let outs = pool
        .map_with(reverse_bytes, inputs, Opts::new().chunksize(1))
        .unwrap();
    for (k, out) in outs.iter().enumerate() {
        assert_eq!(out.len(), 1 << 20);
        assert!(out.iter().all(|&b| b == k as u8));
    }
    let pending: Vec<_> = (0..4)
        .map(|_| pool.apply_async(reverse_bytes, (big.clone(),)).unwrap())
        .collect();
    for r in pending {
        assert_eq!(r.get_timeout(LONG).unwrap().len(), 2 << 20);
    }
}

#[pool_task]
fn pause_then_sum(pause_ms: u64, v: Vec<u8>) -> (usize, u64) {
    std::thread::sleep(Duration::from_millis(pause_ms));
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

#[multiproc::test]
fn frames_of_every_size_in_one_batch_reach_their_items() {
    // Small frames are copied into one write and large ones written from the job's own
    // bytes: a batch mixes both, around the size where one becomes the other, and the first
    // item holds its worker so that jobs queued behind it are taken back and sent again
    // under another stamp.
    let pool = Pool::new(2).unwrap();
    let sizes = [
        0usize, 1, 4000, 4050, 4060, 4070, 4200, 9000, 70_000, 300_000, 17,
    ];
    let items: Vec<(u64, Vec<u8>)> = (0..120usize)
        .map(|i| {
            let pause = if i == 0 { 300 } else { 0 };
            let len = sizes[i % sizes.len()];
            (pause, (0..len).map(|j| ((i * 7 + j) % 251) as u8).collect())
        })
        .collect();
    let want: Vec<(usize, u64)> = items
        .iter()
        .map(|(_, v)| (v.len(), v.iter().map(|&b| u64::from(b)).sum()))
        .collect();
    let got = pool
        .starmap_with(pause_then_sum, items, Opts::new().chunksize(1))
        .unwrap();
    assert_eq!(got, want);
}

/// Writes `junk` into this worker's channel to the parent, as a corrupted frame would arrive.
#[pool_task]
fn corrupt_my_channel(junk: Vec<u8>) -> u8 {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let fds = std::fs::read_dir("/proc/self/fd").expect("list fds");
    let channel = fds
        .flatten()
        .filter_map(|e| {
            let fd: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (fd > 2 && target.to_string_lossy().starts_with("socket:")).then_some(fd)
        })
        .min()
        .expect("a channel socket");
    // SAFETY: borrowed for one write and forgotten, never closed here.
    let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(channel) });
    f.write_all(&junk).expect("write junk");
    1
}

#[multiproc::test]
fn a_corrupted_frame_is_a_protocol_error_and_the_worker_is_replaced() {
    let pool = Pool::new(1).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        vec![0xFF; 64],                              // bad magic
        vec![0xA7, 99, 0, 0, 0, 0, 0, 0],            // unknown kind
        vec![0xA7, 5, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF], // absurd length
        vec![0xA7, 5, 0, 0, 4, 0, 0, 0, 1, 2, 3, 4], // RESULT too short for a job id
    ];
    for junk in cases {
        let before = pool.pids();
        match pool.apply(corrupt_my_channel, (junk.clone(),)) {
            Err(Error::Protocol(_)) => {}
            other => panic!("junk {junk:02x?}: expected a protocol error, got {other:?}"),
        }
        assert_eq!(pool.apply(add, (2, 3)).unwrap(), 5, "the pool serves on");
        assert_ne!(pool.pids(), before, "with a replacement worker");
    }
}

#[pool_task]
fn panic_deep(depth: u32) -> u32 {
    if depth == 0 {
        panic!("bottom reached");
    }
    panic_deep(depth - 1) + 1
}

const BACKTRACE_ROLE: &str = "MULTIPROC_TEST_BACKTRACE_ROLE";

#[multiproc::test]
fn panics_carry_a_backtrace_when_enabled() {
    if std::env::var_os(BACKTRACE_ROLE).is_some() {
        // Re-run of this binary with RUST_BACKTRACE=1, inherited by its workers.
        let pool = Pool::new(1).unwrap();
        match pool.apply(panic_deep, (3,)) {
            Err(Error::TaskPanicked {
                backtrace: Some(bt),
                message,
                ..
            }) => {
                assert!(message.contains("bottom reached"), "{message}");
                assert!(bt.contains("panic_deep"), "{bt}");
                println!("BACKTRACE-OK");
            }
            other => panic!("expected a panic with a backtrace, got {other:?}"),
        }
        return;
    }
    // Without RUST_BACKTRACE (the test harness may have it set: check explicitly).
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        let pool = Pool::new(1).unwrap();
        let r = pool.apply(panic_deep, (1,));
        assert!(
            matches!(
                r,
                Err(Error::TaskPanicked {
                    backtrace: None,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "panics_carry_a_backtrace_when_enabled",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BACKTRACE_ROLE, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("BACKTRACE-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
