//! EdDSA with Ed25519 (RFC 8037): a 32-byte public key, a 64-byte signature R‖S.
//!
//! ed25519-compact refuses a non-canonical S (S ≥ L, the malleable form), and a public key or R
//! that is not the canonical encoding of a point of large order, as Wycheproof's vectors
//! require (tests/signature_vectors.rs).

/// Ed25519 signature length: R and S of 32 bytes each.
const SIGNATURE_BYTES: usize = 64;

/// The key, refused here rather than at every verification when it is not a canonical point of
/// large order (such a key could never verify anything).
pub fn ed25519_key(x: &[u8]) -> Option<ed25519_compact::PublicKey> {
    let key = ed25519_compact::PublicKey::from_slice(x).ok()?;
    key.validate().ok()?;
    Some(key)
}

pub fn verify_ed25519(
    key: &ed25519_compact::PublicKey,
    signing_input: &[u8],
    signature: &[u8],
) -> bool {
    if signature.len() != SIGNATURE_BYTES {
        return false;
    }
    ed25519_compact::Signature::from_slice(signature)
        .is_ok_and(|signature| key.verify(signing_input, &signature).is_ok())
}
