//! Responses the filter sends itself: RFC 6750 challenges, RFC 9728 Protected Resource
//! Metadata, and small JSON errors. Built from the configuration and fixed strings only: no
//! request data is ever echoed into a header or a body.

use serde_json::json;

use crate::config::{Config, PRM_WELL_KNOWN};
use crate::introspection::IntrospectionFailure;
use crate::jwt::TokenError;
use crate::token_exchange::ExchangeFailure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl LocalResponse {
    #[cfg(any(test, feature = "testing"))]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a request was refused: the label used in metrics and the audit line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    MissingToken,
    InvalidRequest,
    Token(TokenError),
    InsufficientScope,
    JwksUnavailable,
    Exchange(ExchangeFailure),
    /// The IdP could not say whether the token is active.
    Introspection(IntrospectionFailure),
}

listed_enum! {
    /// The label of a denial in metrics and the audit line: one per kind of `DenyReason`.
    pub enum DenyLabel {
        MissingToken = "missing_token",
        InvalidRequest = "invalid_request",
        TokenMalformed = "token_malformed",
        TokenTooLarge = "token_too_large",
        AlgorithmNotAllowed = "algorithm_not_allowed",
        AlgorithmMismatch = "algorithm_mismatch",
        UnsupportedCriticalHeader = "unsupported_critical_header",
        KeyNotFound = "key_not_found",
        SignatureInvalid = "signature_invalid",
        IssuerNotTrusted = "issuer_not_trusted",
        AudienceNotAccepted = "audience_not_accepted",
        TokenExpired = "token_expired",
        TokenNotYetValid = "token_not_yet_valid",
        TokenIssuedInFuture = "token_issued_in_future",
        MissingExpiry = "missing_expiry",
        LifetimeTooLong = "token_lifetime_too_long",
        MissingIssuedAt = "missing_issued_at",
        TokenInactive = "token_inactive",
        InsufficientScope = "insufficient_scope",
        JwksUnavailable = "jwks_unavailable",
        ExchangeRejected = "exchange_rejected",
        ExchangeRefused = "exchange_refused",
        ExchangeFailed = "exchange_failed",
        ExchangeUnavailable = "exchange_unavailable",
        ExchangeTimeout = "exchange_timeout",
        IntrospectionUnavailable = "introspection_unavailable",
        IntrospectionTimeout = "introspection_timeout",
    }
}

impl DenyReason {
    pub fn kind(self) -> DenyLabel {
        match self {
            DenyReason::MissingToken => DenyLabel::MissingToken,
            DenyReason::InvalidRequest => DenyLabel::InvalidRequest,
            DenyReason::InsufficientScope => DenyLabel::InsufficientScope,
            DenyReason::JwksUnavailable => DenyLabel::JwksUnavailable,
            DenyReason::Introspection(f) => match f {
                IntrospectionFailure::Unavailable => DenyLabel::IntrospectionUnavailable,
                IntrospectionFailure::Timeout => DenyLabel::IntrospectionTimeout,
            },
            DenyReason::Exchange(f) => match f {
                ExchangeFailure::Rejected => DenyLabel::ExchangeRejected,
                ExchangeFailure::Refused(_) => DenyLabel::ExchangeRefused,
                ExchangeFailure::Failed => DenyLabel::ExchangeFailed,
                ExchangeFailure::Unavailable => DenyLabel::ExchangeUnavailable,
                ExchangeFailure::Timeout => DenyLabel::ExchangeTimeout,
            },
            DenyReason::Token(e) => match e {
                TokenError::Malformed => DenyLabel::TokenMalformed,
                TokenError::TooLarge => DenyLabel::TokenTooLarge,
                TokenError::AlgorithmNotAllowed => DenyLabel::AlgorithmNotAllowed,
                TokenError::AlgorithmMismatch => DenyLabel::AlgorithmMismatch,
                TokenError::UnsupportedCriticalHeader => DenyLabel::UnsupportedCriticalHeader,
                TokenError::KeyNotFound => DenyLabel::KeyNotFound,
                TokenError::SignatureInvalid => DenyLabel::SignatureInvalid,
                TokenError::IssuerNotTrusted => DenyLabel::IssuerNotTrusted,
                TokenError::AudienceNotAccepted => DenyLabel::AudienceNotAccepted,
                TokenError::Expired => DenyLabel::TokenExpired,
                TokenError::NotYetValid => DenyLabel::TokenNotYetValid,
                TokenError::IssuedInFuture => DenyLabel::TokenIssuedInFuture,
                TokenError::MissingExpiry => DenyLabel::MissingExpiry,
                TokenError::LifetimeTooLong => DenyLabel::LifetimeTooLong,
                TokenError::MissingIssuedAt => DenyLabel::MissingIssuedAt,
                TokenError::Inactive => DenyLabel::TokenInactive,
            },
        }
    }

