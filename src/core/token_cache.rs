//! What the filter remembers about a verified token, so its signature is checked once.
//!
//! Keyed by SHA-256 of the token (see `cache`). A hit still re-checks the token's time window
//! and that the very key that verified it is still published (in `authenticator`).

use std::rc::Rc;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::cache::{BoundedCache, Digest};
use crate::config::ProviderId;
use crate::jwks::Thumbprint;
use crate::time::{UnixMillis, UnixSeconds};

pub fn token_hash(token: &str) -> Digest {
    Sha256::digest(token.as_bytes()).into()
}

/// First 16 hex digits of the token's SHA-256: enough to correlate log lines, useless to replay.
pub fn token_fingerprint(hash: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in hash.iter().take(8) {
        for nibble in [b >> 4, b & 0xf] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// What a successful verification established about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: ProviderId,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// The token's `exp`: an exchanged token must not outlive it.
    pub expires_at: UnixSeconds,
    /// Headers to set upstream, from `claim_to_headers`.
    pub headers: Vec<(String, String)>,
    /// The claims MCP rules look at (dotted path, value), kept from the token.
    pub claims: Vec<(Vec<String>, Value)>,
}

impl Identity {
    pub fn claim(&self, path: &[String]) -> Option<&Value> {
        self.claims
            .iter()
            .find(|(p, _)| p.as_slice() == path)
            .map(|(_, v)| v)
    }
}

#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Shared with every decision that hits this entry (no per-request copies).
    pub identity: Rc<Identity>,
    pub nbf: Option<UnixSeconds>,
    /// What vouches for the token: a hit requires it still to.
    pub by: VerifiedBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// The key that verified the signature, which must still be published.
    Key(Thumbprint),
    /// The IdP's introspection answer, trusted until then.
    Introspection { until: UnixMillis },
}

pub type VerifiedTokenCache = BoundedCache<VerifiedToken>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_short_hex_and_not_the_token() {
        let fp = token_fingerprint(&token_hash("secret-token"));
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!fp.contains("secret"));
    }
}
