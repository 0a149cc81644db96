//! Test certificates for `deploy/` and CI (never for production): a server
//! CA and a server certificate for `localhost` and `127.0.0.1`, a client CA
//! and a client certificate, and a bearer token with its token-file line.
//!
//! ```sh
//! cargo run --release -p dash-host --example gen_certs -- DIR
//! ```
//!
//! writes `DIR/{server-ca.pem, server.pem, server.key, client-ca.pem,
//! client.pem, client.key, token, tokens}` (keys and the token mode 0600).
//! Production certificates come from the operator's own CA.

use std::io::Write;
use std::path::Path;

fn ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(
    ca: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("parameters");
    params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str, secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    options.open(dir.join(name))?.write_all(text.as_bytes())
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| ".".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let server_ca = ca("dash test server CA");
    let client_ca = ca("dash test client CA");
    let (server, server_key) = leaf(&server_ca, &["localhost", "127.0.0.1"], ServerAuth);
    let (client, client_key) = leaf(&client_ca, &["dash-test-client"], ClientAuth);
    write(dir, "server-ca.pem", &server_ca.pem(), false)?;
    write(dir, "server.pem", &server, false)?;
    write(dir, "server.key", &server_key, true)?;
    write(dir, "client-ca.pem", &client_ca.pem(), false)?;
    write(dir, "client.pem", &client, false)?;
    write(dir, "client.key", &client_key, true)?;
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(std::io::Error::other)?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    write(dir, "token", &format!("{token}\n"), true)?;
    let line = format!("ci-client {}\n", dash_host::protocol::auth::token_hash_hex(token.as_bytes()));
    write(dir, "tokens", &line, false)?;
    println!("test certificates and a token in {}", dir.display());
    Ok(())
}
