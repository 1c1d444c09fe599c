//! A token issuer the filter trusts (`providers.<name>`): its audiences, keys, clock skew and
//! the claims it forwards as request headers.

use std::time::Duration;

use super::duration::optional_duration;
use super::error::{err, ConfigError};
use super::grammar::{check_scope_token, is_http_token};
use super::key_source::{KeySource, KeySources};
use super::reader::Obj;

#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub clock_skew_seconds: u64,
    /// The claims that carry the token's scopes: space-separated strings or arrays (Okta `scp`,
    /// OAuth `scope`, Auth0 `permissions`, Entra `roles` for app permissions).
    pub scope_claims: Vec<String>,
    /// Put before every scope the token carries (Entra ID writes `mcp.access` in `scp` for the
    /// scope clients request as `api://<app>/mcp.access`), so that `required_scopes`, the
    /// challenge and the metadata all name the scope as clients request it.
    pub scope_prefix: Option<String>,
    /// Longest `exp - iat` accepted (Envoy `jwt_authn`'s `max_lifetime`); `None`: unbounded.
    pub max_lifetime: Option<Duration>,
    pub claim_to_headers: Vec<ClaimToHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToHeader {
    pub header_name: String,
    /// Dotted path into the claims (`sub`, `realm_access.roles`).
    pub claim_path: Vec<String>,
}

const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
const DEFAULT_SCOPE_CLAIMS: [&str; 2] = ["scp", "scope"];
const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;

/// Reads `providers` (at `path`): at least one, each with an issuer of its own, since the
/// token's `iss` selects the provider. `resource` is the default audience.
pub(super) fn read_providers(
    path: &str,
    entries: Vec<(String, Obj)>,
    resource: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, ConfigError> {
    if entries.is_empty() {
        return Err(err(path, "at least one provider is required"));
    }
    let providers = entries
        .into_iter()
        .map(|(name, o)| read_provider(name, o, resource, env))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, p) in providers.iter().enumerate() {
        if providers.iter().take(i).any(|q| q.issuer == p.issuer) {
            return Err(err(
                format!("{path}.{}.issuer", p.name),
                "another provider has the same issuer (the token's iss selects the provider)",
            ));
        }
    }
    let introspected: Vec<&Provider> = providers
        .iter()
        .filter(|p| matches!(p.keys, KeySource::Introspection(_)))
        .collect();
    if let [_, second, ..] = introspected.as_slice() {
        return Err(err(
            format!("{path}.{}.introspection", second.name),
            "only one provider may introspect: opaque tokens name no issuer",
        ));
    }
    Ok(providers)
}

fn read_provider(
    name: String,
    mut o: Obj,
    resource: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
    let issuer = o.string("issuer")?;
    let audiences = o.strings("audiences")?;
    let key_sources = KeySources::read(&mut o)?;
    let clock_skew_seconds = o.number("clock_skew_seconds")?;
    let scope_claims = o.strings("scope_claims")?;
    let scope_prefix = o.string("scope_prefix")?;
    let max_lifetime = optional_duration(&mut o, "max_lifetime", Duration::from_secs(1))?;
    let claim_to_headers = o.objects("claim_to_headers")?;
    o.finish()?;

    let issuer = issuer.ok_or_else(|| err(o.at("issuer"), "required"))?;
    if issuer.is_empty() {
        return Err(err(o.at("issuer"), "must not be empty"));
    }
    let audiences = match audiences {
        Some(a) if a.is_empty() => {
            return Err(err(
                o.at("audiences"),
                "must not be empty (omit it to accept the resource URL)",
            ))
        }
        Some(a) => a,
        None => vec![resource.to_string()],
    };
    let keys = key_sources.check(&o, &issuer, env)?;
    let clock_skew_seconds = clock_skew_seconds.unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(err(o.at("clock_skew_seconds"), "at most 3600"));
    }
    let claim_to_headers = claim_to_headers
        .into_iter()
        .map(read_claim_to_header)
        .collect::<Result<_, _>>()?;
    let scope_claims = match scope_claims {
        None => DEFAULT_SCOPE_CLAIMS.iter().map(|s| s.to_string()).collect(),
        Some(list) if list.is_empty() => {
            return Err(err(o.at("scope_claims"), "must not be empty"))
        }
        Some(list) => list,
    };
    if let Some(prefix) = &scope_prefix {
        check_scope_token(&o.at("scope_prefix"), prefix)?;
    }
    Ok(Provider {
        scope_claims,
        scope_prefix,
        name,
        issuer,
        audiences,
        keys,
        clock_skew_seconds,
        max_lifetime,
        claim_to_headers,
    })
}

