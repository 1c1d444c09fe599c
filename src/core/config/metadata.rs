//! What the protected-resource metadata (RFC 9728) advertises: the resource and where its
//! metadata lives, the authorization servers, the scopes.

use super::error::{err, ConfigError};
use super::grammar::check_scope_token;
use super::provider::Provider;
use super::url::parse_http_url;

pub const PRM_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// The canonical resource URL and the path-inserted metadata URL derived from it.
pub(super) struct Resource {
    pub url: String,
    pub metadata_path: String,
    pub metadata_url: String,
}

/// Checks `resource` (at `path`), which is required.
pub(super) fn resource(path: &str, resource: Option<String>) -> Result<Resource, ConfigError> {
    let resource =
        resource.ok_or_else(|| err(path, "required: the canonical URL of the MCP resource"))?;
    let url = parse_http_url(path, &resource)?;
    if url.query.is_some() {
        return Err(err(path, "must not have a query (RFC 9728)"));
    }
    let metadata_path = format!("{PRM_WELL_KNOWN}{}", url.path.trim_end_matches('/'));
    let metadata_url = format!("{}{metadata_path}", url.origin());
    Ok(Resource {
        url: resource,
        metadata_path,
        metadata_url,
    })
}

/// `authorization_servers`, by default the providers' issuers.
pub(super) fn authorization_servers(
    path: &str,
    listed: Option<Vec<String>>,
    providers: &[Provider],
) -> Result<Vec<String>, ConfigError> {
    let Some(list) = listed else {
        return Ok(providers.iter().map(|p| p.issuer.clone()).collect());
    };
    if list.is_empty() {
        return Err(err(path, "must not be empty"));
    }
    for (i, s) in list.iter().enumerate() {
        parse_http_url(&format!("{path}[{i}]"), s)?;
    }
    Ok(list)
}

/// The scopes advertised: `scopes_supported`, which must list every required scope, or else
/// the required scopes themselves.
pub(super) fn scopes_supported(
    supported: Option<Vec<String>>,
    required: &[String],
) -> Result<Vec<String>, ConfigError> {
    for (i, s) in required.iter().enumerate() {
        check_scope_token(&format!("required_scopes[{i}]"), s)?;
    }
    let Some(list) = supported else {
        return Ok(required.to_vec());
    };
    for (i, s) in list.iter().enumerate() {
        check_scope_token(&format!("scopes_supported[{i}]"), s)?;
    }
    if let Some((i, s)) = required.iter().enumerate().find(|(_, s)| !list.contains(s)) {
        return Err(err(
            format!("required_scopes[{i}]"),
            format!("{s:?} is not listed in scopes_supported, so clients cannot discover it"),
        ));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use super::*;

    #[test]
    fn resource_at_root_uses_the_root_metadata_path() {
        let mut v = base();
        v["resource"] = "http://127.0.0.1:10000".into();
        let c = load(&v).unwrap();
        assert_eq!(c.resource_metadata_path, PRM_WELL_KNOWN);
        assert_eq!(
            c.resource_metadata_url,
            "http://127.0.0.1:10000/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn the_resource_is_an_http_url_without_a_query() {
        let e = resource("resource", Some("https://mcp.example.com/mcp?x=1".into()))
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "resource: must not have a query (RFC 9728)");
        let e = resource("resource", None).err().unwrap();
        assert_eq!(
            e.to_string(),
            "resource: required: the canonical URL of the MCP resource"
        );
        let r = resource("resource", Some("https://MCP.example.com/a/".into())).unwrap();
        assert_eq!(r.url, "https://MCP.example.com/a/");
        assert_eq!(
            r.metadata_url,
            "https://mcp.example.com/.well-known/oauth-protected-resource/a"
        );
    }

    #[test]
    fn listed_authorization_servers_are_urls() {
        let mut v = base();
        v["authorization_servers"] = serde_json::json!(["https://as.example.com"]);
        assert_eq!(
            load(&v).unwrap().authorization_servers,
            vec!["https://as.example.com"]
        );
        v["authorization_servers"] = serde_json::json!([]);
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "authorization_servers: must not be empty"
        );
        v["authorization_servers"] = serde_json::json!(["https://as.example.com", "as"]);
        assert_eq!(load(&v).unwrap_err().path, "authorization_servers[1]");
    }

    #[test]
    fn scopes_supported_defaults_to_the_required_scopes() {
        let required = vec!["a".to_string()];
        assert_eq!(scopes_supported(None, &required), Ok(required.clone()));
        let listed = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            scopes_supported(Some(listed.clone()), &required),
            Ok(listed)
        );
        let e = scopes_supported(Some(vec!["b c".into()]), &required).unwrap_err();
        assert_eq!(e.path, "scopes_supported[0]");
    }
}
