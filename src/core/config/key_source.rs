//! Where a provider's signing keys come from: exactly one of `local_jwks` (in the document),
//! `remote_jwks` (a JWKS URL) or `oidc_discovery` (the issuer's OpenID configuration names the
//! JWKS URL).

use std::time::Duration;

use super::callout::{self, Callout, Endpoint};
use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::introspection::{read_introspection, IntrospectionConfig};
use super::reader::Obj;
use super::url::{http_target, parse_http_url, HttpTarget};
use crate::jwks::KeySet;

/// How a provider's tokens are checked: against keys (a signature), or by asking the IdP.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Keys given in the configuration, parsed at load.
    Local(KeySet),
    /// Keys fetched through an Envoy cluster and refreshed in the background.
    Remote(RemoteKeys),
    /// No keys: each token is introspected at the IdP (RFC 7662).
    Introspection(IntrospectionConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    pub cluster: String,
    /// Where the first fetch goes: the JWKS itself or the issuer's OpenID configuration.
    pub start: FetchTarget,
    pub timeout: Duration,
    pub cache_duration: Duration,
    pub failed_refetch_duration: Duration,
    pub unknown_kid_refetch_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchTarget {
    Jwks(HttpTarget),
    Discovery(Discovery),
}

/// OIDC discovery: where the OpenID configuration is, and what its answer must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub target: HttpTarget,
    /// The document's `issuer` must equal this (OpenID Connect Discovery 1.0 §4.3).
    pub issuer: String,
    /// Origins the discovered `jwks_uri` may point at: the issuer's own, plus
    /// `allowed_jwks_origins`. Keys from elsewhere are refused.
    pub jwks_origins: Vec<String>,
}

const DEFAULT_CACHE_DURATION: Duration = Duration::from_secs(600);
const DEFAULT_FAILED_REFETCH: Duration = Duration::from_secs(1);
const DEFAULT_UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);

/// The key-source fields of a provider, read with its other fields and checked after them.
pub(super) struct KeySources<'a> {
    remote_jwks: Option<Obj<'a>>,
    local_jwks: Option<Obj<'a>>,
    oidc_discovery: Option<Obj<'a>>,
    introspection: Option<Obj<'a>>,
}

