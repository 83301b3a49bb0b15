// The runtime reached through another path, as when a crate re-exports it or Cargo.toml
// renames the dependency.
mod reexport {
    pub use ::multiproc as mp;
}

use reexport::mp;

#[mp::pool_task(crate = "reexport::mp")]
fn double(x: i32) -> i32 {
    2 * x
}

#[mp::main(crate = "reexport::mp")]
fn main() {
    let pool = mp::Pool::new(1).unwrap();
    assert_eq!(pool.apply(double, (21,)).unwrap(), 42);
}
