//! MCP 2026-07-28 "Request Metadata": `Mcp-Method`, `Mcp-Name` and `MCP-Protocol-Version`
//! mirror the body so intermediaries can route without parsing it. Whoever reads the body MUST
//! reject a mirror that disagrees with it, or is missing where required, with HTTP 400 and
//! JSON-RPC `-32020` (HeaderMismatch). The filter decides from the body, never the headers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::mcp::message::{Body, Message};

/// The first protocol version whose clients must send the mirrors (and whose servers check).
pub const HEADERS_REQUIRED_FROM: &str = "2026-07-28";

/// The mirror headers of a request as received. `Repeated` when a header came more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorHeaders {
    pub method: Mirror,
    pub name: Mirror,
    pub protocol_version: Mirror,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mirror {
    #[default]
    Absent,
    Present(String),
    Repeated,
}

/// Which mirror disagrees with the body (for the message and the counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Method,
    Name,
    ProtocolVersion,
}

impl Mismatch {
    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::Method => "Mcp-Method header does not match the request body's method",
            Mismatch::Name => "Mcp-Name header does not match the request body's name or uri",
            Mismatch::ProtocolVersion => {
                "MCP-Protocol-Version header does not match the request body's protocol version"
            }
        }
    }
}

/// Protocol versions are dates (`YYYY-MM-DD`): they compare as strings.
fn requires_mirrors(version: &str) -> bool {
    version >= HEADERS_REQUIRED_FROM
}

/// Checks the mirrors against the body.
pub fn check(headers: &MirrorHeaders, body: &Body) -> Result<(), Mismatch> {
    let messages = body.messages();
    if matches!(body, Body::Batch(_)) {
        // Batches predate the mirrors (2025-03-26): a mirror cannot describe several messages.
        let any_mirror = headers.method != Mirror::Absent || headers.name != Mirror::Absent;
        let modern_version = match &headers.protocol_version {
            Mirror::Present(v) => requires_mirrors(v),
            Mirror::Repeated => true,
            Mirror::Absent => false,
        };
        let modern_body = messages
            .iter()
            .any(|m| m.protocol_version().is_some_and(requires_mirrors));
        if any_mirror || modern_version || modern_body {
            return Err(Mismatch::Method);
        }
        return Ok(());
    }
    match messages.first() {
        Some(message) => check_message(headers, message),
        None => Ok(()),
    }
}

fn check_message(headers: &MirrorHeaders, message: &Message) -> Result<(), Mismatch> {
    let is_request = matches!(message, Message::Request { .. });
    // The version that applies: the body's, else the header's.
    let body_version = message.protocol_version();
    let header_version = match &headers.protocol_version {
        Mirror::Present(v) => Some(v.as_str()),
        Mirror::Absent => None,
        Mirror::Repeated => return Err(Mismatch::ProtocolVersion),
    };
    match (body_version, header_version) {
        (Some(b), Some(h)) if b != h => return Err(Mismatch::ProtocolVersion),
        (Some(b), None) if requires_mirrors(b) => return Err(Mismatch::ProtocolVersion),
        // A modern header on a request without the modern `_meta` does not describe it.
        (None, Some(h)) if requires_mirrors(h) && is_request => {
            return Err(Mismatch::ProtocolVersion)
        }
        _ => {}
    }
    // The spec requires mirrors on requests; notifications need none.
    let required = is_request
        && body_version
            .or(header_version)
            .is_some_and(requires_mirrors);

    let Some(method) = message.method() else {
        // A response to a server request carries no method to mirror.
        return match headers.method {
            Mirror::Absent => Ok(()),
            _ => Err(Mismatch::Method),
        };
    };
    match &headers.method {
        Mirror::Present(m) if m != method => return Err(Mismatch::Method),
        Mirror::Repeated => return Err(Mismatch::Method),
        Mirror::Absent if required => return Err(Mismatch::Method),
        _ => {}
    }
    let name = message.operation().map(|o| o.name.as_str());
    match (&headers.name, name) {
        (Mirror::Repeated, _) => Err(Mismatch::Name),
        (Mirror::Present(_), None) => Err(Mismatch::Name),
        (Mirror::Present(h), Some(n)) if decode(h).as_deref() != Some(n) => Err(Mismatch::Name),
        (Mirror::Absent, Some(_)) if required => Err(Mismatch::Name),
        _ => Ok(()),
    }
}

