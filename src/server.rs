//! `stickytls run`: the process from its start to its exit, in one place,
//! as pingora's `Server` and mini-redis' `server::run` are.
//!
//! Starting: take over from a router already running at the takeover
//! socket ([`crate::takeover`]) or bind anew ([`crate::router`]), put the
//! affinity state back (handed over, else the state file's), serve on the
//! worker threads, tell systemd ([`crate::notify`]).
//!
//! Then one loop on the main thread answers everything that happens to the
//! process: SIGHUP reloads ([`crate::reload`]), SIGUSR2 starts the new
//! binary, which takes over; SIGTERM, SIGINT or a new process taking over
//! stops it (stop accepting, let open connections finish until
//! `shutdown_timeout`, close the rest: [`crate::shutdown`]), and a second
//! signal exits at once. The state file is written every interval, once
//! when the stop begins (so a second signal still leaves a fresh file) and
//! once after the drain, which is the one a restart reads; after a takeover
//! the last state goes to the new process instead, which owns the file.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::reload::Live;
use crate::router::{Router, RouterError};
use crate::shutdown::Shutdown;
use crate::state::StateFile;
use crate::takeover::{Handoff, Inherited};

/// A router process to run: its configuration and how it is spread over
/// threads.
#[derive(Debug)]
pub struct Server {
    config: Config,
    /// The file `config` was read from, which a reload re-reads; `None`
    /// for the command line's quick form, which cannot be re-read.
    file: Option<PathBuf>,
    /// Worker threads, each with its own runtime and listening sockets.
    threads: usize,
}

