//! What serde_json reads inside a list result: member names, and the names an entry gives
//! itself. Unescaped, as the server and clients read them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The members naming an entry: `name` for tools and prompts, `uri` for resources.
pub(super) const NAME_MEMBERS: [&str; 2] = ["name", "uri"];

/// An unescaped member name, as bytes: serde_json reads a lone surrogate escape into bytes where
/// it would refuse it as a `String`, and JavaScript clients accept it, so the object stays
/// readable (such a key never equals a member we look for).
#[derive(Debug)]
pub(super) struct Key<'a>(pub Cow<'a, [u8]>);

impl Key<'_> {
    pub fn is(&self, member: &str) -> bool {
        self.0.as_ref() == member.as_bytes()
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(bytes)))
    }

    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(bytes.to_vec())))
    }
}

/// What an entry's members in `NAME_MEMBERS` hold.
#[derive(Debug, Default)]
pub(super) struct EntryNames([Name; NAME_MEMBERS.len()]);

#[derive(Debug, Default)]
enum Name {
    #[default]
    Missing,
    Text(String),
    /// Not a string, or given more than once: we cannot tell what the entry is.
    Unusable,
}

impl EntryNames {
    /// The entry's unescaped `member`; `None` when the entry is not an object, or the member is
    /// missing, repeated or not a string.
    pub fn get(&self, member: &str) -> Option<&str> {
        let index = NAME_MEMBERS.iter().position(|known| *known == member)?;
        match self.0.get(index)? {
            Name::Text(text) => Some(text),
            Name::Missing | Name::Unusable => None,
        }
    }
}

impl<'de> Deserialize<'de> for EntryNames {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = EntryNames;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list entry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EntryNames, A::Error> {
        let mut names = EntryNames::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = NAME_MEMBERS
                .iter()
                .position(|member| key.is(member))
                .and_then(|index| names.0.get_mut(index));
            // Every value is read as raw text: one reader, a smaller .wasm.
            let value: &RawValue = map.next_value()?;
            let Some(slot) = slot else {
                continue;
            };
            *slot = match (std::mem::take(slot), serde_json::from_str(value.get())) {
                (Name::Missing, Ok(text)) => Name::Text(text),
                _ => Name::Unusable,
            };
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::lists::ListKind;

    fn name_of(entry: &str, member: &str) -> Option<String> {
        let names: EntryNames = serde_json::from_str(entry).unwrap();
        names.get(member).map(str::to_string)
    }

    #[test]
    fn every_kind_is_named_by_a_member_read_here() {
        for kind in ListKind::ALL {
            assert!(NAME_MEMBERS.contains(&kind.name_member()), "{kind:?}");
        }
    }

    #[test]
    fn finds_the_name_among_any_members() {
        let entry = r#" { "description" : "a \"quoted\" {[ brace", "inputSchema": {"a": [1, {"name": "x"}], "b": "]}"},
            "n": -1.5e3, "t": true, "z": null, "e": [], "o": {}, "name" : "tool" } "#;
        assert_eq!(name_of(entry, "name").as_deref(), Some("tool"));
        let resource = r#"{"name":"x","uri":"file:///a"}"#;
        assert_eq!(name_of(resource, "uri").as_deref(), Some("file:///a"));
        assert_eq!(name_of(resource, "name").as_deref(), Some("x"));
        assert_eq!(name_of(resource, "title"), None);
    }

    #[test]
    fn names_and_keys_are_unescaped() {
        assert_eq!(
            name_of(r#"{"na\u006de":"dr\u006fp"}"#, "name").as_deref(),
            Some("drop")
        );
        assert_eq!(
            name_of(r#"{"name":"a\\\"b\/"}"#, "name").as_deref(),
            Some("a\\\"b/")
        );
        assert_eq!(
            name_of(r#"{"\"name\"":"quoted key","name":"n"}"#, "name").as_deref(),
            Some("n")
        );
        assert_eq!(
            name_of(r#"{"nam":"x","names":"y","Name":"z"}"#, "name"),
            None
        );
        assert_eq!(
            name_of(r#"{"\ud800":"x","name":"n"}"#, "name").as_deref(),
            Some("n")
        );
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
            r#"{"name":5,"name":"a"}"#,
            r#"{"name":"\ud800"}"#,
        ] {
            assert_eq!(name_of(entry, "name"), None, "{entry}");
        }
    }
}
