//! The accept loop: a global connection limit, back-off when the process
//! runs out of descriptors, and a clean stop on shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{error, warn};

use crate::router::{ListenerState, handle};

/// Accepts until `shutdown` completes. Connections already accepted run to
/// their end on their own tasks.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ListenerState>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limit = state.connection_slots.clone();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(1);
    loop {
        // Wait for a free slot first, so that at the limit new clients wait
        // in the kernel's backlog instead of being accepted and dropped.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = &mut shutdown => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(1);
                let state = state.clone();
                // Boxed: a connection's future is about 3.2 KiB (the nested
                // states of every stage; `size_of` on `handle`'s future in a
                // release build), and the task would otherwise copy
                // it whole on spawn and on each change of stage; that was
                // two thirds of a short connection's instructions.
                tokio::spawn(Box::pin(async move {
                    handle(state, stream, peer).await;
                    drop(permit);
                }));
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; the
                // pending connection stays in the backlog until then.
                let reason = if matches!(e.raw_os_error(), Some(24) | Some(23)) {
                    "emfile"
                } else {
                    "other"
                };
                metrics::counter!(crate::metrics::ACCEPT_ERRORS, "reason" => reason).increment(1);
                warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Raises the soft descriptor limit to the hard limit: each relayed
/// connection holds two sockets, and the default soft limit (1024) would
/// cap the router at about 500 clients.
pub fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(max) = lim.maximum {
        if lim.current != Some(max) {
            let new = rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            };
            if let Err(e) = setrlimit(Resource::Nofile, new) {
                error!(error = %e, "could not raise the open-file limit");
                return lim.current.unwrap_or(0);
            }
        }
        return max;
    }
    lim.current.unwrap_or(u64::MAX)
}
