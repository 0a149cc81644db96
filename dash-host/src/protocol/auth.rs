//! Access control of the server: bearer tokens (stored as SHA-256 hashes,
//! compared in constant time), and per-client limits.
//!
//! A client is named by what it proved: `token:NAME` (the token file's name
//! for its token), else `cert:FINGERPRINT` (its TLS client certificate's
//! SHA-256, first 16 hex digits), else `ip:ADDRESS` (unauthenticated,
//! only with neither tokens nor client certificates configured).

use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Shortest bearer token accepted (128 bits of a random hex or base64 string).
pub const MIN_TOKEN_BYTES: usize = 16;

/// A bearer token held by a client: zeroised on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Zeroizing<Vec<u8>>);

impl Token {
    /// A token from its bytes (surrounding whitespace is the file's, not the token's).
    pub fn new(bytes: &[u8]) -> Token {
        Token(Zeroizing::new(bytes.trim_ascii().to_vec()))
    }

    /// A token of exactly these bytes (as received).
    pub fn new_exact(bytes: &[u8]) -> Token {
        Token(Zeroizing::new(bytes.to_vec()))
    }

    /// Reads a token from a file (its first line).
    pub fn from_file(path: &Path) -> anyhow::Result<Token> {
        let bytes =
            Zeroizing::new(std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?);
        let line = bytes.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let t = Token::new(line);
        anyhow::ensure!(
            (MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&t.0.len()),
            "the token in {} must have {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes",
            path.display()
        );
        Ok(t)
    }

    /// The token's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Token(<{} bytes, redacted>)", self.0.len())
    }
}

/// The hash a token file stores for `token`, hex.
pub fn token_hash_hex(token: &[u8]) -> String {
    Sha256::digest(token.trim_ascii()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The tokens a server accepts: `NAME SHA256HEX` per line (blank lines and
/// `#` comments allowed). Only hashes are stored, so the file does not
/// hold credentials.
#[derive(Clone)]
pub struct TokenStore {
    names: Vec<String>,
    hashes: Vec<[u8; 32]>,
}

impl core::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenStore").field("names", &self.names).finish_non_exhaustive()
    }
}

impl TokenStore {
    /// Parses a token file's text.
    pub fn parse(text: &str) -> anyhow::Result<TokenStore> {
        let mut names = Vec::new();
        let mut hashes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                anyhow::bail!("token file line {}: expected `NAME SHA256HEX`", i + 1);
            };
            anyhow::ensure!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) && name.len() <= 64,
                "token file line {}: a name is 1 to 64 of A-Z a-z 0-9 - _ . @",
                i + 1
            );
            let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
            anyhow::ensure!(
                hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
                "token file line {}: the hash must be 64 hex digits (SHA-256 of the token)",
                i + 1
            );
            let mut h = [0u8; 32];
            for (j, byte) in h.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * j..2 * j + 2], 16)?;
            }
            anyhow::ensure!(!names.iter().any(|n| n == name), "token file line {}: name {name} twice", i + 1);
            names.push(name.to_string());
            hashes.push(h);
        }
        anyhow::ensure!(!names.is_empty(), "the token file lists no token");
        Ok(TokenStore { names, hashes })
    }

    /// Reads a token file.
    pub fn load(path: &Path) -> anyhow::Result<TokenStore> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        TokenStore::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// The name of `token`, if the store holds its hash. Every stored hash
    /// is compared, each in constant time, so the time does not depend on
    /// which (or whether one) matched.
    pub fn check(&self, token: &[u8]) -> Option<&str> {
        let h = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(token)));
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, stored) in self.hashes.iter().enumerate() {
            let eq = stored.ct_eq(&*h);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        if bool::from(found) { self.names.get(index as usize).map(String::as_str) } else { None }
    }

    /// How many tokens the store holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the store is empty (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Limits that hold per client over all its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientLimits {
    /// Circuits held at once (being uploaded, or uploaded and not yet evaluated).
    pub max_circuits: usize,
    /// Bytes of material held at once.
    pub max_bytes: u64,
    /// Circuits started in any 60 s.
    pub circuits_per_minute: u32,
    /// Connections open at once.
    pub max_connections: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits { max_circuits: 64, max_bytes: 1 << 30, circuits_per_minute: 6000, max_connections: 8 }
    }
}

#[derive(Default)]
struct Usage {
    circuits: usize,
    bytes: u64,
    connections: usize,
    started: VecDeque<Instant>,
}

impl Usage {
    fn idle(&self) -> bool {
        self.circuits == 0 && self.bytes == 0 && self.connections == 0 && self.started.is_empty()
    }
}

const WINDOW: Duration = Duration::from_secs(60);

/// What every client holds now.
pub struct ClientRegistry {
    limits: ClientLimits,
    usage: Mutex<HashMap<String, Usage>>,
}

/// A circuit held by a client; released on drop.
pub struct CircuitHold<'r> {
    registry: &'r ClientRegistry,
    client: String,
    bytes: u64,
}

/// A connection held by a client; released on drop.
pub struct ConnectionHold<'r> {
    registry: &'r ClientRegistry,
    client: String,
}

impl ClientRegistry {
    /// A registry enforcing `limits`.
    pub fn new(limits: ClientLimits) -> ClientRegistry {
        ClientRegistry { limits, usage: Mutex::new(HashMap::new()) }
    }

