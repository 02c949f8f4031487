//! HTTPS in process, for a server with no reverse proxy in front: rustls
//! (ring provider), HTTP/1.1 only over ALPN, and certificate files that are
//! read again when they change, so a renewal (certbot, acme.sh) takes effect
//! without a restart and without dropping a connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Where the certificate chain and key live, and how often to look for a
/// new version of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// How often the files' modification times are checked.
    pub reload_interval: Duration,
}

/// Reads the files once, as a startup check with a clear error.
pub fn check_files(files: &TlsFiles) -> io::Result<()> {
    load(files).map(|_| ())
}

/// Reads and checks one certificate/key pair.
fn load(files: &TlsFiles) -> io::Result<Arc<CertifiedKey>> {
    let bad = |what: &Path, e: &dyn fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", what.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, &e))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| bad(&files.key, &e))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match().map_err(|e| bad(&files.key, &e))?;
    Ok(Arc::new(ck))
}

/// Modification times of the certificate and key files.
type Stamp = Option<(SystemTime, SystemTime)>;

fn modified(files: &TlsFiles) -> Stamp {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(&files.cert)?, m(&files.key)?))
}

/// The certificate in use, swapped whole when the files change.
pub(crate) struct Reloading {
    files: TlsFiles,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish()
    }
}

impl Reloading {
    pub(crate) fn new(files: TlsFiles) -> io::Result<Arc<Reloading>> {
        let stamp = modified(&files);
        let key = load(&files)?;
        Ok(Arc::new(Reloading {
            files,
            current: RwLock::new((key, stamp)),
        }))
    }

    /// Loads the files again if their modification time changed. A pair
    /// that fails to load (caught half-written, or a key that does not
    /// match) leaves the old certificate in use and is retried next time.
    pub(crate) fn check(&self) {
        let stamp = modified(&self.files);
        let unchanged = self.current.read().map(|c| c.1 == stamp).unwrap_or(false);
        if unchanged || stamp.is_none() {
            return;
        }
        match load(&self.files) {
            Ok(key) => {
                if let Ok(mut c) = self.current.write() {
                    *c = (key, stamp);
                }
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) => tracing::warn!("TLS certificate not reloaded, keeping the old one: {e}"),
        }
    }

    pub(crate) fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The server configuration: HTTP/1.1 over ALPN, certificate from here.
    pub(crate) fn server_config(self: &Arc<Self>) -> io::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.0.clone())
    }
}
