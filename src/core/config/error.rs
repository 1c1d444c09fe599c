//! The one error type of configuration loading.

use std::fmt;

/// A configuration error: the path of the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where in the document, e.g. `providers.okta.remote_jwks.http_uri.uri` or
    /// `bypass_paths[0]`; empty when the document as a whole is wrong.
    pub path: String,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Shorthand for the many places that build a [`ConfigError`].
pub(super) fn err(path: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        problem: problem.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_path_unless_there_is_none() {
        assert_eq!(err("a.b", "required").to_string(), "a.b: required");
        assert_eq!(err("", "not JSON").to_string(), "not JSON");
        let boxed: Box<dyn std::error::Error> = Box::new(err("x", "y"));
        assert_eq!(boxed.to_string(), "x: y");
    }
}
