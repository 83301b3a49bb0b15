use multiproc::prelude::*;

#[pool_task]
struct Job {
    id: u32,
}

fn main() {}
