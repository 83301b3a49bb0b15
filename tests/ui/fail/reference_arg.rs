use multiproc::prelude::*;

#[pool_task]
fn length(s: &str, v: Vec<&[u8]>) -> usize {
    s.len() + v.len()
}

fn main() {}
