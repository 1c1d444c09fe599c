//! Reads the configuration document, already parsed into a `serde_json::Value`, one object at a
//! time, tracking each field's path so that every error can name it
//! (`providers.okta.remote_jwks.http_uri.timeout`, `bypass_paths[0]`).
//!
//! An [`Obj`] records the keys it was asked for, and [`Obj::finish`] fails on the first key that
//! was never asked for: a typo is never silently ignored, and each field name is written once,
//! where it is read.

use serde_json::{Map, Value};

use super::error::{err, ConfigError};

/// A JSON object at a known path.
pub struct Obj<'a> {
    path: String,
    /// `None` for an absent object read as empty (see [`Obj::object_or_empty`]).
    map: Option<&'a Map<String, Value>>,
    /// The keys read so far, in reading order: the fields this object may have.
    read: Vec<&'static str>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(path: String, what: &str, got: &Value) -> ConfigError {
    err(path, format!("expected {what}, found {}", type_name(got)))
}

impl<'a> Obj<'a> {
    /// The document itself, whose fields have paths without a prefix.
    pub fn root(document: &'a Value) -> Result<Obj<'a>, ConfigError> {
        Obj::new(String::new(), document)
    }

    fn new(path: String, value: &'a Value) -> Result<Obj<'a>, ConfigError> {
        match value {
            Value::Object(map) => Ok(Obj {
                path,
                map: Some(map),
                read: Vec::new(),
            }),
            other => Err(expected(path, "an object", other)),
        }
    }

    /// The path of this object (`providers.okta`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of a field of this object (`providers.okta.issuer`).
    pub fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Fails on the first key (in name order) that was never read, listing those that were.
    /// Call it once every field has been read and before checking any field that is required
    /// or depends on another, so that a misspelt field is reported as unknown rather than as
    /// missing. A field with a default may be checked as it is read: misspelt, it is absent.
    pub fn finish(&self) -> Result<(), ConfigError> {
        let mut keys = self.map.into_iter().flat_map(Map::keys);
        match keys.find(|k| !self.read.contains(&k.as_str())) {
            Some(k) => Err(err(
                self.at(k),
                format!("unknown field, expected one of: {}", self.read.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// Marks `key` as read and returns its value; null counts as absent.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        if !self.read.contains(&key) {
            self.read.push(key);
        }
        self.map
            .and_then(|map| map.get(key))
            .filter(|v| !v.is_null())
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(expected(self.at(key), "a string", other)),
        }
    }

    pub fn boolean(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(expected(self.at(key), "a boolean", other)),
        }
    }

    pub fn number(&mut self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| expected(self.at(key), "a non-negative integer", v)),
        }
    }

    pub fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(expected(self.at(key), "an array of strings", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(expected(
                    format!("{}[{i}]", self.at(key)),
                    "a string",
                    other,
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub fn object(&mut self, key: &'static str) -> Result<Option<Obj<'a>>, ConfigError> {
        self.get(key).map(|v| Obj::new(self.at(key), v)).transpose()
    }

    /// An object whose fields all have defaults: absent, it reads as `{}`.
    pub fn object_or_empty(&mut self, key: &'static str) -> Result<Obj<'a>, ConfigError> {
        Ok(self.object(key)?.unwrap_or_else(|| Obj {
            path: self.at(key),
            map: None,
            read: Vec::new(),
        }))
    }

    /// An array of objects, each with its index in its path.
    pub fn objects(&mut self, key: &'static str) -> Result<Vec<Obj<'a>>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(expected(self.at(key), "an array", value));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| Obj::new(format!("{}[{i}]", self.at(key)), item))
            .collect()
    }

    /// An object used as a map from names to objects (`providers`), in name order (serde_json's
    /// map is ordered by key). Every name is taken, so the map itself needs no `finish`.
    pub fn entries(&mut self, key: &'static str) -> Result<Vec<(String, Obj<'a>)>, ConfigError> {
        let Some(inner) = self.object(key)? else {
            return Ok(Vec::new());
        };
        inner
            .map
            .into_iter()
            .flatten()
            .map(|(name, value)| Ok((name.clone(), Obj::new(inner.at(name), value)?)))
            .collect()
    }

    /// Any JSON value (a claim condition's `equals`); `None` when absent or null.
    pub fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.get(key)
    }

    /// An object used as a map from names to arrays of strings (`scope_implies`), in name
    /// order.
    pub fn string_list_entries(
        &mut self,
        key: &'static str,
    ) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
        let Some(inner) = self.object(key)? else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        for (name, value) in inner.map.into_iter().flatten() {
            let Value::Array(items) = value else {
                return Err(expected(inner.at(name), "an array of strings", value));
            };
            let list = items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(expected(
                        format!("{}[{i}]", inner.at(name)),
                        "a string",
                        other,
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            entries.push((name.clone(), list));
        }
        Ok(entries)
    }

    /// An object used as a map from names to strings (`extra_params`), in name order.
    pub fn string_entries(
        &mut self,
        key: &'static str,
    ) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(inner) = self.object(key)? else {
            return Ok(Vec::new());
        };
        inner
            .map
            .into_iter()
            .flatten()
            .map(|(name, value)| match value {
                Value::String(s) => Ok((name.clone(), s.clone())),
                other => Err(expected(inner.at(name), "a string", other)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_and_types() {
        let doc = json!({"a": {"b": [{"c": 1}], "s": "x", "n": -1}, "list": ["x", 2]});
        let mut root = Obj::root(&doc).unwrap();
        let mut a = root.object("a").unwrap().unwrap();
        assert_eq!(a.at("s"), "a.s");
        let mut items = a.objects("b").unwrap();
        assert_eq!(items[0].number("c").unwrap(), Some(1));
        assert_eq!(items[0].string("c").unwrap_err().path, "a.b[0].c");
        assert_eq!(a.number("n").unwrap_err().path, "a.n");
        assert_eq!(root.strings("list").unwrap_err().path, "list[1]");
        assert!(Obj::root(&json!([])).is_err());
    }

    #[test]
    fn an_unread_key_is_reported_with_its_path_and_the_keys_that_were_read() {
        let doc = json!({"b": 1, "n": 2, "s": "x"});
        let mut o = Obj::root(&doc).unwrap();
        o.string("s").unwrap();
        o.number("b").unwrap();
        o.number("absent").unwrap();
        let e = o.finish().unwrap_err();
        assert_eq!(e.path, "n");
        assert_eq!(e.problem, "unknown field, expected one of: s, b, absent");
        o.number("n").unwrap();
        assert_eq!(o.finish(), Ok(()));
    }

    #[test]
    fn a_key_read_twice_is_listed_once_and_null_counts_as_read() {
        let doc = json!({"a": null, "z": 1});
        let mut o = Obj::root(&doc).unwrap();
        assert_eq!(o.string("a").unwrap(), None);
        assert_eq!(o.string("a").unwrap(), None);
        let e = o.finish().unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.problem.as_str()),
            ("z", "unknown field, expected one of: a")
        );
    }

    #[test]
    fn an_unread_key_with_a_null_value_is_still_unknown() {
        let doc = json!({"typo": null});
        let o = Obj::root(&doc).unwrap();
        assert_eq!(o.finish().unwrap_err().path, "typo");
    }

    #[test]
    fn nested_objects_report_their_own_unread_keys() {
        let doc = json!({"outer": {"inner": {"known": 1, "extra": 2}}});
        let mut root = Obj::root(&doc).unwrap();
        let mut outer = root.object("outer").unwrap().unwrap();
        let mut inner = outer.object("inner").unwrap().unwrap();
        inner.number("known").unwrap();
        assert_eq!(root.finish(), Ok(()));
        assert_eq!(outer.finish(), Ok(()));
        let e = inner.finish().unwrap_err();
        assert_eq!(e.path, "outer.inner.extra");
        assert_eq!(e.problem, "unknown field, expected one of: known");
    }

    #[test]
    fn objects_in_arrays_report_unread_keys_with_their_index() {
        let doc = json!({"list": [{"k": 1}, {"k": 2, "x": 3}]});
        let mut root = Obj::root(&doc).unwrap();
        let mut items = root.objects("list").unwrap();
        for item in &mut items {
            item.number("k").unwrap();
        }
        assert_eq!(items[0].finish(), Ok(()));
        assert_eq!(items[1].finish().unwrap_err().path, "list[1].x");
    }

    #[test]
    fn objects_in_maps_report_unread_keys_under_their_name() {
        let doc = json!({"providers": {"okta": {"issuer": "i", "isuer": "j"}}});
        let mut root = Obj::root(&doc).unwrap();
        let mut providers = root.entries("providers").unwrap();
        let (name, p) = &mut providers[0];
        assert_eq!(name, "okta");
        p.string("issuer").unwrap();
        let e = p.finish().unwrap_err();
        assert_eq!(e.path, "providers.okta.isuer");
        assert_eq!(e.problem, "unknown field, expected one of: issuer");
        assert_eq!(root.finish(), Ok(()));
    }

    #[test]
    fn an_absent_object_reads_as_empty() {
        let doc = json!({});
        let mut root = Obj::root(&doc).unwrap();
        let mut cache = root.object_or_empty("cache").unwrap();
        assert_eq!(cache.at("ttl"), "cache.ttl");
        assert_eq!(cache.string("ttl").unwrap(), None);
        assert_eq!(cache.finish(), Ok(()));
        assert_eq!(root.finish(), Ok(()));
        let doc = json!({"cache": 1});
        assert_eq!(
            Obj::root(&doc)
                .unwrap()
                .object_or_empty("cache")
                .err()
                .map(|e| e.path),
            Some("cache".to_string())
        );
    }
}
