//! `introspection`: a provider whose tokens are opaque (or which the IdP should vouch for each
//! time) asks the IdP about each token, RFC 7662, instead of checking a signature.

use std::time::Duration;

use super::callout::Endpoint;
use super::client_auth::{read_client_auth, ClientAuth};
use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::reader::Obj;
use super::url::HttpTarget;

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    pub cluster: String,
    pub endpoint: HttpTarget,
    pub timeout: Duration,
    pub client_auth: ClientAuth,
    /// How long an active answer is trusted (never beyond the token's `exp`).
    pub cache_duration: Duration,
    /// How long an inactive answer is remembered, so a flood of the same junk costs one call.
    pub negative_cache_duration: Duration,
}

const DEFAULT_CACHE: Duration = Duration::from_secs(300);
const DEFAULT_NEGATIVE_CACHE: Duration = Duration::from_secs(10);

pub(super) fn read_introspection(
    mut o: Obj,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<IntrospectionConfig, ConfigError> {
    let endpoint = o.object("endpoint")?;
    let client_auth = o.object_or_empty("client_auth")?;
    let cache_duration = duration_at_least(
        &mut o,
        "cache_duration",
        DEFAULT_CACHE,
        Duration::from_secs(1),
    )?;
    let negative_cache_duration = duration_at_least(
        &mut o,
        "negative_cache_duration",
        DEFAULT_NEGATIVE_CACHE,
        Duration::ZERO,
    )?;
    o.finish()?;
    let endpoint = endpoint.ok_or_else(|| err(o.at("endpoint"), "required"))?;
    let endpoint = Endpoint::read(endpoint)?;
    // RFC 7662 §2.1: the endpoint requires authorization; the filter always authenticates.
    let client_auth = read_client_auth(client_auth, env)?;
    if matches!(client_auth, ClientAuth::None { .. }) {
        return Err(err(
            o.at("client_auth.method"),
            "introspection needs client_secret_basic or client_secret_post",
        ));
    }
    Ok(IntrospectionConfig {
        cluster: endpoint.callout.cluster,
        endpoint: endpoint.target,
        timeout: endpoint.callout.timeout,
        client_auth,
        cache_duration,
        negative_cache_duration,
    })
}
