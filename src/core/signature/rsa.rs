//! RS* (RSASSA-PKCS1-v1_5) and PS* (RSASSA-PSS) over `core::rsa`, which is fast in wasm.

use crate::jwks::Algorithm;
use crate::rsa::{HashAlg, RsaPublicKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Pkcs1v15,
    Pss,
}

/// The hash and padding of an RSA algorithm; `None` for the others.
pub fn scheme(alg: Algorithm) -> Option<(HashAlg, Padding)> {
    Some(match alg {
        Algorithm::RS256 => (HashAlg::Sha256, Padding::Pkcs1v15),
        Algorithm::RS384 => (HashAlg::Sha384, Padding::Pkcs1v15),
        Algorithm::RS512 => (HashAlg::Sha512, Padding::Pkcs1v15),
        Algorithm::PS256 => (HashAlg::Sha256, Padding::Pss),
        Algorithm::PS384 => (HashAlg::Sha384, Padding::Pss),
        Algorithm::PS512 => (HashAlg::Sha512, Padding::Pss),
        Algorithm::ES256 | Algorithm::ES384 | Algorithm::EdDSA => return None,
    })
}

pub fn verify(key: &RsaPublicKey, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
    let Some((hash, padding)) = scheme(alg) else {
        return false;
    };
    let digest = hash.digest(signing_input);
    match padding {
        Padding::Pkcs1v15 => key.verify_pkcs1v15(hash, &digest, signature),
        Padding::Pss => key.verify_pss(hash, &digest, signature),
    }
}
