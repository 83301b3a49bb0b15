//! Nothing outlives its owner: after a pool is dropped (or terminated) no child process and
//! no descriptor is left, and workers hold no descriptor but their own channel. One test in
//! its own binary, since it counts process-wide resources.

mod common;

use multiproc::prelude::*;

#[pool_task]
fn worker_fds() -> Vec<String> {
    common::open_fds()
}

#[pool_task]
fn square(x: u64) -> u64 {
    x * x
}

fn check_worker_fds(pool: &Pool) {
    let fds = pool.apply(worker_fds, ()).unwrap();
    let extra: Vec<&String> = fds
        .iter()
        .filter(|f| {
            let n: u32 = f.split(' ').next().unwrap().parse().unwrap();
            n > 2 && !f.contains("/proc/") // the directory listing itself
        })
        .collect();
    // The channel to the parent, the watchdog's duplicate of it, and the lane (the control
    // block shared with the parent, received in the handshake): nothing else.
    assert_eq!(extra.len(), 3, "worker fds: {fds:#?}");
    assert_eq!(
        extra.iter().filter(|f| f.contains("socket:")).count(),
        2,
        "worker fds: {fds:#?}"
    );
    assert!(
        extra.iter().any(|f| f.contains("memfd:multiproc-Lane")),
        "worker fds: {fds:#?}"
    );
}

#[multiproc::test]
fn pools_leave_no_process_and_no_descriptor_behind() {
    let me = std::process::id();
    let fds_before = common::open_fds();
    assert!(common::children_of(me).is_empty());

    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        // Dropped: close + join.
        let pool = Pool::builder()
            .processes(3)
            .start_method(method)
            .build()
            .unwrap();
        check_worker_fds(&pool);
        assert_eq!(pool.map(square, 0..100u64).unwrap()[9], 81);
        drop(pool);
        assert_eq!(
            common::children_of(me),
            Vec::<u32>::new(),
            "{method:?}: children after drop"
        );
        assert_eq!(
            common::open_fds(),
            fds_before,
            "{method:?}: descriptors after drop"
        );

        // Terminated mid-work.
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .build()
            .unwrap();
        let pending: Vec<_> = (0..500)
            .map(|i| pool.apply_async(square, (i,)).unwrap())
            .collect();
        pool.terminate();
        drop(pending);
        drop(pool);
        assert_eq!(
            common::children_of(me),
            Vec::<u32>::new(),
            "{method:?}: children after terminate"
        );
        assert_eq!(
            common::open_fds(),
            fds_before,
            "{method:?}: descriptors after terminate"
        );
    }
}
