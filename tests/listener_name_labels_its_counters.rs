//! A listener's configured name is on its connections' counters: the
//! `listener` label of the connections and refusals counters.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use stickytls::config::{BackendConfig, Config};
use stickytls::router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A counter's labels, as (key, value) pairs in the order they were given.
type Labels = Vec<(String, String)>;

#[test]
fn connection_and_refusal_counters_carry_the_listener_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A local recorder is the current thread's: the router and the
    // client share one current-thread runtime here, so it sees both.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let unused = "127.0.0.1:1".parse().unwrap();
            let mut config = Config::single(
                "127.0.0.1:0".parse().unwrap(),
                vec![BackendConfig::new("a", unused)],
            );
            config.listeners[0].name = "edge".into();
            let router = Router::bind(config).await.unwrap().spawn();
            let mut c = tokio::net::TcpStream::connect(router.addr).await.unwrap();
            c.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
            // The router counts before it closes: at end of stream the
            // counters are final.
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest).await;
        })
    });
    let counters: Vec<(String, Labels, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let key = key.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                Some((key.name().to_string(), labels, n))
            }
            _ => None,
        })
        .collect();
    let count = |name: &str, labels: &[(&str, &str)]| {
        let wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        counters
            .iter()
            .find(|(n, l, _)| n == name && *l == wanted)
            .map(|(_, _, v)| *v)
    };
    assert_eq!(
        count(stickytls::metrics::CONNECTIONS, &[("listener", "edge")]),
        Some(1),
        "{counters:?}"
    );
    assert_eq!(
        count(
            stickytls::metrics::REJECTED,
            &[("listener", "edge"), ("reason", "not_tls")]
        ),
        Some(1),
        "{counters:?}"
    );
}
