//! TLS for the protocol, with `rustls` (ring provider, TLS 1.3 only: both
//! ends are this program, so no older version is needed).
//!
//! * Server: a certificate chain and key (PEM), and optionally a CA file
//!   whose certificates sign the accepted client certificates (mutual TLS:
//!   a client without a valid certificate fails the handshake, before any
//!   frame is read).
//! * Client: the server is verified against a CA file (name and chain), or
//!   against one pinned certificate (its exact bytes; name and dates are
//!   not checked: the pin is the trust). Optionally a client certificate.
//!
//! The handshake runs with a deadline on the connection's own thread,
//! never on the accept loop.

use super::ProtocolError;
use super::transport::Transport;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConnection, DigitallySignedStruct, RootCertStore, ServerConnection, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The crypto provider used everywhere: ring (no C toolchain beyond `cc`,
/// no cmake). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange: the key exchange is X25519 (or P-256/P-384), classical only;
/// `docs/SECURITY.md` says so.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &str, e: impl core::fmt::Display) -> ProtocolError {
    ProtocolError::Tls(format!("{what}: {e}"))
}

/// Every certificate of a PEM file (a chain: leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProtocolError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&format!("reading certificates from {}", path.display()), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&format!("parsing certificates in {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(ProtocolError::Tls(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ProtocolError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(&format!("reading the private key {}", path.display()), e))
}

fn roots(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, ProtocolError> {
    let mut store = RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| tls_error("adding a CA certificate", e))?;
    }
    Ok(store)
}

/// SHA-256 of a certificate, hex: how a client certificate is named in
/// logs and per-client limits.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert).iter().map(|b| format!("{b:02x}")).collect()
}

/// A server's TLS settings from PEM files: its chain and key, and the CA
/// file that signs client certificates (`None`: no client certificates).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<rustls::ServerConfig>, ProtocolError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS settings", e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                    .build()
                    .map_err(|e| tls_error("client certificate verifier", e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| tls_error("the server certificate and key", e))?;
    Ok(Arc::new(config))
}

/// [`server_config`] from files.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, ProtocolError> {
    server_config(load_certs(cert)?, load_key(key)?, client_ca.map(load_certs).transpose()?)
}

/// How the client trusts the server.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Certificates signed by these CAs, for the server's name.
    Ca(Vec<CertificateDer<'static>>),
    /// Exactly this certificate (its DER bytes).
    Pinned(CertificateDer<'static>),
}

/// Accepts exactly one certificate; handshake signatures are still checked
/// (the server must hold the pinned certificate's key).
#[derive(Debug)]
struct PinnedVerifier {
    pinned: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client's TLS settings: how it trusts the server, the name it expects,
/// and optionally its own certificate chain and key (mutual TLS).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl core::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Settings for a server named `server_name` (a DNS name or an IP
    /// address, as in its certificate).
    pub fn new(
        trust: ServerTrust,
        server_name: &str,
        client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<ClientTls, ProtocolError> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| tls_error(&format!("server name {server_name:?}"), e))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("TLS settings", e))?;
        let builder = match trust {
            ServerTrust::Ca(ca) => builder.with_root_certificates(roots(ca)?),
            ServerTrust::Pinned(pinned) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier { pinned, provider: provider() })),
        };
        let config = match client_cert {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                builder.with_client_auth_cert(chain, key).map_err(|e| tls_error("the client certificate and key", e))?
            }
        };
        Ok(ClientTls { config: Arc::new(config), server_name: name })
    }
}

/// A TLS session over TCP, either side.
pub struct TlsStream<C> {
    tls: C,
    sock: TcpStream,
}

/// The server side of a TLS session.
pub type TlsServerStream = TlsStream<ServerConnection>;
/// The client side of a TLS session.
pub type TlsClientStream = TlsStream<ClientConnection>;

