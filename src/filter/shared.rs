//! What the workers of one Envoy share through proxy-wasm shared data, and how each value is
//! laid out.
//!
//! Envoy scopes shared data by `vm_id` alone, and operators give every filter instance the same
//! `vm_id` (two MCP servers behind one Envoy, two tenants). So every entry is named by a digest
//! of what defines its content — a provider's key source, or an exchange configuration — and
//! its value begins with the whole digest, checked on every read: two instances configured
//! differently never read each other's entries, whatever their names and `vm_id`; two with
//! identical definitions share safely.

use mcp_auth_core::cache::Digest;
use mcp_auth_core::jwks_cache::FetchHistory;
use mcp_auth_core::time::UnixMillis;

/// Version of these layouts: a filter that lays them out differently uses other names.
const PREFIX: &str = "mcp_auth_filter.v2";

/// Shared-data slots for flight results (exchanged tokens, introspection answers), per family
/// and configuration. Bounded: a slot holds one result, and a newer result whose key falls in
/// the same slot replaces it (the loser is simply fetched again).
const RESULT_SLOTS: u16 = 2048;

/// The first 16 hex digits of a namespace digest, for entry names (the value holds all of it).
fn short_hex(digest: &Digest) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Splits `value` into its namespace (which must be `namespace`) and the rest.
fn in_namespace<'a>(value: &'a [u8], namespace: &Digest) -> Option<&'a [u8]> {
    let (stored, rest) = value.split_first_chunk::<32>()?;
    (stored == namespace).then_some(rest)
}

/// Reads a big-endian u64 off the front of `bytes`.
fn split_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), rest))
}

fn split_millis(bytes: &[u8]) -> Option<(UnixMillis, &[u8])> {
    split_u64(bytes).map(|(v, rest)| (UnixMillis(v), rest))
}

/// The shared-data names of one provider's keys.
#[derive(Debug, Clone)]
pub struct KeyEntries {
    pub namespace: Digest,
    /// The keys themselves ([`SharedKeys`]).
    pub keys: String,
    /// Who fetches, and the fetch history ([`FetchRecord`]).
    pub record: String,
}

impl KeyEntries {
    pub fn new(namespace: Digest) -> KeyEntries {
        let name = format!("{PREFIX}.jwks.{}", short_hex(&namespace));
        KeyEntries {
            namespace,
            record: format!("{name}.fetch"),
            keys: name,
        }
    }
}

/// Keys one worker fetched: namespace, fetched_at, refresh_at, the JWKS document.
pub struct SharedKeys<'a> {
    pub fetched_at: UnixMillis,
    pub refresh_at: UnixMillis,
    pub jwks: &'a [u8],
}

impl<'a> SharedKeys<'a> {
    pub fn encode(&self, namespace: &Digest) -> Vec<u8> {
        let mut value = Vec::with_capacity(48 + self.jwks.len());
        value.extend_from_slice(namespace);
        value.extend_from_slice(&self.fetched_at.0.to_be_bytes());
        value.extend_from_slice(&self.refresh_at.0.to_be_bytes());
        value.extend_from_slice(self.jwks);
        value
    }

    pub fn decode(value: &'a [u8], namespace: &Digest) -> Option<SharedKeys<'a>> {
        let rest = in_namespace(value, namespace)?;
        let (fetched_at, rest) = split_millis(rest)?;
        let (refresh_at, jwks) = split_millis(rest)?;
        Some(SharedKeys {
            fetched_at,
            refresh_at,
            jwks,
        })
    }
}

/// The coordination of one provider's fetches across the workers: who holds the fetch (a claim
/// with an end, so a dead owner never blocks the others) and the fetch history every worker
/// honours (rate limits, backoff, newest keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchRecord {
    /// The VM holding the claim (or that last held it).
    pub owner: u64,
    /// The claim's end; `UnixMillis(0)`: nobody is fetching.
    pub claim_until: UnixMillis,
    pub history: FetchHistory,
}

impl FetchRecord {
    /// The claim's end, when someone other than `me` holds a live claim.
    pub fn claimed_by_other(&self, me: u64, now: UnixMillis) -> Option<UnixMillis> {
        (self.owner != me && now < self.claim_until).then_some(self.claim_until)
    }

    pub fn encode(&self, namespace: &Digest) -> Vec<u8> {
        let h = &self.history;
        let mut value = Vec::with_capacity(32 + 6 * 8);
        value.extend_from_slice(namespace);
        for field in [
            self.owner,
            self.claim_until.0,
            h.last_fetch_at.0,
            h.last_unknown_kid_at.0,
            h.retry_at.0,
            h.keys_fetched_at.0,
        ] {
            value.extend_from_slice(&field.to_be_bytes());
        }
        value
    }

    pub fn decode(value: &[u8], namespace: &Digest) -> Option<FetchRecord> {
        let rest = in_namespace(value, namespace)?;
        let (owner, rest) = split_u64(rest)?;
        let (claim_until, rest) = split_millis(rest)?;
        let (last_fetch_at, rest) = split_millis(rest)?;
        let (last_unknown_kid_at, rest) = split_millis(rest)?;
        let (retry_at, rest) = split_millis(rest)?;
        let (keys_fetched_at, _) = split_millis(rest)?;
        Some(FetchRecord {
            owner,
            claim_until,
            history: FetchHistory {
                last_fetch_at,
                last_unknown_kid_at,
                retry_at,
                keys_fetched_at,
            },
        })
    }
}

