use multiproc::prelude::*;

// A default of the wrong type is an error at the expression.
#[pool_task]
fn wrong_type(a: u32, #[default("ten")] b: u32) -> u32 {
    a + b
}

// Two defaults, a malformed one, and a parameter without a plain name.
#[pool_task]
fn malformed(#[default(1)] #[default(2)] a: u32, #[default] b: u32, (c, d): (u32, u32)) -> u32 {
    a + b + c + d
}

fn main() {}
