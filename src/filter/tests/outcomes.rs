//! Carrying decisions out on HTTP streams.

use std::rc::Rc;

use mcp_auth_core::response::LocalResponse;

use crate::filter::host::fake::FakeHost;
use crate::filter::host::ContextId;
use crate::filter::outcome::apply_to_contexts;
use crate::filter::worker::{Forwarding, Outcome};

#[test]
fn parked_requests_are_rewritten_and_resumed_or_answered() {
    let mut host = FakeHost::new(0);
    let forwarded = host.open_stream(
        11,
        &[
            ("authorization", "Bearer client"),
            ("x-user", "forged"),
            ("x_user", "forged"),
        ],
    );
    let refused = host.open_stream(12, &[]);
    let ended = host.open_stream(13, &[]);
    host.streams.get_mut(&ended).unwrap().ended = true;
    host.effective = Some(ContextId(1));
    host.streams.insert(ContextId(1), Default::default());

    let forward = Outcome::Forward(Forwarding {
        remove: Rc::from(vec!["authorization".to_string(), "x-user".to_string()]),
        remove_also: vec!["x_user".to_string()],
        set: vec![("x-user".into(), "alice".into())],
    });
    let deny = Outcome::Respond(LocalResponse {
        status: 401,
        headers: vec![],
        body: b"{}".to_vec(),
    });
    apply_to_contexts(
        &mut host,
        vec![(forwarded, forward), (refused, deny.clone()), (ended, deny)],
        ContextId(1),
    );

    let stream = host.stream(forwarded);
    assert_eq!(stream.request_header("authorization"), None);
    assert_eq!(stream.request_header("x-user"), Some("alice"));
    assert_eq!(
        stream.request_header("x_user"),
        None,
        "the underscore spelling is gone"
    );
    assert_eq!(stream.resumed, 1);
    assert_eq!(host.stream(refused).responses[0].status, 401);
    assert_eq!(host.stream(refused).resumed, 0);
    assert!(host.stream(ended).responses.is_empty());
    assert_eq!(
        host.effective,
        Some(ContextId(1)),
        "effective context restored"
    );
}
