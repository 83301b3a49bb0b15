//! Results as futures and streams, and `concurrent.futures`' vocabulary: awaiting under
//! tokio and smol without blocking the executor's thread, `imap` as a `Stream`,
//! `as_completed` in completion order, `wait`'s three conditions, and `cancel`.

use std::time::Duration;

use multiproc::concurrent::{as_completed, wait, ReturnWhen};
use multiproc::prelude::*;
use multiproc::Event;
use smol::stream::StreamExt;

const LONG: Duration = Duration::from_secs(120);

/// Returns `id` once `go` is set (bounded: a test that never sets it fails, not hangs).
#[pool_task]
fn when_set(go: Event, id: u32) -> u32 {
    assert!(go.wait_timeout(LONG).unwrap(), "never released");
    id
}

#[pool_task]
fn triple(x: u32) -> u32 {
    x * 3
}

#[pool_task]
fn fail_on(x: u32) -> u32 {
    assert!(x != 0, "zero");
    x
}

/// Awaits a task that finishes only once another task *on the same executor thread* has run:
/// if awaiting blocked the thread, the task would never be released.
async fn await_without_blocking(pool: &Pool, yield_now: impl std::future::Future<Output = ()>) {
    let go = Event::new().unwrap();
    let r = pool.apply_async(when_set, (go.clone(), 7)).unwrap();
    let release = async {
        yield_now.await;
        go.set();
    };
    let (got, ()) = futures_join(r, release).await;
    assert_eq!(got.unwrap(), 7);
}

/// Runs both futures to completion on the current task (a minimal `join`).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = Box::pin(a);
    let mut b = Box::pin(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}

#[multiproc::test]
fn results_await_under_tokio_without_blocking_the_thread() {
    let pool = Pool::new(2).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(pool.apply_async(triple, (2,)).unwrap().await.unwrap(), 6);
        let all = pool.map_async(triple, 0..10u32).unwrap().await.unwrap();
        assert_eq!(all, (0..10).map(|x| x * 3).collect::<Vec<_>>());
        await_without_blocking(&pool, tokio::task::yield_now()).await;
        // A task error arrives as the error.
        assert!(matches!(
            pool.apply_async(fail_on, (0,)).unwrap().await,
            Err(Error::TaskPanicked { .. })
        ));
    });
}

#[multiproc::test]
fn results_and_imap_streams_under_smol() {
    let pool = Pool::new(2).unwrap();
    smol::block_on(async {
        assert_eq!(pool.apply_async(triple, (5,)).unwrap().await.unwrap(), 15);
        await_without_blocking(&pool, smol::future::yield_now()).await;
        let ordered: Vec<u32> = pool
            .imap(triple, 0..50u32)
            .unwrap()
            .into_stream()
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(ordered, (0..50).map(|x| x * 3).collect::<Vec<_>>());
        let mut unordered: Vec<u32> = pool
            .imap_unordered(triple, 0..50u32)
            .unwrap()
            .into_stream()
            .map(|r| r.unwrap())
            .collect()
            .await;
        unordered.sort();
        assert_eq!(unordered, ordered);
        // Results released one by one arrive through the stream as they come.
        let events: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
        let mut s = pool
            .imap(when_set_pair, events.iter().cloned().zip(0..3u32))
            .unwrap()
            .into_stream();
        for (i, e) in events.iter().enumerate() {
            e.set();
            assert_eq!(s.next().await.unwrap().unwrap(), i as u32);
        }
        assert!(s.next().await.is_none());
    });
}

#[pool_task]
fn when_set_pair(job: (Event, u32)) -> u32 {
    assert!(job.0.wait_timeout(LONG).unwrap(), "never released");
    job.1
}

/// Three calls, each held until its event is set.
fn three_held(pool: &Pool) -> (Vec<Event>, Vec<multiproc::AsyncResult<u32>>) {
    let events: Vec<Event> = (0..3).map(|_| Event::new().unwrap()).collect();
    let results = (0..3)
        .map(|i| {
            pool.apply_async(when_set, (events[i].clone(), i as u32))
                .unwrap()
        })
        .collect();
    (events, results)
}

