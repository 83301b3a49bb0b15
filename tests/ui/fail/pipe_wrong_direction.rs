// The direction of a one-way pipe is in its types: receiving on the sending end (or the
// reverse) does not compile.
fn main() -> multiproc::Result<()> {
    let (rx, tx) = multiproc::pipe_oneway::<u32>()?;
    rx.send(&1)?;
    let _ = tx.recv()?;
    Ok(())
}
