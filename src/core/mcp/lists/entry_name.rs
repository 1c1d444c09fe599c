//! The name of a list entry, read from its JSON text by a skim over its top-level members. The
//! text is a `RawValue` serde_json has already validated, so the skim only has to find where
//! members begin and end (strings, brackets, scalars) instead of reading the entry a second time
//! through serde: entries are most of a large list. Any surprise still ends in `None`.

use super::read::Key;

/// The unescaped string value of the top-level member `member` of the object `entry`; `None`
/// when `entry` is not an object, or the member is missing, repeated or not a string: we cannot
/// tell what the entry is.
pub(super) fn entry_name(entry: &str, member: &str) -> Option<String> {
    let bytes = entry.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at += 1;
    let mut named = Vec::new();
    loop {
        at = skip_whitespace(bytes, at);
        if bytes.get(at) == Some(&b'}') {
            break;
        }
        let key_end = string_end(bytes, at)?;
        let key = entry.get(at..key_end)?;
        at = skip_whitespace(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let value_start = skip_whitespace(bytes, at + 1);
        let value_end = value_end(bytes, value_start)?;
        if names(key, member) {
            named.push(entry.get(value_start..value_end)?);
        }
        at = skip_whitespace(bytes, value_end);
        match bytes.get(at)? {
            b',' => at += 1,
            b'}' => break,
            _ => return None,
        }
    }
    match named.as_slice() {
        [value] => serde_json::from_str::<String>(value).ok(),
        _ => None,
    }
}

/// Whether the raw member name `key` (with its quotes) is `member` once unescaped.
fn names(key: &str, member: &str) -> bool {
    if key.contains('\\') {
        serde_json::from_str::<Key>(key).is_ok_and(|key| key.0 == member.as_bytes())
    } else {
        key.strip_prefix('"').and_then(|k| k.strip_suffix('"')) == Some(member)
    }
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Just past the string opening at `at`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        i += run_before(bytes.get(i..)?, StopAt::StringEnd);
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            // A backslash: the escaped character cannot end the string.
            _ => i += 2,
        }
    }
}

/// Just past the value starting at `at`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                i += bytes.get(i..)?.iter().position(|&b| StopAt::Structure.byte(b))?;
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    _ => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                }
                i += 1;
            }
        }
        // A number, `true`, `false` or `null`: up to what follows it.
        _ => {
            let length = bytes
                .get(at..)?
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))?;
            Some(at + length)
        }
    }
}

/// The bytes a skim looks for.
#[derive(Debug, Clone, Copy)]
enum StopAt {
    /// In a string: `"` or `\\`.
    StringEnd,
    /// In an array or object: `"`, a bracket or a brace.
    Structure,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;
/// Setting bit 5 turns `[` into `{` and `]` into `}` (and leaves those two as they are).
const BIT_5: u64 = 0x2020_2020_2020_2020;

impl StopAt {
    fn byte(self, byte: u8) -> bool {
        match self {
            StopAt::StringEnd => matches!(byte, b'"' | b'\\'),
            StopAt::Structure => matches!(byte, b'"' | b'{' | b'[' | b'}' | b']'),
        }
    }

    /// A flag in the high bit of each byte of `word` this stops at (exact for the lowest one).
    fn word(self, word: u64) -> u64 {
        let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
        match self {
            StopAt::StringEnd => quotes | zero_bytes(word ^ (ONES * u64::from(b'\\'))),
            StopAt::Structure => {
                let folded = word | BIT_5;
                quotes
                    | zero_bytes(folded ^ (ONES * u64::from(b'{')))
                    | zero_bytes(folded ^ (ONES * u64::from(b'}')))
            }
        }
    }
}

/// How many bytes `bytes` starts with that `stop` does not stop at, read eight at a time:
/// strings and schemas are most of a list.
fn run_before(bytes: &[u8], stop: StopAt) -> usize {
    let mut run = 0;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let stops = stop.word(u64::from_le_bytes(word));
        if stops != 0 {
            // The lowest flag is exact (a false one can only sit above a true one).
            return run + (stops.trailing_zeros() / 8) as usize;
        }
        run += 8;
    }
    let tail = words.remainder();
    run + tail
        .iter()
        .position(|&byte| stop.byte(byte))
        .unwrap_or(tail.len())
}

/// The high bit of the lowest zero byte of `word` (and perhaps of bytes above it); 0 if none.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_name_among_any_members() {
        let entry = r#" { "description" : "a \"quoted\" {[ brace", "inputSchema": {"a": [1, {"name": "x"}], "b": "]}"},
            "n": -1.5e3, "t": true, "z": null, "e": [], "o": {}, "name" : "tool" } "#;
        assert_eq!(entry_name(entry, "name").as_deref(), Some("tool"));
        assert_eq!(
            entry_name(r#"{"name":"x","uri":"file:///a"}"#, "uri").as_deref(),
            Some("file:///a")
        );
        assert_eq!(
            entry_name(r#"{"n":1,"name":"last"}"#, "name").as_deref(),
            Some("last")
        );
        assert_eq!(
            entry_name(r#"{"name":"first","x":false}"#, "name").as_deref(),
            Some("first")
        );
    }

    #[test]
    fn names_and_keys_are_unescaped() {
        assert_eq!(
            entry_name(r#"{"na\u006de":"dr\u006fp"}"#, "name").as_deref(),
            Some("drop")
        );
        assert_eq!(
            entry_name(r#"{"name":"a\\\"b\/"}"#, "name").as_deref(),
            Some("a\\\"b/")
        );
        assert_eq!(
            entry_name(r#"{"x":"\\","name":"after a backslash"}"#, "name").as_deref(),
            Some("after a backslash")
        );
        assert_eq!(
            entry_name(r#"{"\"name\"":"quoted key","name":"n"}"#, "name").as_deref(),
            Some("n")
        );
        assert_eq!(
            entry_name(r#"{"nam":"x","names":"y","Name":"z"}"#, "name"),
            None
        );
    }

    #[test]
    fn runs_stop_at_the_first_byte_they_look_for() {
        for stop in [StopAt::StringEnd, StopAt::Structure] {
            for length in 0..20 {
                for (index, byte) in (0..=u8::MAX).cycle().take(length * 13).enumerate() {
                    // Every byte value at every position of a word, after and before others.
                    let bytes: Vec<u8> = (0..length)
                        .map(|i| {
                            if i == index % length.max(1) {
                                byte
                            } else {
                                b'a' ^ (i as u8 & 0x1c)
                            }
                        })
                        .collect();
                    let expected = bytes.iter().position(|&b| stop.byte(b)).unwrap_or(length);
                    assert_eq!(run_before(&bytes, stop), expected, "{stop:?} {bytes:?}");
                }
            }
        }
    }

    #[test]
    fn an_entry_that_cannot_be_named_has_no_name() {
        for entry in [
            "{}",
            r#"{"name":5}"#,
            r#"{"name":null}"#,
            r#"{"name":["a"]}"#,
            r#"{"name":{"name":"a"}}"#,
            r#"{"name":"a","name":"a"}"#,
            r#"{"name":"a","na\u006de":"b"}"#,
            r#"{"name":"\ud800"}"#,
            r#""name""#,
            r#"["name","a"]"#,
            "null",
            "",
            r#"{"name":"a""#,
            r#"{"name" "a"}"#,
            r#"{"x":1 "name":"a"}"#,
        ] {
            assert_eq!(entry_name(entry, "name"), None, "{entry}");
        }
    }
}
