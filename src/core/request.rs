//! What a request brings to the decision, read strictly: the `Authorization` header's bearer
//! token, and whether its path may skip authentication (`bypass_paths`).

/// The parts of a request the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, query included.
    pub path: &'a str,
    pub authorization: Authorization<'a>,
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`: a CORS preflight, which
    /// browsers send without credentials.
    pub is_cors_preflight: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    Absent,
    Present(&'a str),
    /// More than one `Authorization` header: ambiguous, refused.
    Repeated,
}

/// `Bearer <token>` (scheme case-insensitive, RFC 6750 b64token). `None` when malformed.
pub fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches([' ', '\t']);
    let body = token.trim_end_matches('=');
    let valid = !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    valid.then_some(token)
}

/// The path of a request target, without its query.
pub fn path_without_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// A path fit for bypass matching, i.e. one that every upstream reads the same way: ASCII, no
/// percent-encoding at all (`%2e`, `%u002e`, `%252e` …), no `;` (Tomcat and Spring read `..;`
/// as `..`), no backslash, no empty or dot segment, no fragment. Refusing these is simpler and
/// safer than decoding and re-checking; Envoy's own path normalisation may or may not run
/// before the filter, and this holds either way.
pub fn is_plain_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    let forbidden = |b: u8| matches!(b, b'%' | b';' | b'\\' | b'#') || !(0x21..0x7f).contains(&b);
    if path.bytes().any(forbidden) || path.contains("//") {
        return false;
    }
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_parsing() {
        assert_eq!(bearer_token("Bearer abc.def-_~+/="), Some("abc.def-_~+/="));
        assert_eq!(bearer_token("bEaReR   abc"), Some("abc"));
        assert_eq!(bearer_token("  Bearer abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer a=b"), None);
        assert_eq!(bearer_token("Bearer ==="), None);
    }

    #[test]
    fn encoded_and_dotted_paths_are_never_plain() {
        for path in [
            "/public/../mcp",
            "/public/./mcp",
            "/public/..",
            "/public/%2e%2e/mcp",
            "/public/%2E%2E/mcp",
            "/public/%u002e%u002e/mcp",
            "/public/%252e%252e/mcp",
            "/public/..%3B/mcp",
            "/public/..;/mcp",
            "/public/;/mcp",
            "/public/..%2fmcp",
            "/public\\..\\mcp",
            "/public//mcp",
            "/public/caf\u{e9}",
            "/public/a b",
            "/public/a#frag",
            "public/a",
            "",
        ] {
            assert!(!is_plain_path(path), "{path:?}");
        }
        for path in [
            "/healthz",
            "/public/a",
            "/public/a.b/c..d",
            "/",
            "/.well-known/x",
        ] {
            assert!(is_plain_path(path), "{path:?}");
        }
    }
}
