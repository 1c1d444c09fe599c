//! Filtering MCP list results (`tools/list`, `prompts/list`, `resources/list`) so that they show
//! only the entries this caller's `tools/call` / `prompts/get` / `resources/read` would be
//! allowed.
//!
//! Calls are enforced on the request side; this is least disclosure on top of it, and the
//! upstream's answer is not a decision input. So a body that is not JSON passes unchanged (a
//! client cannot read a list from it either), but whatever is read as a list is filtered
//! fail-closed: an entry we cannot name is removed, and a list result we cannot filter
//! (duplicate members, entries that are not an array) is replaced by a JSON-RPC error. Only the
//! refused entries are cut out of the body; every other byte (formatting, member order,
//! escapes, `nextCursor`) stays as the server wrote it.

mod entry;
mod read;

use std::borrow::Cow;
use std::ops::Range;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::NamedMethod;
use entry::Key;
use read::{Entry, Response, Shape};

listed_enum! {
    /// Which list a JSON-RPC request asked for (labelled by its method), and the call its
    /// entries lead to.
    pub enum ListKind {
        Tools = "tools/list",
        Prompts = "prompts/list",
        Resources = "resources/list",
    }
}

impl ListKind {
    pub fn of_method(method: &str) -> Option<ListKind> {
        ListKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.label() == method)
    }

    /// The call an entry of this list leads to, whose rules decide whether it is shown.
    pub fn call(self) -> NamedMethod {
        match self {
            ListKind::Tools => NamedMethod::ToolsCall,
            ListKind::Prompts => NamedMethod::PromptsGet,
            ListKind::Resources => NamedMethod::ResourcesRead,
        }
    }

    /// The member of `result` holding the entries.
    pub fn entries_member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
        }
    }

    /// The member of an entry naming it: what the call's `params` carry.
    pub fn name_member(self) -> &'static str {
        self.call().name_member()
    }
}

/// A list request whose response is still to come: its JSON-RPC id as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingList {
    pub id: Value,
    pub kind: ListKind,
}

/// What replaces a list result that cannot be filtered.
pub const UNFILTERABLE_ERROR: &str =
    r#"{"code":-32603,"message":"list result could not be filtered"}"#;

/// A JSON-RPC error response to `id_json` (JSON text) saying the list could not be filtered.
pub fn unfilterable_response(id_json: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id_json},"error":{UNFILTERABLE_ERROR}}}"#)
}

