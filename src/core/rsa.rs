//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017), written for the
//! one thing a token verifier does: a public-key operation with a small exponent.
//!
//! Why not a general big-number library: in WebAssembly, 64-bit limbs need 128-bit products,
//! which wasm does not have and which are emulated; a 2048-bit verification then costs ~1.6 ms
//! in V8. Here limbs are 32-bit, every product is a native 64-bit multiply, and the per-key
//! Montgomery constants are computed once, when the JWKS is parsed. Nothing here is secret
//! (public key, public signature), so no constant-time care is needed.
//!
//! Checked against the Wycheproof RSA test vectors and against the `rsa` crate (tests below).

use sha2::{Digest, Sha256, Sha384, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// DER of the DigestInfo that precedes the hash in a PKCS#1 v1.5 signature.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            HashAlg::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            HashAlg::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            HashAlg::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }
}

/// An RSA public key with its Montgomery constants. Limbs are little-endian `u32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    n: Vec<u32>,
    /// Length of the modulus in bytes (`k` in RFC 8017) and in bits.
    k: usize,
    bits: usize,
    /// -n⁻¹ mod 2³².
    n0_inv: u32,
    /// R² mod n, with R = 2^(32·limbs).
    rr: Vec<u32>,
    e: u64,
}

impl RsaPublicKey {
    /// From the big-endian modulus and exponent (a JWK's `n` and `e`). `None` for an even or
    /// tiny modulus, or an exponent that is even, below 3, or above 2⁶³.
    pub fn new(n: &[u8], e: &[u8]) -> Option<RsaPublicKey> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() < 64 || e.is_empty() || e.len() > 8 {
            return None;
        }
        let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if e < 3 || e % 2 == 0 || e >= 1 << 63 {
            return None;
        }
        let limbs = from_be_bytes(n, n.len().div_ceil(4));
        let n0 = *limbs.first()?;
        if n0 % 2 == 0 {
            return None;
        }
        let top = *limbs.last()?;
        let bits = 32 * (limbs.len() - 1) + (32 - top.leading_zeros() as usize);
        let mut key = RsaPublicKey {
            n0_inv: neg_inverse(n0),
            rr: Vec::new(),
            k: n.len(),
            bits,
            e,
            n: limbs,
        };
        key.rr = key.r_squared();
        Some(key)
    }

    pub fn bits(&self) -> usize {
        self.bits
    }

    /// RSASSA-PKCS1-v1_5 verification of a message digest. Strict: the encoded message must be
    /// exactly the one RFC 8017 §9.2 builds (no BER variants, no missing NULL).
    pub fn verify_pkcs1v15(&self, hash: HashAlg, digest: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + digest.len();
        if digest.len() != hash.len() || self.k < t_len + 11 {
            return false;
        }
        let mut expected = Vec::with_capacity(self.k);
        expected.extend_from_slice(&[0x00, 0x01]);
        expected.resize(self.k - t_len - 1, 0xff);
        expected.push(0x00);
        expected.extend_from_slice(prefix);
        expected.extend_from_slice(digest);
        em == expected
    }

    /// RSASSA-PSS verification with MGF1 over the same hash and a salt as long as the hash, as
    /// JWS requires (RFC 7518 §3.5). RFC 8017 §9.1.2.
    pub fn verify_pss(&self, hash: HashAlg, digest: &[u8], signature: &[u8]) -> bool {
        self.verify_pss_salt(hash, digest, signature, hash.len())
    }

    fn verify_pss_salt(
        &self,
        hash: HashAlg,
        digest: &[u8],
        signature: &[u8],
        s_len: usize,
    ) -> bool {
        let Some(m) = self.public_op(signature) else {
            return false;
        };
        let h_len = hash.len();
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        // m has k bytes; the encoded message is its last em_len bytes, the rest must be zero.
        let Some((high, em)) = m.split_at_checked(self.k - em_len) else {
            return false;
        };
        if high.iter().any(|b| *b != 0) || digest.len() != h_len || em_len < h_len + s_len + 2 {
            return false;
        }
        let Some((trailer, rest)) = em.split_last() else {
            return false;
        };
        if *trailer != 0xbc {
            return false;
        }
        let Some((masked_db, h)) = rest.split_at_checked(em_len - h_len - 1) else {
            return false;
        };
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
        if masked_db.first().is_some_and(|b| b & !top_mask != 0) {
            return false;
        }
        let mut db = mgf1(hash, h, masked_db.len());
        for (d, m) in db.iter_mut().zip(masked_db) {
            *d ^= m;
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        let ps_len = em_len - h_len - s_len - 2;
        let Some((ps, rest)) = db.split_at_checked(ps_len) else {
            return false;
        };
        let Some((one, salt)) = rest.split_first() else {
            return false;
        };
        if ps.iter().any(|b| *b != 0) || *one != 0x01 {
            return false;
        }
        let mut m_prime = vec![0u8; 8];
        m_prime.extend_from_slice(digest);
        m_prime.extend_from_slice(salt);
        hash.digest(&m_prime) == h
    }

    /// s^e mod n as `k` big-endian bytes; `None` if the signature is not `k` bytes or not < n.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.k {
            return None;
        }
        let s = from_be_bytes(signature, self.n.len());
        if !less_than(&s, &self.n) {
            return None;
        }
        let mut scratch = vec![0u32; 2 * self.n.len() + 1];
        let s_mont = self.mont_mul(&s, &self.rr, &mut scratch);
        let mut acc = s_mont.clone();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            acc = self.mont_sqr(&acc, &mut scratch);
            if (self.e >> bit) & 1 == 1 {
                acc = self.mont_mul(&acc, &s_mont, &mut scratch);
            }
        }
        // Out of Montgomery form: acc·R⁻¹ is a reduction of acc itself.
        scratch.fill(0);
        for (t, a) in scratch.iter_mut().zip(&acc) {
            *t = *a;
        }
        let m = self.reduce(&mut scratch);
        Some(to_be_bytes(&m, self.k))
    }

    /// Montgomery product a·b·R⁻¹ mod n, for a, b < n: the full product, then a reduction
    /// (separated operand scanning). `scratch` holds 2·limbs + 1 words.
    fn mont_mul(&self, a: &[u32], b: &[u32], scratch: &mut [u32]) -> Vec<u32> {
        let k = self.n.len();
        scratch.fill(0);
        // Rows i and i + 1 in one pass: see `mul_add_two_rows`.
        for (pair, a_pair) in a.chunks(2).enumerate() {
            let i = 2 * pair;
            let Some(window) = scratch.get_mut(i..) else {
                break;
            };
            match *a_pair {
                [x0, x1] => {
                    let (row, rest) = window.split_at_mut((k + 1).min(window.len()));
                    add_carry(rest, 0, mul_add_two_rows(row, b, x0, x1, 0));
                }
                [x0] => {
                    let (row, rest) = window.split_at_mut(k.min(window.len()));
                    add_carry(rest, 0, u64::from(mul_add_row(row, b, x0)));
                }
                _ => {}
            }
        }
        self.reduce(scratch)
    }

    /// Montgomery square a²·R⁻¹ mod n: each cross product is computed once and doubled.
    fn mont_sqr(&self, a: &[u32], scratch: &mut [u32]) -> Vec<u32> {
        let k = self.n.len();
        scratch.fill(0);
        // Cross products a_i·a_j, i < j, land at i + j: row i is a[i + 1..]·a_i at 2i + 1.
        for (pair, a_pair) in a.chunks(2).enumerate() {
            let i = 2 * pair;
            let (Some(window), Some(b)) = (scratch.get_mut(2 * i + 1..), a.get(i + 1..)) else {
                break;
            };
            match *a_pair {
                [x0, x1] => {
                    // Row i + 1 starts one limb later: row i's first product alone, then the
                    // two rows in one pass (see `mul_add_two_rows`).
                    let (Some((first, window)), Some((&b0, b))) =
                        (window.split_first_mut(), b.split_first())
                    else {
                        continue;
                    };
                    let product = u64::from(*first) + u64::from(b0) * u64::from(x0);
                    *first = product as u32;
                    let (row, rest) = window.split_at_mut((b.len() + 1).min(window.len()));
                    add_carry(rest, 0, mul_add_two_rows(row, b, x0, x1, product >> 32));
                }
                [x0] => {
                    let (row, rest) = window.split_at_mut(b.len().min(window.len()));
                    add_carry(rest, 0, u64::from(mul_add_row(row, b, x0)));
                }
                _ => {}
            }
        }
        // Double them, then add the squares a_i² at 2i.
        shl1(scratch);
        let mut carry = 0u64;
        for (pair, &a_i) in scratch.chunks_exact_mut(2).zip(a) {
            let square = u64::from(a_i) * u64::from(a_i);
            if let [lo, hi] = pair {
                let low = u64::from(*lo) + (square & 0xffff_ffff) + carry;
                *lo = low as u32;
                let high = u64::from(*hi) + (square >> 32) + (low >> 32);
                *hi = high as u32;
                carry = high >> 32;
            }
        }
        if let Some(last) = scratch.get_mut(2 * k) {
            *last = last.wrapping_add(carry as u32);
        }
        self.reduce(scratch)
    }

    /// Montgomery reduction of a 2·limbs (+1) word value: t·R⁻¹ mod n.
    fn reduce(&self, t: &mut [u32]) -> Vec<u32> {
        let k = self.n.len();
        let mut i = 0;
        while i < k {
            let Some(window) = t.get_mut(i..) else {
                break;
            };
            let m0 = window
                .first()
                .copied()
                .unwrap_or(0)
                .wrapping_mul(self.n0_inv);
            if i + 1 < k {
                // Rows i and i + 1 in one pass. Row i + 1's factor is what t[i + 1] will be
                // once row i is added, times −n⁻¹: its two lowest limbs decide it.
                let (n0, n1) = (self.n.first(), self.n.get(1));
                let (t0, t1) = (window.first(), window.get(1));
                let low = |limb: Option<&u32>| u64::from(limb.copied().unwrap_or(0));
                let carry = (low(t0) + low(n0) * u64::from(m0)) >> 32;
                let next = low(t1) + low(n1) * u64::from(m0) + carry;
                let m1 = (next as u32).wrapping_mul(self.n0_inv);
                let (row, rest) = window.split_at_mut((k + 1).min(window.len()));
                add_carry(rest, 0, mul_add_two_rows(row, &self.n, m0, m1, 0));
                i += 2;
            } else {
                let (row, rest) = window.split_at_mut(k.min(window.len()));
                add_carry(rest, 0, u64::from(mul_add_row(row, &self.n, m0)));
                i += 1;
            }
        }
        let overflow = t.get(2 * k).copied().unwrap_or(0) != 0;
        let mut out = t.get(k..2 * k).map(<[u32]>::to_vec).unwrap_or_default();
        if overflow || !less_than(&out, &self.n) {
            sub_in_place(&mut out, &self.n);
        }
        out
    }

    /// R² mod n, once per key: 2R mod n (the Montgomery form of 2) by doubling 2^(bits − 1),
    /// then raised to the power 32·limbs in Montgomery form, which is R·R mod n. Doubling all
    /// the way from 1 would cost 2·32·limbs shifts of the whole number: milliseconds in wasm.
    fn r_squared(&self) -> Vec<u32> {
        let len = self.n.len();
        let mut two = vec![0u32; len];
        let top = self.bits - 1;
        if let Some(limb) = two.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in 0..32 * len + 2 - self.bits {
            let carry = shl1(&mut two);
            if carry || !less_than(&two, &self.n) {
                sub_in_place(&mut two, &self.n);
            }
        }
        let exponent = 32 * len;
        let mut scratch = vec![0u32; 2 * len + 1];
        let mut acc = two.clone();
        for bit in (0..exponent.ilog2()).rev() {
            acc = self.mont_sqr(&acc, &mut scratch);
            if (exponent >> bit) & 1 == 1 {
                acc = self.mont_mul(&acc, &two, &mut scratch);
            }
        }
        acc
    }
}

