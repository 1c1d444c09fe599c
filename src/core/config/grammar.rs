//! The small grammars configuration values must follow so that the filter can put them into
//! headers and form bodies without escaping: scope tokens, HTTP tokens, visible ASCII and
//! OAuth token-type URNs.

use super::error::{err, ConfigError};

/// RFC 6749 scope-token: printable ASCII except space, `"` and `\`, so it can sit in a
/// quoted-string of `WWW-Authenticate` without escaping.
pub(super) fn check_scope_token(path: &str, s: &str) -> Result<(), ConfigError> {
    let ok = !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(err(
            path,
            "not a valid scope (printable ASCII, no space, quote or backslash)",
        ))
    }
}

/// RFC 9110 token, the grammar of header names.
pub(super) fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Non-empty, and only printable ASCII without space.
pub(super) fn is_visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

const TOKEN_TYPE_URN: &str = "urn:ietf:params:oauth:token-type:";

/// An RFC 8693 token type: a short name (`access_token`, the default) or a full URN.
pub(super) fn token_type_urn(path: &str, value: Option<String>) -> Result<String, ConfigError> {
    let value = value.unwrap_or_else(|| "access_token".into());
    match value.as_str() {
        "access_token" | "id_token" | "jwt" | "refresh_token" | "saml1" | "saml2" => {
            Ok(format!("{TOKEN_TYPE_URN}{value}"))
        }
        urn if urn.starts_with("urn:") && is_visible_ascii(urn) => Ok(value),
        _ => Err(err(
            path,
            "access_token, id_token, jwt, refresh_token, saml1, saml2 or a URN",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_tokens() {
        assert!(check_scope_token("s", "mcp:tools:call").is_ok());
        assert!(check_scope_token("s", "a!#[]~").is_ok());
        for bad in [
            "",
            "has space",
            "quo\"te",
            "back\\slash",
            "tab\t",
            "caf\u{e9}",
        ] {
            assert_eq!(
                check_scope_token("s[0]", bad).unwrap_err().path,
                "s[0]",
                "{bad}"
            );
        }
    }

    #[test]
    fn http_tokens_and_visible_ascii() {
        assert!(is_http_token("x-user_id.v2"));
        for bad in ["", "x user", "x:y", "x\u{e9}"] {
            assert!(!is_http_token(bad), "{bad}");
        }
        assert!(is_visible_ascii("a\"b"));
        for bad in ["", "a b", "a\u{7f}", "\u{e9}"] {
            assert!(!is_visible_ascii(bad), "{bad}");
        }
    }

    #[test]
    fn token_types() {
        assert_eq!(
            token_type_urn("t", None),
            Ok("urn:ietf:params:oauth:token-type:access_token".into())
        );
        assert_eq!(
            token_type_urn("t", Some("jwt".into())),
            Ok("urn:ietf:params:oauth:token-type:jwt".into())
        );
        assert_eq!(
            token_type_urn("t", Some("urn:x:custom".into())),
            Ok("urn:x:custom".into())
        );
        for bad in ["cookie", "urn:has space", ""] {
            assert_eq!(token_type_urn("t", Some(bad.into())).unwrap_err().path, "t");
        }
    }
}