    pub fn label(self) -> &'static str {
        self.kind().label()
    }
}

/// Pre-rendered pieces of every response, built once per configuration.
#[derive(Debug, Clone)]
pub struct Responses {
    /// `resource_metadata="…"` and, when scopes are required, `, scope="…"`.
    challenge_params: String,
    scope_param: Option<String>,
    resource_metadata_param: String,
    metadata_body: Vec<u8>,
    metadata_path: String,
}

const JSON: &str = "application/json";

impl Responses {
    pub fn new(config: &Config) -> Responses {
        let resource_metadata_param =
            format!("resource_metadata=\"{}\"", config.resource_metadata_url);
        let scope_param = (!config.required_scopes.is_empty())
            .then(|| format!("scope=\"{}\"", config.required_scopes.join(" ")));
        let challenge_params = match &scope_param {
            Some(scope) => format!("{resource_metadata_param}, {scope}"),
            None => resource_metadata_param.clone(),
        };
        let mut metadata = serde_json::Map::new();
        metadata.insert("resource".into(), json!(config.resource));
        metadata.insert(
            "authorization_servers".into(),
            json!(config.authorization_servers),
        );
        metadata.insert("bearer_methods_supported".into(), json!(["header"]));
        if !config.scopes_supported.is_empty() {
            metadata.insert("scopes_supported".into(), json!(config.scopes_supported));
        }
        if let Some(name) = &config.resource_name {
            metadata.insert("resource_name".into(), json!(name));
        }
        Responses {
            challenge_params,
            scope_param,
            resource_metadata_param,
            metadata_body: serde_json::Value::Object(metadata).to_string().into_bytes(),
            metadata_path: config.resource_metadata_path.clone(),
        }
    }

    /// The RFC 9728 endpoints: the root form and the path-inserted form for our resource.
    /// `None` when the path is not a metadata path.
    pub fn metadata(&self, method: &str, path: &str) -> Option<LocalResponse> {
        let path = path.split('?').next().unwrap_or(path);
        let is_ours = path == PRM_WELL_KNOWN || path == self.metadata_path;
        if !is_ours {
            if path
                .strip_prefix(PRM_WELL_KNOWN)
                .is_some_and(|rest| rest.starts_with('/'))
            {
                return Some(json_error(
                    404,
                    "not_found",
                    "no protected resource at this path",
                    vec![],
                ));
            }
            return None;
        }
        let cors = || {
            vec![
                ("access-control-allow-origin", "*".to_string()),
                (
                    "access-control-allow-methods",
                    "GET, HEAD, OPTIONS".to_string(),
                ),
                (
                    "access-control-allow-headers",
                    "authorization, content-type, mcp-protocol-version".to_string(),
                ),
                ("access-control-max-age", "86400".to_string()),
            ]
        };
        Some(match method {
            "GET" | "HEAD" => {
                let mut headers = cors();
                headers.push(("content-type", JSON.to_string()));
                headers.push(("cache-control", "max-age=300".to_string()));
                let body = if method == "GET" {
                    self.metadata_body.clone()
                } else {
                    Vec::new()
                };
                LocalResponse {
                    status: 200,
                    headers,
                    body,
                }
            }
            "OPTIONS" => LocalResponse {
                status: 204,
                headers: cors(),
                body: Vec::new(),
            },
            _ => json_error(
                405,
                "method_not_allowed",
                "use GET",
                vec![("allow", "GET, HEAD, OPTIONS".to_string())],
            ),
        })
    }

