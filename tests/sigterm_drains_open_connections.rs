//! Stopping the real binary: SIGTERM closes the listeners at once but lets
//! an established connection finish its exchange, then exits 0; a second
//! signal exits at once; the drain deadline closes what is left.

mod common;

use common::router_process::{RouterProcess, scratch};
use common::*;
use rustix::process::Signal;
use stickytls_peers::client::{Client, ClientOptions, Connection, Writes};

async fn router_with_open_connection(
    name: &str,
    shutdown_timeout: &str,
) -> (
    RouterProcess,
    Connection,
    Vec<stickytls_peers::backend::RunningBackend>,
) {
    let farm = rustls_backends(1, |_| {}).await;
    let dir = scratch(name);
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--shutdown-timeout",
        shutdown_timeout,
        "--backend",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("a={}", farm[0].addr())])
    .collect();
    let router = RouterProcess::start(&args, &dir.join("stderr.log")).await;
    let client = Client::new(ClientOptions::default()).unwrap();
    let mut conn = client
        .open(router.addr, Some(ip(2)), Writes::Whole)
        .await
        .expect("connects through the router");
    assert_eq!(conn.ask().await.unwrap().backend, "a");
    (router, conn, farm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_connection_finish_refuses_new_ones_and_exits_0() {
    let (mut router, mut conn, _farm) = router_with_open_connection("drain", "60s").await;
    router.terminate();
    let stopping = router.wait_for_log("stopping:").await;
    assert!(stopping.contains("open=1"), "{stopping}");

    let refused = tokio::net::TcpStream::connect(router.addr).await;
    assert_eq!(
        refused.map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused,
        "the listener is closed once the stop begins"
    );
    assert!(router.running(), "the open connection holds the stop");
    // A request sent after the signal is still answered, through the
    // router, by the backend.
    assert_eq!(conn.ask().await.unwrap().backend, "a");
    conn.close().await.unwrap();

    let status = router.wait().await;
    assert_eq!(status.code(), Some(0), "{}", router.log());
    let log = router.log();
    assert!(
        log.contains("1 finished, 0 closed at the deadline"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    // The drain could last an hour: only the second signal ends it.
    let (mut router, mut conn, _farm) = router_with_open_connection("twice", "1h").await;
    router.terminate();
    router.wait_for_log("stopping:").await;
    router.signal(Signal::INT);
    let status = router.wait().await;
    assert_eq!(status.code(), Some(1), "{}", router.log());
    assert!(router.log().contains("second signal: exiting now"));
    assert!(conn.ask().await.is_err(), "the open connection was closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_timeout_closes_what_is_left_and_exits_0() {
    let (mut router, mut conn, _farm) = router_with_open_connection("deadline", "1s").await;
    router.signal(Signal::INT);
    let status = router.wait().await;
    assert_eq!(status.code(), Some(0), "{}", router.log());
    let log = router.log();
    assert!(log.contains("shutdown_timeout reached"), "{log}");
    assert!(
        log.contains("0 finished, 1 closed at the deadline"),
        "{log}"
    );
    assert!(conn.ask().await.is_err(), "the open connection was closed");
}
