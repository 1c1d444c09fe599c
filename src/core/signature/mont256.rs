//! Integers modulo an odd 256-bit modulus, in Montgomery form (a·R mod m, R = 2^256), as eight
//! little-endian 32-bit limbs: wasm has no 64×64→128 multiply, but it multiplies two 32-bit
//! limbs into 64 bits natively. Used for the P-256 field, the P-256 group order and the order of
//! the Ed25519 group.
//!
//! Every value handed out is fully reduced (below m), so equality of limbs is equality of
//! residues. Nothing here is secret (a signature check only), so nothing is constant-time.

use super::montgomery;

/// Eight 32-bit limbs, least significant first.
pub type Limbs = [u32; 8];

/// A modulus and the constants its Montgomery arithmetic needs.
#[derive(Debug)]
pub struct Modulus {
    pub value: Limbs,
    /// −m⁻¹ mod 2^32.
    pub neg_inverse: u32,
    /// R² mod m: converts into Montgomery form.
    pub r_squared: Limbs,
}

pub const ZERO: Limbs = [0; 8];
pub const ONE: Limbs = [1, 0, 0, 0, 0, 0, 0, 0];

/// a·b·R⁻¹ mod m, for a·b < m·R (both below m, or one below R and the other below m).
#[inline(always)]
pub fn mul(a: &Limbs, b: &Limbs, m: &Modulus) -> Limbs {
    // The full product, then the reduction (separated operand scanning).
    let mut t = [0u32; 16];
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let a_i = u64::from(a[I]);
        let mut carry = 0u64;
        unrolled!(J in [0, 1, 2, 3, 4, 5, 6, 7] {
            let sum = u64::from(t[I + J]) + a_i * u64::from(b[J]) + carry;
            t[I + J] = sum as u32;
            carry = sum >> 32;
        });
        t[I + 8] = carry as u32;
    });
    reduce(t, m)
}

/// a²·R⁻¹ mod m: each cross product a_i·a_j (i < j) once, doubled, then the squares a_i².
#[inline(always)]
pub fn square(a: &Limbs, m: &Modulus) -> Limbs {
    let mut t = [0u32; 16];
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6] {
        let a_i = u64::from(a[I]);
        let mut carry = 0u64;
        unrolled!(J in [1, 2, 3, 4, 5, 6, 7] {
            if J > I {
                let sum = u64::from(t[I + J]) + a_i * u64::from(a[J]) + carry;
                t[I + J] = sum as u32;
                carry = sum >> 32;
            }
        });
        t[I + 8] = carry as u32;
    });
    let mut carry = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let square = u64::from(a[I]) * u64::from(a[I]);
        // 2·t + a_i², two limbs at a time; the doubling's top bit rides in the carry.
        let low = (u64::from(t[2 * I]) << 1) + (square & 0xffff_ffff) + carry;
        t[2 * I] = low as u32;
        let high = (u64::from(t[2 * I + 1]) << 1) + (square >> 32) + (low >> 32);
        t[2 * I + 1] = high as u32;
        carry = high >> 32;
    });
    // a² < 2^512: nothing carries out.
    debug_assert_eq!(carry, 0);
    reduce(t, m)
}

/// t·R⁻¹ mod m for t < m·R.
#[inline(always)]
fn reduce(mut t: [u32; 16], m: &Modulus) -> Limbs {
    // The carry out of t[i + 8] is held back and added with the next row's.
    let mut deferred = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let factor = u64::from(t[I].wrapping_mul(m.neg_inverse));
        let mut carry = 0u64;
        unrolled!(J in [0, 1, 2, 3, 4, 5, 6, 7] {
            let sum = u64::from(t[I + J]) + factor * u64::from(m.value[J]) + carry;
            t[I + J] = sum as u32;
            carry = sum >> 32;
        });
        let sum = u64::from(t[I + 8]) + carry + deferred;
        t[I + 8] = sum as u32;
        deferred = sum >> 32;
    });
    let mut out = [t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]];
    // Below 2m: one subtraction at most.
    if deferred != 0 || !less_than(&out, &m.value) {
        sub_in_place(&mut out, &m.value);
    }
    out
}

