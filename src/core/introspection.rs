//! RFC 7662 token introspection: the request to the IdP, and the reading of its answer.
//!
//! An active answer's members are the token's claims (`exp`, `aud`, `scope`, `iss`, `sub`,
//! `client_id`, …), read and checked exactly like a JWT's. A strict reading again: a JSON
//! object without duplicate members, `active` a boolean.

use serde_json::{Map, Value};

use crate::cache::{sha256, Digest};
use crate::config::IntrospectionConfig;
use crate::oauth_request::{CalloutRequest, FormBody};
use crate::strict_json;

/// Largest introspection answer read (a real one is well under 8 KiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What the IdP said about a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Introspected {
    /// `"active": true`, with the token's claims.
    Active(Map<String, Value>),
    Inactive,
}

listed_enum! {
    /// Why an introspection gave no answer about the token. Fail closed: the request is refused.
    pub enum IntrospectionFailure {
        /// Unreachable, 5xx, our client refused (401/403), or an answer that is not one.
        Unavailable = "introspection_unavailable",
        /// No answer before the deadline.
        Timeout = "introspection_timeout",
    }
}

impl std::fmt::Display for IntrospectionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::error::Error for IntrospectionFailure {}

impl IntrospectionFailure {
    /// A one-byte code, to tell other workers how a shared introspection ended.
    pub fn code(self) -> u8 {
        match self {
            IntrospectionFailure::Unavailable => 1,
            IntrospectionFailure::Timeout => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<IntrospectionFailure> {
        match code {
            1 => Some(IntrospectionFailure::Unavailable),
            2 => Some(IntrospectionFailure::Timeout),
            _ => None,
        }
    }
}

/// A digest of what defines an answer: the endpoint, who asks, and the provider the answer is
/// read for. Names the shared-data entries that hold answers.
pub fn namespace(config: &IntrospectionConfig, issuer: &str) -> Digest {
    sha256(&[
        b"mcp-auth-filter introspection v1",
        config.cluster.as_bytes(),
        config.endpoint.authority.as_bytes(),
        config.endpoint.path.as_bytes(),
        &config.client_auth.digest(),
        issuer.as_bytes(),
    ])
}

/// The introspection request for `token`.
pub fn request(config: &IntrospectionConfig, token: &str) -> CalloutRequest {
    let mut form = FormBody::default();
    form.field("token", token);
    form.field("token_type_hint", "access_token");
    form.post(
        &config.cluster,
        &config.endpoint,
        &config.client_auth,
        config.timeout,
    )
}

/// Reads the IdP's answer (`status` is `None` when it never came).
pub fn read_answer(status: Option<u16>, body: &[u8]) -> Result<Introspected, IntrospectionFailure> {
    match status {
        Some(200) => {}
        Some(504) => return Err(IntrospectionFailure::Timeout),
        _ => return Err(IntrospectionFailure::Unavailable),
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err(IntrospectionFailure::Unavailable);
    }
    let mut answer =
        strict_json::parse_object(body).map_err(|_| IntrospectionFailure::Unavailable)?;
    match answer.remove("active") {
        Some(Value::Bool(true)) => Ok(Introspected::Active(answer)),
        Some(Value::Bool(false)) => Ok(Introspected::Inactive),
        // RFC 7662 §2.2: `active` is REQUIRED and a boolean.
        _ => Err(IntrospectionFailure::Unavailable),
    }
}

/// Whether a bearer token is a JWT (three base64url parts, the first a JSON object), as
/// opposed to an opaque token for the introspecting provider.
pub fn looks_like_jwt(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .is_some_and(|h| h.first() == Some(&b'{'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn config() -> IntrospectionConfig {
        let doc = json!({
            "resource": "https://mcp.example.com/mcp",
            "providers": {"kc": {"issuer": "https://idp.example.com",
                "introspection": {
                    "endpoint": {"uri": "https://idp.example.com/introspect", "cluster": "idp"},
                    "client_auth": {"client_id": "filter", "client_secret_env": "S"}}}}
        });
        let env = |k: &str| (k == "S").then(|| "pw".to_string());
        let c = Config::from_json_with_env(doc.to_string().as_bytes(), &env).unwrap();
        match c.providers[0].keys.clone() {
            crate::config::KeySource::Introspection(i) => i,
            other => panic!("expected introspection, got {other:?}"),
        }
    }

    #[test]
    fn the_request_is_an_authenticated_form_post() {
        let r = request(&config(), "opaque-token");
        let body = String::from_utf8(r.body).unwrap();
        assert_eq!(body, "token=opaque-token&token_type_hint=access_token");
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v.starts_with("Basic ")));
        assert!(r
            .headers
            .iter()
            .any(|(n, v)| n == ":path" && v == "/introspect"));
    }

    #[test]
    fn answers_are_read_strictly() {
        let active = br#"{"active":true,"sub":"alice","scope":"a b","exp":1900000000}"#;
        let Ok(Introspected::Active(claims)) = read_answer(Some(200), active) else {
            panic!("active")
        };
        assert_eq!(claims["sub"], "alice");
        assert!(claims.get("active").is_none());
        assert_eq!(
            read_answer(Some(200), br#"{"active":false}"#),
            Ok(Introspected::Inactive)
        );
        for (status, body, failure) in [
            (
                Some(200),
                &br#"{"active":"true"}"#[..],
                IntrospectionFailure::Unavailable,
            ),
            (
                Some(200),
                br#"{"sub":"x"}"#,
                IntrospectionFailure::Unavailable,
            ),
            (
                Some(200),
                br#"{"active":true,"active":false}"#,
                IntrospectionFailure::Unavailable,
            ),
            (Some(200), b"<html>", IntrospectionFailure::Unavailable),
            (
                Some(401),
                br#"{"error":"invalid_client"}"#,
                IntrospectionFailure::Unavailable,
            ),
            (Some(503), b"", IntrospectionFailure::Unavailable),
            (Some(504), b"", IntrospectionFailure::Timeout),
            (None, b"", IntrospectionFailure::Unavailable),
        ] {
            assert_eq!(read_answer(status, body), Err(failure), "{status:?}");
        }
        for f in IntrospectionFailure::ALL {
            assert_eq!(IntrospectionFailure::from_code(f.code()), Some(*f));
        }
    }

    #[test]
    fn jwts_and_opaque_tokens_are_told_apart() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"));
        for opaque in [
            "ya29.a0AfH6SMB",
            "2YotnFZFEjr1zCsicMWpAA",
            "a.b.c",
            "x.y.z.w",
        ] {
            assert!(!looks_like_jwt(opaque), "{opaque}");
        }
    }
}