/// Why the process could not start, or its worker threads failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The main thread's runtime (this host is out of threads or
    /// descriptors).
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The configuration or an address it names.
    #[error("{0}")]
    Router(#[from] RouterError),
    /// The signal handlers could not be installed.
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    /// A worker thread could not start, or panicked.
    #[error("{0}")]
    Workers(#[source] std::io::Error),
}

impl Server {
    /// `threads` worker threads (default: one per CPU); `file` is where
    /// `config` was read from, if it was.
    pub fn new(config: Config, file: Option<PathBuf>, threads: Option<usize>) -> Server {
        let threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Server {
            config,
            file,
            threads,
        }
    }

    /// Starts serving and blocks until the process is to exit: `Ok` after
    /// a clean stop (exit 0). A second stop signal exits the process at
    /// once, with status 1: returning would wait for a state write still
    /// running and for the worker threads' connections.
    pub fn run(self) -> Result<(), ServerError> {
        let Server {
            config,
            file,
            threads,
        } = self;
        let nofile = crate::listen::raise_nofile_limit();
        // The main thread only starts, stops and answers signals;
        // connections are served on the worker threads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let lifecycle = config.lifecycle.clone();
        let state_cap = crate::state::size_cap(&config.pools);
        let inherited = lifecycle
            .takeover_socket
            .as_deref()
            .and_then(|path| take_over(path, state_cap));
        let router = rt.block_on(bind(config, file, inherited.as_ref()))?;
        // Caught from here on: before, their default action ends the
        // process, which has nothing to drain or save yet.
        let signals = rt
            .block_on(async { Signals::new() })
            .map_err(ServerError::Signals)?;
        let live = router.live().clone();
        let state = lifecycle
            .state
            .as_ref()
            .map(|s| (StateFile::new(s.file.clone()), s.interval));
        restore(inherited.as_ref(), state.as_ref().map(|(f, _)| &**f), &live);
        let backends: Vec<String> = live
            .pools()
            .iter()
            .flat_map(|p| p.backends.all())
            .map(|b| format!("{}={}", b.name, b.addr))
            .collect();
        info!(listen = %router.local_addr(), backends = ?backends, threads, open_files = nofile, "stickytls routing");

        let shutdown = Shutdown::new(threads);
        let drain = shutdown.drain();
        let (done, workers) = oneshot::channel();
        std::thread::Builder::new()
            .name("stickytls-workers".into())
            .spawn(move || {
                let _ = done.send(router.run_on_threads(threads, drain));
            })
            .map_err(ServerError::Workers)?;
        let (handed, takeover) = mpsc::channel(1);
        let taken_over = inherited.is_some();
        if let Some(path) = &lifecycle.takeover_socket {
            // The workers serve the handed-over sockets from now on (and
            // what queues on them meanwhile waits for them): the old
            // process may stop accepting.
            let listening = match inherited {
                Some(i) => i.ready(live.clone(), path, handed),
                None => crate::takeover::listen(path, live.clone(), handed),
            };
            if let Err(e) = listening {
                warn!(path = %path.display(), "takeover socket unusable, a later upgrade will need a restart: {e}");
            }
        }
        if taken_over {
            // Under systemd (NotifyAccess=all) this process becomes the
            // service's main one; the old one drains and exits.
            crate::notify::ready_as_main();
        } else {
            crate::notify::notify("READY=1");
        }
        let main = MainLoop {
            live,
            shutdown,
            signals,
            timeout: lifecycle.shutdown_timeout,
            state,
            takeover: Some(takeover),
            can_upgrade: lifecycle.takeover_socket.is_some(),
        };
        match rt.block_on(main.run(workers)) {
            Ok(Stopped::Clean) => Ok(()),
            Ok(Stopped::Forced) => std::process::exit(1),
            Err(e) => Err(ServerError::Workers(e)),
        }
    }
}

/// Takes the listening sockets and the state (at most `state_cap` bytes)
/// of the router running at `path`, if one is; without one, or with one
/// whose sockets or state are refused, this process starts on its own.
fn take_over(path: &std::path::Path, state_cap: u64) -> Option<Inherited> {
    match crate::takeover::take_over(path, state_cap) {
        Ok(Some(i)) => {
            let sockets: usize = i.sockets.values().map(Vec::len).sum();
            info!(from_pid = ?i.from_pid, sockets, state_bytes = i.state.len(), "taking over from the running router");
            Some(i)
        }
        Ok(None) => None,
        Err(e) => {
            warn!(path = %path.display(), "no takeover, starting on new sockets: {e}");
            None
        }
    }
}

/// Binds the router: on the sockets a previous process handed over, if
/// any, remembering the file a reload re-reads.
async fn bind(
    config: Config,
    file: Option<PathBuf>,
    inherited: Option<&Inherited>,
) -> Result<Router, RouterError> {
    match (file, inherited) {
        (file, Some(i)) => {
            let sockets = i
                .sockets
                .iter()
                .map(|(a, s)| (*a, s.iter().filter_map(|s| s.try_clone().ok()).collect()))
                .collect();
            Router::bind_inherited(config, file, sockets).await
        }
        (Some(file), None) => Router::bind_file(config, file).await,
        (None, None) => Router::bind(config).await,
    }
}

/// Puts the affinity state back before any connection, so that no lookup
/// misses it: what a running router handed over is newer than any file.
fn restore(inherited: Option<&Inherited>, file: Option<&StateFile>, live: &Live) {
    let pools = live.pools();
    match (inherited, file) {
        (Some(i), _) => match crate::takeover::restore(i, &pools) {
            Ok(r) => info!(
                entries = r.entries,
                clients = r.clients,
                "affinity state taken over"
            ),
            Err(e) => warn!("the running router's state is not usable, starting without it: {e}"),
        },
        (None, Some(file)) => {
            file.restore(&pools);
        }
        (None, None) => {}
    }
}

/// The signals the process answers.
#[derive(Debug)]
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr2: Signal,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// SIGTERM (service managers) or SIGINT (Ctrl-C), by name.
    Stop(&'static str),
    /// SIGHUP.
    Reload,
    /// SIGUSR2.
    Upgrade,
}

impl Signals {
    /// Catches them all from now on; needs a runtime.
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr2: signal(SignalKind::user_defined2())?,
        })
    }

    /// The next one. (Several of one kind before this is called arrive as
    /// one.)
    async fn next(&mut self) -> Asked {
        tokio::select! {
            _ = self.term.recv() => Asked::Stop("SIGTERM"),
            _ = self.int.recv() => Asked::Stop("SIGINT"),
            _ = self.hup.recv() => Asked::Reload,
            _ = self.usr2.recv() => Asked::Upgrade,
        }
    }
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    /// Open connections finished or were closed at the deadline, and the
    /// state (if any) was written or handed over: exit 0.
    Clean,
    /// A second signal: exit at once, without waiting for anything more.
    Forced,
}

/// Where the process is, from serving to the exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Asked to stop; waiting for the worker threads to close their
    /// listening sockets.
    Closing,
    /// Not accepting; open connections finish until the deadline.
    Draining,
    /// Drained; writing the last state or handing it over.
    Finishing,
}

