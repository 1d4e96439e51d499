//! Real TLS peers for the tests and for `stickytls demo`: backends that say
//! who they are, clients that remember sessions, OpenSSL's command line, and
//! a tap that records the bytes a router would see.
//!
//! Nothing here is a mock. Every peer does a real TLS handshake with a real
//! library, so what the router learns in a test is what it would learn in
//! production.
//!
//! Layout:
//! - [`cert`]: a throwaway CA and per-backend leaf certificates.
//! - [`backend`]: a rustls server that answers with its own name, and a
//!   black hole that accepts TCP and never answers.
//! - [`client`]: a rustls client with a session store, source-address
//!   binding, and a dribbling mode that sends its first flight in tiny writes.
//! - [`openssl`]: `openssl s_server` / `s_client` as subprocesses, including
//!   a TLS 1.2 renegotiation driver.
//! - [`tap`]: a recording TCP relay that returns each connection's raw bytes.
//! - [`probe`]: a diagnostic client for servers we do not control (it
//!   accepts any certificate), behind `stickytls selftest`.
//!
//! Every peer but the probe listens and connects on 127.0.0.0/8 only.

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs};

pub mod backend;
pub mod cert;
pub mod client;
pub mod openssl;
pub mod probe;
pub mod tap;

/// Which TLS versions a peer will negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versions {
    /// TLS 1.2 only: session IDs and RFC 5077 tickets.
    Tls12,
    /// TLS 1.3 only: PSK resumption.
    Tls13,
    /// Both, preferring TLS 1.3 as real deployments do.
    #[default]
    Both,
}

impl Versions {
    /// The rustls version list for this choice.
    pub fn rustls(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
        static TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static BOTH: &[&rustls::SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        match self {
            Versions::Tls12 => TLS12,
            Versions::Tls13 => TLS13,
            Versions::Both => BOTH,
        }
    }

    /// The `openssl` command-line flag pinning this choice, if any.
    pub fn openssl_flag(self) -> Option<&'static str> {
        match self {
            Versions::Tls12 => Some("-tls1_2"),
            Versions::Tls13 => Some("-tls1_3"),
            Versions::Both => None,
        }
    }
}

/// The classic key-exchange groups, in rustls's order, without any
/// post-quantum hybrid.
pub fn classic_kx_groups() -> Vec<&'static dyn SupportedKxGroup> {
    vec![
        aws_lc_rs::kx_group::X25519,
        aws_lc_rs::kx_group::SECP256R1,
        aws_lc_rs::kx_group::SECP384R1,
    ]
}

/// X25519MLKEM768 first, then the classic groups. rustls 0.23 with its
/// default `prefer-post-quantum` feature already orders it first, but the
/// peers never rely on a feature flag: a test that asserts on a 1.5 KB
/// ClientHello must get one whatever features the build enables.
pub fn pq_kx_groups() -> Vec<&'static dyn SupportedKxGroup> {
    let mut groups = vec![aws_lc_rs::kx_group::X25519MLKEM768];
    groups.extend(classic_kx_groups());
    groups
}

/// The aws-lc-rs provider with exactly `kx_groups`. The provider is always
/// chosen explicitly so that no process-wide default decides the handshake.
pub fn provider(kx_groups: Vec<&'static dyn SupportedKxGroup>) -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        kx_groups,
        ..aws_lc_rs::default_provider()
    })
}

/// The protocol-version name the backend reports, e.g. `TLSv1_3`.
pub(crate) fn version_name(v: rustls::ProtocolVersion) -> String {
    format!("{v:?}")
}
