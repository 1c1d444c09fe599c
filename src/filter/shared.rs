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
const PREFIX: &str = "mcp_auth_filter.v3";

/// Flight results (exchanged tokens, introspection answers) share a bounded set of slots per
/// family and configuration, and a key may live in any of its [`CANDIDATES`] slots (picked from
/// its digest, independently: no clustering). Sized for the default cache bound, 10,000 live
/// entries per worker: a load of 10,000 / 16,384 = 0.61, so a new key finds all eight
/// candidates holding other keys' live results with probability about 0.61^8 = 2 % (with
/// 1,000 keys, 0.061^8 = 2e-10). Memory stays bounded although entries are never deleted:
/// 16,384 names of about 60 bytes, each holding one value of 72 bytes plus a token (at most
/// 16 KiB), so about 27 MB with 1.5 KB tokens and 270 MB in the worst case; introspection
/// answers are shared only up to [`MAX_SHARED_VALUE_BYTES`], the same bound.
const RESULT_SLOTS: u16 = 16_384;

/// Claims live only while a callout is under way (a few seconds), so far fewer are live at once
/// than results: 4,096 slots of 81-byte values, under 1 MB; a thousand callouts under way at
/// once are a load of 0.25, so a claim finds no free candidate once in 0.25^-8 = 65,000.
const CLAIM_SLOTS: u16 = 4_096;

/// How many slots a key may use: each is 2 bytes of the key's digest (16 of its 32 bytes).
const CANDIDATES: usize = 8;

/// The largest value shared with the other workers (a longer one is fetched again by them):
/// what bounds the memory of the result slots.
pub const MAX_SHARED_VALUE_BYTES: usize = 16 * 1024;

const _: () = assert!(RESULT_SLOTS.is_power_of_two() && CLAIM_SLOTS.is_power_of_two());

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

/// One family's bounded slots (flight results, or flight claims) for one configuration, and
/// each key's candidates among them.
pub struct Slots {
    /// What every name begins with: prefix, family, configuration, kind.
    stem: String,
    count: u16,
}

impl Slots {
    pub fn results(family: &str, namespace: &Digest) -> Slots {
        Slots::new(family, namespace, "result", RESULT_SLOTS)
    }

    pub fn claims(family: &str, namespace: &Digest) -> Slots {
        Slots::new(family, namespace, "claim", CLAIM_SLOTS)
    }

    fn new(family: &str, namespace: &Digest, kind: &str, count: u16) -> Slots {
        Slots {
            stem: format!("{PREFIX}.{family}.{}.{kind}", short_hex(namespace)),
            count,
        }
    }

    /// The indexes of `key`'s candidate slots, in the order they are tried, without repeats.
    pub fn indexes(&self, key: &Digest) -> Vec<u16> {
        let mut indexes = Vec::with_capacity(CANDIDATES);
        for pair in key.chunks_exact(2).take(CANDIDATES) {
            let index = pair
                .first_chunk::<2>()
                .map_or(0, |b| u16::from_be_bytes(*b) % self.count);
            if !indexes.contains(&index) {
                indexes.push(index);
            }
        }
        indexes
    }

    /// The names of `key`'s candidate slots, in the order they are tried.
    pub fn candidates(&self, key: &Digest) -> Vec<String> {
        self.indexes(key)
            .into_iter()
            .map(|i| format!("{}.{i}", self.stem))
            .collect()
    }
}

/// What one of a key's candidate slots holds, as far as placing the key's entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occupant {
    /// The key's own entry, whatever its state: it is replaced.
    SameKey,
    /// Nothing live: empty, ended, or not readable in this configuration.
    Vacant,
    /// Another key's live entry, ending then.
    OtherKey { until: UnixMillis },
}

impl Occupant {
    fn of(stored: Option<(Digest, UnixMillis)>, key: &Digest, now: UnixMillis) -> Occupant {
        match stored {
            Some((k, _)) if k == *key => Occupant::SameKey,
            Some((_, until)) if now < until => Occupant::OtherKey { until },
            _ => Occupant::Vacant,
        }
    }
}

/// Which candidate receives a key's entry: the one that holds the key, else the first vacant
/// one, else, with `evict`, the one that ends soonest (the least useful to keep). `None`: every
/// candidate holds another key's live entry and nothing may be evicted.
pub fn place(occupants: &[Occupant], evict: bool) -> Option<usize> {
    let find = |wanted: Occupant| occupants.iter().position(|o| *o == wanted);
    find(Occupant::SameKey)
        .or_else(|| find(Occupant::Vacant))
        .or_else(|| {
            let live_others = occupants.iter().enumerate().filter_map(|(i, o)| match o {
                Occupant::OtherKey { until } => Some((i, *until)),
                Occupant::SameKey | Occupant::Vacant => None,
            });
            let soonest = live_others.min_by_key(|(_, until)| *until);
            soonest.filter(|_| evict).map(|(i, _)| i)
        })
}

