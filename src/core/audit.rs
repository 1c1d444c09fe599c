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
pub struct AuditRecord {
    pub audit: &'static str,
    pub outcome: Outcome,
    /// The response status the client got (the upstream's, or the filter's own answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    pub method: String,
    /// The path without its query string, which may carry secrets.
    pub path: String,
    /// Whole request, from its headers reaching the filter to the end of the response.
    pub latency_ms: u64,
    /// Time the filter took to decide, including any wait for signing keys.
    pub auth_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    /// Where the upstream token came from: the exchange cache (`hit`) or the STS (`miss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts_ms: Option<u64>,
    /// The MCP operation (never its arguments): method, the tool/prompt/resource, the
    /// JSON-RPC id, and the rule that decided (`default` for `default_action`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jsonrpc_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl AuditRecord {
    pub fn new(outcome: Outcome, method: &str, path: &str) -> Self {
        AuditRecord {
            audit: "mcp_auth_filter",
            outcome,
            status: None,
            reason: None,
            user: None,
            client_id: None,
            issuer: None,
            method: method.to_string(),
            path: path.split('?').next().unwrap_or(path).to_string(),
            latency_ms: 0,
            auth_ms: 0,
            token_sha256: None,
            cache: None,
            exchange: None,
            backend_audience: None,
            sts_ms: None,
            mcp_method: None,
            mcp_name: None,
            jsonrpc_id: None,
            rule: None,
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
        let mut r = AuditRecord::new(Outcome::Deny, "POST", "/mcp?access_token=secret");
        r.status = Some(401);
        r.reason = Some("token_expired");
        r.user = Some("alice".into());
        r.token_sha256 = Some("0123456789abcdef".into());
        let line = r.to_line();
        assert!(!line.contains('\n'));
        assert!(!line.contains("secret"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["audit"], "mcp_auth_filter");
        assert_eq!(v["outcome"], "deny");
        assert_eq!(v["status"], 401);
        assert_eq!(v["path"], "/mcp");
        assert_eq!(v["reason"], "token_expired");
        assert!(v.get("client_id").is_none());
    }
}