/// A flight's result (an exchanged token, an introspection answer): its 32-byte key (which
/// covers its configuration's namespace; checked on read, since slots are shared by many keys),
/// its validity end, the value.
pub struct SharedResult<'a> {
    pub key: Digest,
    pub until: UnixMillis,
    pub value: &'a [u8],
}

impl<'a> SharedResult<'a> {
    /// The result slot of `key` among the bounded slots of a family and configuration.
    pub fn slot_name(family: &str, namespace: &Digest, key: &Digest) -> String {
        let slot = key
            .first_chunk::<2>()
            .map_or(0, |b| u16::from_be_bytes(*b) % RESULT_SLOTS);
        format!("{PREFIX}.{family}.{}.{slot}", short_hex(namespace))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(40 + self.value.len());
        value.extend_from_slice(&self.key);
        value.extend_from_slice(&self.until.0.to_be_bytes());
        value.extend_from_slice(self.value);
        value
    }

    /// The result stored for `key`, if the slot holds it.
    pub fn decode(value: &'a [u8], key: &Digest) -> Option<SharedResult<'a>> {
        let rest = in_namespace(value, key)?;
        let (until, value) = split_millis(rest)?;
        Some(SharedResult {
            key: *key,
            until,
            value,
        })
    }
}

/// Who calls out for a key across the workers: the key (claims share slots), the owner, the
/// claim's end, and how it ended (0: pending or succeeded — the result is in its slot;
/// otherwise the family's failure code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightClaim {
    pub key: Digest,
    pub owner: u64,
    pub until: UnixMillis,
    pub failure: u8,
}

impl FlightClaim {
    pub fn slot_name(family: &str, namespace: &Digest, key: &Digest) -> String {
        format!("{}.claim", SharedResult::slot_name(family, namespace, key))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(49);
        value.extend_from_slice(&self.key);
        value.extend_from_slice(&self.owner.to_be_bytes());
        value.extend_from_slice(&self.until.0.to_be_bytes());
        value.push(self.failure);
        value
    }

    /// The claim in a slot, whatever key it is for (the caller compares).
    pub fn decode(value: &[u8]) -> Option<FlightClaim> {
        let (key, rest) = value.split_first_chunk::<32>()?;
        let (owner, rest) = split_u64(rest)?;
        let (until, rest) = split_millis(rest)?;
        let (&failure, _) = rest.split_first()?;
        Some(FlightClaim {
            key: *key,
            owner,
            until,
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: Digest = [3; 32];
    const OTHER: Digest = [4; 32];

    #[test]
    fn keys_round_trip_only_in_their_namespace() {
        let value = SharedKeys {
            fetched_at: UnixMillis(5),
            refresh_at: UnixMillis(9),
            jwks: b"{}",
        }
        .encode(&NS);
        let read = SharedKeys::decode(&value, &NS).unwrap();
        assert_eq!(
            (read.fetched_at, read.refresh_at, read.jwks),
            (UnixMillis(5), UnixMillis(9), &b"{}"[..])
        );
        assert!(SharedKeys::decode(&value, &OTHER).is_none());
        assert!(SharedKeys::decode(&value[..47], &NS).is_none());
    }

    #[test]
    fn fetch_records_round_trip_and_tell_a_live_claim() {
        let record = FetchRecord {
            owner: 7,
            claim_until: UnixMillis(1_000),
            history: FetchHistory {
                last_fetch_at: UnixMillis(1),
                last_unknown_kid_at: UnixMillis(2),
                retry_at: UnixMillis(3),
                keys_fetched_at: UnixMillis(4),
            },
        };
        let value = record.encode(&NS);
        assert_eq!(FetchRecord::decode(&value, &NS), Some(record));
        assert_eq!(FetchRecord::decode(&value, &OTHER), None);
        assert_eq!(FetchRecord::decode(&value[..value.len() - 1], &NS), None);
        assert_eq!(
            record.claimed_by_other(8, UnixMillis(999)),
            Some(UnixMillis(1_000))
        );
        assert_eq!(record.claimed_by_other(7, UnixMillis(999)), None, "our own");
        assert_eq!(
            record.claimed_by_other(8, UnixMillis(1_000)),
            None,
            "expired"
        );
    }

    #[test]
    fn results_round_trip_only_for_their_key() {
        let value = SharedResult {
            key: [7; 32],
            until: UnixMillis(42),
            value: b"tok",
        }
        .encode();
        let read = SharedResult::decode(&value, &[7; 32]).unwrap();
        assert_eq!((read.until, read.value), (UnixMillis(42), &b"tok"[..]));
        assert!(SharedResult::decode(&value, &[8; 32]).is_none());
        assert!(SharedResult::decode(&value[..39], &[7; 32]).is_none());
    }

    #[test]
    fn flight_claims_round_trip() {
        let claim = FlightClaim {
            key: [9; 32],
            owner: 3,
            until: UnixMillis(77),
            failure: 2,
        };
        assert_eq!(FlightClaim::decode(&claim.encode()), Some(claim));
        assert_eq!(FlightClaim::decode(&claim.encode()[..48]), None);
    }

    #[test]
    fn names_differ_by_namespace() {
        assert_ne!(KeyEntries::new(NS).keys, KeyEntries::new(OTHER).keys);
        assert_ne!(
            SharedResult::slot_name("exchange", &NS, &[1; 32]),
            SharedResult::slot_name("exchange", &OTHER, &[1; 32])
        );
        assert_ne!(
            SharedResult::slot_name("exchange", &NS, &[1; 32]),
            SharedResult::slot_name("introspection", &NS, &[1; 32])
        );
        assert!(KeyEntries::new(NS)
            .keys
            .starts_with("mcp_auth_filter.v2.jwks."));
    }
}