#[multiproc::test]
fn as_completed_yields_in_completion_order() {
    let pool = Pool::new(3).unwrap();
    let (events, results) = three_held(&pool);
    let order = [2usize, 0, 1];
    let mut it = as_completed(results);
    // Nothing is done yet: a short wait times out and the iteration goes on.
    assert!(matches!(
        it.next_timeout(Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    for &i in &order {
        events[i].set();
        let r = it.next().expect("a result");
        assert_eq!(r.get().unwrap(), i as u32);
    }
    assert!(it.next().is_none());
    // The same as a stream.
    let (events, results) = three_held(&pool);
    smol::block_on(async {
        let mut s = as_completed(results).into_stream();
        for &i in &order {
            events[i].set();
            assert_eq!(s.next().await.unwrap().await.unwrap(), i as u32);
        }
        assert!(s.next().await.is_none());
    });
}

#[multiproc::test]
fn wait_returns_when_its_condition_holds() {
    // Three tasks block at once, and a fourth must run beside them.
    let pool = Pool::new(4).unwrap();
    let go = Event::new().unwrap();
    let blocked = |n: u32| {
        (0..n)
            .map(|i| pool.apply_async(when_set, (go.clone(), i)).unwrap())
            .collect::<Vec<_>>()
    };
    // First completed: the quick one is done, the blocked ones are not.
    let mut rs = blocked(2);
    rs.push(pool.apply_async(triple, (1,)).unwrap());
    let (done, not_done) = wait(rs, ReturnWhen::FirstCompleted, Some(LONG));
    assert_eq!(done.len(), 1);
    assert_eq!(not_done.len(), 2);
    // First exception: a failing task ends the wait although others still run.
    let mut rs2 = blocked(1);
    rs2.push(pool.apply_async(fail_on, (0,)).unwrap());
    let (done2, not_done2) = wait(rs2, ReturnWhen::FirstException, Some(LONG));
    assert_eq!((done2.len(), not_done2.len()), (1, 1));
    assert!(matches!(
        done2.into_iter().next().unwrap().get(),
        Err(Error::TaskPanicked { .. })
    ));
    // All completed, with a timeout that passes first.
    let (done3, not_done3) = wait(
        not_done,
        ReturnWhen::AllCompleted,
        Some(Duration::from_millis(20)),
    );
    assert!(done3.is_empty());
    assert_eq!(not_done3.len(), 2);
    // Released, everything completes.
    go.set();
    let all = not_done3.into_iter().chain(not_done2);
    let (done4, rest) = wait(all, ReturnWhen::AllCompleted, None);
    assert!(rest.is_empty());
    let mut ids: Vec<u32> = done4.into_iter().map(|r| r.get().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 0, 1]);
    assert_eq!(done.into_iter().next().unwrap().get().unwrap(), 3);
}

/// Records that `id` ran, then returns it.
#[pool_task]
fn record(ran: multiproc::Queue<u32>, id: u32) -> u32 {
    ran.put(&id).unwrap();
    id
}

#[multiproc::test]
fn cancel_stops_calls_that_have_not_started() {
    let pool = Pool::new(1).unwrap();
    let go = Event::new().unwrap();
    let ran = multiproc::Queue::new().unwrap();
    let first = pool.apply_async(when_set, (go.clone(), 0)).unwrap();
    // One worker holds at most a couple of jobs: the last of these is still in the pool.
    let later: Vec<_> = (1..=5)
        .map(|id| pool.apply_async(record, (ran.clone(), id)).unwrap())
        .collect();
    assert!(
        later[4].cancel(),
        "a call still queued in the pool could not be cancelled"
    );
    assert!(later[4].cancelled());
    assert!(later[4].done());
    assert!(!later[4].cancel(), "cancelled twice");
    let map = pool.map_async(triple, 0..4u32).unwrap();
    assert!(map.cancel());
    assert!(!first.cancel(), "a running call was cancelled");
    go.set();
    assert_eq!(first.get().unwrap(), 0);
    let mut kept = Vec::new();
    for (i, r) in later.into_iter().enumerate() {
        let id = i as u32 + 1;
        let cancelled = r.cancelled();
        match r.get() {
            Err(Error::Cancelled) => assert!(cancelled),
            Ok(got) => {
                assert_eq!(got, id);
                kept.push(id);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(map.get(), Err(Error::Cancelled)));
    // Exactly the calls not cancelled ran, each once.
    pool.close();
    pool.join().unwrap();
    let mut seen = Vec::new();
    while let Ok(id) = ran.get_nowait() {
        seen.push(id);
    }
    seen.sort();
    assert_eq!(seen, kept);
    assert!(!kept.contains(&5));
    // A finished call cannot be cancelled.
    let pool = Pool::new(1).unwrap();
    let done = pool.apply_async(triple, (1,)).unwrap();
    done.wait();
    assert!(!done.cancel());
    assert_eq!(done.get().unwrap(), 3);
}

#[test]
fn the_thread_pool_cancels_and_awaits_too() {
    let pool = multiproc::dummy::Pool::new(1).unwrap();
    let go = std::sync::Arc::new(std::sync::Barrier::new(2));
    let g = go.clone();
    let first = pool
        .apply_async(
            move |x: u32| {
                g.wait();
                x
            },
            (1,),
        )
        .unwrap();
    let second = pool.apply_async(|x: u32| x + 1, (2,)).unwrap();
    assert!(second.cancel());
    go.wait();
    assert_eq!(smol::block_on(first).unwrap(), 1);
    assert!(matches!(second.get(), Err(Error::Cancelled)));
}