/// The main thread's loop: one `select!` over everything that moves the
/// process along.
#[derive(Debug)]
struct MainLoop {
    live: Arc<Live>,
    shutdown: Shutdown,
    signals: Signals,
    /// `shutdown_timeout`.
    timeout: Duration,
    /// The state file and its interval.
    state: Option<(Arc<StateFile>, Duration)>,
    /// A new process taking over ([`crate::takeover`]): its arrival stops
    /// this one as a signal does, and what this one learns while it drains
    /// goes to it instead of the state file. `None` once the takeover
    /// thread is gone.
    takeover: Option<mpsc::Receiver<Handoff>>,
    /// Whether SIGUSR2 can start a successor: it needs the takeover socket.
    can_upgrade: bool,
}

impl MainLoop {
    /// Serves until a signal or a takeover, then stops; `workers` reports
    /// the worker threads' end.
    async fn run(
        self,
        mut workers: oneshot::Receiver<std::io::Result<()>>,
    ) -> std::io::Result<Stopped> {
        let MainLoop {
            live,
            shutdown,
            mut signals,
            timeout,
            state,
            mut takeover,
            can_upgrade,
        } = self;
        let mut phase = Phase::Serving;
        // What asked to stop: a signal's name, or TAKEOVER.
        let mut stopped_by = "";
        let mut handoff: Option<Handoff> = None;
        // The first periodic write one interval after the start.
        let mut ticks = state.as_ref().map(|(_, every)| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + *every, *every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut periodic: Option<JoinHandle<()>> = None;
        let mut reloading: Option<JoinHandle<()>> = None;
        // A SIGHUP during a reload: reload again once it is done.
        let mut reload_again = false;
        let mut deadline: Option<Pin<Box<tokio::time::Sleep>>> = None;
        // Open when the listeners closed, and how many of them were still
        // open at the deadline, once it has passed.
        let mut open = 0;
        let mut closed: Option<usize> = None;
        let mut finishing: Option<JoinHandle<()>> = None;
        loop {
            tokio::select! {
                asked = signals.next() => match (asked, phase) {
                    (Asked::Stop(name), Phase::Serving) => {
                        shutdown.stop_accepting();
                        (phase, stopped_by) = (Phase::Closing, name);
                    }
                    (Asked::Stop(name), _) => {
                        let handing_over = stopped_by == TAKEOVER;
                        second_signal(name, phase, handing_over, shutdown.open());
                        return Ok(Stopped::Forced);
                    }
                    (Asked::Reload, Phase::Serving) => {
                        if !live.can_reload() {
                            info!("SIGHUP ignored: started from flags, there is no configuration file to re-read");
                        } else if reloading.is_some() {
                            reload_again = true;
                        } else {
                            reloading = Some(reload(&live));
                        }
                    }
                    (Asked::Reload, _) => info!("SIGHUP ignored: the router is stopping"),
                    (Asked::Upgrade, Phase::Serving) => upgrade(can_upgrade),
                    (Asked::Upgrade, _) => warn!("SIGUSR2 ignored: the router is stopping"),
                },
                h = next(&mut takeover), if phase == Phase::Serving => match h {
                    Some(h) => {
                        handoff = Some(h);
                        shutdown.stop_accepting();
                        (phase, stopped_by) = (Phase::Closing, TAKEOVER);
                    }
                    None => takeover = None,
                },
                () = tick(&mut ticks), if phase == Phase::Serving => {
                    // One write at a time: a slow disk delays the next.
                    if periodic.as_ref().is_none_or(JoinHandle::is_finished) {
                        periodic = state.as_ref().map(|(file, _)| write(file, &live));
                    }
                }
                _ = finished(&mut reloading) => {
                    reloading = None;
                    // systemd (`Type=notify-reload`) is told the reload is
                    // over either way: `reload` logged and counted the
                    // outcome.
                    if phase == Phase::Serving {
                        crate::notify::notify("READY=1");
                        if std::mem::take(&mut reload_again) {
                            reloading = Some(reload(&live));
                        }
                    }
                }
                // The log line below promises that new clients are
                // refused: wait until the worker threads have closed their
                // sockets, which each does on its own time once asked.
                () = shutdown.listeners_closed(), if phase == Phase::Closing => {
                    if handoff.is_none() {
                        // After a takeover the new process is the
                        // service's main one.
                        crate::notify::notify("STOPPING=1");
                    }
                    open = shutdown.open();
                    info!(
                        signal = stopped_by,
                        open,
                        timeout_secs = timeout.as_secs_f64(),
                        "stopping: listeners closed, {open} open connection(s) may finish within {timeout:?}; a second signal exits at once"
                    );
                    if let Some(p) = periodic.take() {
                        p.abort();
                    }
                    if let (Some((file, _)), None) = (&state, &handoff) {
                        // Not waited for: the state is written again after
                        // the drain.
                        write(file, &live);
                    }
                    deadline = Some(Box::pin(tokio::time::sleep(timeout)));
                    phase = Phase::Draining;
                }
                () = expired(&mut deadline), if phase == Phase::Draining && closed.is_none() => {
                    let n = shutdown.open();
                    closed = Some(n);
                    warn!(open = n, "shutdown_timeout reached: closing the {n} connection(s) still open");
                    shutdown.close_all();
                }
                // The workers end on their own only if they failed.
                r = &mut workers, if matches!(phase, Phase::Serving | Phase::Draining) => {
                    let r = r.unwrap_or_else(|_| Err(std::io::Error::other("a worker thread panicked")));
                    if phase == Phase::Serving {
                        return r.map(|()| Stopped::Clean);
                    }
                    r?;
                    let closed = closed.unwrap_or(0).min(open);
                    let done = open - closed;
                    info!(
                        open,
                        finished = done,
                        closed,
                        "connections drained: {done} finished, {closed} closed at the deadline"
                    );
                    finishing = match (handoff.take(), &state) {
                        (Some(h), _) => Some(tokio::spawn(hand_over(h))),
                        (None, Some((file, _))) => Some(write(file, &live)),
                        (None, None) => None,
                    };
                    if finishing.is_none() {
                        info!("stopped");
                        return Ok(Stopped::Clean);
                    }
                    phase = Phase::Finishing;
                }
                _ = finished(&mut finishing) => {
                    info!("stopped");
                    return Ok(Stopped::Clean);
                }
            }
        }
    }
}

/// What stopped the process when a new one took over, in the log where a
/// signal's name is otherwise.
const TAKEOVER: &str = "takeover";

/// Logs why a second stop signal exits at once, by where the stop was.
fn second_signal(signal: &'static str, phase: Phase, handing_over: bool, open: usize) {
    match phase {
        Phase::Serving | Phase::Closing => warn!(signal, "second signal: exiting now"),
        Phase::Draining => warn!(
            signal,
            open, "second signal: exiting now, closing {open} open connection(s)"
        ),
        Phase::Finishing if handing_over => {
            warn!(
                signal,
                "second signal: exiting before the last state was handed over"
            )
        }
        Phase::Finishing => warn!(
            signal,
            "second signal: exiting before the state file was written again"
        ),
    }
}

/// Starts a reload of the configuration file on a blocking thread (the
/// file is read there); `reload` logs and counts its outcome.
fn reload(live: &Arc<Live>) -> JoinHandle<()> {
    info!("SIGHUP: reloading the configuration");
    crate::notify::reloading();
    let live = live.clone();
    tokio::task::spawn_blocking(move || {
        let _ = live.reload();
    })
}

/// SIGUSR2: starts the new binary, which takes over through the socket.
fn upgrade(can_upgrade: bool) {
    if !can_upgrade {
        warn!("SIGUSR2 ignored: an upgrade needs [state] takeover_socket (or --takeover-socket)");
    } else if let Err(e) = crate::takeover::spawn_successor() {
        error!("SIGUSR2: cannot start the new binary, still serving: {e}");
    }
}

/// Writes the pools served now to the state file, on a task of its own;
/// the write logs its outcome.
fn write(file: &Arc<StateFile>, live: &Live) -> JoinHandle<()> {
    let (file, pools) = (file.clone(), live.pools());
    tokio::spawn(async move {
        let _ = file.write(&pools).await;
    })
}

/// Sends what this process learned while draining to the one that took
/// over, and logs how it went.
async fn hand_over(h: Handoff) {
    let to = h.to_pid;
    match tokio::task::spawn_blocking(move || h.finish()).await {
        Ok(Ok(())) => {
            info!(to_pid = ?to, "handed what this process learned while draining to the new one")
        }
        Ok(Err(e)) => warn!(to_pid = ?to, "could not hand the last state to the new process: {e}"),
        Err(_) => warn!("the last hand-over panicked"),
    }
}

// Futures over what may not be there: each never completes when it is not,
// so that its `select!` branch simply waits.

/// The next takeover.
async fn next(rx: &mut Option<mpsc::Receiver<Handoff>>) -> Option<Handoff> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next periodic write's time.
async fn tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The end of a task; the caller then forgets it.
async fn finished<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// The drain deadline.
async fn expired(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match deadline {
        Some(d) => d.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_default_to_one_per_cpu() {
        let config = Config::single("127.0.0.1:0".parse().unwrap(), Vec::new());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Server::new(config.clone(), None, None).threads, cpus);
        assert_eq!(Server::new(config, None, Some(3)).threads, 3);
    }
}
