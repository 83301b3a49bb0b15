//! Ping-pong over a two-way `Pipe` between the program and a child process, then a one-way
//! pipe streaming bytes to a child.
//!
//! `cargo run --release --example ping_pong`

use std::time::Instant;

use multiproc::prelude::*;

#[pool_task]
fn ponger(conn: Connection<(String, u32)>) {
    while let Ok((word, n)) = conn.recv() {
        let reply = if word == "ping" { "pong" } else { "?" };
        conn.send(&(reply.to_string(), n + 1)).expect("send");
    }
}

#[pool_task]
fn byte_counter(rx: Receiver<()>, report: Sender<u64>) {
    let mut total = 0u64;
    while let Ok(chunk) = rx.recv_bytes() {
        total += chunk.len() as u64;
    }
    report.send(&total).expect("report");
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let (here, there) = multiproc::pipe()?;
    let child = Process::spawn(ponger, (there,))?;
    const ROUNDS: u32 = 10_000;
    let started = Instant::now();
    let mut n = 0;
    for _ in 0..ROUNDS {
        here.send(&("ping".to_string(), n))?;
        let (word, m) = here.recv()?;
        assert_eq!(word, "pong");
        assert_eq!(m, n + 1);
        n = m;
    }
    let per_round = started.elapsed() / ROUNDS;
    drop(here); // the child's recv sees the end of the stream
    assert!(child.join()?.success());
    println!("{ROUNDS} round trips, {per_round:?} each");

    let (rx, tx) = multiproc::pipe_oneway::<()>()?;
    let (report_rx, report_tx) = multiproc::pipe_oneway()?;
    let counter = Process::spawn(byte_counter, (rx, report_tx))?;
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..64 {
        tx.send_bytes(&chunk)?;
    }
    drop(tx);
    let total: u64 = report_rx.recv()?;
    assert_eq!(total, 64 << 20);
    assert!(counter.join()?.success());
    println!("streamed {} MiB through a one-way pipe", total >> 20);
    Ok(())
}
