//! `client_auth`: how the filter authenticates itself to an authorization server (the STS of a
//! token exchange, an introspection endpoint), and the secret it reads from the VM's environment.

use std::fmt;

use super::error::{err, ConfigError};
use super::reader::Obj;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the url-encoded id and secret (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: Secret },
    /// `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: Secret },
    /// No client authentication (Google STS); `client_id` sent when given.
    None { client_id: Option<String> },
}

impl ClientAuth {
    /// A digest of who the filter is to the server: method, client id and a digest of the
    /// secret (a right secret must not inherit answers obtained with another). Part of the
    /// namespace of anything shared that the server's answers define.
    pub fn digest(&self) -> crate::cache::Digest {
        let (method, client_id, secret) = match self {
            ClientAuth::Basic { client_id, secret } => ("basic", Some(client_id), Some(secret)),
            ClientAuth::Post { client_id, secret } => ("post", Some(client_id), Some(secret)),
            ClientAuth::None { client_id } => ("none", client_id.as_ref(), None),
        };
        let secret_digest = secret.map(|s| crate::cache::sha256(&[s.0.as_bytes()]));
        crate::cache::sha256(&[
            method.as_bytes(),
            client_id.map_or(&b""[..], |c| c.as_bytes()),
            secret_digest.as_ref().map_or(&[][..], |d| d.as_slice()),
        ])
    }
}

/// A secret read from the VM's environment. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `client_auth`: how the filter authenticates to the STS or introspection endpoint (default
/// `client_secret_basic`); the secret is read from the VM's environment, never the document.
pub(super) fn read_client_auth(
    mut o: Obj,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientAuth, ConfigError> {
    let method = o.string("method")?;
    let client_id = o.string("client_id")?;
    let client_secret_env = o.string("client_secret_env")?;
    o.finish()?;

    let method = method.unwrap_or_else(|| "client_secret_basic".into());
    match method.as_str() {
        "client_secret_basic" | "client_secret_post" => {
            let client_id = client_id
                .filter(|c| !c.is_empty())
                .ok_or_else(|| err(o.at("client_id"), format!("required with {method}")))?;
            let var = client_secret_env.filter(|v| !v.is_empty()).ok_or_else(|| {
                err(
                    o.at("client_secret_env"),
                    "required: the name of the VM environment variable holding the secret",
                )
            })?;
            let secret = env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
                err(
                    o.at("client_secret_env"),
                    format!(
                        "environment variable {var} is not set in the VM \
                         (Envoy vm_config.environment_variables, Istio vmConfig.env)"
                    ),
                )
            })?;
            let secret = Secret(secret);
            Ok(if method == "client_secret_basic" {
                ClientAuth::Basic { client_id, secret }
            } else {
                ClientAuth::Post { client_id, secret }
            })
        }
        "none" => match client_secret_env {
            Some(_) => Err(err(o.at("client_secret_env"), "not used with method none")),
            None => Ok(ClientAuth::None { client_id }),
        },
        _ => Err(err(
            o.at("method"),
            "client_secret_basic, client_secret_post or none",
        )),
    }
}