/// A flight's result (an exchanged token, an introspection answer): the namespace, its 32-byte
/// key (slots are shared by many keys), its validity end, the value; all checked on read.
pub struct SharedResult<'a> {
    pub key: Digest,
    pub until: UnixMillis,
    pub value: &'a [u8],
}

impl<'a> SharedResult<'a> {
    pub fn encode(&self, namespace: &Digest) -> Vec<u8> {
        let mut value = Vec::with_capacity(72 + self.value.len());
        value.extend_from_slice(namespace);
        value.extend_from_slice(&self.key);
        value.extend_from_slice(&self.until.0.to_be_bytes());
        value.extend_from_slice(self.value);
        value
    }

    /// The result a slot holds, whatever key it is for (the caller compares), if it belongs
    /// to `namespace`.
    pub fn decode(value: &'a [u8], namespace: &Digest) -> Option<SharedResult<'a>> {
        let rest = in_namespace(value, namespace)?;
        let (key, rest) = rest.split_first_chunk::<32>()?;
        let (until, value) = split_millis(rest)?;
        Some(SharedResult {
            key: *key,
            until,
            value,
        })
    }

    /// What a slot holding `value` means for placing `key`'s result at `now`.
    pub fn occupant(
        value: Option<&[u8]>,
        namespace: &Digest,
        key: &Digest,
        now: UnixMillis,
    ) -> Occupant {
        let stored = value
            .and_then(|v| SharedResult::decode(v, namespace))
            .map(|r| (r.key, r.until));
        Occupant::of(stored, key, now)
    }
}

/// Who calls out for a key across the workers: the namespace, the key (claims share slots),
/// the owner, the claim's end, and how it ended (0: pending or succeeded — the result is in
/// one of its slots; otherwise the family's failure code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightClaim {
    pub key: Digest,
    pub owner: u64,
    pub until: UnixMillis,
    pub failure: u8,
}

impl FlightClaim {
    pub fn encode(&self, namespace: &Digest) -> Vec<u8> {
        let mut value = Vec::with_capacity(81);
        value.extend_from_slice(namespace);
        value.extend_from_slice(&self.key);
        value.extend_from_slice(&self.owner.to_be_bytes());
        value.extend_from_slice(&self.until.0.to_be_bytes());
        value.push(self.failure);
        value
    }

