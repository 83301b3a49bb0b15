// A #[repr(C)] struct of shareable fields, nested, can live in a Value or an Array.
use multiproc::Shareable;

#[derive(Clone, Copy, Shareable)]
#[repr(C)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Clone, Copy, Shareable)]
#[repr(C)]
struct Body {
    at: Point,
    trail: [Point; 4],
    alive: bool,
    id: u32,
}

fn main() {
    fn assert_shareable<T: Shareable>() {}
    assert_shareable::<Body>();
    assert_shareable::<[[u8; 3]; 2]>();
}
