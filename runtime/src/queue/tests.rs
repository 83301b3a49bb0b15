//! The ring's own tests: crash points, wraps and undone wraps, and a randomized model.

use super::ring::*;
use super::*;
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

thread_local! {
    /// Makes `undo_early_wrap` stop where a producer killed mid-way would.
    pub(super) static DIE_BEFORE_TAIL: Cell<bool> = const { Cell::new(false) };
    /// Early wraps and undone wraps on this thread.
    pub(super) static EVENTS: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

fn item(seq: u32, len: usize) -> Vec<u8> {
    let mut v = vec![seq as u8; len];
    v[..4].copy_from_slice(&seq.to_le_bytes());
    v
}

/// Raw bytes, so that debug builds do not spend minutes encoding byte by byte.
fn put(q: &RawQueue, v: &[u8]) -> Result<()> {
    q.put_with(v.len(), |buf| Ok(buf.write_all(v)?), Wait::No, false)
}

fn get_seq(q: &RawQueue) -> u32 {
    let v = q.get_with(Wait::No, |b| Ok(b.to_vec())).expect("an item");
    let seq = u32::from_le_bytes(v[..4].try_into().unwrap());
    assert!(
        v[4..].iter().all(|&b| b == seq as u8),
        "item {seq} corrupted"
    );
    seq
}

fn tail_offset(q: &RawQueue) -> u64 {
    pos(q.st().tail.0.load(Ordering::SeqCst)) & (q.capacity() - 1)
}

/// Random puts and gets of mixed sizes on a 16 MiB ring (so ring-end wraps, early wraps,
/// their undoing and page release all happen many times), with stretches where the
/// consumer stops, checked against a model FIFO.
#[test]
fn random_traffic_matches_a_model_fifo() {
    let q = RawQueue::create(0, 16 << 20).unwrap();
    let mut model = std::collections::VecDeque::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut seq, mut stopped_for) = (0u32, 0u32);
    let (mut puts, mut fulls, mut gets) = (0, 0, 0);
    for _ in 0..10000 {
        if stopped_for == 0 && next() % 400 == 0 {
            stopped_for = 30 + (next() % 120) as u32; // the consumer stops for a while
        }
        let get = stopped_for == 0 && next() % 100 < 58;
        stopped_for = stopped_for.saturating_sub(1);
        if get {
            match q.get_with(Wait::No, |b| Ok(b.to_vec())) {
                Ok(v) => {
                    let (want, len): (u32, usize) = model.pop_front().expect("model empty");
                    assert_eq!(v.len(), len, "item {want}: wrong length");
                    let got = u32::from_le_bytes(v[..4].try_into().unwrap());
                    assert_eq!(got, want, "out of order");
                    for at in [4, len / 2, len - 1] {
                        assert_eq!(
                            v[at.max(4).min(len - 1)],
                            want as u8,
                            "item {want} corrupted"
                        );
                    }
                    gets += 1;
                }
                Err(Error::Empty) => assert!(model.is_empty(), "Empty with items queued"),
                Err(e) => panic!("{e}"),
            }
        } else {
            let len = match next() % 100 {
                0..=64 => 8 + (next() % 56) as usize,
                65..=94 => 1024 + (next() % (63 << 10)) as usize,
                _ => (256 << 10) + (next() % (1280 << 10)) as usize,
            };
            let item = item(seq, len);
            match put(&q, &item) {
                Ok(()) => {
                    model.push_back((seq, len));
                    seq += 1;
                    puts += 1;
                }
                Err(Error::Full) => fulls += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    while let Some((want, _)) = model.pop_front() {
        assert_eq!(get_seq(&q), want);
    }
    assert!(
        puts > 2000 && gets > 1000 && fulls > 0,
        "{puts} {gets} {fulls}"
    );
    let (early, undone) = EVENTS.with(|e| e.get());
    assert!(
        early > 10 && undone > 0,
        "{early} early wraps, {undone} undone"
    );
}

#[test]
fn a_queue_whose_consumer_keeps_up_stays_in_the_warm_area() {
    let q = RawQueue::create(0, DEFAULT_BUFFER).unwrap();
    // One item in flight, as with a producer running just ahead of its consumer.
    put(&q, &item(0, 1 << 20)).unwrap();
    for i in 1..300u32 {
        put(&q, &item(i, 1 << 20)).unwrap();
        assert!(
            tail_offset(&q) <= WARM as u64,
            "tail went past the warm area"
        );
        assert_eq!(get_seq(&q), i - 1);
    }
    assert_eq!(get_seq(&q), 299);
}

/// Queues 8 quarter-MiB items, reads 7, and puts one more: that one wraps early.
fn early_wrapped_queue() -> RawQueue {
    let q = RawQueue::create(0, DEFAULT_BUFFER).unwrap();
    for i in 0..8 {
        put(&q, &item(i, 256 << 10)).unwrap();
    }
    for i in 0..7 {
        assert_eq!(get_seq(&q), i);
    }
    put(&q, &item(8, 256 << 10)).unwrap();
    let head = pos(q.st().head.0.load(Ordering::SeqCst)) & (q.capacity() - 1);
    assert!(tail_offset(&q) < head, "the ninth item did not wrap early");
    q
}

#[test]
fn an_early_wrap_never_limits_a_producer_whose_consumers_stopped() {
    let q = early_wrapped_queue();
    // Without a consumer, 64 MiB more must fit at once (the ring is 1 GiB).
    for i in 9..265 {
        put(&q, &item(i, 256 << 10)).unwrap();
    }
    for i in 7..265 {
        assert_eq!(get_seq(&q), i);
    }
    assert!(matches!(
        q.get_with(Wait::No, |_| Ok(())),
        Err(Error::Empty)
    ));
}

#[test]
fn rings_over_4_gib_are_refused() {
    // Record lengths are 32-bit.
    assert!(matches!(
        RawQueue::create(0, 5 << 30),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_consumer_holding_or_dying_with_its_lock_does_not_block_an_early_wrap_for_good() {
    let q = early_wrapped_queue();
    // A "consumer" that takes the consumer lock and keeps it: the wrap cannot be undone,
    // so the producer finds no room beyond the warm area for now.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let q2 = q.clone();
    let holder = std::thread::spawn(move || {
        q2.get_lock().lock(None).unwrap();
        held_tx.send(()).unwrap();
        // Then it "dies" holding the lock (a thread exiting with a robust mutex held is
        // reported to the next owner like a killed process).
        let _ = go_rx.recv();
    });
    held_rx.recv().unwrap();
    let mut next = 9;
    while put(&q, &item(next, 256 << 10)).is_ok() {
        next += 1;
    }
    // A producer blocked on the pending wrap: the holder dies meanwhile, and nobody
    // notifies; the producer must still get through.
    let q3 = q.clone();
    let producer = std::thread::spawn(move || {
        for i in next..next + 64 {
            let v = item(i, 256 << 10);
            q3.put_with(
                v.len(),
                |buf| Ok(buf.write_all(&v)?),
                Wait::Until(Instant::now() + Duration::from_secs(120)),
                false,
            )
            .unwrap();
        }
    });
    go_tx.send(()).unwrap();
    holder.join().unwrap();
    producer.join().unwrap();
    for i in 7..next + 64 {
        assert_eq!(get_seq(&q), i);
    }
}

#[test]
fn a_producer_dying_while_undoing_an_early_wrap_loses_and_repeats_nothing() {
    let q = early_wrapped_queue();
    put(&q, &item(9, 256 << 10)).unwrap();
    DIE_BEFORE_TAIL.with(|d| d.set(true));
    // Fill until the early wrap is in the way: the undo stops before moving the tail.
    let mut next = 10;
    while put(&q, &item(next, 256 << 10)).is_ok() {
        next += 1;
    }
    DIE_BEFORE_TAIL.with(|d| d.set(false));
    assert!(next > 10, "nothing was put after the early wrap");
    // The undo got as far as turning the JUMP into the first copied record.
    let jump = q.st().wrapped_at.load(Ordering::SeqCst);
    assert_ne!(jump, NO_WRAP);
    let at = (jump & (q.capacity() - 1)) as usize;
    // SAFETY: `at` is an 8-aligned offset inside the ring.
    assert_eq!(unsafe { read_header(q.ring().add(at)) }.0, TAG_ITEM);
    for i in 7..next {
        assert_eq!(get_seq(&q), i);
    }
    assert!(matches!(
        q.get_with(Wait::No, |_| Ok(())),
        Err(Error::Empty)
    ));
    // And the queue goes on working.
    put(&q, &item(next, 1000)).unwrap();
    assert_eq!(get_seq(&q), next);
}
