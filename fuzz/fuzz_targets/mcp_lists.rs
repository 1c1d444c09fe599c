//! `core::mcp::lists::filter_response` and `core::mcp::sse::SseFilter` on arbitrary bytes.
//! Input: a byte choosing where the stream is split in two, a byte choosing the event size
//! limit, then the body, fed as it is and wrapped in a `tools/list` result (so that mutations
//! reach the entries). Checked: no panic; no response to a pending list shows an entry that
//! `allowed` refuses, in the body or in any event a client (even a lenient one) would read;
//! valid JSON stays valid; with no list pending the stream passes byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_auth_core::mcp::lists::{filter_response, ListKind, PendingList};
use mcp_auth_core::mcp::sse::SseFilter;
use serde_json::{json, Value};

const BOM: &[u8] = "\u{feff}".as_bytes();

fn pending() -> Vec<PendingList> {
    vec![
        PendingList {
            id: json!(1),
            kind: ListKind::Tools,
        },
        PendingList {
            id: json!("a"),
            kind: ListKind::Prompts,
        },
        PendingList {
            id: json!(2),
            kind: ListKind::Resources,
        },
    ]
}

fn allowed(_: ListKind, name: &str) -> bool {
    name.starts_with('a')
}

/// Ids as clients match them: numbers by value, strings exactly.
fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => a == b,
    }
}

fn parse(bytes: &[u8]) -> Option<Value> {
    let text = String::from_utf8_lossy(bytes);
    serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text)).ok()
}

/// Every response in `bytes` that answers a pending list shows only allowed entries.
fn assert_only_allowed(bytes: &[u8], pending: &[PendingList]) {
    let Some(value) = parse(bytes) else {
        return;
    };
    let responses: Vec<&Value> = match &value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for response in responses {
        let Some(id) = response.get("id") else {
            continue;
        };
        for list in pending.iter().filter(|list| same_id(&list.id, id)) {
            let result = response.get("result");
            let Some(entries) = result.and_then(|r| r.get(list.kind.entries_member())) else {
                continue;
            };
            let entries = entries
                .as_array()
                .expect("a list that is not an array got out");
            for entry in entries {
                let name = entry.get(list.kind.name_member()).and_then(Value::as_str);
                assert!(
                    name.is_some_and(|name| allowed(list.kind, name)),
                    "refused entry {entry} got out"
                );
            }
        }
    }
}

fn check_body(body: &[u8], pending: &[PendingList]) {
    match filter_response(body, pending, &allowed) {
        None => assert_only_allowed(body, pending),
        Some(filtered) => {
            assert_only_allowed(&filtered, pending);
            if parse(body).is_some() {
                assert!(parse(&filtered).is_some(), "valid JSON came out invalid");
            }
        }
    }
}

/// The messages a lenient client reads from an event stream (HTML "event stream"
/// interpretation, plus an unterminated last event).
fn messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let stream = stream.strip_prefix(BOM).unwrap_or(stream);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\r' => {
                lines.push(&stream[start..i]);
                if stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            b'\n' => {
                lines.push(&stream[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    lines.push(&stream[start..]);
    let mut messages = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    for line in lines {
        if line.is_empty() {
            messages.extend(data.take());
            continue;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], &line[colon + 1..]),
            None => (line, &[][..]),
        };
        if field != b"data" {
            continue;
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        match data.as_mut() {
            Some(data) => {
                data.push(b'\n');
                data.extend_from_slice(value);
            }
            None => data = Some(value.to_vec()),
        }
    }
    messages.extend(data);
    messages
}

fn stream(input: &[u8], split: usize, max_event_bytes: usize, pending: &[PendingList]) -> Vec<u8> {
    let (head, tail) = input.split_at(split.min(input.len()));
    let mut filter = SseFilter::new(max_event_bytes);
    let mut out = filter.push(head, false, pending, &allowed);
    out.extend(filter.push(tail, true, pending, &allowed));
    out
}

fn check_stream(input: &[u8], split: usize, max_event_bytes: usize) {
    let pending = pending();
    for message in messages(&stream(input, split, max_event_bytes, &pending)) {
        assert_only_allowed(&message, &pending);
    }
    assert_eq!(stream(input, split, max_event_bytes, &[]), input);
}

fuzz_target!(|data: &[u8]| {
    let [split, limit, body @ ..] = data else {
        return;
    };
    let split = usize::from(*split) * body.len() / 255;
    let max_event_bytes = 16 + usize::from(*limit) * 8;
    let pending = pending();
    let mut wrapped = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":["#.to_vec();
    wrapped.extend_from_slice(body);
    wrapped.extend_from_slice(b"]}}");
    let mut event = b"data: ".to_vec();
    event.extend_from_slice(&wrapped);
    event.extend_from_slice(b"\n\n");
    for input in [body, &wrapped] {
        check_body(input, &pending);
    }
    for input in [body, &event] {
        check_stream(input, split, max_event_bytes);
    }
});
