//! A listener at its `max_connections` leaves new clients in the kernel's
//! backlog and serves them as connections end: across the router's worker
//! threads, every slot given back wakes a waiting accept loop, none is lost.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_past_the_limit_wait_and_are_served_as_slots_free() {
    let farm = rustls_backends(1, |_| {}).await;
    let mut cfg = config(&named(&farm));
    cfg.listeners[0].limits.max_connections = 2;
    let router = start_router(cfg).await;
    let c = fresh_client();

    let mut held = Vec::new();
    for i in 0..2u8 {
        held.push(
            c.open(router.addr, Some(ip(40 + i)), Default::default())
                .await
                .unwrap(),
        );
    }
    // Three more clients: TCP connects (the backlog), no handshake yet.
    let mut waiting = tokio::task::JoinSet::new();
    for i in 0..3u8 {
        let (c, addr) = (c.clone(), router.addr);
        waiting.spawn(async move { c.open(addr, Some(ip(50 + i)), Default::default()).await });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        waiting.try_join_next().is_none(),
        "a client past the limit was served while both slots were held"
    );

    // Both slots freed at once: two of the three are served (whichever
    // the kernel's backlog hands over first), and when one of those ends,
    // the third.
    drop(held);
    let mut served = Vec::new();
    for _ in 0..2 {
        let s = tokio::time::timeout(Duration::from_secs(20), waiting.join_next())
            .await
            .expect("a freed slot did not reach a waiting client")
            .unwrap()
            .unwrap()
            .expect("the waiting client's handshake completes");
        served.push(s);
    }
    assert!(
        waiting.try_join_next().is_none(),
        "a third client was served while two held both slots"
    );
    drop(served.pop());
    tokio::time::timeout(Duration::from_secs(20), waiting.join_next())
        .await
        .expect("the slot of an ended connection did not reach the last client")
        .unwrap()
        .unwrap()
        .expect("the last client's handshake completes");
}
