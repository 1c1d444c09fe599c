//! The audit line: one JSON object per request, on one line, with who, what and why.
//! It carries a fingerprint of the token (see `token_fingerprint`), never the token.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
    Bypass,
    Metadata,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord<'a> {
    pub audit: &'static str,
    pub outcome: Outcome,
    pub status: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<&'a str>,
    pub method: &'a str,
    /// The path without its query string, which may carry secrets.
    pub path: &'a str,
    pub latency_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
}

impl<'a> AuditRecord<'a> {
    pub fn new(outcome: Outcome, status: u32, method: &'a str, path: &'a str) -> Self {
        AuditRecord {
            audit: "mcp_auth_filter",
            outcome,
            status,
            reason: None,
            user: None,
            client_id: None,
            issuer: None,
            method,
            path: path.split('?').next().unwrap_or(path),
            latency_ms: 0,
            token_sha256: None,
            cache: None,
        }
    }

    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_without_the_query() {
        let mut r = AuditRecord::new(Outcome::Deny, 401, "POST", "/mcp?access_token=secret");
        r.reason = Some("token_expired");
        r.user = Some("alice");
        r.token_sha256 = Some("0123456789abcdef");
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert!(!line.contains("secret"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["audit"], "mcp_auth_filter");
        assert_eq!(v["outcome"], "deny");
        assert_eq!(v["path"], "/mcp");
        assert_eq!(v["reason"], "token_expired");
        assert!(v.get("client_id").is_none());
    }
}
