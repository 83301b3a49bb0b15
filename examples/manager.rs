//! A manager shared two ways: pool workers tally results into a shared dict and list, and a
//! separate client that knows only the TCP address and the key reads them back.

use multiproc::prelude::*;
use multiproc::ManagerClient;

/// Counts a number's digits into a shared tally, and logs the number.
#[pool_task]
fn tally(counts: DictProxy<u32, u64>, log: ListProxy<u64>, n: u64) {
    for d in n.to_string().chars().filter_map(|c| c.to_digit(10)) {
        // Each manager operation is atomic, but this get-then-insert is two of them: safe
        // here because the calls run one at a time; concurrent writers of a key would need
        // a `Lock` around it.
        let now = counts.get(&d).expect("get").unwrap_or(0);
        counts.insert(&d, &(now + 1)).expect("insert");
    }
    log.push(&n).expect("push");
}

/// Another program (here another process) connects by address and key.
#[pool_task]
fn report(address: String, key: Vec<u8>) -> (usize, u64) {
    let client: ManagerClient = Manager::connect(&address, &key).expect("connect");
    let counts = client.dict_named::<u32, u64>("counts").expect("open");
    let log = client.list_named::<u64>("log").expect("open");
    (
        log.len().expect("len"),
        counts.values().expect("values").iter().sum(),
    )
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let manager = Manager::builder()
        .tcp("127.0.0.1:0")
        .authkey(b"example key".to_vec())
        .start()?;
    println!(
        "manager pid {} listening on {}",
        manager.pid(),
        manager.address()
    );
    let counts = manager.dict_named::<u32, u64>("counts")?;
    let log = manager.list_named::<u64>("log")?;

    let pool = Pool::new(2)?;
    let numbers = [7u64, 1234, 99, 100];
    for n in numbers {
        pool.apply(tally, (counts.clone(), log.clone(), n))?;
    }
    let mut tallies = counts.items()?;
    tallies.sort();
    println!("digit counts: {tallies:?}");
    assert_eq!(
        tallies,
        vec![(0, 2), (1, 2), (2, 1), (3, 1), (4, 1), (7, 1), (9, 2)]
    );
    assert_eq!(log.to_vec()?, numbers);

    let (logged, digits) = pool.apply(
        report,
        (manager.address().to_string(), b"example key".to_vec()),
    )?;
    println!("a separate client saw {logged} numbers and {digits} digits");
    assert_eq!((logged, digits), (4, 10));
    Ok(())
}
