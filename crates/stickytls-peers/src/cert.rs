//! Throwaway certificates: one CA per [`TestCa`], and a leaf per backend
//! whose Common Name is the backend's name.
//!
//! Leaves cover both `localhost` and `127.0.0.1`, so a client may connect
//! with SNI or without it (rustls sends no SNI for an IP address). The CN
//! carries the backend name so that a peer which only sees the certificate
//! (an `openssl s_client` transcript) can still tell backends apart.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority that exists only for this process.
pub struct TestCa {
    /// The CA certificate, which clients trust.
    cert: CertificateDer<'static>,
    /// The same in PEM, for `openssl -CAfile`.
    cert_pem: String,
    /// Signs the leaves.
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A leaf certificate and its private key.
#[derive(Clone)]
pub struct Leaf {
    /// The name in the certificate's CN, normally the backend's name.
    pub common_name: String,
    /// Leaf first, then the CA, as a server sends it.
    pub chain: Vec<CertificateDer<'static>>,
    /// PKCS#8 DER of the leaf's key.
    key_der: Vec<u8>,
    /// The leaf alone in PEM (s_server sends the chain from `-cert_chain`).
    pub cert_pem: String,
    /// The key in PEM, for `openssl s_server -key`.
    pub key_pem: String,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs even though it is throwaway: test output
        // gets pasted into issues.
        f.debug_struct("Leaf")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The private key in the form rustls takes.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

impl TestCa {
    /// A fresh CA with an ECDSA P-256 key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).expect("no names cannot be invalid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "stickytls test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("P-256 key generation");
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa {
            cert_pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// One CA for the whole process, so that any client trusts any backend
    /// without the test wiring certificates through.
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(TestCa::new)
    }

    /// The CA certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// The CA certificate in PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A root store trusting only this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("our own CA parses");
        roots
    }

    /// A leaf for `localhost` and `127.0.0.1` with `common_name` as its CN.
    pub fn leaf(&self, common_name: &str) -> Leaf {
        self.leaf_for(common_name, &[])
    }

    /// A leaf for `localhost`, `127.0.0.1` and `names` (host names, for
    /// SNI routing tests), with `common_name` as its CN.
    pub fn leaf_for(&self, common_name: &str, names: &[&str]) -> Leaf {
        let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        sans.extend(names.iter().map(|n| n.to_string()));
        let mut params = CertificateParams::new(sans).expect("valid subject names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("P-256 key generation");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf");
        Leaf {
            common_name: common_name.to_string(),
            chain: vec![cert.der().clone(), self.cert.clone()],
            key_der: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes `leaf` and this CA as PEM files for OpenSSL.
    pub fn write_pem(&self, leaf: &Leaf) -> io::Result<PemFiles> {
        let dir = TempDir::new("pem")?;
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let ca = dir.path().join("ca.pem");
        fs::write(&cert, &leaf.cert_pem)?;
        fs::write(&key, &leaf.key_pem)?;
        fs::write(&ca, &self.cert_pem)?;
        Ok(PemFiles { dir, cert, key, ca })
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// PEM files on disk, deleted when this is dropped.
#[derive(Debug)]
pub struct PemFiles {
    /// Owns the files' lifetime.
    dir: TempDir,
    /// The leaf certificate.
    pub cert: PathBuf,
    /// The leaf's private key.
    pub key: PathBuf,
    /// The CA certificate (for `-CAfile` and `-cert_chain`).
    pub ca: PathBuf,
}

impl PemFiles {
    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A directory under the system temp dir, removed on drop. Small enough not
/// to warrant a dependency.
#[derive(Debug)]
pub struct TempDir {
    /// The directory's path.
    path: PathBuf,
}

impl TempDir {
    /// Creates `$TMPDIR/stickytls-<label>-<pid>-<n>`.
    pub fn new(label: &str) -> io::Result<TempDir> {
        // Process id plus a counter is unique among live processes; a
        // leftover from a crashed run with a recycled pid is simply reused.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("stickytls-{label}-{}-{n}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_chains_to_the_ca_for_localhost_and_loopback_ip() {
        use rustls::client::WebPkiServerVerifier;
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{ServerName, UnixTime};

        let ca = TestCa::new();
        let leaf = ca.leaf("backend-a");
        let verifier = WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(ca.root_store()),
            super::super::provider(super::super::classic_kx_groups()),
        )
        .build()
        .unwrap();
        for name in ["localhost", "127.0.0.1"] {
            verifier
                .verify_server_cert(
                    &leaf.chain[0],
                    &leaf.chain[1..],
                    &ServerName::try_from(name).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn pem_files_exist_until_dropped() {
        let ca = TestCa::new();
        let files = ca.write_pem(&ca.leaf("x")).unwrap();
        let dir = files.dir().to_path_buf();
        assert!(
            fs::read_to_string(&files.key)
                .unwrap()
                .contains("PRIVATE KEY")
        );
        drop(files);
        assert!(!dir.exists());
    }
}
