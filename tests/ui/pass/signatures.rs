use multiproc::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Point {
    x: f64,
    y: f64,
}

#[pool_task]
fn no_args() -> u8 {
    1
}

#[pool_task]
fn returns_unit(_x: u32) {}

#[pool_task]
fn patterns((a, b): (u32, u32), mut c: Vec<String>) -> usize {
    c.push(String::new());
    (a + b) as usize + c.len()
}

#[pool_task]
pub fn custom_types(p: Point, scale: Option<f64>) -> Result<Point, String> {
    Ok(Point { x: p.x * scale.unwrap_or(1.0), y: p.y })
}

#[pool_task]
const fn const_fn(x: u64) -> u64 {
    x + 1
}

mod nested {
    use multiproc::pool_task;

    #[pool_task]
    pub(crate) fn in_a_module(s: String) -> String {
        s
    }
}

#[pool_task]
#[allow(clippy::too_many_arguments)]
fn twelve(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8, j: u8, k: u8, l: u8) -> u32 {
    [a, b, c, d, e, f, g, h, i, j, k, l].iter().map(|&v| v as u32).sum()
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    // Still ordinary functions.
    assert_eq!(no_args(), 1);
    assert_eq!(const_fn(1), 2);
    assert_eq!(patterns((1, 2), vec![]), 4);
    assert_eq!(nested::in_a_module("a".into()), "a");
    let pool = Pool::new(1)?;
    assert_eq!(pool.apply(twelve, (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1))?, 12);
    assert_eq!(pool.apply(custom_types, (Point { x: 1.0, y: 2.0 }, Some(2.0)))?, Ok(Point { x: 2.0, y: 2.0 }));
    pool.apply(returns_unit, (3,))?;
    Ok(())
}