/// The mirrors that describe a single-message body (`mcp-method`, and `mcp-name` for the
/// operations that have one), spelled as a 2026-07-28 client spells them. None for a batch
/// (no mirror can describe several messages) or a response.
pub fn mirrors_of(body: &Body) -> Vec<(&'static str, String)> {
    let Body::Single(message) = body else {
        return Vec::new();
    };
    let Some(method) = message.method() else {
        return Vec::new();
    };
    let mut mirrors = vec![(METHOD_HEADER, method.to_string())];
    if let Some(operation) = message.operation() {
        mirrors.push((NAME_HEADER, encode(&operation.name)));
    }
    mirrors
}

/// The header names of the mirrors the filter sets (lowercase, as Envoy keeps them).
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";

/// A mirror's spelling: plain when it is visible ASCII without surrounding spaces (and not
/// itself a sentinel), else `=?base64?…?=` (standard alphabet, padded, UTF-8).
pub fn encode(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value == value.trim()
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_string()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value.as_bytes()))
    }
}

/// A mirror's value: as it is, or decoded from `=?base64?…?=` (standard alphabet, padded,
/// UTF-8) for values that are not plain visible ASCII. `None` when the sentinel form is broken.
pub fn decode(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(payload) => {
            let bytes = STANDARD.decode(payload).ok()?;
            // Canonical encoding only: one value, one spelling.
            if STANDARD.encode(&bytes) != payload {
                return None;
            }
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::message::parse;

    fn body(method: &str, name: Option<&str>, version: Option<&str>) -> Body {
        let mut params = serde_json::Map::new();
        if let Some(n) = name {
            let member = if method == "resources/read" {
                "uri"
            } else {
                "name"
            };
            params.insert(member.into(), n.into());
        }
        if let Some(v) = version {
            params.insert(
                "_meta".into(),
                serde_json::json!({ "io.modelcontextprotocol/protocolVersion": v }),
            );
        }
        let doc =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        parse(doc.to_string().as_bytes()).unwrap()
    }

    fn mirrors(method: Option<&str>, name: Option<&str>, version: Option<&str>) -> MirrorHeaders {
        let m = |v: Option<&str>| v.map_or(Mirror::Absent, |s| Mirror::Present(s.into()));
        MirrorHeaders {
            method: m(method),
            name: m(name),
            protocol_version: m(version),
        }
    }

    const V: &str = "2026-07-28";

    #[test]
    fn mirrors_are_spelled_as_clients_spell_them() {
        let b = body("tools/call", Some("grüße"), None);
        assert_eq!(
            mirrors_of(&b),
            vec![
                ("mcp-method", "tools/call".to_string()),
                ("mcp-name", "=?base64?Z3LDvMOfZQ==?=".to_string())
            ]
        );
        let r = body("resources/read", Some("file:///a b"), None);
        assert_eq!(mirrors_of(&r)[1].1, "file:///a b");
        let listed = body("tools/list", None, None);
        assert_eq!(
            mirrors_of(&listed),
            vec![("mcp-method", "tools/list".to_string())]
        );
        for tricky in [" padded", "=?base64?eA==?=", "tab\there", ""] {
            assert_eq!(
                decode(&encode(tricky)).as_deref(),
                Some(tricky),
                "{tricky:?}"
            );
        }
        assert!(encode(" padded").starts_with("=?base64?"));
        let batch = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap();
        assert!(mirrors_of(&batch).is_empty());
    }

    #[test]
    fn modern_requests_need_matching_mirrors() {
        let b = body("tools/call", Some("query"), Some(V));
        assert_eq!(
            check(&mirrors(Some("tools/call"), Some("query"), Some(V)), &b),
            Ok(())
        );
        assert_eq!(
            check(&mirrors(Some("tools/call"), Some("drop"), Some(V)), &b),
            Err(Mismatch::Name)
        );
        assert_eq!(
            check(&mirrors(Some("tools/call"), None, Some(V)), &b),
            Err(Mismatch::Name)
        );
        assert_eq!(
            check(&mirrors(None, Some("query"), Some(V)), &b),
            Err(Mismatch::Method)
        );
        assert_eq!(
            check(&mirrors(Some("tools/list"), Some("query"), Some(V)), &b),
            Err(Mismatch::Method)
        );
        assert_eq!(
            check(&mirrors(Some("tools/call"), Some("query"), None), &b),
            Err(Mismatch::ProtocolVersion)
        );
        assert_eq!(
            check(
                &mirrors(Some("tools/call"), Some("query"), Some("2026-08-01")),
                &b
            ),
            Err(Mismatch::ProtocolVersion)
        );
        let mut repeated = mirrors(Some("tools/call"), Some("query"), Some(V));
        repeated.name = Mirror::Repeated;
        assert_eq!(check(&repeated, &b), Err(Mismatch::Name));
        // A method without a name: no Mcp-Name, and none may be sent.
        let list = body("tools/list", None, Some(V));
        assert_eq!(
            check(&mirrors(Some("tools/list"), None, Some(V)), &list),
            Ok(())
        );
        assert_eq!(
            check(&mirrors(Some("tools/list"), Some("x"), Some(V)), &list),
            Err(Mismatch::Name)
        );
    }

    #[test]
    fn legacy_requests_may_omit_mirrors_but_not_contradict_them() {
        let b = body("tools/call", Some("query"), None);
        assert_eq!(check(&MirrorHeaders::default(), &b), Ok(()));
        assert_eq!(check(&mirrors(None, None, Some("2025-11-25")), &b), Ok(()));
        assert_eq!(
            check(
                &mirrors(Some("tools/call"), Some("drop"), Some("2025-11-25")),
                &b
            ),
            Err(Mismatch::Name)
        );
        // A modern version in the header on a body without the modern `_meta`.
        assert_eq!(
            check(&mirrors(Some("tools/call"), Some("query"), Some(V)), &b),
            Err(Mismatch::ProtocolVersion)
        );
    }

    #[test]
    fn base64_names_are_decoded_canonically() {
        let b = body("tools/call", Some("grüße"), Some(V));
        let encoded = "=?base64?Z3LDvMOfZQ==?=";
        assert_eq!(
            check(&mirrors(Some("tools/call"), Some(encoded), Some(V)), &b),
            Ok(())
        );
        for bad in ["=?base64?Z3LDvMOfZQ?=", "=?base64?!!!?=", "=?base64?/w==?="] {
            assert_eq!(
                check(&mirrors(Some("tools/call"), Some(bad), Some(V)), &b),
                Err(Mismatch::Name),
                "{bad}"
            );
        }
        assert_eq!(decode("plain"), Some("plain".into()));
    }

    #[test]
    fn modern_notifications_need_no_mirrors() {
        let note =
            parse(br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#).unwrap();
        assert_eq!(check(&mirrors(None, None, Some(V)), &note), Ok(()));
        assert_eq!(
            check(&mirrors(Some("ping"), None, Some(V)), &note),
            Err(Mismatch::Method)
        );
    }

    #[test]
    fn batches_carry_no_mirrors() {
        let batch = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#)
            .unwrap();
        assert_eq!(check(&MirrorHeaders::default(), &batch), Ok(()));
        assert_eq!(
            check(&mirrors(Some("ping"), None, None), &batch),
            Err(Mismatch::Method)
        );
    }
}
