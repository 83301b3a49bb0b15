use multiproc::prelude::*;

#[pool_task]
fn mul(a: i64, b: i64) -> i64 {
    a * b
}

#[multiproc::main]
fn main() -> multiproc::Result<()> {
    let pool = Pool::new(2)?;
    let m = Task::of(mul);
    // A handle carries its signature: arguments of other types do not compile...
    pool.apply(m, ("six", 7))?;
    // ...nor does calling it here with the wrong arity, or storing it as another type.
    m.call((6,));
    let _other: Task<(u32,), u32> = Task::of(mul);
    Ok(())
}
