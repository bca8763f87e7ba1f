//! TLS of the gRPC port: with RPC_TLS_CERT and RPC_TLS_KEY set (PEM files, as in a
//! `kubernetes.io/tls` Secret), every connection is TLS (HTTP/2 by ALPN) and plaintext
//! clients are refused.
//!
//! The files are re-read every RPC_TLS_RELOAD_INTERVAL_MS: a renewed certificate (a Secret
//! volume is updated in place) is served to new connections without a restart. A pair that
//! does not load (half written, key and certificate not matching) is logged and the
//! current certificate kept. At start, such a pair stops the service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Longest a client may take to complete its handshake; a silent client holds a
/// connection no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const QUEUED_CONNECTIONS: usize = 64;
/// Pause after an accept error that is not the client's (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RPC_TLS_CERT holds no PEM certificate")]
    NoCertificate,
    #[error("invalid PEM in {what}: {source}")]
    Pem {
        what: &'static str,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("the key does not load or does not match the certificate: {0}")]
    Key(#[source] tokio_rustls::rustls::Error),
    #[error("TLS settings: {0}")]
    Config(#[source] tokio_rustls::rustls::Error),
}

fn provider() -> CryptoProvider {
    ring::default_provider()
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificate chain and key of two PEM files' contents.
fn parse(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "RPC_TLS_CERT",
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Pem {
        what: "RPC_TLS_KEY",
        source,
    })?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(TlsError::Key)
}

/// The certificate handed to each handshake, replaced when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The file contents `current` was made from.
    loaded_from: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    /// Loads the pair; Err when either file is missing or they do not make a certificate
    /// and its key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = (read("RPC_TLS_CERT", cert)?, read("RPC_TLS_KEY", key)?);
        let certified = parse(&cert_pem, &key_pem)?;
        Ok(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: RwLock::new(Arc::new(certified)),
            loaded_from: Mutex::new((cert_pem, key_pem)),
        })
    }

    /// Re-reads the files; Ok(true) when they changed and the new pair now serves.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let cert_pem = read("RPC_TLS_CERT", &self.cert_path)?;
        let key_pem = read("RPC_TLS_KEY", &self.key_path)?;
        let mut loaded_from = self.loaded_from.lock().unwrap_or_else(|e| e.into_inner());
        if loaded_from.0 == cert_pem && loaded_from.1 == key_pem {
            return Ok(false);
        }
        let certified = parse(&cert_pem, &key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        *loaded_from = (cert_pem, key_pem);
        Ok(true)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The acceptor of every connection: TLS 1.2 and 1.3, HTTP/2 by ALPN (gRPC), no client
/// certificates (callers authenticate with the bearer token).
pub fn acceptor(cert: Arc<ReloadingCert>) -> Result<TlsAcceptor, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `listener`, for tonic's `serve_with_incoming`. Handshakes run in
/// their own tasks, each bounded by [`HANDSHAKE_TIMEOUT`], so a slow client holds up no
/// other. Accepting stops once the returned stream is dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(QUEUED_CONNECTIONS);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            // Without TCP_NODELAY a response's last small frame waits for the client's
            // delayed ACK (~40 ms on Linux) under Nagle's algorithm.
            let _ = stream.set_nodelay(true);
            tokio::spawn(handshake(acceptor.clone(), stream, peer, tx.clone()));
        }
    });
    ReceiverStream::new(rx)
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    tx: mpsc::Sender<std::io::Result<TlsStream<TcpStream>>>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let _ = tx.send(Ok(tls)).await;
        }
        // The client's problem (plaintext, an untrusting client, a scanner): not an error of
        // the service.
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// Re-reads the certificate files every `interval` until `cancel`.
pub async fn reload_loop(cert: Arc<ReloadingCert>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match cert.reload() {
            Ok(true) => tracing::info!("TLS certificate reloaded from RPC_TLS_CERT/RPC_TLS_KEY"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "keeping the current TLS certificate: the files do not load (yet)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_named() {
        let missing = Path::new("/nonexistent/tls.crt");
        let err = ReloadingCert::load(missing, missing).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read RPC_TLS_CERT /nonexistent/tls.crt: "),
            "{err}"
        );
    }

    #[test]
    fn files_without_a_certificate_or_key_do_not_load() {
        assert!(matches!(parse(b"", b""), Err(TlsError::NoCertificate)));
        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse(cert, b"no key here"),
            Err(TlsError::Pem { .. } | TlsError::Key(_))
        ));
    }
}