    /// The claim in a slot, whatever key it is for (the caller compares), if it belongs to
    /// `namespace`.
    pub fn decode(value: &[u8], namespace: &Digest) -> Option<FlightClaim> {
        let rest = in_namespace(value, namespace)?;
        let (key, rest) = rest.split_first_chunk::<32>()?;
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

    /// Live: it has not ended, and the owner recorded no failure.
    pub fn live(&self, now: UnixMillis) -> bool {
        now < self.until && self.failure == 0
    }

    /// What a slot holding `value` means for placing `key`'s claim at `now`.
    pub fn occupant(
        value: Option<&[u8]>,
        namespace: &Digest,
        key: &Digest,
        now: UnixMillis,
    ) -> Occupant {
        let stored = value
            .and_then(|v| FlightClaim::decode(v, namespace))
            .filter(|c| c.key == *key || c.live(now))
            .map(|c| (c.key, c.until));
        Occupant::of(stored, key, now)
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
    fn results_round_trip_only_in_their_namespace() {
        let value = SharedResult {
            key: [7; 32],
            until: UnixMillis(42),
            value: b"tok",
        }
        .encode(&NS);
        let read = SharedResult::decode(&value, &NS).unwrap();
        assert_eq!(
            (read.key, read.until, read.value),
            ([7; 32], UnixMillis(42), &b"tok"[..])
        );
        assert!(SharedResult::decode(&value, &OTHER).is_none());
        assert!(SharedResult::decode(&value[..71], &NS).is_none());
    }

    #[test]
    fn flight_claims_round_trip_only_in_their_namespace() {
        let claim = FlightClaim {
            key: [9; 32],
            owner: 3,
            until: UnixMillis(77),
            failure: 2,
        };
        let value = claim.encode(&NS);
        assert_eq!(FlightClaim::decode(&value, &NS), Some(claim));
        assert_eq!(FlightClaim::decode(&value, &OTHER), None);
        assert_eq!(FlightClaim::decode(&value[..80], &NS), None);
    }

    #[test]
    fn names_differ_by_namespace_family_and_kind() {
        let key = [1; 32];
        let first = |slots: Slots| slots.candidates(&key).remove(0);
        assert_ne!(
            first(Slots::results("exchange", &NS)),
            first(Slots::results("exchange", &OTHER))
        );
        assert_ne!(
            first(Slots::results("exchange", &NS)),
            first(Slots::results("introspection", &NS))
        );
        assert_ne!(
            first(Slots::results("exchange", &NS)),
            first(Slots::claims("exchange", &NS))
        );
        assert!(KeyEntries::new(NS)
            .keys
            .starts_with("mcp_auth_filter.v3.jwks."));
    }

    /// A key whose candidate slots are `indexes` (two bytes each, big-endian), then zeros.
    fn key_at(indexes: &[u16]) -> Digest {
        let mut key = [0; 32];
        for (pair, index) in key.chunks_exact_mut(2).zip(indexes) {
            pair.copy_from_slice(&index.to_be_bytes());
        }
        key
    }

    #[test]
    fn a_key_has_eight_candidates_from_its_digest_within_the_bound() {
        let results = Slots::results("exchange", &NS);
        let key = key_at(&[5, 6, 7, 8, 9, 10, 11, 65_535]);
        assert_eq!(results.indexes(&key), [5, 6, 7, 8, 9, 10, 11, 16_383]);
        let claims = Slots::claims("exchange", &NS);
        assert_eq!(claims.indexes(&key), [5, 6, 7, 8, 9, 10, 11, 4_095]);
        // Repeats are tried once: all-zero bytes give one slot.
        assert_eq!(results.indexes(&[0; 32]), [0]);
        let names = results.candidates(&key);
        assert_eq!(names.len(), 8);
        assert!(names[0].starts_with("mcp_auth_filter.v3.exchange."));
        assert!(names[0].ends_with(".result.5"));
        // Every name any key can get is one of the bounded set.
        let index_of = |n: &String| n.rsplit('.').next().unwrap().parse::<u16>().unwrap();
        assert!(names.iter().all(|n| index_of(n) < RESULT_SLOTS));
    }

    #[test]
    fn placement_prefers_the_same_key_then_a_vacancy_then_the_soonest_end() {
        use Occupant::*;
        let other = |ms| OtherKey {
            until: UnixMillis(ms),
        };
        assert_eq!(place(&[other(9), Vacant, SameKey], true), Some(2));
        assert_eq!(place(&[other(9), Vacant, Vacant], true), Some(1));
        assert_eq!(place(&[other(9), other(3), other(5)], true), Some(1));
        assert_eq!(
            place(&[other(9), other(3)], false),
            None,
            "claims never evict a live one"
        );
        assert_eq!(place(&[other(9), Vacant], false), Some(1));
        assert_eq!(place(&[], true), None);
    }

    #[test]
    fn occupants_are_read_from_the_slots() {
        let key = [1; 32];
        let result = |k: Digest, until| {
            SharedResult {
                key: k,
                until: UnixMillis(until),
                value: b"v",
            }
            .encode(&NS)
        };
        let at = UnixMillis(100);
        let occupant = |v: Option<&[u8]>| SharedResult::occupant(v, &NS, &key, at);
        assert_eq!(occupant(Some(&result(key, 50))), Occupant::SameKey);
        assert_eq!(
            occupant(Some(&result([2; 32], 150))),
            Occupant::OtherKey {
                until: UnixMillis(150)
            }
        );
        assert_eq!(occupant(Some(&result([2; 32], 100))), Occupant::Vacant);
        assert_eq!(occupant(None), Occupant::Vacant);
        assert_eq!(
            SharedResult::occupant(Some(&result(key, 150)), &OTHER, &key, at),
            Occupant::Vacant,
            "another configuration's value is overwritten, never read"
        );

        let claim = |k: Digest, until, failure| {
            FlightClaim {
                key: k,
                owner: 1,
                until: UnixMillis(until),
                failure,
            }
            .encode(&NS)
        };
        let occupant = |v: Vec<u8>| FlightClaim::occupant(Some(&v), &NS, &key, at);
        assert_eq!(occupant(claim(key, 50, 2)), Occupant::SameKey);
        assert_eq!(
            occupant(claim([2; 32], 150, 0)),
            Occupant::OtherKey {
                until: UnixMillis(150)
            }
        );
        assert_eq!(occupant(claim([2; 32], 150, 3)), Occupant::Vacant, "failed");
        assert_eq!(occupant(claim([2; 32], 100, 0)), Occupant::Vacant, "ended");
    }
}
