//! `bypass_paths`: request paths served without a token (health checks, public pages).

use super::error::{err, ConfigError};
use super::reader::Obj;
use crate::request::is_plain_path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// One entry of `bypass_paths`: `{"exact": "/healthz"}` or `{"prefix": "/public/"}`.
pub(super) fn read_path_match(mut o: Obj) -> Result<PathMatch, ConfigError> {
    let exact = o.string("exact")?;
    let prefix = o.string("prefix")?;
    o.finish()?;
    let matcher = match (exact, prefix) {
        (Some(p), None) => PathMatch::Exact(p),
        (None, Some(p)) => PathMatch::Prefix(p),
        _ => return Err(err(o.path(), "give exactly one of exact or prefix")),
    };
    let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &matcher;
    if !p.starts_with('/') {
        return Err(err(o.path(), "must start with '/'"));
    }
    // A request path is matched only when it is plain (see `request::is_plain_path`): a rule
    // that is not could never match, or would invite encoded variants.
    if !is_plain_path(p) {
        return Err(err(
            o.path(),
            "must be a plain path: ASCII, no '%', ';', '\\', '#', '//' or dot segments",
        ));
    }
    Ok(matcher)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use super::*;
    use serde_json::json;

    #[test]
    fn bypass_paths_match_exactly_or_by_prefix() {
        let mut v = base();
        v["bypass_paths"] = json!([{"exact": "/healthz"}, {"prefix": "/public/"}]);
        let c = load(&v).unwrap();
        assert_eq!(
            c.bypass_paths,
            vec![
                PathMatch::Exact("/healthz".into()),
                PathMatch::Prefix("/public/".into())
            ]
        );
        assert!(c.bypass_paths[0].matches("/healthz"));
        assert!(!c.bypass_paths[0].matches("/healthz/x"));
        assert!(c.bypass_paths[1].matches("/public/a"));
        assert!(!c.bypass_paths[1].matches("/publicity"));
    }

    #[test]
    fn a_bypass_path_is_exactly_one_absolute_path() {
        for (entry, problem) in [
            (json!({}), "give exactly one of exact or prefix"),
            (
                json!({"exact": "/a", "prefix": "/b"}),
                "give exactly one of exact or prefix",
            ),
            (json!({"prefix": "public"}), "must start with '/'"),
        ] {
            let mut v = base();
            v["bypass_paths"] = json!([{"exact": "/ok"}, entry]);
            let e = load(&v).unwrap_err();
            assert_eq!(
                (e.path.as_str(), e.problem.as_str()),
                ("bypass_paths[1]", problem)
            );
        }
    }
}
