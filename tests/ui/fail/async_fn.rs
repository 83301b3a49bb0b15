use multiproc::prelude::*;

#[pool_task]
async fn fetch(url: String) -> String {
    url
}

fn main() {}
