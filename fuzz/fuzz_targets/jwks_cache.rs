//! `JwksCache::on_response` (and discovery, max-age, shared-key adoption) on arbitrary
//! replies. Input: one flags byte, the Cache-Control value, a NUL byte, the body.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::config::{FetchTarget, HttpTarget, RemoteKeys};
use mcp_auth_core::jwks_cache::{max_age, Availability, FetchOutcome, JwksCache};

const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let split = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
    let (cache_control, body) = rest.split_at(split);
    let body = body.get(1..).unwrap_or_default();
    let cache_control = String::from_utf8_lossy(cache_control);
    let _ = max_age(Some(&cache_control));

    let target = HttpTarget {
        authority: "idp".into(),
        path: "/start".into(),
    };
    let discovery = flags & 1 == 1;
    let settings = RemoteKeys {
        cluster: "idp".into(),
        start: if discovery {
            FetchTarget::Discovery(target)
        } else {
            FetchTarget::Jwks(target)
        },
        timeout: Duration::from_secs(5),
        cache_duration: Duration::from_secs(600),
        failed_refetch_duration: Duration::from_secs(1),
        unknown_kid_refetch_interval: Duration::from_secs(30),
    };
    let status = match (flags >> 1) & 3 {
        0 => Some(200),
        1 => None,
        2 => Some(500),
        _ => Some(u16::from(flags)),
    };
    let mut cache = JwksCache::new(settings);
    let Some(fetch) = cache.due_fetch(NOW) else {
        panic!("a new cache fetches at once");
    };
    let mut outcome =
        cache.on_response(NOW, fetch.is_discovery, status, Some(&cache_control), body);
    if let FetchOutcome::FetchNext(next) = &outcome {
        assert!(!next.is_discovery);
        outcome = cache.on_response(NOW + 1, false, status, Some(&cache_control), body);
    }
    match outcome {
        FetchOutcome::KeysUpdated => {
            assert_eq!(cache.availability(NOW), Availability::Ready);
            assert!(cache.refresh_at() > NOW);
            // Keys stay through a failed refresh.
            let t = cache.refresh_at();
            if cache.due_fetch(t).is_some() {
                let _ = cache.on_response(t, false, Some(500), None, b"oops");
                assert_eq!(cache.availability(t), Availability::Ready);
            }
        }
        FetchOutcome::Failed(_) => {
            assert!(!cache.is_fetching());
            assert_ne!(cache.availability(NOW), Availability::Ready);
        }
        FetchOutcome::FetchNext(_) => {}
    }
    // The same bytes as another worker's shared keys.
    let mut other = JwksCache::new(RemoteKeys {
        cluster: "idp".into(),
        start: FetchTarget::Jwks(HttpTarget {
            authority: "idp".into(),
            path: "/jwks".into(),
        }),
        timeout: Duration::from_secs(5),
        cache_duration: Duration::from_secs(600),
        failed_refetch_duration: Duration::from_secs(1),
        unknown_kid_refetch_interval: Duration::from_secs(30),
    });
    let _ = other.adopt_shared(body, NOW, NOW + 1_000);
    let _ = other.expire_overdue(NOW + 10_000);
});
