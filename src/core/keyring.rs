//! The signing keys of every provider, local or remote, in configuration order.

use crate::cache::{sha256, Digest};
use crate::config::{Config, FetchTarget, KeySource, ProviderId, RemoteKeys};
use crate::jwks::KeySet;
use crate::jwks_cache::{Availability, JwksCache};
use crate::time::UnixMillis;

pub struct Keyring {
    providers: Vec<ProviderKeys>,
}

enum ProviderKeys {
    /// The IdP vouches for each token (introspection): no keys.
    None,
    Local(KeySet),
    Remote {
        cache: Box<JwksCache>,
        namespace: Digest,
    },
}

impl Keyring {
    pub fn new(config: &Config) -> Keyring {
        let providers = config
            .providers
            .iter()
            .map(|p| match &p.keys {
                KeySource::Introspection(_) => ProviderKeys::None,
                KeySource::Local(set) => ProviderKeys::Local(set.clone()),
                KeySource::Remote(r) => ProviderKeys::Remote {
                    namespace: key_source_namespace(&p.issuer, r),
                    cache: Box::new(JwksCache::new(r.clone())),
                },
            })
            .collect();
        Keyring { providers }
    }

    /// The providers whose keys are fetched.
    pub fn remote_providers(&self) -> impl Iterator<Item = ProviderId> + '_ {
        self.providers
            .iter()
            .enumerate()
            .filter(|(_, k)| matches!(k, ProviderKeys::Remote { .. }))
            .map(|(i, _)| ProviderId(i))
    }

    pub fn keys(&self, provider: ProviderId) -> Option<&KeySet> {
        match self.providers.get(provider.0)? {
            ProviderKeys::Local(set) => Some(set),
            ProviderKeys::Remote { cache, .. } => cache.keys(),
            ProviderKeys::None => None,
        }
    }

    pub fn remote(&self, provider: ProviderId) -> Option<&JwksCache> {
        match self.providers.get(provider.0)? {
            ProviderKeys::Remote { cache, .. } => Some(cache),
            ProviderKeys::Local(_) | ProviderKeys::None => None,
        }
    }

    pub fn remote_mut(&mut self, provider: ProviderId) -> Option<&mut JwksCache> {
        match self.providers.get_mut(provider.0)? {
            ProviderKeys::Remote { cache, .. } => Some(cache),
            ProviderKeys::Local(_) | ProviderKeys::None => None,
        }
    }

    pub fn availability(&self, provider: ProviderId, now: UnixMillis) -> Availability {
        match self.providers.get(provider.0) {
            Some(ProviderKeys::Local(_)) => Availability::Ready,
            Some(ProviderKeys::Remote { cache, .. }) => cache.availability(now),
            Some(ProviderKeys::None) | None => Availability::Unavailable,
        }
    }

    /// The digest of what defines a remote provider's keys (its issuer and key source), which
    /// names what the workers share about them.
    pub fn namespace(&self, provider: ProviderId) -> Option<&Digest> {
        match self.providers.get(provider.0)? {
            ProviderKeys::Remote { namespace, .. } => Some(namespace),
            ProviderKeys::Local(_) | ProviderKeys::None => None,
        }
    }

    pub fn may_refetch_for_unknown_kid(&self, provider: ProviderId, now: UnixMillis) -> bool {
        self.remote(provider)
            .is_some_and(|c| c.may_refetch_for_unknown_kid(now))
    }
}

/// Every setting that defines which keys a remote provider ends up with, and how they are
/// fetched and refreshed: two providers share keys only when all of it is the same.
fn key_source_namespace(issuer: &str, remote: &RemoteKeys) -> Digest {
    let (kind, target, origins) = match &remote.start {
        FetchTarget::Jwks(t) => ("jwks", t, String::new()),
        FetchTarget::Discovery(d) => ("discovery", &d.target, d.jwks_origins.join(" ")),
    };
    let durations: Vec<u8> = [
        remote.timeout,
        remote.cache_duration,
        remote.failed_refetch_duration,
        remote.unknown_kid_refetch_interval,
    ]
    .iter()
    .flat_map(|d| (d.as_millis() as u64).to_be_bytes())
    .collect();
    sha256(&[
        b"mcp-auth-filter keys v1",
        issuer.as_bytes(),
        kind.as_bytes(),
        target.origin.as_bytes(),
        target.path.as_bytes(),
        remote.cluster.as_bytes(),
        origins.as_bytes(),
        &durations,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn namespace_of(provider: serde_json::Value) -> Digest {
        let v = json!({"resource": "https://mcp.example.com/mcp", "providers": {"okta": provider}});
        let config = Config::from_json(v.to_string().as_bytes()).unwrap();
        *Keyring::new(&config).namespace(ProviderId(0)).unwrap()
    }

    fn provider(issuer: &str, uri: &str, cluster: &str) -> serde_json::Value {
        json!({"issuer": issuer, "remote_jwks": {"http_uri": {"uri": uri, "cluster": cluster}}})
    }

    #[test]
    fn the_namespace_covers_issuer_source_and_cluster_not_the_provider_name() {
        let base = namespace_of(provider("https://a", "https://a/keys", "idp"));
        assert_eq!(
            base,
            namespace_of(provider("https://a", "https://a/keys", "idp"))
        );
        assert_ne!(
            base,
            namespace_of(provider("https://b", "https://a/keys", "idp"))
        );
        assert_ne!(
            base,
            namespace_of(provider("https://a", "https://a/other", "idp"))
        );
        assert_ne!(
            base,
            namespace_of(provider("https://a", "https://a/keys", "idp2"))
        );
        let discovery = json!({"issuer": "https://a", "oidc_discovery": {"cluster": "idp"}});
        assert_ne!(base, namespace_of(discovery));
    }
}
