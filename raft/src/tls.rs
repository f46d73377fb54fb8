//! TLS for the client API and between nodes (rustls, ring).
//!
//! - `--tls-cert`/`--tls-key`: the node serves HTTPS (API and node RPC share the port).
//! - `--peer-ca`: the CA that signed every node's certificate. With it, nodes reach each
//!   other over HTTPS and verify each other: a node checks the peer's server certificate
//!   against this CA, and presents its own certificate as a client certificate; the
//!   node-to-node routes (`/raft/*`, `/v1/internal/*`) refuse a connection whose client
//!   certificate did not verify against the CA (clients of the API need none). The cluster
//!   secret then never crosses the network in clear.
//!
//! Without `--peer-ca` but with a certificate, nodes still reach each other over HTTPS,
//! verifying certificates against the system's public roots.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Request extension set by the server: whether the connection's client certificate
/// verified against the peer CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerVerified(pub bool);

/// The files of a node's TLS setup.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub peer_ca: Option<PathBuf>,
}

/// A node's loaded TLS setup.
pub struct NodeTls {
    /// For the listener.
    pub server: Arc<rustls::ServerConfig>,
    /// Whether node-to-node routes need a verified client certificate.
    pub require_peer_cert: bool,
    /// PEM of the peer CA (when given) and of this node's certificate and key, for the
    /// HTTP clients that reach other nodes.
    peer_ca_pem: Option<Vec<u8>>,
    identity_pem: Vec<u8>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

impl NodeTls {
    /// Loads and checks the files; the error names the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<NodeTls, String> {
        let cert_pem = read(&files.cert)?;
        let key_pem = read(&files.key)?;
        let chain = certs(&cert_pem, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| format!("{}: not a PEM private key: {e}", files.key.display()))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let (builder, peer_ca_pem) = match &files.peer_ca {
            Some(ca) => {
                let ca_pem = read(ca)?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certs(&ca_pem, ca)? {
                    roots
                        .add(c)
                        .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
                }
                // Clients of the API present no certificate; node-to-node routes check
                // that one was verified (see `PeerVerified`).
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
                (builder.with_client_cert_verifier(verifier), Some(ca_pem))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut server = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut identity_pem = cert_pem;
        identity_pem.push(b'\n');
        identity_pem.extend_from_slice(&key_pem);
        Ok(NodeTls {
            server: Arc::new(server),
            require_peer_cert: peer_ca_pem.is_some(),
            peer_ca_pem,
            identity_pem,
        })
    }

    /// Sets up an HTTP client that reaches other nodes: HTTPS, the peer CA as the only
    /// root (when given), this node's certificate as its client certificate.
    pub fn peer_client(&self, builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, String> {
        let mut builder = builder.use_rustls_tls().https_only(true);
        if let Some(ca) = &self.peer_ca_pem {
            builder = builder.tls_built_in_root_certs(false);
            for cert in reqwest::Certificate::from_pem_bundle(ca).map_err(|e| e.to_string())? {
                builder = builder.add_root_certificate(cert);
            }
            builder = builder.identity(reqwest::Identity::from_pem(&self.identity_pem).map_err(|e| e.to_string())?);
        }
        Ok(builder)
    }
}

/// `https` with TLS, `http` without: how nodes address each other.
pub fn scheme(tls: Option<&NodeTls>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}
