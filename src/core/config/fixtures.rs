//! The document the configuration tests start from, and how they load it.

use super::{Config, ConfigError};

/// A valid configuration: one provider with remote keys and a claim header.
pub fn base() -> serde_json::Value {
    serde_json::json!({
        "resource": "https://mcp.example.com/mcp",
        "required_scopes": ["mcp:tools:call"],
        "providers": {
            "okta": {
                "issuer": "https://idp.example.com/oauth2/default",
                "remote_jwks": {
                    "http_uri": {
                        "uri": "https://idp.example.com/oauth2/default/v1/keys",
                        "cluster": "okta",
                        "timeout": "2s"
                    },
                    "cache_duration": "300s"
                },
                "claim_to_headers": [{"header_name": "X-User", "claim_name": "sub"}]
            }
        }
    })
}

pub fn load(v: &serde_json::Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes())
}
