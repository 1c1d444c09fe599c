//! The Envoy callouts the configuration sets up (to a key host, to an STS): each names the
//! cluster that reaches the host and how long a request may wait for the answer.

use std::time::Duration;

use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::reader::Obj;
use super::url::{http_target, HttpTarget};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests wait for the callout, so it must not hold them for long.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The Envoy cluster and timeout of a callout.
pub(super) struct Callout {
    pub cluster: String,
    pub timeout: Duration,
}

/// Checks a `cluster` field (after the object's `finish`: it is required).
pub(super) fn cluster_name(path: &str, value: Option<String>) -> Result<String, ConfigError> {
    match value {
        Some(c) if !c.is_empty() => Ok(c),
        _ => Err(err(
            path,
            "required: the Envoy cluster that reaches this host",
        )),
    }
}

/// Reads the `timeout` field.
pub(super) fn timeout(o: &mut Obj) -> Result<Duration, ConfigError> {
    let timeout = duration_at_least(o, "timeout", DEFAULT_TIMEOUT, Duration::from_millis(1))?;
    if timeout > MAX_TIMEOUT {
        return Err(err(
            o.at("timeout"),
            "at most 60s: requests wait for this callout",
        ));
    }
    Ok(timeout)
}

/// An `http_uri` object (`remote_jwks.http_uri`, `token_exchange.token_endpoint`): a URL and
/// the callout that reaches it.
pub(super) struct Endpoint {
    pub target: HttpTarget,
    pub callout: Callout,
}

impl Endpoint {
    pub(super) fn read(mut o: Obj) -> Result<Endpoint, ConfigError> {
        let uri = o.string("uri")?;
        let cluster = o.string("cluster")?;
        let timeout = timeout(&mut o)?;
        o.finish()?;
        let uri = uri.ok_or_else(|| err(o.at("uri"), "required"))?;
        let target = http_target(&o.at("uri"), &uri)?;
        let cluster = cluster_name(&o.at("cluster"), cluster)?;
        Ok(Endpoint {
            target,
            callout: Callout { cluster, timeout },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn endpoint(doc: serde_json::Value) -> Result<Endpoint, ConfigError> {
        let doc = json!({ "http_uri": doc });
        let mut root = Obj::root(&doc)?;
        Endpoint::read(root.object("http_uri")?.ok_or_else(|| err("", "absent"))?)
    }

    #[test]
    fn an_endpoint_has_a_target_a_cluster_and_a_default_timeout() {
        let e = endpoint(json!({"uri": "https://idp.example.com/keys", "cluster": "idp"})).unwrap();
        assert_eq!(e.target.authority, "idp.example.com");
        assert_eq!(e.target.path, "/keys");
        assert_eq!(e.callout.cluster, "idp");
        assert_eq!(e.callout.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn endpoint_errors_name_the_field() {
        for (doc, path, problem) in [
            (json!({"cluster": "idp"}), "http_uri.uri", "required"),
            (
                json!({"uri": "https://idp/k"}),
                "http_uri.cluster",
                "required: the Envoy cluster that reaches this host",
            ),
            (
                json!({"uri": "https://idp/k", "cluster": ""}),
                "http_uri.cluster",
                "required: the Envoy cluster that reaches this host",
            ),
            (
                json!({"uri": "https://idp/k", "cluster": "idp", "timeout": "61s"}),
                "http_uri.timeout",
                "at most 60s: requests wait for this callout",
            ),
            (
                json!({"uri": "https://idp/k", "cluster": "idp", "timeout": "0s"}),
                "http_uri.timeout",
                "must be at least 1ms",
            ),
            (
                json!({"uri": "https://idp/k", "clustr": "idp"}),
                "http_uri.clustr",
                "unknown field, expected one of: uri, cluster, timeout",
            ),
        ] {
            let e = endpoint(doc).err().unwrap();
            assert_eq!((e.path.as_str(), e.problem.as_str()), (path, problem));
        }
    }
}
