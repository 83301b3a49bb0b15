// What may live in shared memory is checked at compile time.
use multiproc::Shareable;

#[derive(Clone, Copy, Shareable)]
struct NoRepr {
    a: u32,
}

#[derive(Clone, Copy, Shareable)]
#[repr(C)]
struct HoldsAReference {
    ok: u64,
    name: &'static str,
}

#[derive(Clone, Copy, Shareable)]
#[repr(C)]
struct HoldsAChar {
    c: char,
}

#[derive(Clone, Copy, Shareable)]
#[repr(u8)]
enum Mode {
    A,
    B,
}

// Every problem at once: generic, and no repr(C).
#[derive(Clone, Copy, Shareable)]
struct GenericNoRepr<T: Copy> {
    t: T,
}

fn main() {
    let _ = multiproc::Value::new(String::new());
}
