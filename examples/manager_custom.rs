//! Python's documentation examples of customized and remote managers, ported.
//!
//! ```python
//! class MathsClass:
//!     def add(self, x, y): return x + y
//!     def mul(self, x, y): return x * y
//! class MyManager(BaseManager): pass
//! MyManager.register('Maths', MathsClass)
//! with MyManager() as manager:
//!     maths = manager.Maths()
//!     print(maths.add(4, 3))   # prints 7
//!     print(maths.mul(7, 8))   # prints 56
//! ```
//!
//! and the remote one: a manager on a TCP port serves a queue (`register('get_queue',
//! callable=lambda: queue)`), one client connects with the address and key and puts
//! `'hello'`, another connects and gets it. Here the "machines" are child processes that
//! know nothing but the address and the key; the queue is found through a named dict.

use multiproc::prelude::*;
use multiproc::Manager;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct MathsClass;

#[managed]
impl MathsClass {
    fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }

    fn mul(&self, x: i64, y: i64) -> i64 {
        x * y
    }
}

/// Another machine's client: connects with the address and key only.
#[pool_task]
fn remote_put(address: String, authkey: Vec<u8>, what: String) {
    let client = Manager::connect(&address, &authkey).expect("connect");
    let queues = client
        .dict_named::<String, QueueProxy<String>>("queues")
        .expect("registry");
    let queue = queues
        .get(&"get_queue".into())
        .expect("get")
        .expect("registered");
    queue.put(&what).expect("put");
}

#[pool_task]
fn remote_get(address: String, authkey: Vec<u8>) -> String {
    let client = Manager::connect(&address, &authkey).expect("connect");
    let queues = client
        .dict_named::<String, QueueProxy<String>>("queues")
        .expect("registry");
    let queue = queues
        .get(&"get_queue".into())
        .expect("get")
        .expect("registered");
    queue
        .get_timeout(std::time::Duration::from_secs(60))
        .expect("an item")
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let manager = Manager::new()?;
    let maths = manager.serve::<MathsClass>()?;
    println!("{}", maths.add(4, 3)?);
    println!("{}", maths.mul(7, 8)?);
    assert_eq!((maths.add(4, 3)?, maths.mul(7, 8)?), (7, 56));

    let authkey = b"abracadabra".to_vec();
    let server = Manager::builder()
        .tcp("127.0.0.1:0")
        .authkey(authkey.clone())
        .start()?;
    let queue = server.queue::<String>()?;
    server
        .dict_named::<String, QueueProxy<String>>("queues")?
        .insert(&"get_queue".into(), &queue)?;
    let address = server.address().to_string();
    let putter = Process::spawn(
        remote_put,
        (address.clone(), authkey.clone(), "hello".into()),
    )?;
    let pool = Pool::new(1)?;
    let got = pool.apply(remote_get, (address, authkey))?;
    putter.join()?;
    println!("{got}");
    assert_eq!(got, "hello");
    Ok(())
}
