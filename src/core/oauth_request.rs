//! A form POST to an authorization server (token endpoint, introspection endpoint), with the
//! filter's client authentication: what the proxy-wasm layer sends as an HTTP callout.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::config::{ClientAuth, HttpTarget};

/// A callout for the proxy-wasm layer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalloutRequest {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// `application/x-www-form-urlencoded`, built field by field.
#[derive(Default)]
pub struct FormBody(String);

impl FormBody {
    pub fn field(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(&form_encode(name));
        self.0.push('=');
        self.0.push_str(&form_encode(value));
    }

    /// The POST of this form to `target` through `cluster`, authenticated as `client`.
    pub fn post(
        mut self,
        cluster: &str,
        target: &HttpTarget,
        client: &ClientAuth,
        timeout: Duration,
    ) -> CalloutRequest {
        let mut headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), target.path.clone()),
            (":authority".to_string(), target.authority.clone()),
            (
                "content-type".to_string(),
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept".to_string(), "application/json".to_string()),
            ("user-agent".to_string(), "mcp-auth-filter".to_string()),
        ];
        match client {
            ClientAuth::Basic { client_id, secret } => {
                // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
                let credentials = format!("{}:{}", form_encode(client_id), form_encode(&secret.0));
                headers.push((
                    "authorization".to_string(),
                    format!("Basic {}", STANDARD.encode(credentials)),
                ));
            }
            ClientAuth::Post { client_id, secret } => {
                self.field("client_id", client_id);
                self.field("client_secret", &secret.0);
            }
            ClientAuth::None { client_id } => {
                if let Some(id) = client_id {
                    self.field("client_id", id);
                }
            }
        }
        CalloutRequest {
            cluster: cluster.to_string(),
            headers,
            body: self.0.into_bytes(),
            timeout,
        }
    }
}

/// The form-urlencoding of RFC 6749 appendix B: unreserved bytes as they are, space as `+`,
/// everything else percent-encoded.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
    }
}
