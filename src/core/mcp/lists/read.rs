//! One pass over a JSON-RPC response object that finds what list filtering needs, so that a
//! large result is read once (each entry then skimmed for its name): the envelope's member
//! names and ids, and in `result` the entries of each list as raw text with their names.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;

use super::entry_name::entry_name;
use super::ListKind;

pub(super) struct Response<'a> {
    pub keys: Vec<Key<'a>>,
    pub ids: Vec<&'a RawValue>,
    pub result: Option<Shape<ResultObject<'a>>>,
}

/// A value of the shape we look for, or of any other (read to its end all the same).
pub(super) enum Shape<T> {
    Expected(T),
    Other,
}

pub(super) struct ResultObject<'a> {
    pub keys: Vec<Key<'a>>,
    /// The members holding a list's entries, in document order.
    pub lists: Vec<(ListKind, Shape<Vec<Entry<'a>>>)>,
}

pub(super) struct Entry<'a> {
    /// The entry's JSON text, borrowed from the body.
    pub raw: &'a str,
    /// Its unescaped name; `None` when the entry is not an object, or its name member is
    /// missing, repeated or not a string: we cannot tell what it is.
    pub name: Option<String>,
}

/// Whether two members have the same (unescaped) name: a parser differential, since a client
/// may read the copy that was not filtered.
pub(super) fn has_duplicate(keys: &[Key]) -> bool {
    let mut names: Vec<&[u8]> = keys.iter().map(|key| key.0.as_ref()).collect();
    names.sort_unstable();
    names
        .windows(2)
        .any(|pair| matches!(pair, [a, b] if a == b))
}

impl<'de> Deserialize<'de> for Response<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResponseVisitor)
    }
}

struct ResponseVisitor;

impl<'de> Visitor<'de> for ResponseVisitor {
    type Value = Response<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut response = Response {
            keys: Vec::new(),
            ids: Vec::new(),
            result: None,
        };
        while let Some(key) = map.next_key::<Key>()? {
            match key.0.as_ref() {
                b"id" => response.ids.push(map.next_value()?),
                b"result" => response.result = Some(map.next_value_seed(ResultSeed)?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            response.keys.push(key);
        }
        Ok(response)
    }
}

/// The visits of every shape but the one a visitor looks for: `Shape::Other`.
macro_rules! other_scalars {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }

        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }

        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }

        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }

        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Shape::Other)
        }
    };
}

struct ResultSeed;

impl<'de> DeserializeSeed<'de> for ResultSeed {
    type Value = Shape<ResultObject<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed {
    type Value = Shape<ResultObject<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a result")
    }

    other_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut result = ResultObject {
            keys: Vec::new(),
            lists: Vec::new(),
        };
        while let Some(key) = map.next_key::<Key>()? {
            let kind = ListKind::ALL
                .iter()
                .copied()
                .find(|kind| key.0.as_ref() == kind.entries_member().as_bytes());
            match kind {
                Some(kind) => result
                    .lists
                    .push((kind, map.next_value_seed(EntriesSeed(kind))?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            result.keys.push(key);
        }
        Ok(Shape::Expected(result))
    }
}

struct EntriesSeed(ListKind);

impl<'de> DeserializeSeed<'de> for EntriesSeed {
    type Value = Shape<Vec<Entry<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Shape<Vec<Entry<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of entries")
    }

    other_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Shape::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(raw) = seq.next_element::<&RawValue>()? {
            // Named right away, while the entry is still in the cache.
            let raw = raw.get();
            entries.push(Entry {
                raw,
                name: entry_name(raw, self.0.name_member()),
            });
        }
        Ok(Shape::Expected(entries))
    }
}

/// An unescaped member name, as bytes: serde_json reads a lone surrogate escape into bytes where
/// it would refuse it as a `String`, and JavaScript clients accept it, so the object stays
/// readable (such a key never equals a member we look for).
pub(super) struct Key<'a>(pub Cow<'a, [u8]>);

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

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(text.as_bytes())))
    }

    fn visit_str<E>(self, text: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(text.as_bytes().to_vec())))
    }
}