fn read_claim_to_header(mut o: Obj) -> Result<ClaimToHeader, ConfigError> {
    let header_name = o.string("header_name")?;
    let claim_name = o.string("claim_name")?;
    o.finish()?;

    let header = header_name
        .ok_or_else(|| err(o.at("header_name"), "required"))?
        .to_ascii_lowercase();
    if !is_http_token(&header) {
        return Err(err(o.at("header_name"), "not a valid HTTP header name"));
    }
    if matches!(
        header.as_str(),
        "authorization" | "host" | "content-length" | "cookie"
    ) {
        return Err(err(o.at("header_name"), "this header cannot carry a claim"));
    }
    let claim = claim_name.ok_or_else(|| err(o.at("claim_name"), "required"))?;
    let claim_path: Vec<String> = claim.split('.').map(str::to_string).collect();
    if claim_path.iter().any(String::is_empty) {
        return Err(err(o.at("claim_name"), "empty claim name or path segment"));
    }
    Ok(ClaimToHeader {
        header_name: header,
        claim_path,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use serde_json::json;

    #[test]
    fn max_lifetime_is_an_optional_duration() {
        let c = load(&base()).unwrap();
        assert_eq!(c.providers[0].max_lifetime, None);
        let mut v = base();
        v["providers"]["okta"]["max_lifetime"] = json!("3600s");
        let c = load(&v).unwrap();
        assert_eq!(
            c.providers[0].max_lifetime,
            Some(std::time::Duration::from_secs(3600))
        );
        v["providers"]["okta"]["max_lifetime"] = json!("soon");
        assert_eq!(load(&v).unwrap_err().path, "providers.okta.max_lifetime");
    }

    #[test]
    fn duplicate_issuers_are_refused() {
        let mut v = base();
        let okta = v["providers"]["okta"].clone();
        v["providers"]["second"] = okta;
        assert_eq!(load(&v).unwrap_err().path, "providers.second.issuer");
    }

    #[test]
    fn at_least_one_provider_is_required() {
        let mut v = base();
        v["providers"] = json!({});
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "providers: at least one provider is required"
        );
    }

    #[test]
    fn provider_errors_name_the_field() {
        let okta = "/providers/okta";
        for (pointer, value, path, problem) in [
            (
                "issuer",
                json!(""),
                "providers.okta.issuer",
                "must not be empty",
            ),
            (
                "audiences",
                json!([]),
                "providers.okta.audiences",
                "must not be empty (omit it to accept the resource URL)",
            ),
            (
                "clock_skew_seconds",
                json!(3601),
                "providers.okta.clock_skew_seconds",
                "at most 3600",
            ),
            (
                "claim_to_headers",
                json!([{"header_name": "x user", "claim_name": "sub"}]),
                "providers.okta.claim_to_headers[0].header_name",
                "not a valid HTTP header name",
            ),
            (
                "claim_to_headers",
                json!([{"header_name": "x-a", "claim_name": "a..b"}]),
                "providers.okta.claim_to_headers[0].claim_name",
                "empty claim name or path segment",
            ),
            (
                "claim_to_headers",
                json!([{"header_name": "x-a"}]),
                "providers.okta.claim_to_headers[0].claim_name",
                "required",
            ),
        ] {
            let mut v = base();
            v.pointer_mut(okta).unwrap()[pointer] = value;
            let e = load(&v).unwrap_err();
            assert_eq!((e.path.as_str(), e.problem.as_str()), (path, problem));
        }
    }

    #[test]
    fn a_misspelt_issuer_is_reported_as_unknown_not_missing() {
        let mut v = base();
        let okta = v["providers"]["okta"].as_object_mut().unwrap();
        let issuer = okta.remove("issuer").unwrap();
        okta.insert("isuer".into(), issuer);
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "providers.okta.isuer");
        assert_eq!(
            e.problem,
            "unknown field, expected one of: issuer, audiences, remote_jwks, local_jwks, \
             oidc_discovery, introspection, clock_skew_seconds, scope_claims, scope_prefix, \
             max_lifetime, claim_to_headers"
        );
    }

    #[test]
    fn claim_paths_are_split_on_dots() {
        let mut v = base();
        v["providers"]["okta"]["claim_to_headers"] =
            json!([{"header_name": "X-Roles", "claim_name": "realm_access.roles"}]);
        let c = load(&v).unwrap();
        let claim = &c.providers[0].claim_to_headers[0];
        assert_eq!(claim.header_name, "x-roles");
        assert_eq!(claim.claim_path, vec!["realm_access", "roles"]);
    }
}
