//! One pass over a JSON-RPC response body that finds what list filtering needs, with exact
//! spans. The levels down to the entries (the batch, each response, its `result`, the entries
//! array) are read here, strictly by the JSON grammar; every value below them (an entry, an id,
//! any other member) is read by serde_json, which says where it ended. So each byte is read once
//! (a large list costs one serde_json pass), and a body that is not JSON is refused whole.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::entry::{EntryNames, Key};
use super::ListKind;

pub(super) struct Response<'a> {
    /// Where the response object lies in the body.
    pub span: Range<usize>,
    /// Its member names, in order.
    pub keys: Vec<Key<'a>>,
    pub ids: Vec<&'a RawValue>,
    /// The last `result` (a repeated one shows in `keys`).
    pub result: Option<Shape<ResultObject<'a>>>,
}

/// A value of the shape we look for, or of any other.
pub(super) enum Shape<T> {
    Expected(T),
    Other,
}

pub(super) struct ResultObject<'a> {
    pub keys: Vec<Key<'a>>,
    /// The members holding a list's entries, in order.
    pub lists: Vec<(ListKind, Shape<Vec<Entry>>)>,
}

pub(super) struct Entry {
    pub span: Range<usize>,
    pub names: EntryNames,
}

/// The response objects of a body (one, or those of a batch); `None` when it is not JSON.
pub(super) fn responses(json: &str) -> Option<Vec<Response<'_>>> {
    let mut cursor = Cursor { text: json, at: 0 };
    let responses = match cursor.peek()? {
        b'{' => vec![response(&mut cursor)?],
        b'[' => {
            let mut responses = Vec::new();
            cursor.array(|cursor| {
                if cursor.peek()? == b'{' {
                    responses.push(response(cursor)?);
                } else {
                    cursor.skip_value()?;
                }
                Some(())
            })?;
            responses
        }
        _ => return None,
    };
    // Nothing but whitespace may follow.
    cursor.peek().is_none().then_some(responses)
}

fn response<'a>(cursor: &mut Cursor<'a>) -> Option<Response<'a>> {
    cursor.skip_whitespace();
    let start = cursor.at;
    let mut ids = Vec::new();
    let mut result = None;
    let keys = cursor.object(|cursor, key| {
        if key.is("id") {
            ids.push(cursor.value::<&RawValue>()?.0);
        } else if key.is("result") {
            result = Some(result_object(cursor)?);
        } else {
            cursor.skip_value()?;
        }
        Some(())
    })?;
    Some(Response {
        span: start..cursor.at,
        keys,
        ids,
        result,
    })
}

fn result_object<'a>(cursor: &mut Cursor<'a>) -> Option<Shape<ResultObject<'a>>> {
    if cursor.peek()? != b'{' {
        cursor.skip_value()?;
        return Some(Shape::Other);
    }
    let mut lists = Vec::new();
    let keys = cursor.object(|cursor, key| {
        let kind = ListKind::ALL
            .iter()
            .copied()
            .find(|kind| key.is(kind.entries_member()));
        match kind {
            Some(kind) => lists.push((kind, entries(cursor)?)),
            None => {
                cursor.skip_value()?;
            }
        }
        Some(())
    })?;
    Some(Shape::Expected(ResultObject { keys, lists }))
}

fn entries(cursor: &mut Cursor) -> Option<Shape<Vec<Entry>>> {
    if cursor.peek()? != b'[' {
        cursor.skip_value()?;
        return Some(Shape::Other);
    }
    let mut entries = Vec::new();
    cursor.array(|cursor| {
        // An entry that is not an object has no names.
        let (names, span) = if cursor.peek()? == b'{' {
            cursor.value::<EntryNames>()?
        } else {
            (EntryNames::default(), cursor.skip_value()?)
        };
        entries.push(Entry { span, names });
        Some(())
    })?;
    Some(Shape::Expected(entries))
}