/// Runs the handshake to its end by `deadline`. I/O failures (the peer
/// went away, a timeout) are [`ProtocolError::Io`]/[`ProtocolError::Timeout`];
/// a refused certificate or protocol failure is [`ProtocolError::Tls`].
fn handshake<C, S>(tls: &mut C, sock: &mut TcpStream, deadline: Instant) -> Result<(), ProtocolError>
where
    C: core::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    while tls.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProtocolError::Timeout { context: "the TLS handshake" });
        }
        sock.set_read_timeout(Some(left)).map_err(|e| ProtocolError::io("configuring the socket", e))?;
        sock.set_write_timeout(Some(left)).map_err(|e| ProtocolError::io("configuring the socket", e))?;
        match tls.complete_io(sock) {
            Ok((0, 0)) if tls.is_handshaking() && !tls.wants_write() => {
                return Err(ProtocolError::Closed);
            }
            Ok(_) => {}
            Err(e) => {
                // rustls reports its own failures as InvalidData with the
                // rustls::Error inside.
                if e.kind() == io::ErrorKind::InvalidData {
                    // Send the alert that says why, if we can.
                    let _ = tls.write_tls(sock);
                    return Err(tls_error("TLS handshake failed", e));
                }
                return Err(ProtocolError::io("the TLS handshake", e));
            }
        }
    }
    // Flush what is left of our side of the handshake.
    while tls.wants_write() {
        tls.write_tls(sock).map_err(|e| ProtocolError::io("the TLS handshake", e))?;
    }
    Ok(())
}

impl TlsServerStream {
    /// Accepts a TLS session on `sock`, handshake finished by `deadline`.
    pub fn accept(
        config: Arc<rustls::ServerConfig>,
        mut sock: TcpStream,
        deadline: Instant,
    ) -> Result<TlsServerStream, ProtocolError> {
        let _ = sock.set_nodelay(true);
        let mut tls = ServerConnection::new(config).map_err(|e| tls_error("starting TLS", e))?;
        handshake(&mut tls, &mut sock, deadline)?;
        Ok(TlsStream { tls, sock })
    }
}

impl TlsClientStream {
    /// Starts a TLS session on `sock` with `settings`, handshake finished
    /// (the server's certificate verified) by `deadline`.
    pub fn connect(
        settings: &ClientTls,
        mut sock: TcpStream,
        deadline: Instant,
    ) -> Result<TlsClientStream, ProtocolError> {
        let _ = sock.set_nodelay(true);
        let mut tls = ClientConnection::new(settings.config.clone(), settings.server_name.clone())
            .map_err(|e| tls_error("starting TLS", e))?;
        handshake(&mut tls, &mut sock, deadline)?;
        Ok(TlsStream { tls, sock })
    }
}

impl<C, S> Read for TlsStream<C>
where
    C: core::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).read(buf)
    }
}

impl<C, S> Write for TlsStream<C>
where
    C: core::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        rustls::Stream::new(&mut self.tls, &mut self.sock).flush()
    }
}

impl<C, S> TlsStream<C>
where
    C: core::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    fn close_notify(&mut self) {
        self.tls.send_close_notify();
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.sock).is_err() {
                break;
            }
        }
    }
}

macro_rules! tls_transport {
    ($conn:ty, $identity:expr) => {
        impl Transport for TlsStream<$conn> {
            fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                Transport::set_read_timeout(&mut self.sock, timeout)
            }

            fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
                Transport::set_write_timeout(&mut self.sock, timeout)
            }

            fn shutdown_write(&mut self) {
                self.close_notify();
                Transport::shutdown_write(&mut self.sock);
            }

            fn shutdown(&mut self) {
                self.close_notify();
                Transport::shutdown(&mut self.sock);
            }

            fn peer(&self) -> String {
                Transport::peer(&self.sock)
            }

            fn peer_ip(&self) -> String {
                Transport::peer_ip(&self.sock)
            }

            fn peer_identity(&self) -> Option<String> {
                let f: fn(&$conn) -> Option<String> = $identity;
                f(&self.tls)
            }
        }
    };
}

tls_transport!(ServerConnection, |c| c
    .peer_certificates()
    .and_then(|certs| certs.first())
    .map(|leaf| fingerprint(leaf)));
tls_transport!(ClientConnection, |_| None);
