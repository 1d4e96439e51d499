//! systemd's service notification protocol (`sd_notify`), without
//! libsystemd: one datagram to the Unix socket named by `NOTIFY_SOCKET`.
//! With `Type=notify` (or `notify-reload`) it tells systemd when the router
//! serves (`READY=1`), reloads (`RELOADING=1`), stops (`STOPPING=1`), and,
//! after an upgrade, which process is now the service's main one
//! (`MAINPID=`, which needs `NotifyAccess=all` since the new process is not
//! the one systemd started). Without `NOTIFY_SOCKET` every call is a no-op,
//! so the router behaves the same outside systemd.
//!
//! Why not the `sd-notify` crate (0.5): it ends every assignment with a
//! newline (`READY=1\n`), where this sends exactly `READY=1` and
//! `MAINPID=<pid>\nREADY=1`, the datagrams tests/upgrade_refuses_no_connection.rs
//! pins; and it connects to `NOTIFY_SOCKET` as a path, so an abstract
//! socket (`@name`, which systemd hands to some services) is never
//! reached. What is left to write is the one `send_to` below.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=VALUE` assignments); returns
/// whether a notification socket took it. Failures are not errors: systemd
/// may be gone, and serving matters more than telling it.
pub(crate) fn notify(state: &str) -> bool {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) => notify_to(&path, state),
        None => false,
    }
}

fn notify_to(path: &std::ffi::OsStr, state: &str) -> bool {
    let Ok(socket) = UnixDatagram::unbound() else {
        return false;
    };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket: its name is what follows the '@'.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(state.as_bytes(), &addr))
        }
        None => socket.send_to(state.as_bytes(), path),
    };
    sent.is_ok()
}

/// `READY=1` with this process as the main one: what a process that took
/// over from another says, so that systemd follows it.
pub(crate) fn ready_as_main() -> bool {
    notify(&main_ready())
}

fn main_ready() -> String {
    format!("MAINPID={}\nREADY=1", std::process::id())
}

/// `RELOADING=1` with the monotonic time `notify-reload` asks for.
pub(crate) fn reloading() -> bool {
    notify(&reloading_now())
}

fn reloading_now() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_reaches_the_named_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("stickytls-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        assert!(notify_to(path.as_os_str(), &main_ready()));
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(text, format!("MAINPID={}\nREADY=1", std::process::id()));
        assert!(notify_to(path.as_os_str(), &reloading_now()));
        let n = listener.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(text.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{text}");
        let _ = std::fs::remove_dir_all(&dir);

        use std::os::linux::net::SocketAddrExt;
        let name = format!("stickytls-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&addr).unwrap();
        assert!(notify_to(format!("@{name}").as_ref(), "STOPPING=1"));
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let dir = std::env::temp_dir().join("stickytls-notify-none/missing");
        assert!(!notify_to(dir.as_os_str(), "READY=1"));
    }
}
