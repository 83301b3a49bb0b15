//! `imap` yields results lazily in input order, even from an endless input; `imap_unordered`
//! yields them as they complete.

use std::time::Duration;

use multiproc::prelude::*;

#[pool_task]
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[pool_task]
fn sleepy(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;

    // An endless input: imap only reads as far ahead as its window allows.
    let mut primes = Vec::new();
    for (n, prime) in (0u64..).zip(pool.imap_with(is_prime, 0u64.., Opts::new().chunksize(64))?) {
        if prime? {
            primes.push(n);
        }
        if primes.len() == 20 {
            break;
        }
    }
    println!("imap over 0..: the first 20 primes are {primes:?}");
    assert_eq!(primes[19], 71);

    // Completion order: the short sleeps overtake the long one.
    let order: Vec<u64> = pool
        .imap_unordered(sleepy, vec![300, 1, 2, 3])?
        .collect::<Result<_, _>>()?;
    println!("imap_unordered([300, 1, 2, 3]) arrived as {order:?}");
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 3, 300]);
    Ok(())
}
