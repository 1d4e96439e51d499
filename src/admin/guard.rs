//! What keeps a web page the operator opens from using the endpoint: the
//! checks Caddy's admin endpoint makes (caddyserver/caddy, admin.go), one
//! middleware in front of every route, before the token check.
//!
//! - **From another site** (every request, with or without the token): a
//!   request a browser marks as sent by another page is refused. That is
//!   `Sec-Fetch-Site` other than `same-origin` or `none` (typed, bookmarked
//!   or opened from the command line), an `Origin` whose host and port are
//!   not the `Host` the request was sent to, and `Origin: null` (sandboxed
//!   frames, `file:` and `data:` pages, some redirects). A plain HTML form
//!   on any site can otherwise `POST /api/v1/reload` (no body, no JSON, no
//!   preflight). Tools such as curl, Prometheus and `stickytls ctl` send
//!   neither header and are unaffected.
//! - **Under another name** (requests without the valid token): the `Host`,
//!   compared without its port (an SSH tunnel changes the port), must be the
//!   address the connection reached (the `bind` address, or the local
//!   address a wildcard `bind` accepted on), `localhost`, `127.0.0.1`,
//!   `[::1]`, or a name in `[admin] allowed_hosts`. A page that rebinds its
//!   own DNS name to 127.0.0.1 is same-origin with itself and sends neither
//!   `Origin` on a GET nor `Sec-Fetch-Site: cross-site`, but its requests
//!   carry its own name in `Host`.
//!
//! Each refusal is a 403 whose JSON error names the header and what was
//! expected. The checks compare a few short header values.

use std::net::{IpAddr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::api::Shared;

/// The local address a connection was accepted on, put in every request's
/// extensions by the accept loop: the `Host` a client reaching a wildcard
/// `bind` by address sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalAddr(pub IpAddr);

/// The `Host` names a request without the token may use, lower-cased,
/// without a port, IPv6 addresses in brackets.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// The fixed names, `bind`'s address unless it is a wildcard, and the
    /// configured ones.
    pub fn new(bind: IpAddr, configured: &[String]) -> AllowedHosts {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(String::from)
            .collect();
        if !bind.is_unspecified() {
            names.push(ip_name(bind.to_canonical()));
        }
        for c in configured {
            let c = c.trim_end_matches('.').to_ascii_lowercase();
            let c = match c.parse::<Ipv6Addr>() {
                Ok(v6) => ip_name(IpAddr::V6(v6).to_canonical()),
                Err(_) => c,
            };
            if !names.contains(&c) {
                names.push(c);
            }
        }
        AllowedHosts(names)
    }

    /// Whether `name` (a `Host` without its port) is one of them, or the
    /// address the connection reached.
    fn allows(&self, name: &str, local: Option<IpAddr>) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        if self.0.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return true;
        }
        let bare = name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(name);
        match (bare.parse::<IpAddr>(), local) {
            (Ok(ip), Some(local)) => ip.to_canonical() == local.to_canonical(),
            _ => false,
        }
    }
}