    pub fn deny(&self, reason: DenyReason) -> LocalResponse {
        match reason {
            DenyReason::MissingToken => {
                self.challenge(401, None, "unauthorized", "bearer token required")
            }
            DenyReason::InvalidRequest => self.challenge(
                401,
                Some("invalid_request"),
                "invalid_request",
                "malformed authorization header",
            ),
            DenyReason::Token(e) => {
                self.challenge(401, Some("invalid_token"), "invalid_token", e.describe())
            }
            DenyReason::InsufficientScope => {
                let description = "token lacks required scope";
                let mut value = String::from("Bearer error=\"insufficient_scope\"");
                if let Some(scope) = &self.scope_param {
                    value.push_str(", ");
                    value.push_str(scope);
                }
                value.push_str(&format!(
                    ", {}, error_description=\"{description}\"",
                    self.resource_metadata_param
                ));
                json_error(
                    403,
                    "insufficient_scope",
                    description,
                    vec![("www-authenticate", value)],
                )
            }
            DenyReason::JwksUnavailable => json_error(
                503,
                "temporarily_unavailable",
                "signing keys unavailable",
                vec![("retry-after", "1".to_string())],
            ),
            DenyReason::Exchange(failure) => self.exchange_failure(failure),
            DenyReason::Introspection(IntrospectionFailure::Unavailable) => json_error(
                503,
                "temporarily_unavailable",
                "token introspection unavailable",
                vec![("retry-after", "1".to_string())],
            ),
            DenyReason::Introspection(IntrospectionFailure::Timeout) => json_error(
                504,
                "temporarily_unavailable",
                "token introspection timed out",
                vec![],
            ),
        }
    }

    /// The 403 step-up for an MCP operation: every scope it needs, in one challenge, so a
    /// spec-following client re-authorises for exactly these (scopes are configuration
    /// values, checked at load to be quoted-string safe).
    pub fn step_up(&self, scopes: &[String]) -> LocalResponse {
        let description = "token lacks a scope this operation requires";
        let value = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", {}, error_description=\"{description}\"",
            scopes.join(" "),
            self.resource_metadata_param
        );
        json_error(
            403,
            "insufficient_scope",
            description,
            vec![("www-authenticate", value)],
        )
    }

    /// The client's answer when no backend token could be had. Never names a token or secret;
    /// an STS error code is named only when it is a standard OAuth one.
    fn exchange_failure(&self, failure: ExchangeFailure) -> LocalResponse {
        let unavailable = "temporarily_unavailable";
        match failure {
            ExchangeFailure::Rejected => self.challenge(
                401,
                Some("invalid_token"),
                "invalid_token",
                "token exchange rejected the token",
            ),
            ExchangeFailure::Refused(code) => {
                let description = match code {
                    Some(c) => format!("token exchange refused ({c})"),
                    None => "token exchange refused".to_string(),
                };
                json_error(403, "access_denied", &description, vec![])
            }
            ExchangeFailure::Failed => {
                json_error(502, unavailable, "token exchange failed", vec![])
            }
            ExchangeFailure::Unavailable => json_error(
                503,
                unavailable,
                "token exchange unavailable",
                vec![("retry-after", "1".to_string())],
            ),
            ExchangeFailure::Timeout => {
                json_error(504, unavailable, "token exchange timed out", vec![])
            }
        }
    }

    fn challenge(
        &self,
        status: u32,
        error: Option<&str>,
        body_error: &str,
        description: &str,
    ) -> LocalResponse {
        let value = match error {
            None => format!("Bearer {}", self.challenge_params),
            Some(e) => format!(
                "Bearer {}, error=\"{e}\", error_description=\"{description}\"",
                self.challenge_params
            ),
        };
        json_error(
            status,
            body_error,
            description,
            vec![("www-authenticate", value)],
        )
    }
}