    /// The limits.
    pub fn limits(&self) -> &ClientLimits {
        &self.limits
    }

    fn with<T>(&self, client: &str, f: impl FnOnce(&mut Usage) -> T) -> T {
        let mut map = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let usage = map.entry(client.to_string()).or_default();
        let now = Instant::now();
        while usage.started.front().is_some_and(|&t| now.duration_since(t) >= WINDOW) {
            usage.started.pop_front();
        }
        let r = f(usage);
        if usage.idle() {
            map.remove(client);
        }
        r
    }

    /// Opens a connection for `client`, or says which limit it would break.
    pub fn connect(&self, client: &str) -> Result<ConnectionHold<'_>, String> {
        let max = self.limits.max_connections;
        self.with(client, |u| {
            if u.connections >= max {
                return Err(format!("per-client limit: {max} connections open at once"));
            }
            u.connections += 1;
            Ok(())
        })?;
        Ok(ConnectionHold { registry: self, client: client.to_string() })
    }

    /// Starts a circuit of `bytes` for `client`, or says which limit it
    /// would break.
    pub fn start_circuit(&self, client: &str, bytes: u64) -> Result<CircuitHold<'_>, String> {
        let l = &self.limits;
        self.with(client, |u| {
            if u.circuits >= l.max_circuits {
                return Err(format!("per-client limit: {} circuits held at once", l.max_circuits));
            }
            if u.bytes.saturating_add(bytes) > l.max_bytes {
                return Err(format!("per-client limit: {} bytes of material held at once", l.max_bytes));
            }
            if u.started.len() >= l.circuits_per_minute as usize {
                return Err(format!("per-client limit: {} circuits per minute", l.circuits_per_minute));
            }
            u.circuits += 1;
            u.bytes += bytes;
            u.started.push_back(Instant::now());
            Ok(())
        })?;
        Ok(CircuitHold { registry: self, client: client.to_string(), bytes })
    }

    /// Clients with anything held or started in the last minute.
    pub fn active_clients(&self) -> usize {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl core::fmt::Debug for CircuitHold<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CircuitHold({}, {} bytes)", self.client, self.bytes)
    }
}

impl core::fmt::Debug for ConnectionHold<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ConnectionHold({})", self.client)
    }
}

impl Drop for CircuitHold<'_> {
    fn drop(&mut self) {
        let bytes = self.bytes;
        self.registry.with(&self.client, |u| {
            u.circuits = u.circuits.saturating_sub(1);
            u.bytes = u.bytes.saturating_sub(bytes);
        });
    }
}

impl Drop for ConnectionHold<'_> {
    fn drop(&mut self) {
        self.registry.with(&self.client, |u| u.connections = u.connections.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_only() {
        let a = "0123456789abcdef-alice";
        let b = "0123456789abcdef-bob!!";
        let text = format!(
            "# clients\nalice {}\n\nbob sha256:{}\n",
            token_hash_hex(a.as_bytes()),
            token_hash_hex(b.as_bytes())
        );
        let store = TokenStore::parse(&text).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.check(a.as_bytes()), Some("alice"));
        assert_eq!(store.check(b.as_bytes()), Some("bob"));
        assert_eq!(store.check(b"0123456789abcdef-carol"), None);
        assert_eq!(store.check(b""), None);
        // The stored hash itself is not a token.
        assert_eq!(store.check(token_hash_hex(a.as_bytes()).as_bytes()), None);
        assert!(!format!("{store:?}").contains(&token_hash_hex(a.as_bytes())));
        for bad in ["alice", "alice 1234", "al ice 00", "", "# only\n", "a b c d"] {
            assert!(TokenStore::parse(bad).is_err(), "{bad:?}");
        }
        let dup = format!("x {}\nx {}\n", token_hash_hex(b"1"), token_hash_hex(b"2"));
        assert!(TokenStore::parse(&dup).is_err());
        assert!(!format!("{:?}", Token::new(a.as_bytes())).contains("alice"));
    }

    #[test]
    fn per_client_limits_hold_and_release() {
        let r = ClientRegistry::new(ClientLimits {
            max_circuits: 2,
            max_bytes: 250,
            circuits_per_minute: 3,
            max_connections: 1,
        });
        let c1 = r.connect("token:a").unwrap();
        assert!(r.connect("token:a").unwrap_err().contains("connections"));
        let _other = r.connect("token:b").unwrap();
        drop(c1);
        let _c1 = r.connect("token:a").unwrap();
        let h1 = r.start_circuit("token:a", 100).unwrap();
        let h2 = r.start_circuit("token:a", 100).unwrap();
        assert!(r.start_circuit("token:a", 10).unwrap_err().contains("circuits held"));
        drop(h2);
        assert!(r.start_circuit("token:a", 200).unwrap_err().contains("bytes"));
        let _h3 = r.start_circuit("token:a", 100).unwrap();
        drop(h1);
        // Three started within the minute: the fourth is refused though
        // only one is held.
        assert!(r.start_circuit("token:a", 100).unwrap_err().contains("per minute"));
        // Another client is not affected.
        let _b = r.start_circuit("token:b", 100).unwrap();
        assert_eq!(r.active_clients(), 2);
    }
}
