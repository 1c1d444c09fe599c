//! What the filter reads of a request's headers, kept while the request waits (the token stays
//! in memory only).

use mcp_auth_core::mcp::gate::PostHead;
use mcp_auth_core::mcp::headers::Mirror;
use mcp_auth_core::request::{Authorization, Request};

#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub repeated_authorization: bool,
    pub is_cors_preflight: bool,
    /// Header names with `_` or upper case, which a CGI-style server (WSGI, PHP, Rack) reads
    /// as the name with `-`: the spellings a client could forge a filter-set header with.
    pub unusual_names: Vec<String>,
    /// What the MCP gate reads of a POST's head (media type, encoding, length, mirrors).
    pub post: PostHead,
}

impl RequestHead {
    /// Reads the head from the request's header pairs. Values are bytes: Envoy passes
    /// 0x80-0xFF through, and a value that is not UTF-8 must not stop the filter (a bad
    /// `Authorization` then fails the bearer grammar: `invalid_request`).
    pub fn from_headers(headers: &[(Vec<u8>, Vec<u8>)]) -> RequestHead {
        let text = |value: &[u8]| String::from_utf8_lossy(value).into_owned();
        let mut head = RequestHead::default();
        let mut authorization_count = 0;
        let mut origin = false;
        let mut preflight_method = false;
        for (name, value) in headers {
            match name.as_slice() {
                b":method" => head.method = text(value),
                b":path" => head.path = text(value),
                b"authorization" => {
                    authorization_count += 1;
                    head.authorization = Some(text(value));
                }
                b"origin" => origin = true,
                b"access-control-request-method" => preflight_method = true,
                b"content-type" => head.post.content_type = Some(text(value)),
                b"content-encoding" => head.post.content_encoding = Some(text(value)),
                b"content-length" => {
                    // Unparseable counts as too long: the gate refuses it.
                    head.post.content_length = Some(text(value).trim().parse().unwrap_or(u64::MAX))
                }
                b"mcp-method" => mirror(&mut head.post.mirrors.method, text(value)),
                b"mcp-name" => mirror(&mut head.post.mirrors.name, text(value)),
                b"mcp-protocol-version" => {
                    mirror(&mut head.post.mirrors.protocol_version, text(value))
                }
                other => {
                    if other.iter().any(|b| *b == b'_' || b.is_ascii_uppercase()) {
                        head.unusual_names
                            .push(String::from_utf8_lossy(other).into_owned());
                    }
                }
            }
        }
        head.repeated_authorization = authorization_count > 1;
        head.is_cors_preflight = head.method == "OPTIONS" && origin && preflight_method;
        head
    }

    /// This request's header names that a server would read as one of `names` (which are
    /// lower case with `-`), other than those names themselves.
    pub fn aliases_of(&self, names: &[String]) -> Vec<String> {
        if self.unusual_names.is_empty() {
            return Vec::new();
        }
        self.unusual_names
            .iter()
            .filter(|n| {
                let canonical = n.to_ascii_lowercase().replace('_', "-");
                names.contains(&canonical)
            })
            .cloned()
            .collect()
    }

    pub fn view(&self) -> Request<'_> {
        Request {
            method: &self.method,
            path: &self.path,
            authorization: match (&self.authorization, self.repeated_authorization) {
                (_, true) => Authorization::Repeated,
                (Some(v), false) => Authorization::Present(v),
                (None, false) => Authorization::Absent,
            },
            is_cors_preflight: self.is_cors_preflight,
        }
    }
}

/// Records a mirror header's value; a second one makes it ambiguous.
fn mirror(slot: &mut Mirror, value: String) {
    *slot = match slot {
        Mirror::Absent => Mirror::Present(value),
        _ => Mirror::Repeated,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &[u8])]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
            .collect()
    }

    #[test]
    fn reads_method_path_and_token() {
        let head = RequestHead::from_headers(&pairs(&[
            (":method", b"POST"),
            (":path", b"/mcp?x=1"),
            ("authorization", b"Bearer abc"),
        ]));
        assert_eq!(head.method, "POST");
        assert_eq!(head.path, "/mcp?x=1");
        assert_eq!(
            head.view().authorization,
            Authorization::Present("Bearer abc")
        );
        assert!(!head.is_cors_preflight);
    }

    #[test]
    fn repeated_authorization_and_preflight() {
        let head = RequestHead::from_headers(&pairs(&[
            (":method", b"OPTIONS"),
            ("origin", b"https://app"),
            ("access-control-request-method", b"POST"),
            ("authorization", b"Bearer a"),
            ("authorization", b"Bearer b"),
        ]));
        assert_eq!(head.view().authorization, Authorization::Repeated);
        assert!(head.is_cors_preflight);
    }

    #[test]
    fn underscore_and_case_spellings_of_filter_headers_are_found() {
        let head = RequestHead::from_headers(&pairs(&[
            ("x_mcp_user_sub", b"admin"),
            ("X-MCP-User-Sub", b"admin"),
            ("x-mcp-user-sub", b"admin"),
            ("x_other", b"1"),
            ("authorization", b"Bearer t"),
        ]));
        let stripped = vec!["authorization".to_string(), "x-mcp-user-sub".to_string()];
        assert_eq!(
            head.aliases_of(&stripped),
            vec!["x_mcp_user_sub".to_string(), "X-MCP-User-Sub".to_string()]
        );
        let plain = RequestHead::from_headers(&pairs(&[("x-mcp-user-sub", b"admin")]));
        assert!(plain.aliases_of(&stripped).is_empty());
    }

    #[test]
    fn the_mcp_post_head_is_read_with_repeats() {
        let head = RequestHead::from_headers(&pairs(&[
            ("content-type", b"application/json"),
            ("content-length", b"42"),
            ("mcp-method", b"tools/call"),
            ("mcp-name", b"a"),
            ("mcp-name", b"b"),
        ]));
        assert_eq!(head.post.content_type.as_deref(), Some("application/json"));
        assert_eq!(head.post.content_length, Some(42));
        assert_eq!(
            head.post.mirrors.method,
            Mirror::Present("tools/call".into())
        );
        assert_eq!(head.post.mirrors.name, Mirror::Repeated);
        assert_eq!(head.post.mirrors.protocol_version, Mirror::Absent);
        let bad_length = RequestHead::from_headers(&pairs(&[("content-length", b"12x")]));
        assert_eq!(bad_length.post.content_length, Some(u64::MAX));
    }

    #[test]
    fn non_utf8_values_do_not_stop_the_read() {
        let head = RequestHead::from_headers(&pairs(&[
            (":method", b"GET"),
            ("authorization", b"Bearer \xff\xfe"),
        ]));
        let Authorization::Present(value) = head.view().authorization else {
            panic!("authorization read")
        };
        assert!(value.contains('\u{fffd}'));
    }
}
