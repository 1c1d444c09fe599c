//! `core::jwks::KeySet::parse` on arbitrary bytes, and key lookups in whatever parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::jwks::{Algorithm, KeyLookup, KeySet};

const ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fuzz_target!(|data: &[u8]| {
    let Ok(set) = KeySet::parse(data) else {
        return;
    };
    assert!(!set.is_empty());
    assert!(set.len() <= 64);
    for name in ALGS {
        let Some(alg) = Algorithm::from_name(name) else {
            continue;
        };
        for kid in [None, Some("k1"), Some("")] {
            if let KeyLookup::Candidates(keys) = set.lookup(kid, alg) {
                for key in keys {
                    assert!(key.allows(alg));
                    // A garbage token against a real key: an error, never a panic.
                    let _ = key.verify(alg, "eyJhbGciOiJSUzI1NiJ9.e30.AAAA");
                }
            }
        }
    }
});
