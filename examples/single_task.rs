//! The smallest program: one task, run once in a worker process.

use multiproc::prelude::*;

#[pool_task]
fn greet(name: String) -> String {
    format!("hello {name}, from process {}", std::process::id())
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(1)?;
    let msg = pool.apply(greet, ("world".to_string(),))?;
    println!("{msg}");
    assert!(msg.starts_with("hello world, from process "));
    assert!(
        !msg.ends_with(&std::process::id().to_string()),
        "ran in the parent"
    );
    Ok(())
}
