//! Reads the configuration document as JSON values while tracking each field's path, so that
//! every error can name it (`providers.okta.remote_jwks.http_uri.timeout`, `bypass_paths[0]`).
//! Unknown fields are errors: a typo is never silently ignored.

use serde_json::{Map, Value};

use super::ConfigError;

/// A JSON object at a known path.
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

fn error(path: String, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        path,
        problem: problem.into(),
    }
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
    error(path, format!("expected {what}, found {}", type_name(got)))
}

impl<'a> Obj<'a> {
    pub fn new(path: String, value: &'a Value) -> Result<Obj<'a>, ConfigError> {
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            other => Err(expected(path, "an object", other)),
        }
    }

    /// The path of a field of this object.
    pub fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Fails on the first field not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ConfigError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(error(
                self.at(k),
                format!("unknown field, expected one of: {}", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(expected(self.at(key), "a string", other)),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(expected(self.at(key), "a boolean", other)),
        }
    }

    pub fn number(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| expected(self.at(key), "a non-negative integer", v)),
        }
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
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

    pub fn object(&self, key: &str) -> Result<Option<Obj<'a>>, ConfigError> {
        self.get(key).map(|v| Obj::new(self.at(key), v)).transpose()
    }

    /// An array of objects, each with its index in its path.
    pub fn objects(&self, key: &str) -> Result<Vec<Obj<'a>>, ConfigError> {
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
    /// map is ordered by key).
    pub fn entries(&self, key: &str) -> Result<Vec<(String, Obj<'a>)>, ConfigError> {
        let Some(inner) = self.object(key)? else {
            return Ok(Vec::new());
        };
        inner
            .map
            .iter()
            .map(|(name, value)| Ok((name.clone(), Obj::new(inner.at(name), value)?)))
            .collect()
    }

    /// An object used as a map from names to strings (`extra_params`), in name order.
    pub fn string_entries(&self, key: &str) -> Result<Vec<(String, String)>, ConfigError> {
        let Some(inner) = self.object(key)? else {
            return Ok(Vec::new());
        };
        inner
            .map
            .iter()
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
        let root = Obj::new(String::new(), &doc).unwrap();
        let a = root.object("a").unwrap().unwrap();
        assert_eq!(a.at("s"), "a.s");
        let items = a.objects("b").unwrap();
        assert_eq!(items[0].number("c").unwrap(), Some(1));
        assert_eq!(items[0].string("c").unwrap_err().path, "a.b[0].c");
        assert_eq!(a.number("n").unwrap_err().path, "a.n");
        assert_eq!(root.strings("list").unwrap_err().path, "list[1]");
        assert_eq!(a.only(&["b", "s"]).unwrap_err().path, "a.n");
        assert!(Obj::new(String::new(), &json!([])).is_err());
    }
}