impl<'a> KeySources<'a> {
    pub(super) fn read(provider: &mut Obj<'a>) -> Result<KeySources<'a>, ConfigError> {
        Ok(KeySources {
            remote_jwks: provider.object("remote_jwks")?,
            local_jwks: provider.object("local_jwks")?,
            oidc_discovery: provider.object("oidc_discovery")?,
            introspection: provider.object("introspection")?,
        })
    }

    /// The one key source given; `issuer` is where discovery looks; `env` holds secrets.
    pub(super) fn check(
        self,
        provider: &Obj,
        issuer: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KeySource, ConfigError> {
        match (
            self.remote_jwks,
            self.local_jwks,
            self.oidc_discovery,
            self.introspection,
        ) {
            (Some(r), None, None, None) => remote_jwks(r).map(KeySource::Remote),
            (None, Some(l), None, None) => local_jwks(l).map(KeySource::Local),
            (None, None, Some(d), None) => {
                oidc_discovery(d, &provider.at("issuer"), issuer).map(KeySource::Remote)
            }
            (None, None, None, Some(i)) => read_introspection(i, env).map(KeySource::Introspection),
            _ => Err(err(
                provider.path(),
                "give exactly one of remote_jwks, local_jwks, oidc_discovery or introspection",
            )),
        }
    }
}

/// What `remote_jwks` and `oidc_discovery` have in common besides their callout: how long keys
/// are kept and how soon they may be fetched again.
struct Refresh {
    cache_duration: Duration,
    failed_refetch_duration: Duration,
    unknown_kid_refetch_interval: Duration,
}

impl Refresh {
    fn read(o: &mut Obj) -> Result<Refresh, ConfigError> {
        Ok(Refresh {
            cache_duration: duration_at_least(
                o,
                "cache_duration",
                DEFAULT_CACHE_DURATION,
                Duration::from_secs(1),
            )?,
            failed_refetch_duration: duration_at_least(
                o,
                "failed_refetch_duration",
                DEFAULT_FAILED_REFETCH,
                Duration::from_millis(100),
            )?,
            unknown_kid_refetch_interval: duration_at_least(
                o,
                "unknown_kid_refetch_interval",
                DEFAULT_UNKNOWN_KID_REFETCH,
                Duration::from_secs(1),
            )?,
        })
    }

    /// Remote keys first fetched from `start` through `callout`.
    fn remote_keys(self, start: FetchTarget, callout: Callout) -> RemoteKeys {
        RemoteKeys {
            cluster: callout.cluster,
            start,
            timeout: callout.timeout,
            cache_duration: self.cache_duration,
            failed_refetch_duration: self.failed_refetch_duration,
            unknown_kid_refetch_interval: self.unknown_kid_refetch_interval,
        }
    }
}

/// `remote_jwks`: the JWKS URL in `http_uri`, which also holds the callout.
fn remote_jwks(mut o: Obj) -> Result<RemoteKeys, ConfigError> {
    let http_uri = o.object("http_uri")?;
    let refresh = Refresh::read(&mut o)?;
    o.finish()?;
    let http_uri = http_uri.ok_or_else(|| err(o.at("http_uri"), "required"))?;
    let endpoint = Endpoint::read(http_uri)?;
    Ok(refresh.remote_keys(FetchTarget::Jwks(endpoint.target), endpoint.callout))
}

/// `oidc_discovery`: the callout itself; the URL is the issuer's OpenID configuration.
fn oidc_discovery(mut o: Obj, issuer_path: &str, issuer: &str) -> Result<RemoteKeys, ConfigError> {
    let cluster = o.string("cluster")?;
    let timeout = callout::timeout(&mut o)?;
    let refresh = Refresh::read(&mut o)?;
    let allowed_jwks_origins = o.strings("allowed_jwks_origins")?.unwrap_or_default();
    o.finish()?;
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let target = http_target(issuer_path, &discovery_url)?;
    let cluster = callout::cluster_name(&o.at("cluster"), cluster)?;
    let mut jwks_origins = vec![target.origin.clone()];
    for (i, origin) in allowed_jwks_origins.iter().enumerate() {
        let path = format!("{}[{i}]", o.at("allowed_jwks_origins"));
        let url = parse_http_url(&path, origin)?;
        if url.path != "/" || url.query.is_some() || origin.ends_with('/') {
            return Err(err(path, "an origin (scheme://host[:port]) without a path"));
        }
        jwks_origins.push(url.origin());
    }
    let discovery = Discovery {
        target,
        issuer: issuer.to_string(),
        jwks_origins,
    };
    Ok(refresh.remote_keys(
        FetchTarget::Discovery(discovery),
        Callout { cluster, timeout },
    ))
}

/// `local_jwks`: the key set inline (a wasm filter cannot read files).
fn local_jwks(mut o: Obj) -> Result<KeySet, ConfigError> {
    let inline_string = o.string("inline_string")?;
    let filename = o.string("filename")?;
    o.finish()?;
    if filename.is_some() {
        return Err(err(
            o.at("filename"),
            "a wasm filter cannot read files; use inline_string",
        ));
    }
    let inline = inline_string.ok_or_else(|| err(o.at("inline_string"), "required"))?;
    KeySet::parse(inline.as_bytes()).map_err(|e| err(o.at("inline_string"), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use super::*;

    #[test]
    fn exactly_one_key_source() {
        let mut v = base();
        v["providers"]["okta"]["local_jwks"] =
            serde_json::json!({"inline_string": "{\"keys\":[]}"});
        assert_eq!(load(&v).unwrap_err().path, "providers.okta");
        let mut v = base();
        v["providers"]["okta"]
            .as_object_mut()
            .unwrap()
            .remove("remote_jwks");
        assert_eq!(load(&v).unwrap_err().path, "providers.okta");
    }

    #[test]
    fn local_jwks_is_parsed_at_load() {
        let mut v = base();
        let p = v["providers"]["okta"].as_object_mut().unwrap();
        p.remove("remote_jwks");
        p.insert(
            "local_jwks".into(),
            serde_json::json!({"inline_string": "not json"}),
        );
        let e = load(&v).unwrap_err();
        assert_eq!(e.path, "providers.okta.local_jwks.inline_string");
    }

    #[test]
    fn discovery_targets_the_issuers_openid_configuration() {
        let mut v = base();
        let p = v["providers"]["okta"].as_object_mut().unwrap();
        p.remove("remote_jwks");
        p.insert(
            "oidc_discovery".into(),
            serde_json::json!({"cluster": "okta"}),
        );
        let c = load(&v).unwrap();
        match &c.providers[0].keys {
            KeySource::Remote(r) => assert_eq!(
                r.start,
                FetchTarget::Discovery(Discovery {
                    target: HttpTarget {
                        origin: "https://idp.example.com".into(),
                        authority: "idp.example.com".into(),
                        path: "/oauth2/default/.well-known/openid-configuration".into()
                    },
                    issuer: "https://idp.example.com/oauth2/default".into(),
                    jwks_origins: vec!["https://idp.example.com".into()],
                })
            ),
            other => panic!("expected remote, got {other:?}"),
        }
    }

    #[test]
    fn discovery_may_allow_other_jwks_origins() {
        let r = remote_keys(
            "oidc_discovery",
            serde_json::json!({"cluster": "okta",
                "allowed_jwks_origins": ["https://keys.example.com", "HTTPS://Other.example.com:8443"]}),
        )
        .unwrap();
        let FetchTarget::Discovery(d) = r.start else {
            panic!("expected discovery")
        };
        assert_eq!(
            d.jwks_origins,
            [
                "https://idp.example.com",
                "https://keys.example.com",
                "https://other.example.com:8443"
            ]
        );
        for bad in [
            "https://keys.example.com/jwks",
            "keys.example.com",
            "https://k/",
        ] {
            let e = remote_keys(
                "oidc_discovery",
                serde_json::json!({"cluster": "okta", "allowed_jwks_origins": [bad]}),
            )
            .unwrap_err();
            assert_eq!(
                e.path, "providers.okta.oidc_discovery.allowed_jwks_origins[0]",
                "{bad}"
            );
        }
    }

    fn remote_keys(source: &str, settings: serde_json::Value) -> Result<RemoteKeys, ConfigError> {
        let mut v = base();
        let p = v["providers"]["okta"].as_object_mut().unwrap();
        p.remove("remote_jwks");
        p.insert(source.into(), settings);
        match load(&v)?.providers[0].keys.clone() {
            KeySource::Remote(r) => Ok(r),
            other => panic!("expected remote, got {other:?}"),
        }
    }

    #[test]
    fn remote_jwks_and_discovery_share_defaults_and_limits() {
        let uri = "https://idp.example.com/oauth2/default/v1/keys";
        let jwks = remote_keys(
            "remote_jwks",
            serde_json::json!({"http_uri": {"uri": uri, "cluster": "okta"}}),
        )
        .unwrap();
        let discovery =
            remote_keys("oidc_discovery", serde_json::json!({"cluster": "okta"})).unwrap();
        for r in [&jwks, &discovery] {
            assert_eq!(r.cluster, "okta");
            assert_eq!(r.timeout, Duration::from_secs(5));
            assert_eq!(r.cache_duration, Duration::from_secs(600));
            assert_eq!(r.failed_refetch_duration, Duration::from_secs(1));
            assert_eq!(r.unknown_kid_refetch_interval, Duration::from_secs(30));
        }
        for (field, too_short) in [
            ("cache_duration", "500ms"),
            ("failed_refetch_duration", "50ms"),
            ("unknown_kid_refetch_interval", "999ms"),
        ] {
            let e = remote_keys(
                "remote_jwks",
                serde_json::json!({"http_uri": {"uri": uri, "cluster": "okta"}, field: too_short}),
            )
            .unwrap_err();
            assert_eq!(e.path, format!("providers.okta.remote_jwks.{field}"));
            let e = remote_keys(
                "oidc_discovery",
                serde_json::json!({"cluster": "okta", field: too_short}),
            )
            .unwrap_err();
            assert_eq!(e.path, format!("providers.okta.oidc_discovery.{field}"));
        }
        let e = remote_keys("oidc_discovery", serde_json::json!({"timeout": "1s"})).unwrap_err();
        assert_eq!(e.path, "providers.okta.oidc_discovery.cluster");
    }

    #[test]
    fn a_misspelt_required_field_is_reported_as_unknown_not_missing() {
        let e = remote_keys("remote_jwks", serde_json::json!({"htp_uri": {}})).unwrap_err();
        assert_eq!(e.path, "providers.okta.remote_jwks.htp_uri");
        assert_eq!(
            e.problem,
            "unknown field, expected one of: http_uri, cache_duration, \
             failed_refetch_duration, unknown_kid_refetch_interval"
        );
        let e = remote_keys("oidc_discovery", serde_json::json!({"clustr": "okta"})).unwrap_err();
        assert_eq!(e.path, "providers.okta.oidc_discovery.clustr");
        assert_eq!(
            e.problem,
            "unknown field, expected one of: cluster, timeout, cache_duration, \
             failed_refetch_duration, unknown_kid_refetch_interval, allowed_jwks_origins"
        );
    }
}
