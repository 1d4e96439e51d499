//! Stopping in two steps: stop accepting (the listeners close, so new
//! clients are refused), let the connections already open finish, and
//! after a deadline close the rest.
//!
//! The main thread holds the [`Shutdown`] and moves it from phase to phase;
//! each worker thread gets a [`Drain`], serves until the phase leaves
//! [`Phase::Serving`], then waits until its own connections are gone or
//! the phase reaches [`Phase::Closing`], and returns: dropping its runtime
//! closes whatever is still open.
//!
//! Connections are counted per worker thread, with an atomic that only its
//! own thread's connections touch, so counting them takes no lock and
//! shares no cache line between threads; the count's [`Notify`] is only
//! used once a stop has begun.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// Where a stop is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Accepting and serving.
    Serving,
    /// Not accepting; open connections run to their end.
    Draining,
    /// The drain deadline passed (or a second signal came): close the rest.
    Closing,
}

/// The main thread's side of a stop.
#[derive(Debug)]
pub struct Shutdown {
    phase: watch::Sender<Phase>,
    /// One count per worker thread, read to log how many are still open.
    connections: Arc<[Connections]>,
    /// Worker threads whose accept loops may still hold a listening
    /// socket: a stop says the listeners are closed only once this is 0.
    accepting: Connections,
}

impl Shutdown {
    /// A stop for `threads` worker threads (at least one count).
    pub fn new(threads: usize) -> Shutdown {
        Shutdown {
            phase: watch::Sender::new(Phase::Serving),
            connections: (0..threads.max(1))
                .map(|_| Connections::default())
                .collect(),
            accepting: Connections::default(),
        }
    }

    /// What the worker threads watch.
    pub fn drain(&self) -> Drain {
        Drain {
            phase: self.phase.subscribe(),
            connections: self.connections.clone(),
            accepting: self.accepting.clone(),
        }
    }

    /// Stops accepting everywhere; open connections go on.
    pub fn stop_accepting(&self) {
        self.advance(Phase::Draining);
    }

    /// Closes every connection still open.
    pub fn close_all(&self) {
        self.advance(Phase::Closing);
    }

    fn advance(&self, to: Phase) {
        self.phase.send_if_modified(|p| {
            let later = to > *p;
            if later {
                *p = to;
            }
            later
        });
    }

    /// Completes once every worker thread has closed its listening sockets
    /// (and released the copies kept for a takeover), so that the port
    /// refuses new clients: signalling the stop only asks the threads to
    /// close them, which each does on its own time.
    pub async fn listeners_closed(&self) {
        self.accepting.idle().await;
    }

    /// Connections open now, on every worker thread.
    pub fn open(&self) -> usize {
        self.connections.iter().map(Connections::open).sum()
    }
}

/// A worker thread's side of a stop.
#[derive(Debug, Clone)]
pub struct Drain {
    phase: watch::Receiver<Phase>,
    connections: Arc<[Connections]>,
    accepting: Connections,
}

impl Drain {
    /// A drain that never stops, for routers run on a caller's runtime
    /// until their own shutdown future completes.
    pub fn never() -> Drain {
        Shutdown::new(1).drain()
    }

    /// The connection count of worker thread `index`.
    pub fn connections(&self, index: usize) -> Connections {
        let n = self.connections.len();
        self.connections[index % n].clone()
    }

    /// Counts one worker thread as accepting until the returned guard
    /// drops, which must be after its accept loops have closed their
    /// sockets. Taken before the thread starts, so that a stop signalled
    /// early still waits for it.
    pub fn accepting(&self) -> Tracked {
        self.accepting.track()
    }

    /// Completes when accepting must stop.
    pub async fn stop_accepting(&self) {
        self.reached(Phase::Draining).await;
    }

    /// Completes when the connections counted by `connections` are all
    /// gone, or when the rest must be closed; returns how many were still
    /// open then (0 if they all finished).
    pub async fn drained(&self, connections: &Connections) -> usize {
        tokio::select! {
            () = connections.idle() => 0,
            () = self.reached(Phase::Closing) => connections.open(),
        }
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.phase.clone();
        // An error means the main thread is gone: nothing will advance the
        // phase any more, so treat it as reached.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// Open connections of one worker thread.
#[derive(Debug, Clone, Default)]
pub struct Connections(Arc<Count>);

#[derive(Debug, Default)]
struct Count {
    open: AtomicUsize,
    /// Set once someone waits for `open` to reach zero; until then a
    /// connection's end touches nothing but `open`.
    waiting: AtomicBool,
    /// Woken when `open` reaches zero while `waiting`.
    idle: Notify,
}

impl Connections {
    /// Counts one connection until the returned guard drops.
    pub fn track(&self) -> Tracked {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        Tracked(self.clone())
    }

    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Completes when no connection is open.
    pub async fn idle(&self) {
        self.0.waiting.store(true, Ordering::SeqCst);
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            // Registered before the count is read: a connection that ends
            // after the read sees `waiting` and wakes this.
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection; dropping it ends the count.
#[derive(Debug)]
pub struct Tracked(Connections);

impl Drop for Tracked {
    fn drop(&mut self) {
        let count = &self.0.0;
        if count.open.fetch_sub(1, Ordering::SeqCst) == 1 && count.waiting.load(Ordering::SeqCst) {
            count.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_drain_completes_when_the_last_connection_ends() {
        let shutdown = Shutdown::new(2);
        let drain = shutdown.drain();
        let mine = drain.connections(0);
        let a = mine.track();
        let b = mine.track();
        assert_eq!(shutdown.open(), 2);
        shutdown.stop_accepting();
        drain.stop_accepting().await;
        let waiting = tokio::spawn({
            let drain = drain.clone();
            let mine = mine.clone();
            async move { drain.drained(&mine).await }
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one connection is still open");
        drop(b);
        assert_eq!(waiting.await.unwrap(), 0, "all finished, none cut");
        assert_eq!(shutdown.open(), 0);
    }

    #[tokio::test]
    async fn closing_ends_the_drain_and_reports_what_was_left() {
        let shutdown = Shutdown::new(1);
        let drain = shutdown.drain();
        let mine = drain.connections(0);
        let _held = mine.track();
        shutdown.stop_accepting();
        let waiting = tokio::spawn({
            let drain = drain.clone();
            async move { drain.drained(&mine).await }
        });
        shutdown.close_all();
        assert_eq!(waiting.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn listeners_count_as_closed_only_once_every_accepting_thread_is_done() {
        let shutdown = Shutdown::new(2);
        let drain = shutdown.drain();
        let a = drain.accepting();
        let b = drain.accepting();
        shutdown.stop_accepting();
        let waiting = tokio::spawn(async move {
            shutdown.listeners_closed().await;
        });
        drop(a);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one thread still holds its sockets");
        drop(b);
        waiting.await.unwrap();
    }

    #[tokio::test]
    async fn phases_only_move_forward() {
        let shutdown = Shutdown::new(1);
        shutdown.close_all();
        shutdown.stop_accepting();
        assert_eq!(*shutdown.drain().phase.borrow(), Phase::Closing);
    }

    #[tokio::test]
    async fn an_idle_thread_drains_at_once() {
        let shutdown = Shutdown::new(1);
        let drain = shutdown.drain();
        assert_eq!(drain.drained(&drain.connections(0)).await, 0);
    }
}