/// Whether a response's id (its JSON text) answers a request's, as clients match them: strings
/// exactly (after unescaping), numbers by value (`1` and `1.0` are one id to JavaScript and
/// Python; beyond 2^53 this may match more ids, which only filters more), a string never a
/// number.
fn answers(request: &Value, response: &RawValue) -> bool {
    let id = response.get();
    match request {
        Value::String(expected) => {
            serde_json::from_str::<String>(id).is_ok_and(|id| id == *expected)
        }
        Value::Number(expected) => {
            serde_json::from_str::<f64>(id).is_ok_and(|id| expected.as_f64() == Some(id))
        }
        Value::Null => id == "null",
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Filters one JSON-RPC response body (a response object or a batch array) for the list
/// requests in `pending`: entries whose name `allowed(kind, name)` refuses are removed. `None`
/// when nothing changed, so that the caller leaves the body alone.
pub fn filter_response(
    body: &[u8],
    pending: &[PendingList],
    allowed: &dyn Fn(ListKind, &str) -> bool,
) -> Option<Vec<u8>> {
    if pending.is_empty() {
        return None;
    }
    // Decoded as clients decode it (invalid UTF-8 replaced, a leading BOM ignored), so that a
    // list they can read is a list we filter.
    let text = match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(body),
    };
    let (bom, json) = match text.strip_prefix('\u{feff}') {
        Some(json) => ("\u{feff}", json),
        None => ("", text.as_ref()),
    };
    let filter = Filter { pending, allowed };
    let mut edits = Vec::new();
    for response in read::responses(json)? {
        edits.extend(filter.response(&response));
    }
    if edits.is_empty() {
        return None;
    }
    let filtered = splice(bom, json, &edits)
        // Cannot happen (the spans come from reading `json`); if it did, no list gets out.
        .unwrap_or_else(|| unfilterable_response("null"));
    Some(filtered.into_bytes())
}

/// A replacement of `json[range]`.
type Edit = (Range<usize>, Cow<'static, str>);

/// A list result that cannot be filtered: the whole response is replaced by an error.
struct Unfilterable;

struct Filter<'a> {
    pending: &'a [PendingList],
    allowed: &'a dyn Fn(ListKind, &str) -> bool,
}

impl Filter<'_> {
    /// The edits for one response object.
    fn response(&self, response: &Response) -> Vec<Edit> {
        let answered = |kind: ListKind| {
            self.pending
                .iter()
                .filter(|list| list.kind == kind)
                .find_map(|list| response.ids.iter().find(|id| answers(&list.id, id)))
                .copied()
        };
        let kinds: Vec<(ListKind, &RawValue)> = ListKind::ALL
            .iter()
            .filter_map(|&kind| Some((kind, answered(kind)?)))
            .collect();
        let Some((_, id)) = kinds.first() else {
            return Vec::new();
        };
        match self.result_edits(response, &kinds) {
            Ok(edits) => edits,
            Err(Unfilterable) => vec![(
                response.span.clone(),
                unfilterable_response(id.get()).into(),
            )],
        }
    }

    /// The edits inside `result` for the lists `kinds` this response answers.
    fn result_edits(
        &self,
        response: &Response,
        kinds: &[(ListKind, &RawValue)],
    ) -> Result<Vec<Edit>, Unfilterable> {
        // A duplicate on the way to the entries (`id`, `result`, `tools`, `nextCursor`, …) is a
        // parser differential: the client may read the copy that was not filtered.
        if has_duplicate(&response.keys) {
            return Err(Unfilterable);
        }
        let result = match &response.result {
            None => return Ok(Vec::new()),
            Some(Shape::Other) => return Err(Unfilterable),
            Some(Shape::Expected(result)) => result,
        };
        if has_duplicate(&result.keys) {
            return Err(Unfilterable);
        }
        let mut edits = Vec::new();
        for (kind, entries) in &result.lists {
            if !kinds.iter().any(|(answered, _)| answered == kind) {
                continue;
            }
            let Shape::Expected(entries) = entries else {
                return Err(Unfilterable);
            };
            let keep: Vec<bool> = entries
                .iter()
                .map(|entry| {
                    let name = entry.names.get(kind.name_member());
                    name.is_some_and(|name| (self.allowed)(*kind, name))
                })
                .collect();
            edits.extend(removals(entries, &keep).ok_or(Unfilterable)?);
        }
        Ok(edits)
    }
}

/// Whether two members have the same (unescaped) name.
fn has_duplicate(keys: &[Key]) -> bool {
    let mut names: Vec<&[u8]> = keys.iter().map(|key| key.0.as_ref()).collect();
    names.sort_unstable();
    names
        .windows(2)
        .any(|pair| matches!(pair, [a, b] if a == b))
}

/// Deletions of the refused entries of one array: each run of them with the separators after
/// it (or, for a run at the end, before it), so that the text around and between the kept
/// entries stays as it was.
fn removals(entries: &[Entry], keep: &[bool]) -> Option<Vec<Edit>> {
    let span = |index: usize| entries.get(index).map(|entry| &entry.span);
    let mut edits = Vec::new();
    let mut index = 0;
    while let Some(refused) = (index..keep.len()).find(|&i| keep.get(i) == Some(&false)) {
        let next_kept = (refused..keep.len()).find(|&i| keep.get(i) == Some(&true));
        let last = keep.len().checked_sub(1)?;
        let deleted = match (next_kept, refused.checked_sub(1)) {
            (Some(next), _) => span(refused)?.start..span(next)?.start,
            (None, Some(previous)) => span(previous)?.end..span(last)?.end,
            (None, None) => span(0)?.start..span(last)?.end,
        };
        edits.push((deleted, Cow::Borrowed("")));
        index = next_kept.unwrap_or(keep.len());
    }
    Some(edits)
}