fn json_error(
    status: u32,
    error: &str,
    description: &str,
    mut headers: Vec<(&'static str, String)>,
) -> LocalResponse {
    headers.push(("content-type", JSON.to_string()));
    // Browser-based MCP clients must be able to read the challenge.
    headers.push(("access-control-allow-origin", "*".to_string()));
    headers.push((
        "access-control-expose-headers",
        "www-authenticate".to_string(),
    ));
    headers.push(("cache-control", "no-store".to_string()));
    LocalResponse {
        status,
        headers,
        body: json!({"error": error, "error_description": description})
            .to_string()
            .into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_json(
            br#"{"resource":"https://mcp.example.com/mcp","resource_name":"Demo",
                 "scopes_supported":["mcp:tools:call","mcp:read"],"required_scopes":["mcp:tools:call"],
                 "providers":{"p":{"issuer":"https://idp.example.com",
                   "remote_jwks":{"http_uri":{"uri":"https://idp.example.com/jwks","cluster":"idp"}}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn missing_token_challenge() {
        let r = Responses::new(&config()).deny(DenyReason::MissingToken);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools:call\"")
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "unauthorized");
    }

    #[test]
    fn invalid_token_challenge_names_the_problem() {
        let r = Responses::new(&config()).deny(DenyReason::Token(TokenError::Expired));
        assert_eq!(r.status, 401);
        let h = r.header("www-authenticate").unwrap();
        assert!(
            h.ends_with("error=\"invalid_token\", error_description=\"token expired\""),
            "{h}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error_description"], "token expired");
    }

    #[test]
    fn insufficient_scope_is_a_403_step_up() {
        let r = Responses::new(&config()).deny(DenyReason::InsufficientScope);
        assert_eq!(r.status, 403);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"insufficient_scope\", scope=\"mcp:tools:call\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", error_description=\"token lacks required scope\"")
        );
    }

    #[test]
    fn jwks_unavailable_is_a_503() {
        let r = Responses::new(&config()).deny(DenyReason::JwksUnavailable);
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.header("www-authenticate").is_none());
    }

    #[test]
    fn metadata_at_both_paths() {
        let responses = Responses::new(&config());
        for path in [
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource/mcp?x=1",
        ] {
            let r = responses.metadata("GET", path).unwrap();
            assert_eq!(r.status, 200, "{path}");
            assert_eq!(r.header("access-control-allow-origin"), Some("*"));
            let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(doc["resource"], "https://mcp.example.com/mcp");
            assert_eq!(
                doc["authorization_servers"],
                json!(["https://idp.example.com"])
            );
            assert_eq!(
                doc["scopes_supported"],
                json!(["mcp:tools:call", "mcp:read"])
            );
            assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
            assert_eq!(doc["resource_name"], "Demo");
        }
        assert_eq!(
            responses
                .metadata("OPTIONS", "/.well-known/oauth-protected-resource")
                .unwrap()
                .status,
            204
        );
        assert_eq!(
            responses
                .metadata("POST", "/.well-known/oauth-protected-resource")
                .unwrap()
                .status,
            405
        );
        assert_eq!(
            responses
                .metadata("GET", "/.well-known/oauth-protected-resource/other")
                .unwrap()
                .status,
            404
        );
        assert!(responses
            .metadata("GET", "/.well-known/oauth-protected-resourcex")
            .is_none());
        assert!(responses.metadata("GET", "/mcp").is_none());
    }

    #[test]
    fn exchange_failures() {
        let r = Responses::new(&config());
        let rejected = r.deny(DenyReason::Exchange(ExchangeFailure::Rejected));
        assert_eq!(rejected.status, 401);
        assert!(rejected.header("www-authenticate").unwrap().ends_with(
            "error=\"invalid_token\", error_description=\"token exchange rejected the token\""
        ));
        let refused = r.deny(DenyReason::Exchange(ExchangeFailure::Refused(Some(
            "invalid_scope",
        ))));
        assert_eq!(refused.status, 403);
        let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(body["error"], "access_denied");
        assert_eq!(
            body["error_description"],
            "token exchange refused (invalid_scope)"
        );
        for (failure, status) in [
            (ExchangeFailure::Failed, 502),
            (ExchangeFailure::Unavailable, 503),
            (ExchangeFailure::Timeout, 504),
        ] {
            let resp = r.deny(DenyReason::Exchange(failure));
            assert_eq!(resp.status, status);
            let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
        }
    }

    #[test]
    fn every_label_is_distinct() {
        let mut labels: Vec<_> = DenyLabel::ALL.iter().map(|l| l.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), DenyLabel::ALL.len());
    }
}