/// MGF1 (RFC 8017 B.2.1).
fn mgf1(hash: HashAlg, seed: &[u8], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut input = seed.to_vec();
        input.extend_from_slice(&counter.to_be_bytes());
        out.extend_from_slice(&hash.digest(&input));
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

/// row += x·a (row and a of the same length); returns the carry out.
#[inline]
fn mul_add_row(row: &mut [u32], a: &[u32], x: u32) -> u32 {
    let x = u64::from(x);
    let mut carry = 0u64;
    for (r, &a_j) in row.iter_mut().zip(a) {
        let sum = u64::from(*r) + u64::from(a_j) * x + carry;
        *r = sum as u32;
        carry = sum >> 32;
    }
    carry as u32
}

/// window += x0·a + x1·a·2^32 + carry (window one limb longer than a); returns the carry out.
///
/// Two rows of a product in one pass, nearly all of a verification's time: each limb of the
/// window is loaded and stored once for two multiply-adds, and the two rows' carry chains are
/// independent, so in wasm (as natively) they overlap instead of waiting on each other.
#[inline]
fn mul_add_two_rows(window: &mut [u32], a: &[u32], x0: u32, x1: u32, carry: u64) -> u64 {
    let (x0, x1) = (u64::from(x0), u64::from(x1));
    let Some((top, body)) = window.split_last_mut() else {
        return 0;
    };
    let (mut carry0, mut carry1, mut previous) = (carry, 0u64, 0u64);
    let mut step = |w: &mut u32, a_j: u32| {
        let first = u64::from(*w) + u64::from(a_j) * x0 + carry0;
        carry0 = first >> 32;
        let second = (first & 0xffff_ffff) + previous * x1 + carry1;
        carry1 = second >> 32;
        *w = second as u32;
        previous = u64::from(a_j);
    };
    // Two limbs per iteration: the crate is built for size, which leaves the loop rolled.
    let mut windows = body.chunks_exact_mut(2);
    let mut limbs = a.chunks_exact(2);
    for (w, a) in (&mut windows).zip(&mut limbs) {
        if let ([w0, w1], [a0, a1]) = (w, a) {
            step(w0, *a0);
            step(w1, *a1);
        }
    }
    for (w, &a_j) in windows.into_remainder().iter_mut().zip(limbs.remainder()) {
        step(w, a_j);
    }
    // The top limb: row one's carry and row two's last product.
    let first = u64::from(*top) + carry0;
    let second = (first & 0xffff_ffff) + previous * x1 + carry1;
    *top = second as u32;
    (first >> 32) + (second >> 32)
}

fn add_carry(t: &mut [u32], from: usize, mut carry: u64) {
    for slot in t.iter_mut().skip(from) {
        if carry == 0 {
            break;
        }
        let sum = u64::from(*slot) + carry;
        *slot = sum as u32;
        carry = sum >> 32;
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

/// Big-endian bytes to `limbs` little-endian u32 limbs (the value must fit).
fn from_be_bytes(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, b) in bytes.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*b) << (8 * (i % 4));
        }
    }
    out
}

