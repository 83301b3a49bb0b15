use multiproc::prelude::*;

struct Handle(std::fs::File);
struct Report;

#[pool_task]
fn inspect(name: String, handle: Handle) -> Report {
    let _ = (name, handle);
    Report
}

fn main() {}
