use std::borrow::Cow;

use multiproc::prelude::*;

#[pool_task]
fn echo<'a>(s: Cow<'a, str>) -> String {
    s.into_owned()
}

fn main() {}
