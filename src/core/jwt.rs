//! Reading a compact JWS access token strictly, before any key is touched.
//!
//! Strict means: exactly three base64url parts without padding or whitespace, a header and a
//! payload that are JSON objects without duplicate names (a duplicate `exp` or `aud` is how
//! parsers are made to disagree), no `crit` extension we do not understand, and registered
//! claims of the types RFC 7519 gives them.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use crate::jwks::Algorithm;
use crate::strict_json;
use crate::time::UnixSeconds;

/// Why a token was refused before or during verification. Each maps to a fixed, public
/// description (`describe`) that never echoes any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenError {
    Malformed,
    TooLarge,
    AlgorithmNotAllowed,
    AlgorithmMismatch,
    UnsupportedCriticalHeader,
    KeyNotFound,
    SignatureInvalid,
    IssuerNotTrusted,
    AudienceNotAccepted,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingExpiry,
    /// `exp` is further from `iat` than the provider's `max_lifetime` allows.
    LifetimeTooLong,
    /// The provider bounds lifetimes (`max_lifetime`) and the token has no `iat`.
    MissingIssuedAt,
    /// The IdP says the token is not active (introspection).
    Inactive,
}

impl TokenError {
    pub fn describe(self) -> &'static str {
        match self {
            TokenError::Malformed => "token malformed",
            TokenError::TooLarge => "token too large",
            TokenError::AlgorithmNotAllowed => "token algorithm not allowed",
            TokenError::AlgorithmMismatch => "token algorithm does not match key",
            TokenError::UnsupportedCriticalHeader => "token has unsupported critical header",
            TokenError::KeyNotFound => "token signing key not found",
            TokenError::SignatureInvalid => "token signature invalid",
            TokenError::IssuerNotTrusted => "token issuer not trusted",
            TokenError::AudienceNotAccepted => "token audience not accepted",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::IssuedInFuture => "token issued in the future",
            TokenError::MissingExpiry => "token has no expiry",
            TokenError::LifetimeTooLong => "token lifetime too long",
            TokenError::MissingIssuedAt => "token has no issue time",
            TokenError::Inactive => "token not active",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl std::error::Error for TokenError {}

/// A token split and decoded, signature not yet checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Claims,
}

/// The registered claims the filter uses, type-checked, plus the whole claim set for
/// `claim_to_headers`.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub aud: Vec<String>,
    pub exp: Option<UnixSeconds>,
    pub nbf: Option<UnixSeconds>,
    pub iat: Option<UnixSeconds>,
    /// Union of `scp` (array or space-separated string, Okta) and `scope` (space-separated).
    pub scopes: Vec<String>,
    /// `client_id` (RFC 9068), else `azp` (OIDC), else `cid` (Okta), else `appid` (Entra v1).
    pub client_id: Option<String>,
    pub all: Map<String, Value>,
}

pub fn parse(token: &str, max_bytes: usize) -> Result<UnverifiedToken, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header = decode_object(header_b64)?;
    if signature_b64.is_empty() || URL_SAFE_NO_PAD.decode(signature_b64).is_err() {
        // An empty signature is what `alg: none` tokens carry; say so when that is the case.
        return match header.get("alg").and_then(Value::as_str) {
            Some(a) if Algorithm::from_name(a).is_none() => Err(TokenError::AlgorithmNotAllowed),
            _ => Err(TokenError::Malformed),
        };
    }
    let alg = match header.get("alg") {
        Some(Value::String(a)) => Algorithm::from_name(a).ok_or(TokenError::AlgorithmNotAllowed)?,
        _ => return Err(TokenError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(TokenError::UnsupportedCriticalHeader);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed),
    };
    let claims = Claims::from_map(decode_object(payload_b64)?)?;
    Ok(UnverifiedToken { alg, kid, claims })
}

fn decode_object(part: &str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    // Duplicate members at any depth are how parsers are made to disagree.
    strict_json::parse_object(&bytes).map_err(|_| TokenError::Malformed)
}

