//! Fixtures for unit tests, hostile tests and fuzz targets: real keys (generated once per test
//! binary; RSA generation is slow) and their JWK forms, tokens the standard configuration
//! accepts, that configuration and authenticators built from it. Built only with `cfg(test)` or
//! the `testing` feature, never into the filter.

// Fixtures may panic: a broken fixture should stop the test at once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

use crate::authenticator::Authenticator;
use crate::config::{Config, KeySource, RemoteKeys};
use crate::keyring::Keyring;
use crate::time::{UnixMillis, UnixSeconds};

pub fn rsa() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-1"))
}

pub fn rsa_other() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| RS256KeyPair::generate(2048).unwrap().with_key_id("rsa-2"))
}

pub fn es256() -> &'static ES256KeyPair {
    static KEY: OnceLock<ES256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| ES256KeyPair::generate().with_key_id("ec-256"))
}

pub fn es384() -> &'static ES384KeyPair {
    static KEY: OnceLock<ES384KeyPair> = OnceLock::new();
    KEY.get_or_init(|| ES384KeyPair::generate().with_key_id("ec-384"))
}

pub fn ed25519() -> &'static Ed25519KeyPair {
    static KEY: OnceLock<Ed25519KeyPair> = OnceLock::new();
    KEY.get_or_init(|| Ed25519KeyPair::generate().with_key_id("ed-1"))
}

pub fn rsa_jwk(key: &RS256KeyPair, kid: &str, alg: Option<&str>) -> Value {
    let c = key.public_key().to_components();
    let mut v = serde_json::json!({
        "kty": "RSA", "use": "sig", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e),
    });
    if let Some(a) = alg {
        v["alg"] = a.into();
    }
    v
}

pub fn ec256_jwk(key: &ES256KeyPair, kid: &str) -> Value {
    let sec1 = key.public_key().public_key().to_bytes_uncompressed();
    serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&sec1[1..33]), "y": URL_SAFE_NO_PAD.encode(&sec1[33..65]),
    })
}

pub fn ec384_jwk(key: &ES384KeyPair, kid: &str) -> Value {
    let sec1 = key.public_key().public_key().to_bytes_uncompressed();
    serde_json::json!({
        "kty": "EC", "crv": "P-384", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&sec1[1..49]), "y": URL_SAFE_NO_PAD.encode(&sec1[49..97]),
    })
}

pub fn ed25519_jwk(key: &Ed25519KeyPair, kid: &str) -> Value {
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(key.public_key().to_bytes()),
    })
}

pub fn jwks(keys: Vec<Value>) -> Vec<u8> {
    serde_json::json!({ "keys": keys }).to_string().into_bytes()
}

/// Base64url without padding, as every part of a JWS and every JWK member is written.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

// ---- the standard setting: one issuer, one protected resource, one instant --------------------

pub const ISSUER: &str = "https://idp.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
/// The scope the standard configuration requires and the standard token carries.
pub const REQUIRED_SCOPE: &str = "mcp:tools:call";
/// Where the standard remote keys are.
pub const JWKS_URI: &str = "https://idp.example.com/jwks";
pub const NOW: UnixSeconds = UnixSeconds(1_800_000_000);
pub const NOW_MS: UnixMillis = UnixMillis(NOW.0 * 1000);

/// The public keys of `rsa()` (pinned to RS256), `es256()` and `ed25519()`, under their kids.
pub fn all_keys() -> Vec<u8> {
    jwks(vec![
        rsa_jwk(rsa(), "rsa-1", Some("RS256")),
        ec256_jwk(es256(), "ec-256"),
        ed25519_jwk(ed25519(), "ed-1"),
    ])
}

/// The custom claim of the standard token: its scopes.
#[derive(Serialize, Deserialize, Default)]
pub struct Scopes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<Vec<String>>,
}

/// Claims the standard configuration accepts at `NOW`: `ISSUER`, `RESOURCE`, subject `alice`,
/// `REQUIRED_SCOPE`, issued and valid from 10 s before `NOW`, expiring 300 s after it.
pub fn standard_claims() -> JWTClaims<Scopes> {
    let scopes = Scopes {
        scp: Some(vec![REQUIRED_SCOPE.into()]),
    };
    let mut c = Claims::with_custom_claims(scopes, Duration::from_secs(300))
        .with_issuer(ISSUER)
        .with_audience(RESOURCE)
        .with_subject("alice");
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW.0 - 10));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW.0 - 10));
    c.expires_at = Some(UnixTimeStamp::from_secs(NOW.0 + 300));
    c
}

