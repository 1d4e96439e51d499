//! rustls configurations for the load generator's clients and the bulk
//! backend, from PEM files written by `loadgen certs` (the same files the
//! nginx backends serve).

use std::path::Path;
use std::sync::Arc;

use rustls::client::{Resumption, Tls12Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use stickytls_peers::{Versions, classic_kx_groups, provider};

use crate::Tls;

/// The CA certificate in `path`.
pub fn load_ca(path: &Path) -> Result<CertificateDer<'static>, String> {
    CertificateDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A client configuration with its own session store: one per simulated
/// client, so that only that client's sessions are offered.
///
/// Classic key shares only: a post-quantum share would earn a
/// HelloRetryRequest from an OpenSSL 3.0 backend and measure a round trip
/// that real clients of such backends learn to skip.
pub fn client_config(
    ca: &CertificateDer<'static>,
    tls: Tls,
    resume: bool,
) -> Result<Arc<ClientConfig>, String> {
    let versions = match tls {
        Tls::V12 => Versions::Tls12,
        Tls::V13 => Versions::Tls13,
    };
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| format!("CA: {e}"))?;
    let mut config = ClientConfig::builder_with_provider(provider(classic_kx_groups()))
        .with_protocol_versions(versions.rustls())
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = if resume {
        // The client offers tickets and session IDs alike; the backend
        // decides which one it resumes with.
        Resumption::in_memory_sessions(16).tls12_resumption(Tls12Resumption::SessionIdOrTickets)
    } else {
        Resumption::disabled()
    };
    Ok(Arc::new(config))
}

/// The bulk backend's configuration: both versions, no resumption (each
/// bulk run is one connection).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let config = ServerConfig::builder_with_provider(provider(classic_kx_groups()))
        .with_protocol_versions(Versions::Both.rustls())
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// TCP connect (Nagle off, as the proxies set it) and a TLS handshake.
pub async fn connect(
    config: Arc<ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
    target: std::net::SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}
