//! A bounded cache of verified tokens, so a token's signature is checked once, not per request.
//!
//! Keyed by SHA-256 of the token: the raw token is never stored or used as a key. A hit still
//! re-checks the token's time window and that its signing key is still published. Eviction is
//! first-in-first-out, which costs O(1) and suits tokens (they all expire anyway).

use std::collections::{HashMap, VecDeque};

use crate::core::jwks::Algorithm;

pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    hmac_sha256::Hash::hash(token.as_bytes())
}

/// First 16 hex digits of the token's SHA-256: enough to correlate log lines, useless to replay.
pub fn token_fingerprint(hash: &TokenHash) -> String {
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What a successful verification established about the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub provider: usize,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// Headers to set upstream, from `claim_to_headers`.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub identity: Identity,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub kid: Option<String>,
    pub alg: Algorithm,
}

pub struct VerifiedTokenCache {
    capacity: usize,
    entries: HashMap<TokenHash, VerifiedToken>,
    order: VecDeque<TokenHash>,
}

impl VerifiedTokenCache {
    pub fn new(capacity: usize) -> Self {
        VerifiedTokenCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            order: VecDeque::with_capacity(capacity.min(1024)),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, hash: &TokenHash) -> Option<&VerifiedToken> {
        self.entries.get(hash)
    }

    pub fn remove(&mut self, hash: &TokenHash) {
        // The FIFO slot stays until it reaches the front; it then finds nothing to evict.
        self.entries.remove(hash);
    }

    pub fn insert(&mut self, hash: TokenHash, token: VerifiedToken) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(hash, token).is_some() {
            return;
        }
        self.order.push_back(hash);
        while self.entries.len() > self.capacity || self.order.len() > 2 * self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(exp: u64) -> VerifiedToken {
        VerifiedToken {
            identity: Identity {
                provider: 0,
                issuer: "i".into(),
                subject: Some("s".into()),
                client_id: None,
                scopes: vec![],
                headers: vec![],
            },
            exp,
            nbf: None,
            kid: None,
            alg: Algorithm::RS256,
        }
    }

    #[test]
    fn bounded_with_fifo_eviction() {
        let mut c = VerifiedTokenCache::new(3);
        for i in 0..10u64 {
            c.insert(token_hash(&format!("t{i}")), entry(i));
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&token_hash("t9")).is_some());
        assert!(c.get(&token_hash("t6")).is_none());
    }

    #[test]
    fn removal_and_reinsert_keep_the_bound() {
        let mut c = VerifiedTokenCache::new(2);
        for i in 0..100u64 {
            let h = token_hash(&format!("t{i}"));
            c.insert(h, entry(i));
            c.remove(&h);
            c.insert(h, entry(i));
        }
        assert!(c.len() <= 2);
        assert!(c.order.len() <= 4);
    }

    #[test]
    fn zero_capacity_disables() {
        let mut c = VerifiedTokenCache::new(0);
        c.insert(token_hash("t"), entry(1));
        assert!(c.is_empty());
    }

    #[test]
    fn fingerprint_is_short_hex_and_not_the_token() {
        let fp = token_fingerprint(&token_hash("secret-token"));
        assert_eq!(fp.len(), 16);
        assert!(fp.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(!fp.contains("secret"));
    }
}
