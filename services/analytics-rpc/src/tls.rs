//! TLS of the gRPC port: with RPC_TLS_CERT and RPC_TLS_KEY set (PEM files, as in a
//! `kubernetes.io/tls` Secret), every connection is TLS and plaintext clients are refused.
//! The files are read once at start; a renewed certificate takes a restart (the operator
//! rolls the pods when the Secret changes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::transport::{Identity, ServerTlsConfig};

/// Longest a client may take to complete its handshake; a silent client holds a
/// connection no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} {path}: {source}")]
pub struct ReadError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ReadError> {
    std::fs::read(path).map_err(|source| ReadError {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The server's TLS settings from its certificate chain and private key (PEM files).
/// Whether they parse and match is checked when the server is built
/// ([`tonic::transport::Server::tls_config`]), before it listens.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerTlsConfig, ReadError> {
    let cert = read("RPC_TLS_CERT", cert)?;
    let key = read("RPC_TLS_KEY", key)?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_file_is_named() {
        let missing = Path::new("/nonexistent/tls.crt");
        let err = server_config(missing, missing).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read RPC_TLS_CERT /nonexistent/tls.crt: "),
            "{err}"
        );
    }
}