/// `standard_claims()` as a JSON payload, to be changed member by member.
pub fn standard_payload() -> Value {
    json!({"iss": ISSUER, "aud": RESOURCE, "sub": "alice", "exp": NOW.0 + 300,
           "iat": NOW.0 - 10, "nbf": NOW.0 - 10, "scp": [REQUIRED_SCOPE]})
}

/// A token signed by `rsa()` whose claims are exactly `payload` (any JSON: jwt-simple adds no
/// claim of its own).
pub fn rsa_token_with_payload(payload: Value) -> String {
    let claims = JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: payload,
    };
    rsa().sign(claims).unwrap()
}

/// A compact JWS of a hand-made header and payload, with 256 bytes of signature that no key
/// made: for input refused before (or at) the signature check.
pub fn unsigned_token(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header),
        b64url(payload),
        b64url([7u8; 256])
    )
}

// ---- the standard configuration -----------------------------------------------------------------

/// The standard configuration document: `RESOURCE` requiring `REQUIRED_SCOPE`, and provider
/// `idp` for `ISSUER` (60 s clock skew, `sub` sent as `x-user`) whose keys come from
/// `key_source` (`local_jwks(..)`, `remote_jwks(..)` or `oidc_discovery(..)`).
pub fn config_doc(key_source: Value) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "clock_skew_seconds": 60,
        "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
    });
    merge(&mut provider, key_source);
    json!({
        "resource": RESOURCE,
        "required_scopes": [REQUIRED_SCOPE],
        "providers": {"idp": provider}
    })
}

/// Keys given in the configuration.
pub fn local_jwks(keys: &[u8]) -> Value {
    json!({"local_jwks": {"inline_string": String::from_utf8(keys.to_vec()).unwrap()}})
}

/// Keys fetched from `JWKS_URI` through cluster `idp`, with `settings` (e.g.
/// `{"cache_duration": "2s"}`) added to `remote_jwks`.
pub fn remote_jwks(settings: Value) -> Value {
    let mut remote = json!({"http_uri": {"uri": JWKS_URI, "cluster": "idp"}});
    merge(&mut remote, settings);
    json!({ "remote_jwks": remote })
}

/// Keys found through `ISSUER`'s OpenID configuration, fetched through cluster `idp`, with
/// `settings` (e.g. `{"allowed_jwks_origins": [..]}`) added to `oidc_discovery`.
pub fn oidc_discovery(settings: Value) -> Value {
    let mut discovery = json!({"cluster": "idp"});
    merge(&mut discovery, settings);
    json!({ "oidc_discovery": discovery })
}

fn merge(into: &mut Value, members: Value) {
    if let (Some(into), Value::Object(members)) = (into.as_object_mut(), members) {
        into.extend(members);
    }
}

pub fn load(doc: &Value) -> Config {
    Config::from_json(doc.to_string().as_bytes()).unwrap()
}

/// An authenticator for `doc` and the keyring it decides with.
pub fn setup(doc: &Value) -> (Authenticator, Keyring) {
    let config = load(doc);
    let keyring = Keyring::new(&config);
    (Authenticator::new(config), keyring)
}

/// The standard configuration with `all_keys()` given locally.
pub fn local_setup() -> (Authenticator, Keyring) {
    setup(&config_doc(local_jwks(&all_keys())))
}

/// The remote-key settings of the first provider of `doc`, as a `JwksCache` takes them.
pub fn remote_keys(doc: &Value) -> RemoteKeys {
    match &load(doc).providers[0].keys {
        KeySource::Remote(remote) => remote.clone(),
        other => panic!("the first provider has no remote keys: {other:?}"),
    }
}

/// A configuration document with an RFC 8693 exchange at `https://sts.example.com/token`
/// (cluster `sts`, audience `backend`, client `c` whose secret is in the environment variable
/// `SECRET`) in front of remote keys.
pub fn exchange_config_doc() -> Value {
    let mut doc = config_doc(remote_jwks(json!({})));
    doc["token_exchange"] = json!({
        "token_endpoint": {"uri": "https://sts.example.com/token", "cluster": "sts"},
        "audience": "backend",
        "client_auth": {"client_id": "c", "client_secret_env": "SECRET"}
    });
    doc
}
