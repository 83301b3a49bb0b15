//! `multiprocessing.connection`, ported: a server process listens on loopback TCP with an
//! authentication key, serves several clients at once from one thread with `wait`, and
//! refuses a client with the wrong key; the clients are other processes.
//!
//! `cargo run --release --example connection_server`

use std::time::Duration;

use multiproc::connection::{wait, Client, Listener, Waitable};
use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

const KEY: &[u8] = b"secret password";
const CLIENTS: usize = 3;

#[derive(Serialize, Deserialize, Debug)]
enum Msg {
    Job(u64),
    Result(u64),
}

/// What the server reports when it stops.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Summary {
    served: usize,
    jobs: u64,
    refused: usize,
}

#[pool_task]
fn server(report: Queue<String>, done: Queue<Summary>) {
    let listener = Listener::bind("127.0.0.1:0", KEY).expect("bind");
    report.put(&listener.address()).expect("report");
    let mut conns: Vec<Connection<Msg>> = Vec::new();
    let (mut served, mut jobs, mut refused) = (0, 0, 0);
    while served < CLIENTS {
        let mut objects: Vec<&dyn Waitable> = vec![&listener];
        objects.extend(conns.iter().map(|c| c as &dyn Waitable));
        let ready = wait(&objects, Some(Duration::from_secs(60))).expect("wait");
        assert!(!ready.is_empty(), "no client for a minute");
        let mut finished = Vec::new();
        for i in ready {
            if i == 0 {
                match listener.accept::<Msg>() {
                    Ok(c) => conns.push(c),
                    Err(Error::AuthenticationFailed) => refused += 1,
                    Err(e) => panic!("accept: {e}"),
                }
                continue;
            }
            let conn = &conns[i - 1];
            match conn.recv() {
                Ok(Msg::Job(x)) => {
                    jobs += 1;
                    conn.send(&Msg::Result(x * x)).expect("reply");
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Eof) => finished.push(i - 1),
                Err(e) => panic!("recv: {e}"),
            }
        }
        for i in finished.into_iter().rev() {
            conns.remove(i);
            served += 1;
        }
    }
    done.put(&Summary {
        served,
        jobs,
        refused,
    })
    .expect("done");
}

#[pool_task]
fn client(address: String, id: u64) -> Vec<u64> {
    let conn: Connection<Msg> = Client::connect(&address, KEY).expect("connect");
    (0..5)
        .map(|k| {
            conn.send(&Msg::Job(id * 10 + k)).expect("send");
            match conn.recv().expect("recv") {
                Msg::Result(r) => r,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

#[pool_task]
fn intruder(address: String) -> bool {
    matches!(
        Client::connect::<Msg>(&address, b"guessed"),
        Err(Error::AuthenticationFailed)
    )
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let (report, done) = (Queue::new()?, Queue::new()?);
    let srv = Process::spawn(server, (report.clone(), done.clone()))?;
    let address: String = report.get_timeout(Duration::from_secs(60))?;
    println!("server listening on {address}");

    let pool = Pool::new(CLIENTS + 1)?;
    // The wrong key first (the server stops once the rightful clients are done).
    assert!(
        pool.apply(intruder, (address.clone(),))?,
        "the wrong key was refused"
    );
    let results: Vec<AsyncResult<Vec<u64>>> = (1..=CLIENTS as u64)
        .map(|id| pool.apply_async(client, (address.clone(), id)))
        .collect::<multiproc::Result<_>>()?;
    for (id, r) in (1..).zip(results) {
        let got = r.get()?;
        let want: Vec<u64> = (0..5).map(|k| (id * 10 + k) * (id * 10 + k)).collect();
        assert_eq!(got, want);
        println!("client {id}: {got:?}");
    }
    let summary: Summary = done.get_timeout(Duration::from_secs(60))?;
    println!("{summary:?}");
    assert_eq!(
        summary,
        Summary {
            served: CLIENTS,
            jobs: 5 * CLIENTS as u64,
            refused: 1
        }
    );
    assert!(srv.join()?.success());
    Ok(())
}
