//! Times `Jwk::verify` per algorithm: every call is a full verification (no cache at this
//! level). Prints one line per algorithm with the best round's microseconds per verification,
//! in process CPU time (robust on a shared machine) and in wall-clock time.
//!
//! Usage: verify-wasm [ITERATIONS [ROUNDS]] [ALG...]

use std::time::Instant;

use mcp_auth_core::jwks::{Algorithm, KeyLookup, KeySet};
use serde_json::Value;

const TOKENS: &str = include_str!("../tokens.json");
const ALGORITHMS: [(&str, Algorithm, &str); 4] = [
    ("RS256", Algorithm::RS256, "rsa"),
    ("ES256", Algorithm::ES256, "es256"),
    ("ES384", Algorithm::ES384, "es384"),
    ("EdDSA", Algorithm::EdDSA, "eddsa"),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let iterations = numbers.first().copied().unwrap_or(200);
    let rounds = numbers.get(1).copied().unwrap_or(5);
    let chosen: Vec<&String> = args.iter().filter(|a| a.parse::<u32>().is_err()).collect();

    let doc: Value = serde_json::from_str(TOKENS).expect("tokens.json is JSON");
    let jwks = doc["jwks"].to_string();
    // Parsing computes each key's multiples (and RSA's Montgomery constants): twice, the
    // second time with V8's optimized code, as on a key set refresh.
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        KeySet::parse(jwks.as_bytes()).expect("the JWKS parses");
        let took = started.elapsed().as_secs_f64() * 1e6;
        println!("parse JWKS (4 keys, {pass}): {took:.0} us");
    }
    for key in doc["jwks"]["keys"].as_array().expect("keys") {
        let single = serde_json::json!({ "keys": [key] }).to_string();
        let started = Instant::now();
        KeySet::parse(single.as_bytes()).expect("the key parses");
        let took = started.elapsed().as_secs_f64() * 1e6;
        println!("parse one key ({}): {took:.0} us", key["kid"]);
    }
    let set = KeySet::parse(jwks.as_bytes()).expect("the JWKS parses");

    for (name, alg, kid) in ALGORITHMS {
        if !chosen.is_empty() && !chosen.iter().any(|c| c.as_str() == name) {
            continue;
        }
        let token = doc["tokens"][name].as_str().expect("a token per algorithm");
        let key = match set.lookup(Some(kid), alg) {
            KeyLookup::Candidates(keys) => keys[0],
            _ => panic!("no {name} key"),
        };
        let first = Instant::now();
        assert!(key.verify(alg, token).is_ok(), "{name} verifies");
        // Cold: the base point's multiples are built on first use, and V8 has not yet
        // optimized the code.
        let first = first.elapsed().as_secs_f64() * 1e6;
        let mut tampered = token.to_owned();
        tampered.insert(token.find('.').expect("a JWS") + 1, 'e');
        assert!(
            key.verify(alg, &tampered).is_err(),
            "{name} refuses a tampered payload"
        );

        let (mut best_cpu, mut best_wall) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..rounds {
            let (cpu, wall) = (cpu_time_ns(), Instant::now());
            for _ in 0..iterations {
                assert!(key.verify(alg, std::hint::black_box(token)).is_ok());
            }
            let per = |total_us: f64| total_us / f64::from(iterations);
            best_cpu = best_cpu.min(per((cpu_time_ns() - cpu) as f64 / 1e3));
            best_wall = best_wall.min(per(wall.elapsed().as_secs_f64() * 1e6));
        }
        println!(
            "{name}: {best_cpu:.1} us CPU, {best_wall:.1} us wall per verification \
             (best of {rounds} x {iterations}); first one {first:.0} us"
        );
    }
}

/// The process' CPU time, from WASI's process clock (node answers it from getrusage).
fn cpu_time_ns() -> u64 {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }
    const PROCESS_CPUTIME: u32 = 2;
    let mut time = 0u64;
    // SAFETY: the host writes one u64 through a pointer to a live local.
    let errno = unsafe { clock_time_get(PROCESS_CPUTIME, 1, &mut time) };
    assert_eq!(errno, 0, "no process CPU clock");
    time
}
