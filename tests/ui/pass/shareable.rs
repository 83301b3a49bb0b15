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

// repr(C) with an alignment, in either order.
#[derive(Clone, Copy, Shareable)]
#[repr(C, align(8))]
struct Aligned {
    a: u32,
}

#[derive(Clone, Copy, Shareable)]
#[repr(align(16), C)]
struct AlignedFirst {
    a: u8,
}

fn main() {
    fn assert_shareable<T: Shareable>() {}
    assert_shareable::<Body>();
    assert_shareable::<Aligned>();
    assert_shareable::<AlignedFirst>();
    assert_shareable::<[[u8; 3]; 2]>();
}
