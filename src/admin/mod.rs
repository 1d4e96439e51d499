//! The admin endpoint: `GET /metrics` (Prometheus text), a JSON API under
//! `/api/v1/` to see and steer a running router, and `GET /stats`, an HTML
//! page of the same figures for a browser (docs/operations.md).
//!
//! It runs on a thread and a runtime of its own, apart from the worker
//! threads, so a scrape or a slow admin client never delays a connection,
//! and every request is bounded (size, header count, connections, time).
//! - [`control`]: what the API reads and changes in the router's pools.
//! - [`api`]: the routes, the token check, JSON errors, the tower layers.
//! - [`guard`]: the `Host`, `Origin` and `Sec-Fetch-Site` checks that keep
//!   web pages the operator opens from using the endpoint.
//! - [`stats_page`]: `GET /stats`, the same figures as one HTML page.
//!
//! Off by default; on with `[admin] bind` or `--admin`.

pub mod api;
pub mod control;
pub mod guard;
pub mod stats_page;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt as _;
use tracing::{info, warn};

pub use crate::config::AdminConfig;
pub use control::Control;

/// What bounds the endpoint. Fixed rather than configured: an admin
/// endpoint's traffic is small and these leave room for it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub connections: usize,
    /// Requests handled at once over all connections.
    pub concurrent_requests: usize,
    /// A request from its first header byte to its answer.
    pub request_timeout: Duration,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    pub max_headers: usize,
    /// Bytes of a request's head (request line and headers).
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    /// A connection, however busy, is closed after this (clients such as
    /// Prometheus reconnect): keeps a slow reader from holding a slot.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 32,
            concurrent_requests: 16,
            request_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(5),
            max_headers: 32,
            max_head_bytes: 16 * 1024,
            max_body_bytes: 16 * 1024,
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// An error answer: its status and `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(
                serde_json::json!({ "error": self.message, "status": self.status.as_u16() }),
            ),
        )
            .into_response()
    }
}

/// A running admin endpoint. Dropping it stops the endpoint and waits for
/// its thread.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `config.bind` (so a bad address fails here, before the router
    /// serves) and serves on a thread of its own. With `metrics`, also runs
    /// the recorder's upkeep every [`crate::metrics::UPKEEP_INTERVAL`].
    pub fn start(
        config: &AdminConfig,
        control: Control,
        metrics: Option<PrometheusHandle>,
        limits: Limits,
    ) -> std::io::Result<AdminServer> {
        let listener = std::net::TcpListener::bind(config.bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let app = api::router(control, metrics.clone(), config, &limits);
        let (stop, stopped) = watch::channel(false);
        let thread = crate::runtime::spawn("stickytls-admin".into(), move || async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    warn!(error = %e, "admin endpoint: cannot register its socket");
                    return;
                }
            };
            if let Some(handle) = metrics {
                tokio::spawn(upkeep(handle, stopped.clone()));
            }
            serve(listener, app, limits, stopped).await;
        })?;
        info!(%addr, "admin endpoint listening");
        Ok(AdminServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address (with the real port when the configuration said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Drains histograms into their buckets even when nobody scrapes.
async fn upkeep(handle: PrometheusHandle, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(crate::metrics::UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The accept loop: one task per connection, at most `limits.connections`
/// at once.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_head_bytes.max(8192));
    let http = Arc::new(http);
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors: the worker threads' problem too;
                    // back off rather than spin.
                    warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => return,
        };
        // The address the client reached, for the Host check: with a
        // wildcard bind, the one it names when it scrapes by address.
        let local = stream.local_addr().map(|a| a.ip()).ok();
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                if let Some(ip) = local {
                    req.extensions_mut().insert(guard::LocalAddr(ip));
                }
                req
            },
        ));
        let http = http.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = tokio::time::timeout(limits.connection_lifetime, conn) => {
                    if let Ok(Err(e)) = r {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                }
                _ = stop.wait_for(|s| *s) => {}
            }
            drop(slot);
        });
    }
}
