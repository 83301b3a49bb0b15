//! Pipes between real processes: ping-pong, big messages, one-way pipes to pool tasks, and
//! the end of the stream when the other side goes away.

use std::time::Duration;

use multiproc::prelude::*;

const LONG: Duration = Duration::from_secs(120);

#[pool_task]
fn pong(conn: Connection<u64>) {
    while let Ok(x) = conn.recv() {
        conn.send(&(x + 1)).unwrap();
    }
}

#[multiproc::test]
fn ping_pong_with_a_child() {
    let (here, there) = multiproc::pipe().unwrap();
    let p = Process::spawn(pong, (there,)).unwrap();
    let mut x = 0;
    for _ in 0..1000 {
        here.send(&x).unwrap();
        x = here.recv().unwrap();
    }
    assert_eq!(x, 1000);
    drop(here);
    assert!(p.join().unwrap().success());
}

#[pool_task]
fn echo_bytes(conn: Connection<()>) {
    while let Ok(b) = conn.recv_bytes() {
        conn.send_bytes(&b).unwrap();
    }
}

#[multiproc::test]
fn sixteen_mib_messages_and_empty_ones_keep_their_boundaries() {
    let (here, there) = multiproc::pipe::<()>().unwrap();
    let p = Process::spawn(echo_bytes, (there,)).unwrap();
    let big: Vec<u8> = (0..16 << 20).map(|i: usize| (i * 7) as u8).collect();
    for msg in [&big[..], b"", b"x", &big[1..]] {
        here.send_bytes(msg).unwrap();
        assert!(here.poll(Some(LONG)).unwrap());
        assert!(here.recv_bytes().unwrap() == msg);
    }
    here.send_bytes_range(&big, 10, Some(5)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(here.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], &big[10..15]);
    drop(here);
    assert!(p.join().unwrap().success());
}

#[pool_task]
fn send_three_and_exit(tx: Sender<String>) {
    for s in ["a", "b", "c"] {
        tx.send(&s.to_string()).unwrap();
    }
    std::process::exit(0);
}

#[multiproc::test]
fn messages_outlive_their_sender_then_eof() {
    let (rx, tx) = multiproc::pipe_oneway().unwrap();
    let p = Process::spawn(send_three_and_exit, (tx,)).unwrap();
    assert!(p.join().unwrap().success());
    let got: Vec<String> = (0..3).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(got, ["a", "b", "c"]);
    assert!(matches!(rx.recv(), Err(Error::Eof)));
}

#[pool_task]
fn sum_from(rx: Receiver<u32>) -> u32 {
    let mut total = 0;
    while let Ok(x) = rx.recv() {
        total += x;
    }
    total
}

#[multiproc::test]
fn one_way_pipes_go_to_pool_tasks() {
    let pool = Pool::new(2).unwrap();
    let (rx, tx) = multiproc::pipe_oneway().unwrap();
    let r = pool.apply_async(sum_from, (rx,)).unwrap();
    for i in 1..=100 {
        tx.send(&i).unwrap();
    }
    drop(tx);
    assert_eq!(r.get_timeout(LONG).unwrap(), 5050);
}

#[pool_task]
fn hold_then_die(conn: Connection<u8>) {
    conn.send(&1).unwrap();
    // SAFETY: a plain syscall on our own process.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[multiproc::test]
fn a_killed_peer_is_eof_not_a_hang() {
    let (here, there) = multiproc::pipe().unwrap();
    let p = Process::spawn(hold_then_die, (there,)).unwrap();
    assert_eq!(here.recv().unwrap(), 1);
    assert_eq!(p.join().unwrap(), ExitStatus::Signal(9));
    assert!(matches!(here.recv(), Err(Error::Eof)));
    assert!(matches!(here.send(&2), Err(Error::Eof)));
}
