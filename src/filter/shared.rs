//! What the workers of one Envoy share through proxy-wasm shared data, and how each value is
//! laid out: keys a worker fetched, and exchanged tokens (in a bounded set of slots).

use mcp_auth_core::cache::Digest;

/// Shared-data slots for exchanged tokens. Bounded: a slot holds one token, and a newer token
/// whose key falls in the same slot replaces it (the loser is simply exchanged again).
const EXCHANGE_SLOTS: u16 = 2048;

/// Keys one worker fetched for a provider: 8 bytes fetched_at, 8 bytes refresh_at (ms), the
/// JWKS document.
pub struct SharedKeys<'a> {
    pub fetched_at_ms: u64,
    pub refresh_at_ms: u64,
    pub jwks: &'a [u8],
}

impl<'a> SharedKeys<'a> {
    pub fn name(provider_name: &str) -> String {
        format!("mcp_auth_filter.jwks.{provider_name}")
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(16 + self.jwks.len());
        value.extend_from_slice(&self.fetched_at_ms.to_be_bytes());
        value.extend_from_slice(&self.refresh_at_ms.to_be_bytes());
        value.extend_from_slice(self.jwks);
        value
    }

    pub fn decode(value: &'a [u8]) -> Option<SharedKeys<'a>> {
        let (fetched_at_ms, rest) = split_u64(value)?;
        let (refresh_at_ms, jwks) = split_u64(rest)?;
        Some(SharedKeys {
            fetched_at_ms,
            refresh_at_ms,
            jwks,
        })
    }
}

/// An exchanged token: its 32-byte cache key (checked on read: slots are shared by many
/// keys), 8 bytes of validity end (ms), the token.
pub struct SharedExchange<'a> {
    pub key: Digest,
    pub until_ms: u64,
    pub token: &'a str,
}

impl<'a> SharedExchange<'a> {
    pub fn slot_name(key: &Digest) -> String {
        let slot = key
            .first_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b) % EXCHANGE_SLOTS);
        format!("mcp_auth_filter.exchange.{slot}")
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(40 + self.token.len());
        value.extend_from_slice(&self.key);
        value.extend_from_slice(&self.until_ms.to_be_bytes());
        value.extend_from_slice(self.token.as_bytes());
        value
    }

    pub fn decode(value: &'a [u8]) -> Option<SharedExchange<'a>> {
        let (key, rest) = value.split_first_chunk::<32>()?;
        let (until_ms, token) = split_u64(rest)?;
        Some(SharedExchange {
            key: *key,
            until_ms,
            token: std::str::from_utf8(token).ok()?,
        })
    }
}

/// Reads a big-endian u64 off the front of `bytes`.
fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_short_values_are_refused() {
        let value = SharedKeys {
            fetched_at_ms: 5,
            refresh_at_ms: 9,
            jwks: b"{}",
        }
        .encode();
        let read = SharedKeys::decode(&value).unwrap();
        assert_eq!(
            (read.fetched_at_ms, read.refresh_at_ms, read.jwks),
            (5, 9, &b"{}"[..])
        );
        assert!(SharedKeys::decode(&value[..15]).is_none());
    }

    #[test]
    fn exchanges_round_trip_and_bad_values_are_refused() {
        let value = SharedExchange {
            key: [7; 32],
            until_ms: 42,
            token: "tok",
        }
        .encode();
        let read = SharedExchange::decode(&value).unwrap();
        assert_eq!((read.key, read.until_ms, read.token), ([7; 32], 42, "tok"));
        assert!(SharedExchange::decode(&value[..39]).is_none());
        let mut not_utf8 = value.clone();
        not_utf8.push(0xff);
        assert!(SharedExchange::decode(&not_utf8).is_none());
    }
}
