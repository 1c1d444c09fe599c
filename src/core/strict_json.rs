//! JSON parsed strictly, for everything a decision depends on (tokens, MCP bodies,
//! introspection answers): no duplicate member at any depth — two parsers that keep different
//! duplicates are how a check is made to read one thing and a server another — nesting bounded
//! (serde_json's recursion limit), nothing after the value.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictJsonError {
    /// Not JSON, not UTF-8, nested too deeply, or trailing bytes.
    NotJson,
    /// The same member twice in one object, at any depth.
    DuplicateMember,
}

impl fmt::Display for StrictJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StrictJsonError::NotJson => "not JSON",
            StrictJsonError::DuplicateMember => "duplicate member",
        })
    }
}

impl std::error::Error for StrictJsonError {}

pub fn parse(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict::deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(DUPLICATE) {
            StrictJsonError::DuplicateMember
        } else {
            StrictJsonError::NotJson
        }
    })?;
    de.end().map_err(|_| StrictJsonError::NotJson)?;
    Ok(value.0)
}

/// `parse`, for a document that must be a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, StrictJsonError> {
    match parse(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotJson),
    }
}

const DUPLICATE: &str = "duplicate member";

/// A JSON value deserialized with a duplicate-member check in every object.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            let Strict(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_any_depth_and_trailing_bytes_are_refused() {
        assert_eq!(
            parse(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateMember)
        );
        assert_eq!(
            parse(br#"{"a":{"b":[{"c":1,"c":1}]}}"#),
            Err(StrictJsonError::DuplicateMember)
        );
        assert_eq!(parse(br#"{"a":1} x"#), Err(StrictJsonError::NotJson));
        assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::NotJson));
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        assert_eq!(parse(deep.as_bytes()), Err(StrictJsonError::NotJson));
        assert_eq!(
            parse(br#"{"a":[1,"x",null,true,1.5]}"#).unwrap()["a"][1],
            "x"
        );
    }
}
