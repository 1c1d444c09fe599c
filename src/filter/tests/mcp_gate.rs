//! The MCP gate in the worker: bodies buffered and judged before anything goes upstream,
//! per-tool backend tokens, step-up and denials, deadlines, and list results filtered on
//! their way back.

use serde_json::{json, Value};

use crate::filter::host::fake::FakeReply;
use crate::filter::tests::fixtures::*;
use crate::filter::worker::{BodyVerdict, Outcome, Verdict};

fn reader() -> String {
    token_with("alice", &["mcp:tools:call", "bigquery:read"], &["eng"])
}

fn response_json(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Respond(r) => serde_json::from_slice(&r.body).unwrap(),
        Outcome::Forward(_) => panic!("expected a refusal"),
    }
}

/// Answers the STS call `index` with `token` and returns the forwarding it led to.
fn exchange(rig: &mut Rig, index: usize, token: &str) -> crate::filter::worker::Forwarding {
    let call = rig.sent_to("sts").remove(index);
    let decided = rig.deliver(&call, FakeReply::status(200, &sts_answer(token)));
    forwarded(&decided[0].1).clone()
}

#[test]
fn an_allowed_tool_goes_upstream_with_a_backend_token_narrowed_to_it() {
    let mut rig = Rig::new(mcp_config());
    let (context, verdict) = rig.post(&reader(), &tools_call(1, "query_users"), 3);
    assert_eq!(verdict, Verdict::Parked, "waits for its exchange");
    let sts = rig.sent_to("sts");
    let form = String::from_utf8(sts[0].body.clone().unwrap()).unwrap();
    assert!(form.contains("scope=bigquery.readonly"), "{form}");
    let forward = exchange(&mut rig, 0, "read-token");
    assert_eq!(header(&forward, "authorization"), Some("Bearer read-token"));
    assert_eq!(rig.host.counter("mcp_auth.mcp.allowed.read"), 1);
    let _ = context;
}

#[test]
fn read_and_write_tools_get_two_tokens_each_cached() {
    let mut rig = Rig::new(mcp_config());
    let dba = token_with(
        "bob",
        &["mcp:tools:call", "bigquery:read", "bigquery:write"],
        &["dba"],
    );
    rig.post(&dba, &tools_call(1, "query_users"), 1);
    assert_eq!(
        header(&exchange(&mut rig, 0, "bob-read"), "authorization"),
        Some("Bearer bob-read")
    );
    rig.post(&dba, &tools_call(2, "drop_table"), 1);
    let form = String::from_utf8(rig.sent_to("sts")[1].body.clone().unwrap()).unwrap();
    assert!(form.contains("scope=bigquery.write"), "{form}");
    assert_eq!(
        header(&exchange(&mut rig, 1, "bob-write"), "authorization"),
        Some("Bearer bob-write")
    );
    // Both are cached: no third STS call for either.
    for (name, token) in [
        ("query_x", "Bearer bob-read"),
        ("drop_y", "Bearer bob-write"),
    ] {
        let (_, verdict) = rig.post(&dba, &tools_call(3, name), 1);
        assert_eq!(
            header(forwarded(&done(verdict)), "authorization"),
            Some(token)
        );
    }
    assert_eq!(rig.sent_to("sts").len(), 2);
}

#[test]
fn a_missing_scope_is_a_step_up_and_failed_claims_a_denial() {
    let mut rig = Rig::new(mcp_config());
    // A dba without the write scope: step up to exactly what drop_* needs.
    let dba = token_with("carol", &["mcp:tools:call", "bigquery:read"], &["dba"]);
    let (_, verdict) = rig.post(&dba, &tools_call(4, "drop_table"), 1);
    let outcome = done(verdict);
    let Outcome::Respond(r) = &outcome else {
        panic!("refused")
    };
    assert_eq!(r.status, 403);
    let challenge = &r
        .headers
        .iter()
        .find(|(n, _)| *n == "www-authenticate")
        .unwrap()
        .1;
    assert!(
        challenge.contains(r#"scope="mcp:tools:call bigquery:write""#),
        "{challenge}"
    );
    // Not a dba: no scope would help.
    let writer = token_with("dan", &["mcp:tools:call", "bigquery:write"], &["eng"]);
    let (_, verdict) = rig.post(&writer, &tools_call(5, "drop_table"), 1);
    let outcome = done(verdict);
    let body = response_json(&outcome);
    assert_eq!(body["id"], 5);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("drop_table"));
    assert_eq!(rig.host.counter("mcp_auth.mcp.denied.admins-only"), 2);
    assert!(
        rig.sent_to("sts").is_empty(),
        "nothing refused was exchanged"
    );
}

#[test]
fn nothing_reaches_the_upstream_before_the_whole_body_is_judged() {
    let mut rig = Rig::new(mcp_config());
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"query_a","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (_, verdict) = rig.post(&reader(), &big, 8);
    assert_eq!(status(&done(verdict)), 413);
    let dup = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"query_a","name":"drop_b"}}"#;
    let (_, verdict) = rig.post(&reader(), dup, 5);
    assert_eq!(status(&done(verdict)), 400);
    assert_eq!(rig.host.counter("mcp_auth.mcp.body_refused"), 2);
}