/// A position in the body, moved forward by the grammar's punctuation and by serde_json.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.as_bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte that is not whitespace.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.as_bytes().get(self.at).copied()
    }

    /// Steps over `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.at += 1;
        }
        next
    }

    /// The value that comes next, read by serde_json, and where it lay.
    fn value<T: Deserialize<'a>>(&mut self) -> Option<(T, Range<usize>)> {
        self.skip_whitespace();
        let start = self.at;
        let rest = self.text.get(start..)?;
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        let value = values.next()?.ok()?;
        self.at = start.checked_add(values.byte_offset())?;
        Some((value, start..self.at))
    }

    /// Steps over the value that comes next (as raw text: one reader for every value skipped,
    /// which keeps the .wasm small).
    fn skip_value(&mut self) -> Option<Range<usize>> {
        Some(self.value::<&RawValue>()?.1)
    }

    /// An object, each member's value read by `member` (given the cursor at the value).
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &Key<'a>) -> Option<()>,
    ) -> Option<Vec<Key<'a>>> {
        if !self.eat(b'{') {
            return None;
        }
        let mut keys = Vec::new();
        if self.eat(b'}') {
            return Some(keys);
        }
        loop {
            // serde_json would also take an array of bytes for a key.
            if self.peek()? != b'"' {
                return None;
            }
            let (key, _) = self.value::<Key>()?;
            if !self.eat(b':') {
                return None;
            }
            member(self, &key)?;
            keys.push(key);
            if self.eat(b'}') {
                return Some(keys);
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// An array, each element read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        if self.eat(b']') {
            return Some(());
        }
        loop {
            element(self)?;
            if self.eat(b']') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(json: &str) -> Option<Vec<(Range<usize>, usize)>> {
        let responses = responses(json)?;
        Some(
            responses
                .iter()
                .map(|r| (r.span.clone(), r.keys.len()))
                .collect(),
        )
    }

    #[test]
    fn reads_exactly_the_json_grammar() {
        assert_eq!(shape_of(r#" {"a":1, "b" : [2]} "#), Some(vec![(1..19, 2)]));
        assert_eq!(
            shape_of(r#"[ {} , 1, "x", {"id":null} ]"#),
            Some(vec![(2..4, 0), (15..26, 1)])
        );
        assert_eq!(shape_of("[]"), Some(vec![]));
        for not_json in [
            "",
            " ",
            "{",
            "}",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{1:2}"#,
            r#"{[97]:1}"#,
            r#"{"a":1 "b":2}"#,
            "[,]",
            "[1,]",
            "[1 2]",
            "{} {}",
            "{}x",
            r#"{"a":01}"#,
            r#"{"a":1x}"#,
            r#"{"result":{"tools":[{"name":"a"},]}}"#,
            r#"{"result":{"tools":[}}"#,
            "{\"a\":\"\u{1}\"}",
            "\u{a0}{}",
        ] {
            assert_eq!(shape_of(not_json), None, "{not_json:?}");
        }
    }

    #[test]
    fn finds_ids_results_and_entries_with_their_spans() {
        let json = r#"{"id":7,"result":{"tools":[ {"name":"a"} , 5 ],"prompts":"x"},"id":"s"}"#;
        let responses = responses(json).unwrap();
        let [response] = responses.as_slice() else {
            panic!()
        };
        let ids: Vec<&str> = response.ids.iter().map(|id| id.get()).collect();
        assert_eq!(ids, ["7", r#""s""#]);
        let Some(Shape::Expected(result)) = &response.result else {
            panic!()
        };
        let [(ListKind::Tools, Shape::Expected(tools)), (ListKind::Prompts, Shape::Other)] =
            result.lists.as_slice()
        else {
            panic!()
        };
        let entries: Vec<(&str, Option<&str>)> = tools
            .iter()
            .map(|e| (json.get(e.span.clone()).unwrap(), e.names.get("name")))
            .collect();
        assert_eq!(entries, [(r#"{"name":"a"}"#, Some("a")), ("5", None)]);
    }
}
