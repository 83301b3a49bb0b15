//! I/O-bound work on the thread pool: many concurrent requests to a slow server on loopback.
//! Each request mostly waits, so threads (not processes) are the right tool; the same task
//! would also run unchanged on the process pool.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use multiproc::prelude::*;

/// Asks the server to shout `word` back; the server takes 50 ms per request.
#[pool_task]
fn shout(addr: String, word: String) -> String {
    let mut stream = TcpStream::connect(&addr).expect("connect to the loopback server");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("set timeout");
    writeln!(stream, "{word}").expect("send");
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .expect("receive");
    reply.trim_end().to_owned()
}

fn slow_server() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut line = String::new();
                let mut reader = BufReader::new(&conn);
                if reader.read_line(&mut line).is_ok() {
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = writeln!(&conn, "{}!", line.trim_end().to_uppercase());
                }
            });
        }
    });
    Ok(addr)
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let addr = slow_server()?;
    let words: Vec<String> = (0..32).map(|i| format!("word{i}")).collect();
    let requests: Vec<(String, String)> = words.iter().map(|w| (addr.clone(), w.clone())).collect();

    let pool = multiproc::dummy::Pool::new(16)?;
    let t = Instant::now();
    let replies = pool.starmap(shout, requests.clone())?;
    let threaded = t.elapsed();
    println!("32 requests of 50 ms each on 16 threads: {threaded:?}");
    for (w, r) in words.iter().zip(&replies) {
        assert_eq!(r, &format!("{}!", w.to_uppercase()));
    }
    println!(
        "all {} replies correct, e.g. {:?}",
        replies.len(),
        replies[0]
    );

    // Closures work on threads: nothing needs serializing.
    let lens = pool.map(|r: String| r.len(), replies)?;
    assert!(lens.iter().all(|&n| n >= 6));

    // The same task, unchanged, on processes.
    let procs = Pool::new(2)?;
    let r = procs.apply(shout, (addr, "from a process".to_string()))?;
    println!("the same #[pool_task] on the process pool: {r:?}");
    assert_eq!(r, "FROM A PROCESS!");
    Ok(())
}