#[test]
fn a_body_that_never_ends_is_refused_at_its_deadline() {
    let mut rig = Rig::new(mcp_config());
    let (context, verdict) = rig.request_head_only(&reader());
    assert_eq!(verdict, Verdict::AwaitBody);
    rig.host.advance(10_000);
    let decided = rig.tick();
    assert_eq!(status(outcome_of(&decided, context)), 408);
}

#[test]
fn a_request_that_needs_keys_fetches_them_once_its_body_is_in() {
    let mut config = mcp_config();
    config["providers"]["idp"] = inbound_config()["providers"]["idp"].clone();
    let mut rig = Rig::new(config);
    let (_, verdict) = rig.post(&reader(), &tools_call(1, "query_users"), 2);
    assert_eq!(verdict, Verdict::Parked);
    let fetch = rig.sent_to("idp").remove(0);
    assert!(
        rig.deliver(&fetch, FakeReply::status(200, &good_jwks()))
            .is_empty(),
        "then the STS"
    );
    let forward = exchange(&mut rig, 0, "read-token");
    assert_eq!(header(&forward, "authorization"), Some("Bearer read-token"));
}

#[test]
fn tools_list_results_show_only_permitted_tools_json_and_sse() {
    let mut rig = Rig::new(mcp_config());
    let list = r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#;
    let result = json!({"jsonrpc": "2.0", "id": "l", "result": {"tools": [
        {"name": "query_users"}, {"name": "drop_table"}, {"name": "other"}],
        "nextCursor": "c2"}});
    // JSON: buffered whole, filtered, Content-Length corrected.
    let (context, verdict) = rig.post(&reader(), list, 1);
    let forward = match verdict {
        Verdict::Parked => exchange(&mut rig, 0, "list-token"),
        Verdict::Done(o) => forwarded(&o).clone(),
        Verdict::AwaitBody => panic!("body sent"),
    };
    let _ = forward;
    let (received, length) = rig.respond(
        context,
        "application/json",
        result.to_string().as_bytes(),
        3,
    );
    let shown: Value = serde_json::from_slice(&received).unwrap();
    assert_eq!(shown["result"]["tools"], json!([{"name": "query_users"}]));
    assert_eq!(shown["result"]["nextCursor"], "c2");
    assert_eq!(length, Some(received.len().to_string()));

    // SSE: event by event, no Content-Length.
    let (context, verdict) = rig.post(&reader(), list, 1);
    if let Verdict::Done(o) = &verdict {
        forwarded(o);
    }
    let stream = format!(
        "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\r\n\r\nevent: message\r\ndata: {result}\r\n\r\n"
    );
    let (received, length) = rig.respond(context, "text/event-stream", stream.as_bytes(), 7);
    let text = String::from_utf8(received).unwrap();
    assert!(text.contains("notifications/progress"), "{text}");
    assert!(text.contains("query_users"));
    assert!(
        !text.contains("drop_table") && !text.contains("\"other\""),
        "{text}"
    );
    assert_eq!(length, None);
    assert_eq!(rig.host.counter("mcp_auth.mcp.lists_filtered"), 2);
}

#[test]
fn trailers_end_the_body_and_never_resume_a_waiting_request() {
    let mut rig = Rig::new(mcp_config());
    let (context, verdict) = rig.request_head_only(&reader());
    assert_eq!(verdict, Verdict::AwaitBody);
    let body = tools_call(1, "query_users");
    rig.host.streams.get_mut(&context).unwrap().request_body = body.as_bytes().to_vec();
    rig.host.effective = Some(context);
    let chunk = rig
        .worker
        .on_request_body(&mut rig.host, context, body.len(), false);
    assert_eq!(chunk, BodyVerdict::Decided(Verdict::AwaitBody));
    // The body ends with trailers: it is judged then, and the request waits for its token.
    let trailers = rig.worker.on_request_trailers(&mut rig.host, context);
    assert_eq!(trailers, BodyVerdict::Decided(Verdict::Parked));
    let again = rig.worker.on_request_trailers(&mut rig.host, context);
    assert_eq!(
        again,
        BodyVerdict::Decided(Verdict::Parked),
        "still waiting"
    );
    let forward = exchange(&mut rig, 0, "read-token");
    assert_eq!(header(&forward, "authorization"), Some("Bearer read-token"));
}

#[test]
fn the_bodys_method_and_name_go_upstream_as_mirrors_and_forged_ones_never_do() {
    let mut rig = Rig::new(mcp_config());
    rig.post(&reader(), &tools_call(1, "query_users"), 1);
    let forward = exchange(&mut rig, 0, "read-token");
    assert_eq!(header(&forward, "mcp-method"), Some("tools/call"));
    assert_eq!(header(&forward, "mcp-name"), Some("query_users"));
    for mirror in ["mcp-method", "mcp-name"] {
        assert!(
            forward.remove.iter().any(|r| r == mirror),
            "{mirror} is replaced"
        );
    }
    // Without the gate configured the filter does not read bodies, and leaves them alone.
    let plain = exchange_config().to_string();
    let plain = mcp_auth_core::config::Config::from_json(plain.as_bytes()).unwrap();
    assert!(!plain.stripped_headers.iter().any(|r| r == "mcp-name"));
}
