//! Keys whose candidate slots coincide, on two workers sharing one Envoy's shared data: a key
//! is found in whichever candidate it landed, a full set of candidates gives up the result that
//! ends soonest, and a claim is honoured in any candidate but never evicted.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::oauth_request::CalloutRequest;
use mcp_auth_core::time::UnixMillis;

use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::flights::Flights;
use crate::filter::host::fake::{FakeHost, FakeSharedData};
use crate::filter::host::ContextId;
use crate::filter::tests::fixtures::NOW_MS;

const NS: Digest = [3; 32];
const OWNER: ContextId = ContextId(7);

/// A worker's flights of one family, on its own host and callouts.
struct Side {
    host: FakeHost,
    callouts: Callouts,
    flights: Flights<()>,
}

fn two_sides() -> (Side, Side) {
    let shared = Rc::new(RefCell::new(FakeSharedData::default()));
    let side = |me, shared| Side {
        host: FakeHost::with_shared(NOW_MS, shared),
        callouts: Callouts::default(),
        flights: Flights::new("exchange", NS, me, |key| Purpose::Exchange { key }),
    };
    (side(1, Rc::clone(&shared)), side(2, shared))
}

/// Keys that differ only past the bytes that pick candidates: all share the same eight slots.
fn crowd(n: u8) -> Digest {
    let mut key = [0; 32];
    for (i, b) in key.iter_mut().enumerate().take(16) {
        *b = (17 * i + 1) as u8;
    }
    key[31] = n;
    key
}

fn request() -> CalloutRequest {
    CalloutRequest {
        cluster: "sts".into(),
        headers: Vec::new(),
        body: b"grant".to_vec(),
        timeout: Duration::from_secs(2),
    }
}

impl Side {
    fn start(&mut self, key: Digest) -> UnixMillis {
        let started =
            self.flights
                .join_or_start(&mut self.host, &mut self.callouts, key, request, (), OWNER);
        started.unwrap()
    }

    fn calls(&self) -> usize {
        self.host.sent.len()
    }

    fn until(&self, ms: u64) -> UnixMillis {
        UnixMillis(NOW_MS + ms)
    }
}

#[test]
fn a_full_set_of_candidates_gives_up_the_result_that_ends_soonest() {
    let (mut a, b) = two_sides();
    let ends = [90, 80, 70, 20, 60, 50, 40, 30];
    for (n, end) in (0..8).zip(ends) {
        let until = a.until(end * 1_000);
        a.flights.publish(&mut a.host, &crowd(n), &[n], until);
    }
    for n in 0..8 {
        let (value, _) = b.flights.shared_result(&b.host, &crowd(n)).unwrap();
        assert_eq!(
            value,
            [n],
            "key {n} is found in whichever candidate it took"
        );
    }
    // A ninth key: key 3's result ends soonest (20 s) and makes room.
    let until = a.until(100_000);
    a.flights.publish(&mut a.host, &crowd(8), &[8], until);
    assert_eq!(b.flights.shared_result(&b.host, &crowd(8)).unwrap().0, [8]);
    assert!(b.flights.shared_result(&b.host, &crowd(3)).is_none());
    for n in [0, 1, 2, 4, 5, 6, 7] {
        assert!(b.flights.shared_result(&b.host, &crowd(n)).is_some());
    }
    // A newer result for a key replaces its own slot, whatever else could be evicted.
    let until = a.until(200_000);
    a.flights.publish(&mut a.host, &crowd(7), &[77], until);
    assert_eq!(b.flights.shared_result(&b.host, &crowd(7)).unwrap().0, [77]);
    for n in [0, 1, 2, 4, 5, 6, 8] {
        assert!(b.flights.shared_result(&b.host, &crowd(n)).is_some());
    }
    assert_eq!(
        a.host.shared.borrow().keys().len(),
        8,
        "eight slots, no more"
    );
}

#[test]
fn an_expired_result_makes_room_before_any_live_one() {
    let (mut a, mut b) = two_sides();
    for n in 0..8 {
        let until = a.until(if n == 5 { 1_000 } else { 60_000 });
        a.flights.publish(&mut a.host, &crowd(n), &[n], until);
    }
    b.host.advance(1_000);
    let until = b.until(61_000);
    b.flights.publish(&mut b.host, &crowd(8), &[8], until);
    a.host.advance(1_000);
    assert!(a.flights.shared_result(&a.host, &crowd(8)).is_some());
    for n in [0, 1, 2, 3, 4, 6, 7] {
        assert!(a.flights.shared_result(&a.host, &crowd(n)).is_some());
    }
}

#[test]
fn a_claim_in_any_candidate_is_honoured_and_none_is_evicted() {
    let (mut a, mut b) = two_sides();
    for n in 0..8 {
        a.start(crowd(n));
    }
    assert_eq!(a.calls(), 8);
    // Key 0's claim ends (its reply came): its slot is free again, and still key 5's claim,
    // further along, holds B back.
    let _ = a.flights.take(&crowd(0));
    a.flights.release(&mut a.host, &crowd(0), 0);
    b.start(crowd(5));
    assert_eq!(b.calls(), 0, "B waits for A's callout for key 5");

    // B claims key 8 in the freed slot: A then waits for it in turn.
    b.start(crowd(8));
    assert_eq!(b.calls(), 1);
    assert!(b.flights.take(&crowd(8)).is_some_and(|f| f.claimed));
    a.start(crowd(8));
    assert_eq!(a.calls(), 8, "A waits for B's callout for key 8");

    // Every candidate holds another key's live claim: key 9 goes without one, evicting none.
    b.start(crowd(9));
    assert_eq!(b.calls(), 2);
    assert!(b.flights.take(&crowd(9)).is_some_and(|f| !f.claimed));
    b.start(crowd(1));
    assert_eq!(b.calls(), 2, "key 1's claim still stands");
}