impl Claims {
    /// The claims of a decoded payload (a JWT's, or an introspection answer's).
    pub fn from_map(all: Map<String, Value>) -> Result<Claims, TokenError> {
        let string = |name: &str| -> Result<Option<String>, TokenError> {
            match all.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(TokenError::Malformed),
            }
        };
        let aud = match all.get("aud") {
            None => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or(TokenError::Malformed))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(TokenError::Malformed),
        };
        let scopes = scopes_in(&all, &["scp", "scope"])?;
        let client_id = match string("client_id")? {
            Some(c) => Some(c),
            None => match string("azp")? {
                Some(c) => Some(c),
                None => match string("cid")? {
                    Some(c) => Some(c),
                    // Entra ID v1.0 access tokens.
                    None => string("appid")?,
                },
            },
        };
        Ok(Claims {
            iss: string("iss")?,
            sub: string("sub")?,
            aud,
            exp: numeric_date(all.get("exp"))?,
            nbf: numeric_date(all.get("nbf"))?,
            iat: numeric_date(all.get("iat"))?,
            scopes,
            client_id,
            all,
        })
    }

    /// Time checks with the provider's clock skew and, when it bounds them, the longest
    /// lifetime (`exp - iat`) it accepts.
    pub fn check_time(
        &self,
        now: UnixSeconds,
        skew_seconds: u64,
        max_lifetime: Option<Duration>,
    ) -> Result<(), TokenError> {
        let exp = self.exp.ok_or(TokenError::MissingExpiry)?;
        if let Some(max) = max_lifetime {
            let iat = self.iat.ok_or(TokenError::MissingIssuedAt)?;
            if exp.0.saturating_sub(iat.0) > max.as_secs() {
                return Err(TokenError::LifetimeTooLong);
            }
        }
        if now >= exp.plus(skew_seconds) {
            return Err(TokenError::Expired);
        }
        if self.nbf.is_some_and(|nbf| now.plus(skew_seconds) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| now.plus(skew_seconds) < iat) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }

    pub fn has_audience_in(&self, accepted: &[String]) -> bool {
        self.aud.iter().any(|a| accepted.contains(a))
    }

    /// The value of a (possibly dotted) claim.
    pub fn value(&self, path: &[String]) -> Option<&Value> {
        claim_at(&self.all, path)
    }

    /// The value of a (possibly dotted) claim as a header value: strings as they are, numbers
    /// and booleans printed, arrays of those joined by commas. `None` for objects, missing
    /// claims and values that could not sit safely in a header.
    pub fn header_value(&self, path: &[String]) -> Option<String> {
        let value = self.value(path)?;
        let text = match value {
            Value::Array(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<_>>>()?
                .join(","),
            other => scalar_text(other)?,
        };
        let safe = text
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
        (safe && text.len() <= 4096).then_some(text)
    }
}

/// The claim at a dotted path, its segments given. Claim names may contain dots themselves
/// (Auth0's namespaced `https://example.com/roles`, Keycloak clients named `my.app` under
/// `resource_access`): at each level the longest run of segments that names a member is taken,
/// and shorter runs are tried if that leads nowhere. A path of n segments costs at most
/// 2^(n-1) lookups, and paths come from the configuration, not the token.
pub fn claim_at<'a>(object: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    for taken in (1..=path.len()).rev() {
        let (Some(head), Some(rest)) = (path.get(..taken), path.get(taken..)) else {
            continue;
        };
        let Some(value) = object.get(&head.join(".")) else {
            continue;
        };
        if rest.is_empty() {
            return Some(value);
        }
        if let Some(found) = value.as_object().and_then(|inner| claim_at(inner, rest)) {
            return Some(found);
        }
    }
    None
}

