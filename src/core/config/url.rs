//! The http(s) URLs of the configuration (resource, issuer endpoints) and the callout targets
//! made of them.
//!
//! Deliberately small and strict instead of a general URL parser (which would bring IDNA and
//! Unicode tables into the .wasm): no user info, no fragment, no spaces, ASCII host.

use std::fmt;

use super::error::{err, ConfigError};

/// An absolute http(s) URL as the configuration uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
    /// Path, at least `/`.
    pub path: String,
    pub query: Option<String>,
}

/// Why a value is not an [`HttpUrl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlError {
    NotVisibleAscii,
    NotAbsolute,
    NotHttp,
    Fragment,
    UserInfo,
    UnclosedIpv6,
    InvalidIpv6,
    InvalidHost,
    InvalidPort,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::NotVisibleAscii => "contains spaces, control or non-ASCII characters",
            UrlError::NotAbsolute => "not an absolute URL",
            UrlError::NotHttp => "not an http(s) URL",
            UrlError::Fragment => "must not have a fragment",
            UrlError::UserInfo => "must not contain user info",
            UrlError::UnclosedIpv6 => "unclosed IPv6 address",
            UrlError::InvalidIpv6 => "invalid IPv6 address",
            UrlError::InvalidHost => "missing or invalid host",
            UrlError::InvalidPort => "invalid port",
        })
    }
}

impl std::error::Error for UrlError {}

impl HttpUrl {
    pub fn parse(value: &str) -> Result<HttpUrl, UrlError> {
        if value.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(UrlError::NotVisibleAscii);
        }
        let (scheme, rest) = value.split_once("://").ok_or(UrlError::NotAbsolute)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(UrlError::NotHttp);
        }
        if rest.contains('#') {
            return Err(UrlError::Fragment);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q.to_string())),
            None => (tail, None),
        };
        let path = if path.is_empty() { "/" } else { path };
        Ok(HttpUrl {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_string(),
            query,
        })
    }

    /// `host[:port]`, as `:authority` of a request to this URL.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }

    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority())
    }

    /// Plain HTTP to a host other than this machine: nothing in the URI protects the traffic
    /// (whether a callout uses TLS is decided by its Envoy cluster, not by the scheme).
    pub fn is_plain_http_off_loopback(&self) -> bool {
        self.scheme == "http" && !is_loopback_host(&self.host)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || host.strip_prefix("127.").is_some_and(|rest| {
            rest.split('.').count() == 3 && rest.split('.').all(|o| o.parse::<u8>().is_ok())
        })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or(UrlError::UnclosedIpv6)?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UrlError::InvalidIpv6);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidPort)?),
        };
        let bracketed = authority
            .get(..inside.len() + 2)
            .ok_or(UrlError::InvalidIpv6)?;
        (bracketed, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_name = host.starts_with('[')
        || (!host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !valid_name {
        return Err(UrlError::InvalidHost);
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(UrlError::InvalidPort)?,
        ),
    };
    Ok((host, port))
}

/// An [`HttpUrl`] from the field at `path`.
pub(super) fn parse_http_url(path: &str, value: &str) -> Result<HttpUrl, ConfigError> {
    HttpUrl::parse(value).map_err(|problem| err(path, problem.to_string()))
}

/// An HTTP destination for a callout: Envoy needs the `:authority` and `:path` headers; the
/// origin (`scheme://authority`) is what discovery and load-time warnings compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    pub origin: String,
    pub authority: String,
    pub path: String,
}

/// Splits a URL into the `:authority` and `:path` of an Envoy callout.
pub fn http_target(path: &str, value: &str) -> Result<HttpTarget, ConfigError> {
    let url = parse_http_url(path, value)?;
    let mut request_path = url.path.clone();
    if let Some(q) = &url.query {
        request_path.push('?');
        request_path.push_str(q);
    }
    Ok(HttpTarget {
        origin: url.origin(),
        authority: url.authority(),
        path: request_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let u = HttpUrl::parse("HTTPS://IdP.example.com:8443/a/b?x=1").unwrap();
        assert_eq!(
            (
                u.scheme.as_str(),
                u.host.as_str(),
                u.port,
                u.path.as_str(),
                u.query.as_deref()
            ),
            ("https", "idp.example.com", Some(8443), "/a/b", Some("x=1"))
        );
        assert_eq!(u.authority(), "idp.example.com:8443");
        assert_eq!(HttpUrl::parse("http://127.0.0.1").unwrap().path, "/");
        assert_eq!(
            HttpUrl::parse("http://[::1]:9000/k").unwrap().authority(),
            "[::1]:9000"
        );
        for bad in [
            "idp.example.com/keys",
            "ftp://idp/keys",
            "http://",
            "http://user:pw@idp/keys",
            "http://idp/keys#frag",
            "http://idp:99999/",
            "http://idp:/",
            "http://idp:-1/",
            "http://id p/",
            "http://idp/ke ys",
            "http://[::1/",
            "http://idp\u{e9}/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_flagged_unless_it_stays_on_this_machine() {
        for (url, flagged) in [
            ("http://idp.example.com/keys", true),
            ("http://10.0.0.7:9000/keys", true),
            ("http://127.0.0.1:9000/keys", false),
            ("http://127.1.2.3/keys", false),
            ("http://localhost:9000/keys", false),
            ("http://[::1]:9000/keys", false),
            ("http://127.0.0.1.evil.example/keys", true),
            ("https://idp.example.com/keys", false),
        ] {
            assert_eq!(
                HttpUrl::parse(url).unwrap().is_plain_http_off_loopback(),
                flagged,
                "{url}"
            );
        }
    }

    #[test]
    fn each_url_error_says_what_is_wrong() {
        for (bad, error) in [
            ("http://id p/", UrlError::NotVisibleAscii),
            ("idp.example.com/keys", UrlError::NotAbsolute),
            ("ftp://idp/keys", UrlError::NotHttp),
            ("http://idp/keys#frag", UrlError::Fragment),
            ("http://user:pw@idp/keys", UrlError::UserInfo),
            ("http://[::1/", UrlError::UnclosedIpv6),
            ("http://[zz]/", UrlError::InvalidIpv6),
            ("http://", UrlError::InvalidHost),
            ("http://idp:99999/", UrlError::InvalidPort),
            ("http://[::1]9000/", UrlError::InvalidPort),
        ] {
            assert_eq!(HttpUrl::parse(bad), Err(error), "{bad}");
        }
        assert_eq!(UrlError::NotHttp.to_string(), "not an http(s) URL");
    }

    #[test]
    fn http_target_keeps_the_query_and_names_the_field_on_error() {
        assert_eq!(
            http_target("t", "https://sts.example.com:8443/token?x=1"),
            Ok(HttpTarget {
                origin: "https://sts.example.com:8443".into(),
                authority: "sts.example.com:8443".into(),
                path: "/token?x=1".into()
            })
        );
        let e = http_target("jwks_uri", "ftp://idp/keys").unwrap_err();
        assert_eq!(e.to_string(), "jwks_uri: not an http(s) URL");
    }
}
