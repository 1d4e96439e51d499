//! A named thread with a single-threaded tokio runtime of its own: what
//! the worker threads, the health checks, the admin endpoint and the
//! shared store's client each run on, so that none of them waits in
//! another's queue.

use std::future::Future;
use std::thread::JoinHandle;

/// Builds a current-thread runtime, then starts thread `name` running on
/// it the future that `task` makes there (so the future need not be
/// `Send`, only `task`). The runtime is built here, on the caller's
/// thread, so that a failure to build it is the caller's error like a
/// failure to start the thread, rather than something the thread can only
/// log. Dropping the runtime when the future returns closes whatever its
/// tasks still hold (sockets, connections).
pub(crate) fn spawn<T, F>(name: String, task: T) -> std::io::Result<JoinHandle<F::Output>>
where
    T: FnOnce() -> F + Send + 'static,
    F: Future,
    F::Output: Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name(name)
        // `task` is called inside the runtime, so that it may already use
        // it (register a socket, spawn a task).
        .spawn(move || rt.block_on(async move { task().await }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_future_runs_on_the_named_thread_with_a_runtime() {
        let handle = super::spawn("stickytls-test".into(), || async {
            tokio::task::yield_now().await;
            let inner = tokio::spawn(async { 2 }).await.unwrap();
            (std::thread::current().name().map(str::to_string), inner)
        })
        .unwrap();
        let (name, inner) = handle.join().unwrap();
        assert_eq!(name.as_deref(), Some("stickytls-test"));
        assert_eq!(inner, 2);
    }
}