/// a + b mod m, for a, b < m.
#[inline(always)]
pub fn add(a: &Limbs, b: &Limbs, m: &Modulus) -> Limbs {
    let mut out = ZERO;
    let mut carry = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let sum = u64::from(a[I]) + u64::from(b[I]) + carry;
        out[I] = sum as u32;
        carry = sum >> 32;
    });
    if carry != 0 || !less_than(&out, &m.value) {
        sub_in_place(&mut out, &m.value);
    }
    out
}

/// a − b mod m, for a, b < m.
#[inline(always)]
pub fn sub(a: &Limbs, b: &Limbs, m: &Modulus) -> Limbs {
    let mut out = *a;
    if sub_in_place(&mut out, b) {
        add_in_place(&mut out, &m.value);
    }
    out
}

/// Into Montgomery form: a·R mod m, for any a < 2^256.
pub fn to_montgomery(a: &Limbs, m: &Modulus) -> Limbs {
    mul(a, &m.r_squared, m)
}

/// Out of Montgomery form: a·R⁻¹ mod m.
pub fn from_montgomery(a: &Limbs, m: &Modulus) -> Limbs {
    mul(a, &ONE, m)
}

/// a⁻¹ mod m (m prime) for a plain (not Montgomery) a in [1, m − 1]; `None` for zero. Variable
/// time; not on the hot path, so the rolled generic version serves.
pub fn invert(a: &Limbs, m: &Modulus) -> Option<Limbs> {
    montgomery::invert(a, &m.value)
}

/// a < b: whether a − b borrows (unrolled, without branches, for the hot path's final
/// subtraction).
#[inline(always)]
pub fn less_than(a: &Limbs, b: &Limbs) -> bool {
    let mut borrow = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        borrow = u64::from(a[I])
            .wrapping_sub(u64::from(b[I]))
            .wrapping_sub(borrow)
            >> 63;
    });
    borrow != 0
}

/// a −= b; true on a borrow out.
#[inline(always)]
fn sub_in_place(a: &mut Limbs, b: &Limbs) -> bool {
    let mut borrow = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let diff = u64::from(a[I])
            .wrapping_sub(u64::from(b[I]))
            .wrapping_sub(borrow);
        a[I] = diff as u32;
        borrow = diff >> 63;
    });
    borrow != 0
}

/// a += b; true on a carry out.
#[inline(always)]
fn add_in_place(a: &mut Limbs, b: &Limbs) -> bool {
    let mut carry = 0u64;
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7] {
        let sum = u64::from(a[I]) + u64::from(b[I]) + carry;
        a[I] = sum as u32;
        carry = sum >> 32;
    });
    carry != 0
}

/// 32 big-endian bytes as limbs; `None` for any other length.
pub fn from_be_bytes(bytes: &[u8]) -> Option<Limbs> {
    montgomery::from_be_bytes(bytes)
}

/// 32 little-endian bytes as limbs.
pub fn from_le_bytes(bytes: &[u8; 32]) -> Limbs {
    let mut out = ZERO;
    for (limb, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = chunk
            .iter()
            .rev()
            .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
    }
    out
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Limbs to a big-endian hex string, for comparing with constants.
    pub fn hex(a: &Limbs) -> String {
        a.iter().rev().map(|limb| format!("{limb:08x}")).collect()
    }

    /// A deterministic stream of 256-bit values (splitmix64).
    pub fn values(seed: u64, count: usize) -> Vec<Limbs> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        (0..count)
            .map(|_| {
                let mut limbs = ZERO;
                for pair in limbs.chunks_exact_mut(2) {
                    let word = next();
                    pair[0] = word as u32;
                    pair[1] = (word >> 32) as u32;
                }
                limbs
            })
            .collect()
    }

    /// A value reduced below m by clearing top bits until it is.
    pub fn below(mut a: Limbs, m: &Modulus) -> Limbs {
        while !less_than(&a, &m.value) {
            a[7] >>= 1;
        }
        a
    }
}