/// An address as a `Host` names it: IPv6 in brackets.
fn ip_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The middleware: refuses requests from other sites, then requests
/// under a name that is not the endpoint's unless they carry the token.
pub(crate) async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let host = host(&req);
    if let Err(why) = same_origin(req.headers(), host) {
        return forbidden(why);
    }
    if !s.token_matches(req.headers()) {
        let local = req.extensions().get::<LocalAddr>().map(|l| l.0);
        match host {
            None => {
                return forbidden(
                    "the request has no Host header; send the address you connect to, e.g. `Host: 127.0.0.1:9900`"
                        .into(),
                );
            }
            Some(h) if !s.hosts.allows(host_name(h), local) => {
                return forbidden(format!(
                    "Host `{h}` is not a name of this endpoint: without the [admin] token the Host, compared without its port, must be the address the endpoint was reached at, localhost, 127.0.0.1, [::1] or a name listed in [admin] allowed_hosts (a web page that points its own DNS name at this address is refused that way); list the name there or send `Authorization: Bearer TOKEN`"
                ));
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

/// The `Host` the request was sent to: its header, or the authority of an
/// absolute-form request line.
fn host(req: &Request) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// A `Host` without its port: `[::1]:9900` is `[::1]`, `example.net:80`
/// is `example.net`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// `Ok` unless a browser says the request comes from another page than
/// the endpoint's own; `Err` says which header and what was expected.
fn same_origin(headers: &HeaderMap, host: Option<&str>) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("").trim();
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(format!(
                "`Sec-Fetch-Site: {site}`: the browser sent this request from another page than the endpoint's own; only `same-origin` requests and ones the user makes (`none`: an address typed, bookmarked or given on the command line) are served, with or without the token"
            ));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("").trim();
    if origin.eq_ignore_ascii_case("null") {
        return Err(
            "`Origin: null`: the browser sent this request from a sandboxed, local (file:, data:) or redirected page; only the endpoint's own pages may send requests, with or without the token"
                .into(),
        );
    }
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (authority, host) {
        (Some(a), Some(h)) if a.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(format!(
            "`Origin: {origin}` is not this endpoint's own origin (`http://{}`): a page on another site sent this request; such requests are refused, with or without the token",
            host.unwrap_or("HOST")
        )),
    }
}

fn forbidden(why: String) -> Response {
    tracing::debug!(why, "admin request refused");
    ApiError::new(StatusCode::FORBIDDEN, why).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn host_names_lose_their_port_only() {
        assert_eq!(host_name("127.0.0.1:9900"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:9900"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("Router.Example.NET:1"), "Router.Example.NET");
    }

    #[test]
    fn the_fixed_names_the_bind_address_and_the_configured_ones_are_allowed() {
        let hosts = AllowedHosts::new(
            "10.0.0.5".parse().unwrap(),
            &["Router1.Example.net.".into(), "2001:db8::1".into()],
        );
        for ok in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "127.0.0.1",
            "[::1]",
            "10.0.0.5",
            "router1.example.net",
            "router1.example.net.",
            "[2001:db8::1]",
        ] {
            assert!(hosts.allows(ok, None), "{ok}");
        }
        for refused in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.2",
            "example.net",
            "",
            "[::2]",
        ] {
            assert!(!hosts.allows(refused, None), "{refused}");
        }
    }

    #[test]
    fn a_wildcard_bind_allows_the_address_the_connection_reached() {
        let hosts = AllowedHosts::new("0.0.0.0".parse().unwrap(), &[]);
        assert!(!hosts.allows("0.0.0.0", None));
        let local = Some("10.0.0.7".parse().unwrap());
        assert!(hosts.allows("10.0.0.7", local));
        assert!(!hosts.allows("10.0.0.8", local));
        // A dual-stack socket reports IPv4 clients' local address mapped.
        let mapped = Some("::ffff:10.0.0.7".parse().unwrap());
        assert!(hosts.allows("10.0.0.7", mapped));
        assert!(hosts.allows("[fe80::1]", Some("fe80::1".parse().unwrap())));
    }

    #[test]
    fn browsers_marks_of_another_site_are_refused() {
        let host = Some("127.0.0.1:9900");
        let ok = |pairs: &[(&'static str, &str)]| same_origin(&headers(pairs), host).is_ok();
        assert!(ok(&[]), "curl, Prometheus, ctl");
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://127.0.0.1:9900")
        ]));
        assert!(ok(&[("origin", "https://127.0.0.1:9900")]), "behind TLS");
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]), "another port");
        assert!(!ok(&[("origin", "http://evil.example")]));
        assert!(!ok(&[("origin", "http://127.0.0.1:3000")]));
        assert!(!ok(&[("origin", "http://127.0.0.1:9900.evil.example")]));
        assert!(!ok(&[("origin", "null")]));
        assert!(!ok(&[("origin", "127.0.0.1:9900")]), "no scheme");
        assert!(same_origin(&headers(&[("origin", "http://x")]), None).is_err());
    }
}
