//! Progress bars: the count reaches the item total on both pools, for maps and imaps; and
//! on a real terminal (a pty, as `script` gives) the example's bar shows the full count.

use multiproc::indicatif::ProgressBar;
use multiproc::prelude::*;

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

#[multiproc::test]
fn the_count_reaches_the_total_on_the_process_pool() {
    let pool = Pool::new(2).unwrap();
    let bar = ProgressBar::hidden();
    let v = pool
        .map_with(
            square,
            0..100u64,
            Opts::new().chunksize(7).progress_with(bar.clone()),
        )
        .unwrap();
    assert_eq!(v.len(), 100);
    assert_eq!((bar.position(), bar.length()), (100, Some(100)));
    let bar = ProgressBar::hidden();
    let n = pool
        .imap_unordered_with(square, 0..50u64, Opts::new().progress_with(bar.clone()))
        .unwrap()
        .count();
    assert_eq!(n, 50);
    assert_eq!((bar.position(), bar.length()), (50, Some(50)));
    // An input of unknown length counts without a total.
    let bar = ProgressBar::hidden();
    let n = pool
        .imap_with(
            square,
            (0..30u64).filter(|x| x % 3 == 0),
            Opts::new().progress_with(bar.clone()),
        )
        .unwrap()
        .count();
    assert_eq!((n, bar.position(), bar.length()), (10, 10, None));
}

#[test]
fn the_count_reaches_the_total_on_the_thread_pool() {
    let pool = multiproc::dummy::Pool::new(2).unwrap();
    let bar = ProgressBar::hidden();
    let v = pool
        .map_with(
            |x: u64| x + 1,
            0..64u64,
            Opts::new().progress_with(bar.clone()),
        )
        .unwrap();
    assert_eq!(v.len(), 64);
    assert_eq!(bar.position(), 64);
}

/// The example, run on a pseudo-terminal: its bars are drawn, ending at the full counts.
#[test]
fn a_terminal_shows_the_bar() {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/progress");
    assert!(
        bin.exists(),
        "the progress example is not built: run `cargo test`"
    );
    let Ok(out) = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(&bin)
        .arg("/dev/null")
        .env("COLUMNS", "120")
        .output()
    else {
        eprintln!("no `script` command (util-linux) here: the terminal check is skipped");
        return;
    };
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("400/400"),
        "the map's bar did not reach 400/400: {screen:?}"
    );
    assert!(
        screen.contains("200/200"),
        "the imap's bar did not reach 200/200: {screen:?}"
    );
    assert!(screen.contains("squared 600 numbers"));
}
