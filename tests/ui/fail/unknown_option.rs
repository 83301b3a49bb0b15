use multiproc::prelude::*;

#[pool_task(name = "custom", retries = 3)]
fn task(x: u32) -> u32 {
    x
}

fn main() {}
