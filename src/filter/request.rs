//! What the filter reads of a request's headers, kept while the request waits (the token stays
//! in memory only).

use mcp_auth_core::authenticator::{Authorization, Request};

#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub repeated_authorization: bool,
    pub is_cors_preflight: bool,
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
                _ => {}
            }
        }
        head.repeated_authorization = authorization_count > 1;
        head.is_cors_preflight = head.method == "OPTIONS" && origin && preflight_method;
        head
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
