//! Clients that go away: while parked, or while their context owns the callout others wait on.

use crate::filter::host::fake::FakeReply;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::Verdict;

#[test]
fn a_request_gone_while_parked_is_forgotten_and_the_others_still_answered() {
    let mut rig = Rig::new(inbound_config());
    let (owner, _) = rig.request(Some(&token_for("alice")));
    let (other, _) = rig.request(Some(&token_for("bob")));
    let (leaver, _) = rig.request(Some(&token_for("carol")));
    rig.gone(leaver);
    let fetch = rig.sent_to("idp").remove(0);
    let decided = rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let contexts: Vec<_> = decided.iter().map(|(c, _)| *c).collect();
    assert_eq!(contexts, vec![owner, other]);
}

#[test]
fn a_fetch_whose_owner_went_away_is_sent_again_from_the_root() {
    let mut rig = Rig::new(inbound_config());
    let (owner, _) = rig.request(Some(&token_for("alice")));
    let (waiter, _) = rig.request(Some(&token_for("bob")));
    let lost = rig.sent_to("idp").remove(0);
    rig.gone(owner);
    // The next tick starts the fetch again, from the root this time.
    let decided = rig.tick();
    assert!(decided.is_empty());
    let fetches = rig.sent_to("idp");
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[1].owner, Some(ROOT));
    // A reply for the lost callout would be delivered nowhere; if it came, it is ignored.
    assert!(rig
        .deliver(&lost, FakeReply::status(200, &good_jwks()))
        .is_empty());
    let decided = rig.deliver(&fetches[1], FakeReply::status(200, &good_jwks()));
    forwarded(outcome_of(&decided, waiter));
}

#[test]
fn an_exchange_whose_owner_went_away_is_resent_and_serves_the_rest() {
    let mut rig = Rig::new(exchange_config());
    let alice = token_for("alice");
    let (owner, _) = rig.request(Some(&alice));
    let fetch = rig.sent_to("idp").remove(0);
    rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let (waiter, verdict) = rig.request(Some(&alice));
    assert_eq!(verdict, Verdict::Parked);
    assert_eq!(rig.sent_to("sts").len(), 1);
    rig.gone(owner);
    rig.tick();
    let calls = rig.sent_to("sts");
    assert_eq!(calls.len(), 2, "resent");
    assert_eq!(calls[1].owner, Some(ROOT));
    let decided = rig.deliver(
        &calls[1],
        FakeReply::status(200, &sts_answer("backend-alice")),
    );
    assert_eq!(
        header(forwarded(outcome_of(&decided, waiter)), "authorization"),
        Some("Bearer backend-alice")
    );
}

#[test]
fn requests_woken_by_a_fetch_send_their_exchanges_from_their_own_contexts() {
    let mut rig = Rig::new(exchange_config());
    let users = ["alice", "bob", "carol"];
    let parked: Vec<_> = users
        .iter()
        .map(|u| rig.request(Some(&token_for(u))).0)
        .collect();
    let fetch = rig.sent_to("idp").remove(0);
    assert_eq!(fetch.owner, Some(parked[0]), "alice's request fetches");
    rig.deliver(&fetch, FakeReply::status(200, &good_jwks()));
    let calls = rig.sent_to("sts");
    let owners: Vec<_> = calls.iter().map(|c| c.owner).collect();
    assert_eq!(owners, parked.iter().map(|c| Some(*c)).collect::<Vec<_>>());

    // Alice's exchange comes back first and her request ends: the others' callouts live on
    // (were they hers, Envoy would cancel them with her context, costing a second STS call).
    let decided = rig.deliver(
        &calls[0],
        FakeReply::status(200, &sts_answer("backend-alice")),
    );
    forwarded(outcome_of(&decided, parked[0]));
    rig.gone(parked[0]);
    for (i, user) in users.iter().enumerate().skip(1) {
        let answer = sts_answer(&format!("backend-{user}"));
        let decided = rig.deliver(&calls[i], FakeReply::status(200, &answer));
        let expected = format!("Bearer backend-{user}");
        assert_eq!(
            header(forwarded(outcome_of(&decided, parked[i])), "authorization"),
            Some(expected.as_str())
        );
    }
    rig.tick();
    assert_eq!(rig.sent_to("sts").len(), 3, "one STS call per user");
}

#[test]
fn requests_woken_by_an_introspection_send_their_exchanges_from_their_own_contexts() {
    // One opaque token used for a read and a write tool: two exchanges, two narrowings.
    let mut config = mcp_config();
    config["providers"] = introspection_config()["providers"].clone();
    let mut rig = Rig::new(config);
    let (read, v1) = rig.post("opaque-dba", &tools_call(1, "query_users"), 1);
    let (write, v2) = rig.post("opaque-dba", &tools_call(2, "drop_table"), 1);
    assert_eq!((v1, v2), (Verdict::Parked, Verdict::Parked));
    let introspection = rig.sent_to("idp").remove(0);
    assert_eq!(introspection.owner, Some(read));
    let answer = serde_json::json!({"active": true, "sub": "dba", "iss": ISS, "aud": RESOURCE,
        "scope": "mcp:tools:call bigquery:read bigquery:write", "groups": ["dba"],
        "exp": NOW_MS / 1000 + 300});
    rig.deliver(
        &introspection,
        FakeReply::status(200, answer.to_string().as_bytes()),
    );
    let owners: Vec<_> = rig.sent_to("sts").iter().map(|c| c.owner).collect();
    assert_eq!(owners, [Some(read), Some(write)]);
}
