//! `stickytls run`'s stop, from the first signal (or a new process taking
//! over) to the exit: the mechanisms it moves through (stop accepting,
//! drain, close) are [`crate::shutdown`]'s; this adds the deadline, the
//! second signal, the state file's writes, and the last hand-over to a
//! process that took over ([`crate::takeover`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::pool::Pools;
use crate::shutdown::{Shutdown, Signals};
use crate::state::StateFile;
use crate::takeover::Handoff;

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Open connections finished or were closed at the deadline, and the
    /// state (if any) was written: exit 0.
    Clean,
    /// A second signal: exit at once, without waiting for anything more.
    Forced,
}

/// `stickytls run`'s stop: the first signal stops accepting and starts the
/// drain, the deadline closes what is left, a second signal ends it at
/// once. The state file, if any, is written every interval meanwhile,
/// once when the stop begins (so a second signal still leaves a fresh
/// file) and once after the drain, which is the one a restart reads.
#[derive(Debug)]
pub struct Stop<'a> {
    pub shutdown: Shutdown,
    pub signals: &'a mut Signals,
    /// `shutdown_timeout`.
    pub timeout: Duration,
    /// The state file, the pools it keeps (as reloads replace them), and
    /// its interval.
    pub state: Option<(Arc<StateFile>, watch::Receiver<Pools>, Duration)>,
    /// A new process taking over ([`crate::takeover`]): its arrival stops
    /// this one as a signal does, and what this one learns while it drains
    /// goes to it instead of the state file, which it now owns.
    pub takeover: Option<mpsc::Receiver<Handoff>>,
}

impl Stop<'_> {
    /// Serves until a signal, then stops; `workers` reports the worker
    /// threads' end.
    pub async fn run(
        self,
        mut workers: oneshot::Receiver<std::io::Result<()>>,
    ) -> std::io::Result<Stopped> {
        let Stop {
            shutdown,
            signals,
            timeout,
            state,
            mut takeover,
        } = self;
        let periodic = state.as_ref().map(|(file, pools, interval)| {
            tokio::spawn(file.clone().write_every(pools.clone(), *interval))
        });
        let mut handoff = None;
        let first = tokio::select! {
            s = signals.recv() => s,
            h = next_takeover(&mut takeover) => {
                handoff = Some(h);
                "takeover"
            }
            // The workers only end on their own if they failed.
            r = &mut workers => return finished(r).map(|()| Stopped::Clean),
        };
        shutdown.stop_accepting();
        // The log line below promises that new clients are refused: wait
        // until the worker threads have closed their sockets, which each
        // does on its own time once asked.
        tokio::select! {
            () = shutdown.listeners_closed() => {}
            s = signals.recv() => {
                warn!(signal = s, "second signal: exiting now");
                return Ok(Stopped::Forced);
            }
        }
        if handoff.is_none() {
            // After a takeover the new process is the service's main one.
            crate::notify::notify("STOPPING=1");
        }
        let open = shutdown.open();
        info!(
            signal = first,
            open,
            timeout_secs = timeout.as_secs_f64(),
            "stopping: listeners closed, {open} open connection(s) may finish within {timeout:?}; a second signal exits at once"
        );
        if let Some(p) = periodic {
            p.abort();
        }
        if let (Some((file, pools, _)), None) = (&state, &handoff) {
            let (file, pools) = (file.clone(), pools.borrow().clone());
            tokio::spawn(async move { file.write(&pools).await });
        }

        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        // How many were still open at the deadline, once it has passed.
        let mut closed: Option<usize> = None;
        let result = loop {
            tokio::select! {
                r = &mut workers => break r,
                () = &mut deadline, if closed.is_none() => {
                    let n = shutdown.open();
                    closed = Some(n);
                    warn!(open = n, "shutdown_timeout reached: closing the {n} connection(s) still open");
                    shutdown.close_all();
                }
                s = signals.recv() => {
                    warn!(signal = s, open = shutdown.open(), "second signal: exiting now, closing {} open connection(s)", shutdown.open());
                    return Ok(Stopped::Forced);
                }
            }
        };
        finished(result)?;
        let closed = closed.unwrap_or(0).min(open);
        let done = open - closed;
        info!(
            open,
            finished = done,
            closed,
            "connections drained: {done} finished, {closed} closed at the deadline"
        );
        if let Some(h) = handoff {
            let to = h.to_pid;
            match tokio::task::spawn_blocking(move || h.finish()).await {
                Ok(Ok(())) => {
                    info!(to_pid = ?to, "handed what this process learned while draining to the new one")
                }
                Ok(Err(e)) => {
                    warn!(to_pid = ?to, "could not hand the last state to the new process: {e}")
                }
                Err(_) => warn!("the last hand-over panicked"),
            }
        } else if let Some((file, pools, _)) = &state {
            let pools = pools.borrow().clone();
            tokio::select! {
                _ = file.write(&pools) => {}
                s = signals.recv() => {
                    warn!(signal = s, "second signal: exiting before the state file was written again");
                    return Ok(Stopped::Forced);
                }
            }
        }
        info!("stopped");
        Ok(Stopped::Clean)
    }
}

/// The next takeover, or never when there is no takeover socket.
async fn next_takeover(rx: &mut Option<mpsc::Receiver<Handoff>>) -> Handoff {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(h) => h,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

fn finished(r: Result<std::io::Result<()>, oneshot::error::RecvError>) -> std::io::Result<()> {
    match r {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::other("a worker thread panicked")),
    }
}