fn to_be_bytes(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    for (i, slot) in out.iter_mut().rev().enumerate() {
        if let Some(limb) = limbs.get(i / 4) {
            *slot = (limb >> (8 * (i % 4))) as u8;
        }
    }
    out
}

fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0i64;
    for (x, y) in a.iter_mut().zip(b) {
        let diff = i64::from(*x) - i64::from(*y) - borrow;
        *x = diff as u32;
        borrow = i64::from(diff < 0);
    }
}

fn shl1(a: &mut [u32]) -> bool {
    let mut carry = 0u32;
    for limb in a.iter_mut() {
        let next = *limb >> 31;
        *limb = (*limb << 1) | carry;
        carry = next;
    }
    carry == 1
}

/// -x⁻¹ mod 2³² for odd x (Newton's iteration doubles the correct bits each step).
fn neg_inverse(x: u32) -> u32 {
    let mut inv: u32 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wycheproof::TestResult;

    fn hash_of(h: wycheproof::HashFunction) -> Option<HashAlg> {
        match h {
            wycheproof::HashFunction::Sha2_256 => Some(HashAlg::Sha256),
            wycheproof::HashFunction::Sha2_384 => Some(HashAlg::Sha384),
            wycheproof::HashFunction::Sha2_512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    #[test]
    fn wycheproof_pkcs1v15() {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        let mut checked = 0;
        for name in [
            TestName::Rsa2048Sha256,
            TestName::Rsa2048Sha384,
            TestName::Rsa2048Sha512,
            TestName::Rsa3072Sha256,
            TestName::Rsa3072Sha384,
            TestName::Rsa3072Sha512,
            TestName::Rsa4096Sha256,
            TestName::Rsa4096Sha384,
            TestName::Rsa4096Sha512,
            TestName::Rsa8192Sha256,
        ] {
            let set = TestSet::load(name).unwrap();
            for group in set.test_groups {
                let hash = hash_of(group.hash).unwrap();
                let key = RsaPublicKey::new(&group.key.n, &group.key.e).unwrap();
                for test in group.tests {
                    let ok = key.verify_pkcs1v15(hash, &hash.digest(&test.msg), &test.sig);
                    match test.result {
                        TestResult::Valid => {
                            assert!(ok, "{name:?} tc {} {}", test.tc_id, test.comment)
                        }
                        TestResult::Invalid => {
                            assert!(!ok, "{name:?} tc {} {}", test.tc_id, test.comment)
                        }
                        TestResult::Acceptable => {}
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn wycheproof_pss_with_salt_as_long_as_the_hash() {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        let mut checked = 0;
        for name in [
            TestName::RsaPss2048Sha256Mgf1SaltLen32,
            TestName::RsaPss2048Sha384Mgf1SaltLen48,
            TestName::RsaPss3072Sha256Mgf1SaltLen32,
            TestName::RsaPss4096Sha256Mgf1SaltLen32,
            TestName::RsaPss4096Sha384Mgf1SaltLen48,
            TestName::RsaPss4096Sha512Mgf1SaltLen64,
        ] {
            let set = TestSet::load(name).unwrap();
            for group in set.test_groups {
                let hash = hash_of(group.hash).unwrap();
                assert_eq!(group.salt_size, hash.len());
                let key = RsaPublicKey::new(&group.key.n, &group.key.e).unwrap();
                for test in group.tests {
                    let ok = key.verify_pss(hash, &hash.digest(&test.msg), &test.sig);
                    match test.result {
                        TestResult::Valid => {
                            assert!(ok, "{name:?} tc {} {}", test.tc_id, test.comment)
                        }
                        TestResult::Invalid => {
                            assert!(!ok, "{name:?} tc {} {}", test.tc_id, test.comment)
                        }
                        TestResult::Acceptable => {}
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 200, "{checked}");
    }

    #[test]
    fn wycheproof_pss_other_salt_lengths() {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        let set = TestSet::load(TestName::RsaPss2048Sha256Mgf1SaltLen0).unwrap();
        for group in set.test_groups {
            let hash = hash_of(group.hash).unwrap();
            let key = RsaPublicKey::new(&group.key.n, &group.key.e).unwrap();
            for test in group.tests {
                let ok =
                    key.verify_pss_salt(hash, &hash.digest(&test.msg), &test.sig, group.salt_size);
                if test.result == TestResult::Valid {
                    assert!(ok, "tc {}", test.tc_id);
                    // JWS fixes the salt length: a valid zero-salt signature is refused.
                    assert!(!key.verify_pss(hash, &hash.digest(&test.msg), &test.sig));
                } else if test.result == TestResult::Invalid {
                    assert!(!ok, "tc {}", test.tc_id);
                }
            }
        }
    }

    #[test]
    fn agrees_with_the_rsa_crate_on_jwt_simple_tokens() {
        use jwt_simple::prelude::*;
        let key = crate::testing::rsa();
        let c = key.public_key().to_components();
        let ours = RsaPublicKey::new(&c.n, &c.e).unwrap();
        assert_eq!(ours.bits(), 2048);
        for i in 0..5 {
            let claims = Claims::create(Duration::from_mins(5)).with_subject(format!("user-{i}"));
            let token = key.sign(claims).unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig)
                    .unwrap();
            let digest = HashAlg::Sha256.digest(input.as_bytes());
            assert!(ours.verify_pkcs1v15(HashAlg::Sha256, &digest, &sig));
            let mut bad = sig.clone();
            bad[100] ^= 1;
            assert!(!ours.verify_pkcs1v15(HashAlg::Sha256, &digest, &bad));
            assert!(!ours.verify_pkcs1v15(
                HashAlg::Sha384,
                &HashAlg::Sha384.digest(input.as_bytes()),
                &sig
            ));
            assert!(!ours.verify_pss(HashAlg::Sha256, &digest, &sig));
        }
    }

    #[test]
    fn rejects_bad_keys_and_signature_shapes() {
        let n = [0xffu8; 256];
        assert!(RsaPublicKey::new(&n, &[1, 0, 1]).is_some());
        assert!(
            RsaPublicKey::new(&[0xfe; 256], &[1, 0, 1]).is_none(),
            "even modulus"
        );
        assert!(
            RsaPublicKey::new(&[0xff; 16], &[1, 0, 1]).is_none(),
            "tiny modulus"
        );
        assert!(RsaPublicKey::new(&n, &[2]).is_none(), "even exponent");
        assert!(RsaPublicKey::new(&n, &[1]).is_none(), "exponent 1");
        assert!(RsaPublicKey::new(&n, &[0xff; 9]).is_none(), "huge exponent");
        let key = RsaPublicKey::new(&n, &[1, 0, 1]).unwrap();
        let digest = [0u8; 32];
        assert!(
            !key.verify_pkcs1v15(HashAlg::Sha256, &digest, &[0u8; 255]),
            "short"
        );
        assert!(
            !key.verify_pkcs1v15(HashAlg::Sha256, &digest, &[0xffu8; 256]),
            "not < n"
        );
        assert!(!key.verify_pkcs1v15(HashAlg::Sha256, &digest, &[]), "empty");
        assert!(
            !key.verify_pss(HashAlg::Sha256, &digest, &[0u8; 256]),
            "zero"
        );
        assert!(
            !key.verify_pkcs1v15(HashAlg::Sha256, &digest[..31], &[1u8; 256]),
            "digest length"
        );
    }

    #[test]
    fn public_op_agrees_with_a_reference_modpow_for_even_and_odd_limb_counts() {
        use rsa::BigUint;
        // Moduli of 64 and 65 limbs (the two-row passes pair limbs; an odd count leaves one),
        // and of 16 bytes more than 2048 bits; exponents 3 and 65537.
        for (bytes, seed) in [(256usize, 1u8), (260, 2), (272, 3), (257, 4)] {
            let mut n: Vec<u8> = (0..bytes)
                .map(|i| {
                    (i as u8)
                        .wrapping_mul(151)
                        .wrapping_add(seed.wrapping_mul(29))
                })
                .collect();
            n[0] |= 0x80;
            n[bytes - 1] |= 1;
            for e in [3u32, 65537] {
                let key = RsaPublicKey::new(&n, &e.to_be_bytes()).unwrap();
                let modulus = BigUint::from_bytes_be(&n);
                for t in 0..4u8 {
                    let mut sig: Vec<u8> = (0..bytes)
                        .map(|i| (i as u8).wrapping_mul(t.wrapping_add(7)).wrapping_add(t))
                        .collect();
                    sig[0] &= 0x7f;
                    let expected = BigUint::from_bytes_be(&sig).modpow(&BigUint::from(e), &modulus);
                    let mut expected = expected.to_bytes_be();
                    while expected.len() < bytes {
                        expected.insert(0, 0);
                    }
                    assert_eq!(
                        key.public_op(&sig).unwrap(),
                        expected,
                        "{bytes} bytes, e = {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn neg_inverse_is_right() {
        for x in [1u32, 3, 0xffff_ffff, 0x1234_5677, 65537] {
            assert_eq!(x.wrapping_mul(neg_inverse(x)), u32::MAX, "{x}");
        }
    }
}