/// `bom` and `json` with the edits applied; they come in document order, as they were found
/// (out of order, a `get` fails: no output rather than a wrong one).
fn splice(bom: &str, json: &str, edits: &[Edit]) -> Option<String> {
    let mut out = String::with_capacity(bom.len() + json.len());
    out.push_str(bom);
    let mut cursor = 0;
    for (range, replacement) in edits {
        out.push_str(json.get(cursor..range.start)?);
        out.push_str(replacement);
        cursor = range.end;
    }
    out.push_str(json.get(cursor..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;

    fn pending(id: Value, kind: ListKind) -> Vec<PendingList> {
        vec![PendingList { id, kind }]
    }

    fn starts_with_a(_: ListKind, name: &str) -> bool {
        name.starts_with('a')
    }

    fn filtered(body: &str, pending: &[PendingList]) -> Option<String> {
        filter_response(body.as_bytes(), pending, &starts_with_a)
            .map(|out| String::from_utf8(out).unwrap())
    }

    fn error_for(id: &str) -> String {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"list result could not be filtered"}}}}"#
        )
    }

    #[test]
    fn kinds_know_their_method_call_and_members() {
        assert_eq!(ListKind::of_method("tools/list"), Some(ListKind::Tools));
        assert_eq!(ListKind::of_method("prompts/list"), Some(ListKind::Prompts));
        assert_eq!(
            ListKind::of_method("resources/list"),
            Some(ListKind::Resources)
        );
        assert_eq!(ListKind::of_method("tools/call"), None);
        assert_eq!(ListKind::of_method("resources/templates/list"), None);
        let members: Vec<_> = ListKind::ALL
            .iter()
            .map(|k| (k.call().method(), k.entries_member(), k.name_member()))
            .collect();
        assert_eq!(
            members,
            [
                ("tools/call", "tools", "name"),
                ("prompts/get", "prompts", "name"),
                ("resources/read", "resources", "uri"),
            ]
        );
    }

    #[test]
    fn refused_entries_go_and_every_other_byte_stays() {
        let body = "{ \"jsonrpc\" : \"2.0\", \"id\" : 7,\n  \"result\": {\n    \"tools\": [\n      \
            {\"name\": \"alpha\", \"description\": \"caf\\u00e9\", \"inputSchema\": {\"x\": 1.0e0}},\n      \
            {\"name\": \"drop\"},\n      {\"description\": \"d\", \"name\": \"add\"}\n    ],\n    \
            \"nextCursor\": \"c\\/2\", \"_meta\": {\"k\": [1, 2]}\n  }\n}\n";
        let expected = "{ \"jsonrpc\" : \"2.0\", \"id\" : 7,\n  \"result\": {\n    \"tools\": [\n      \
            {\"name\": \"alpha\", \"description\": \"caf\\u00e9\", \"inputSchema\": {\"x\": 1.0e0}},\n      \
            {\"description\": \"d\", \"name\": \"add\"}\n    ],\n    \
            \"nextCursor\": \"c\\/2\", \"_meta\": {\"k\": [1, 2]}\n  }\n}\n";
        assert_eq!(
            filtered(body, &pending(json!(7), ListKind::Tools)).as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn a_list_with_nothing_refused_is_left_alone() {
        let body =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"alpha"},{"name":"avg"}]}}"#;
        assert_eq!(filtered(body, &pending(json!(1), ListKind::Tools)), None);
        assert_eq!(filtered(body, &[]), None);
    }

    #[test]
    fn only_responses_to_pending_list_ids_are_filtered() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"drop"}]}}"#;
        assert_eq!(filtered(body, &pending(json!(2), ListKind::Tools)), None);
        // A string is never a number, and the other way round.
        assert_eq!(filtered(body, &pending(json!("1"), ListKind::Tools)), None);
        let string_id = r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"drop"}]}}"#;
        assert_eq!(
            filtered(string_id, &pending(json!(1), ListKind::Tools)),
            None
        );
        // Only the entries of the list that was asked for.
        assert_eq!(filtered(body, &pending(json!(1), ListKind::Prompts)), None);
        let emptied = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;
        // Numbers compare by value, as clients compare them; strings after unescaping.
        assert_eq!(
            filtered(body, &pending(json!(1.0), ListKind::Tools)).as_deref(),
            Some(emptied)
        );
        let escaped = r#"{"jsonrpc":"2.0","id":"r\u0031","result":{"tools":[{"name":"drop"}]}}"#;
        let expected = r#"{"jsonrpc":"2.0","id":"r\u0031","result":{"tools":[]}}"#;
        assert_eq!(
            filtered(escaped, &pending(json!("r1"), ListKind::Tools)).as_deref(),
            Some(expected)
        );
        let null_id = r#"{"jsonrpc":"2.0","id":null,"result":{"tools":[{"name":"drop"}]}}"#;
        let expected = r#"{"jsonrpc":"2.0","id":null,"result":{"tools":[]}}"#;
        assert_eq!(
            filtered(null_id, &pending(Value::Null, ListKind::Tools)).as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn a_batch_has_only_its_pending_list_responses_filtered() {
        let body = r#"[ {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"drop"},{"name":"alpha"}],"nextCursor":"n"}},
            {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"drop"}]}},
            {"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"bad"},{"name":"ask"}]}},
            {"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"m"}}, 5 ]"#;
        let expected = r#"[ {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"alpha"}],"nextCursor":"n"}},
            {"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"drop"}]}},
            {"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"ask"}]}},
            {"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"m"}}, 5 ]"#;
        let lists = [
            PendingList {
                id: json!(1),
                kind: ListKind::Tools,
            },
            PendingList {
                id: json!(3),
                kind: ListKind::Prompts,
            },
            PendingList {
                id: json!(4),
                kind: ListKind::Tools,
            },
        ];
        assert_eq!(filtered(body, &lists).as_deref(), Some(expected));
    }

    #[test]
    fn names_are_decided_unescaped() {
        let seen = RefCell::new(Vec::new());
        let allowed = |kind: ListKind, name: &str| {
            seen.borrow_mut().push((kind, name.to_string()));
            name != "drop"
        };
        let body =
            r#"{"id":1,"result":{"tools":[{"na\u006de":"dr\u006fp"},{"name":"\u0064rop2"}]}}"#;
        let out = filter_response(
            body.as_bytes(),
            &pending(json!(1), ListKind::Tools),
            &allowed,
        );
        let expected = r#"{"id":1,"result":{"tools":[{"name":"\u0064rop2"}]}}"#;
        assert_eq!(out.as_deref(), Some(expected.as_bytes()));
        assert_eq!(
            *seen.borrow(),
            [
                (ListKind::Tools, "drop".to_string()),
                (ListKind::Tools, "drop2".to_string())
            ]
        );
    }

    #[test]
    fn entries_that_cannot_be_named_are_removed() {
        let body = r#"{"id":1,"result":{"tools":[{},{"name":5},{"name":null},"alpha",["alpha"],
            {"name":"alpha","name":"alpha"},{"name":"alpha","na\u006de":"alpha"},{"name":"a\ud800"},
            {"uri":"alpha"},{"name":"alpha"}]}}"#;
        let expected = r#"{"id":1,"result":{"tools":[{"name":"alpha"}]}}"#;
        assert_eq!(
            filtered(body, &pending(json!(1), ListKind::Tools)).as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn resources_are_named_by_uri_and_prompts_by_name() {
        let resources = r#"{"id":"r","result":{"resources":[{"uri":"a://x","name":"zzz"},{"uri":"file:///etc/passwd","name":"aaa"}]}}"#;
        let expected = r#"{"id":"r","result":{"resources":[{"uri":"a://x","name":"zzz"}]}}"#;
        assert_eq!(
            filtered(resources, &pending(json!("r"), ListKind::Resources)).as_deref(),
            Some(expected)
        );
        let prompts = r#"{"id":"p","result":{"prompts":[{"name":"zzz"},{"name":"ask"}],"tools":[{"name":"zzz"}]}}"#;
        let expected =
            r#"{"id":"p","result":{"prompts":[{"name":"ask"}],"tools":[{"name":"zzz"}]}}"#;
        assert_eq!(
            filtered(prompts, &pending(json!("p"), ListKind::Prompts)).as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn removing_every_entry_keeps_the_array_and_its_spacing() {
        let body = "{\"id\":1,\"result\":{\"tools\": [ {\"name\":\"x\"} ,\n {\"name\":\"y\"} ]}}";
        let expected = "{\"id\":1,\"result\":{\"tools\": [  ]}}";
        assert_eq!(
            filtered(body, &pending(json!(1), ListKind::Tools)).as_deref(),
            Some(expected)
        );
        let middle = "{\"id\":1,\"result\":{\"tools\":[{\"name\":\"a1\"} , {\"name\":\"x\"},\n{\"name\":\"a2\"}]}}";
        let expected = "{\"id\":1,\"result\":{\"tools\":[{\"name\":\"a1\"} , {\"name\":\"a2\"}]}}";
        assert_eq!(
            filtered(middle, &pending(json!(1), ListKind::Tools)).as_deref(),
            Some(expected)
        );
    }

    #[test]
    fn duplicate_members_on_the_way_to_the_entries_replace_the_result_by_an_error() {
        let lists = pending(json!(1), ListKind::Tools);
        for body in [
            r#"{"id":1,"result":{"tools":[],"tools":[{"name":"drop"}]}}"#,
            r#"{"id":1,"result":{"tools":[],"tool\u0073":[{"name":"drop"}]}}"#,
            r#"{"id":1,"result":{"tools":[]},"result":{"tools":[{"name":"drop"}]}}"#,
            r#"{"id":1,"id":1,"result":{"tools":[]}}"#,
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
            r#"{"id":1,"result":{"tools":[],"nextCursor":"a","nextCursor":"b"}}"#,
        ] {
            assert_eq!(filtered(body, &lists), Some(error_for("1")), "{body}");
        }
        // Either id may be the one the client reads: one answering a list request is enough.
        let two_ids = r#"{"id":9,"id":"x","result":{"tools":[{"name":"drop"}]}}"#;
        let lists = pending(json!("x"), ListKind::Tools);
        assert_eq!(filtered(two_ids, &lists), Some(error_for(r#""x""#)));
        // Duplicates in a response nobody is waiting for are not ours to judge.
        assert_eq!(filtered(two_ids, &pending(json!(2), ListKind::Tools)), None);
        // Inside a kept entry they do not matter for what is shown.
        let in_entry =
            r#"{"id":1,"result":{"tools":[{"name":"alpha","description":"a","description":"b"}]}}"#;
        assert_eq!(
            filtered(in_entry, &pending(json!(1), ListKind::Tools)),
            None
        );
    }

    #[test]
    fn a_list_result_of_the_wrong_shape_is_replaced_by_an_error() {
        let lists = pending(json!(1), ListKind::Tools);
        for body in [
            r#"{"id":1,"result":{"tools":{"name":"drop"}}}"#,
            r#"{"id":1,"result":{"tools":null}}"#,
            r#"{"id":1,"result":[{"name":"drop"}]}"#,
        ] {
            assert_eq!(filtered(body, &lists), Some(error_for("1")), "{body}");
        }
        let batch = r#"[{"id":2,"result":{}}, {"id":1,"result":{"tools":"x"}} ]"#;
        let expected = format!(r#"[{{"id":2,"result":{{}}}}, {} ]"#, error_for("1"));
        assert_eq!(filtered(batch, &lists), Some(expected));
    }

    #[test]
    fn responses_without_a_list_are_left_alone() {
        let lists = pending(json!(1), ListKind::Tools);
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            r#""just a string""#,
            "",
        ] {
            assert_eq!(filtered(body, &lists), None, "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_passes_unchanged() {
        let lists = pending(json!(1), ListKind::Tools);
        for body in [
            r#"{"id":1,"result":{"tools":[{"name":"drop"}]}"#,
            r#"{"id":1,"result":{"tools":[{"name":"drop"}]}} trailing"#,
            r#"{"id":1,"result":{"tools":[{"name":"drop"},]}}"#,
            "<html>502</html>",
        ] {
            assert_eq!(filtered(body, &lists), None, "{body}");
        }
    }

    #[test]
    fn a_list_is_read_as_clients_read_it() {
        let lists = pending(json!(1), ListKind::Tools);
        // A byte order mark, invalid UTF-8 and a lone surrogate elsewhere do not hide the list.
        let mut body = b"\xEF\xBB\xBF{\"id\":1,\"\\udc00\":0,\"result\":{\"tools\":[".to_vec();
        body.extend_from_slice(
            b"{\"name\":\"alpha\",\"description\":\"\xFF\"},{\"name\":\"drop\"}]}}",
        );
        let out =
            filter_response(&body, &lists, &starts_with_a).map(|o| String::from_utf8(o).unwrap());
        let expected = "\u{feff}{\"id\":1,\"\\udc00\":0,\"result\":{\"tools\":[{\"name\":\"alpha\",\"description\":\"\u{fffd}\"}]}}";
        assert_eq!(out.as_deref(), Some(expected));
    }

    #[test]
    fn deep_nesting_inside_an_entry_is_kept_and_filtered() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let body = format!(
            r#"{{"id":1,"result":{{"tools":[{{"name":"alpha","inputSchema":{deep}}},{{"name":"drop","inputSchema":{deep}}}]}}}}"#
        );
        let expected =
            format!(r#"{{"id":1,"result":{{"tools":[{{"name":"alpha","inputSchema":{deep}}}]}}}}"#);
        assert_eq!(
            filtered(&body, &pending(json!(1), ListKind::Tools)),
            Some(expected)
        );
    }
}