/// The scopes in the claims `names`: space-separated strings or arrays of strings, in order,
/// each once. Any other type makes the token malformed.
pub fn scopes_in<S: AsRef<str>>(
    all: &Map<String, Value>,
    names: &[S],
) -> Result<Vec<String>, TokenError> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() && !scopes.iter().any(|t| t == s) {
            scopes.push(s.to_string());
        }
    };
    for name in names {
        let path: Vec<String> = name.as_ref().split('.').map(str::to_string).collect();
        match claim_at(all, &path) {
            None => {}
            Some(Value::String(s)) => s.split(' ').for_each(&mut add),
            Some(Value::Array(items)) => {
                for item in items {
                    add(item.as_str().ok_or(TokenError::Malformed)?);
                }
            }
            Some(_) => return Err(TokenError::Malformed),
        }
    }
    Ok(scopes)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The latest NumericDate accepted: 9999-12-31T23:59:59Z. A later `exp` is no expiry at all
/// (and `1e30` would otherwise saturate into "never expires"); Envoy's `jwt_authn` refuses
/// such values too.
pub const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// RFC 7519 NumericDate: a JSON number of seconds from 0 to `MAX_NUMERIC_DATE` (fractions
/// allowed and truncated). Anything else makes the token malformed.
fn numeric_date(v: Option<&Value>) -> Result<Option<UnixSeconds>, TokenError> {
    let seconds = match v {
        None => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            // Negative zero is zero; `as` truncates the fraction (the range is checked first).
            (None, Some(f)) if (0.0..=MAX_NUMERIC_DATE as f64).contains(&f) => f as u64,
            _ => return Err(TokenError::Malformed),
        },
        Some(_) => return Err(TokenError::Malformed),
    };
    if seconds > MAX_NUMERIC_DATE {
        return Err(TokenError::Malformed);
    }
    Ok(Some(UnixSeconds(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &str) -> String {
        URL_SAFE_NO_PAD.encode(v)
    }

    fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
    }

    const HEADER: &str = r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#;

    #[test]
    fn reads_registered_claims() {
        let t = token(
            HEADER,
            r#"{"iss":"i","sub":"alice","aud":["a","b"],"exp":200,"nbf":100,"iat":100.7,
                "scp":["mcp:tools:call"],"scope":"extra more","cid":"client-1"}"#,
        );
        let parsed = parse(&t, 16384).unwrap();
        assert_eq!(parsed.alg, Algorithm::RS256);
        assert_eq!(parsed.kid.as_deref(), Some("k1"));
        let c = parsed.claims;
        assert_eq!(c.iss.as_deref(), Some("i"));
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.aud, vec!["a", "b"]);
        assert_eq!(
            (c.exp, c.nbf, c.iat),
            (
                Some(UnixSeconds(200)),
                Some(UnixSeconds(100)),
                Some(UnixSeconds(100))
            )
        );
        assert_eq!(c.scopes, vec!["mcp:tools:call", "extra", "more"]);
        assert_eq!(c.client_id.as_deref(), Some("client-1"));
    }

    #[test]
    fn audience_as_a_string() {
        let t = token(HEADER, r#"{"aud":"only","exp":1}"#);
        assert_eq!(parse(&t, 16384).unwrap().claims.aud, vec!["only"]);
    }

    #[test]
    fn refuses_malformed_shapes() {
        let ok_payload = r#"{"exp":1}"#;
        let cases = [
            "".to_string(),
            "a.b".to_string(),
            "a.b.c.d.e".to_string(),
            format!("{}.{}.", b64(HEADER), b64(ok_payload)),
            format!("{}=.{}.{}", b64(HEADER), b64(ok_payload), b64("s")),
            format!("{} .{}.{}", b64(HEADER), b64(ok_payload), b64("s")),
            token("[]", ok_payload),
            token(HEADER, "[1]"),
            token(HEADER, "not json"),
            token(r#"{"alg":"RS256","alg":"RS256"}"#, ok_payload),
            token(HEADER, r#"{"exp":1,"exp":99999999999}"#),
            token(HEADER, r#"{"exp":"1"}"#),
            token(HEADER, r#"{"exp":-1}"#),
            token(HEADER, r#"{"aud":7,"exp":1}"#),
            token(HEADER, r#"{"aud":[7],"exp":1}"#),
            token(HEADER, r#"{"iss":["x"],"exp":1}"#),
            token(HEADER, r#"{"scp":{"a":1},"exp":1}"#),
            token(r#"{"alg":7}"#, ok_payload),
            token(r#"{"alg":"RS256","kid":1}"#, ok_payload),
            token(HEADER, r#"{"exp":1} trailing"#),
        ];
        for t in cases {
            assert_eq!(parse(&t, 16384).unwrap_err(), TokenError::Malformed, "{t}");
        }
        let non_utf8 = format!(
            "{}.{}.{}",
            b64(HEADER),
            URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
            b64("s")
        );
        assert_eq!(parse(&non_utf8, 16384).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn refuses_none_hmac_and_crit() {
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"exp":1}"#));
        assert_eq!(
            parse(&none, 16384).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        let hs = token(r#"{"alg":"HS256"}"#, r#"{"exp":1}"#);
        assert_eq!(
            parse(&hs, 16384).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
        let crit = token(
            r#"{"alg":"RS256","crit":["b64"],"b64":false}"#,
            r#"{"exp":1}"#,
        );
        assert_eq!(
            parse(&crit, 16384).unwrap_err(),
            TokenError::UnsupportedCriticalHeader
        );
    }

    #[test]
    fn size_limit() {
        let big = token(
            HEADER,
            &format!(r#"{{"exp":1,"pad":"{}"}}"#, "x".repeat(20_000)),
        );
        assert_eq!(parse(&big, 16384).unwrap_err(), TokenError::TooLarge);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"exp":1,"x":{}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(
            parse(&token(HEADER, &deep), 1 << 20).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn time_checks_apply_skew() {
        let c = Claims {
            exp: Some(UnixSeconds(1000)),
            nbf: Some(UnixSeconds(500)),
            iat: Some(UnixSeconds(500)),
            ..Default::default()
        };
        assert_eq!(c.check_time(UnixSeconds(700), 0, None), Ok(()));
        assert_eq!(
            c.check_time(UnixSeconds(1000), 0, None),
            Err(TokenError::Expired)
        );
        assert_eq!(c.check_time(UnixSeconds(1059), 60, None), Ok(()));
        assert_eq!(
            c.check_time(UnixSeconds(1060), 60, None),
            Err(TokenError::Expired)
        );
        assert_eq!(
            c.check_time(UnixSeconds(499), 0, None),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(c.check_time(UnixSeconds(441), 60, None), Ok(()));
        let no_exp = Claims::default();
        assert_eq!(
            no_exp.check_time(UnixSeconds(1), 60, None),
            Err(TokenError::MissingExpiry)
        );
        let future_iat = Claims {
            exp: Some(UnixSeconds(10_000)),
            iat: Some(UnixSeconds(5_000)),
            ..Default::default()
        };
        assert_eq!(
            future_iat.check_time(UnixSeconds(1000), 60, None),
            Err(TokenError::IssuedInFuture)
        );
        let huge = Claims {
            exp: Some(UnixSeconds(u64::MAX)),
            ..Default::default()
        };
        assert_eq!(huge.check_time(UnixSeconds(u64::MAX - 1), 60, None), Ok(()));
    }

    #[test]
    fn max_lifetime_bounds_exp_minus_iat() {
        let c = Claims {
            exp: Some(UnixSeconds(4_600)),
            iat: Some(UnixSeconds(1_000)),
            ..Default::default()
        };
        assert_eq!(
            c.check_time(UnixSeconds(1_000), 0, Some(Duration::from_secs(3_600))),
            Ok(())
        );
        assert_eq!(
            c.check_time(UnixSeconds(1_000), 0, Some(Duration::from_secs(3_599))),
            Err(TokenError::LifetimeTooLong)
        );
        let no_iat = Claims {
            exp: Some(UnixSeconds(4_600)),
            ..Default::default()
        };
        assert_eq!(
            no_iat.check_time(UnixSeconds(1_000), 0, Some(Duration::from_secs(3_600))),
            Err(TokenError::MissingIssuedAt)
        );
        assert_eq!(no_iat.check_time(UnixSeconds(1_000), 0, None), Ok(()));
    }

    #[test]
    fn time_claims_beyond_year_9999_are_malformed() {
        for exp in [
            "1e30",
            "18446744073709551616",
            "18446744073709551615",
            "253402300800",
            "253402300799.5e1",
            "1.7e308",
        ] {
            let t = token(HEADER, &format!(r#"{{"exp":{exp}}}"#));
            assert_eq!(
                parse(&t, 16384).unwrap_err(),
                TokenError::Malformed,
                "{exp}"
            );
        }
        for (value, seconds) in [("253402300799", 253_402_300_799), ("-0.0", 0), ("10.9", 10)] {
            let t = token(HEADER, &format!(r#"{{"exp":{value}}}"#));
            assert_eq!(
                parse(&t, 16384).unwrap().claims.exp,
                Some(UnixSeconds(seconds)),
                "{value}"
            );
        }
    }

    #[test]
    fn header_values_from_claims() {
        let t = token(
            HEADER,
            r#"{"exp":1,"sub":"alice","n":3,"ok":true,"groups":["a","b"],
                "org":{"id":"o1"},"evil":"a\r\nx-injected: 1","obj":{"k":1}}"#,
        );
        let c = parse(&t, 16384).unwrap().claims;
        let path = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(c.header_value(&path("sub")).as_deref(), Some("alice"));
        assert_eq!(c.header_value(&path("n")).as_deref(), Some("3"));
        assert_eq!(c.header_value(&path("ok")).as_deref(), Some("true"));
        assert_eq!(c.header_value(&path("groups")).as_deref(), Some("a,b"));
        assert_eq!(c.header_value(&path("org.id")).as_deref(), Some("o1"));
        assert_eq!(c.header_value(&path("evil")), None);
        assert_eq!(c.header_value(&path("obj")), None);
        assert_eq!(c.header_value(&path("missing")), None);
    }

    #[test]
    fn claim_names_may_contain_dots() {
        let all: Map<String, Value> = serde_json::from_str(
            r#"{"https://mcp.example.com/roles": ["analyst"],
                "resource_access": {"my.app": {"roles": ["reader"]}, "my": {"x": 1}},
                "org": {"id": "acme"}, "a.b": {"c": 1}, "a": {"b": {"d": 2}}}"#,
        )
        .unwrap();
        let at = |p: &str| {
            let path: Vec<String> = p.split('.').map(str::to_string).collect();
            claim_at(&all, &path).cloned()
        };
        assert_eq!(
            at("https://mcp.example.com/roles"),
            Some(serde_json::json!(["analyst"]))
        );
        assert_eq!(
            at("resource_access.my.app.roles"),
            Some(serde_json::json!(["reader"]))
        );
        assert_eq!(at("org.id"), Some(serde_json::json!("acme")));
        // The longest name is tried first, and the shorter one when it leads nowhere.
        assert_eq!(at("a.b.c"), Some(serde_json::json!(1)));
        assert_eq!(at("a.b.d"), Some(serde_json::json!(2)));
        assert_eq!(at("a.b.e"), None);
        assert_eq!(
            scopes_in(&all, &["resource_access.my.app.roles"]).unwrap(),
            vec!["reader"]
        );
    }

    #[test]
    fn entra_v1_names_its_client_appid() {
        let t = token(HEADER, r#"{"appid":"app-guid","exp":1}"#);
        let c = parse(&t, 16384).unwrap().claims;
        assert_eq!(c.client_id.as_deref(), Some("app-guid"));
    }
}
