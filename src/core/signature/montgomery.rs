//! Integers modulo an odd modulus of N 32-bit limbs, in Montgomery form (a·R mod m, R = 2^(32N)),
//! with rolled loops: for curves where size matters more than speed (P-384, whose tokens are
//! rare). `mont256` is the unrolled, 8-limb twin on the hot path of ES256 and EdDSA.
//!
//! The constants a modulus needs are computed at compile time from its value, and the value
//! from its hexadecimal spelling in the standard, so no derived constant is typed by hand.
//! Every value handed out is fully reduced (below m). Nothing here is secret (signature checks
//! only), so nothing is constant-time.

/// N limbs, least significant first.
pub type Limbs<const N: usize> = [u32; N];

/// A modulus and the constants its Montgomery arithmetic needs.
#[derive(Debug)]
pub struct Modulus<const N: usize> {
    pub value: Limbs<N>,
    /// R mod m: 1 in Montgomery form.
    pub one: Limbs<N>,
    /// −m⁻¹ mod 2^32.
    neg_inverse: u32,
    /// R² mod m: converts into Montgomery form.
    r_squared: Limbs<N>,
}

impl<const N: usize> Modulus<N> {
    /// The modulus written as big-endian hexadecimal digits (exactly 8N of them), at compile
    /// time: a wrong spelling or an even value stops the build.
    // Only `const` items call the const fns of this file, so their indexing and asserts run in
    // the compiler (a failure is a build error), never in a worker.
    #[allow(clippy::indexing_slicing, clippy::panic)]
    pub const fn from_hex(hex: &str) -> Modulus<N> {
        let value = limbs_from_hex::<N>(hex);
        assert!(value[0] & 1 == 1, "a Montgomery modulus is odd");
        // Newton's iteration doubles the correct low bits of m⁻¹ each round: 1 → 32 in five.
        let mut inverse = 1u32;
        let mut round = 0;
        while round < 5 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(value[0].wrapping_mul(inverse)));
            round += 1;
        }
        // R = 2^(32N) and R² mod m: 1 doubled 32N and 64N times, reduced at each step.
        let mut power = [0u32; N];
        power[0] = 1;
        let mut one = power;
        let mut doubling = 0;
        while doubling < 64 * N {
            power = const_double(&power, &value);
            doubling += 1;
            if doubling == 32 * N {
                one = power;
            }
        }
        Modulus {
            value,
            one,
            neg_inverse: inverse.wrapping_neg(),
            r_squared: power,
        }
    }
}

/// Big-endian hexadecimal digits (exactly 8N) as limbs, at compile time.
#[allow(clippy::indexing_slicing, clippy::panic)]
pub const fn limbs_from_hex<const N: usize>(hex: &str) -> Limbs<N> {
    let digits = hex.as_bytes();
    assert!(digits.len() == 8 * N, "8 hex digits per limb");
    let mut out = [0u32; N];
    let mut i = 0;
    while i < digits.len() {
        let nibble = match digits[i] {
            b'0'..=b'9' => digits[i] - b'0',
            b'a'..=b'f' => digits[i] - b'a' + 10,
            _ => panic!("lower-case hex digits only"),
        };
        let limb = N - 1 - i / 8;
        out[limb] = (out[limb] << 4) | nibble as u32;
        i += 1;
    }
    out
}

/// 2a mod m for a < m, in a const context.
#[allow(clippy::indexing_slicing)]
const fn const_double<const N: usize>(a: &Limbs<N>, m: &Limbs<N>) -> Limbs<N> {
    let mut out = [0u32; N];
    let mut carry = 0u32;
    let mut i = 0;
    while i < N {
        out[i] = (a[i] << 1) | carry;
        carry = a[i] >> 31;
        i += 1;
    }
    // out ≥ m (or the doubling carried out): subtract m once.
    let mut borrow = 0u64;
    let mut reduced = [0u32; N];
    let mut j = 0;
    while j < N {
        let diff = (out[j] as u64)
            .wrapping_sub(m[j] as u64)
            .wrapping_sub(borrow);
        reduced[j] = diff as u32;
        borrow = diff >> 63;
        j += 1;
    }
    if carry == 1 || borrow == 0 {
        reduced
    } else {
        out
    }
}

pub const fn zero<const N: usize>() -> Limbs<N> {
    [0; N]
}

pub const fn one<const N: usize>() -> Limbs<N> {
    let mut out = [0; N];
    out[0] = 1;
    out
}

/// a·b·R⁻¹ mod m, for a·b < m·R (both below m, or one below R and the other below m): coarsely
/// integrated operand scanning, one row of the product and one of the reduction at a time.
pub fn mul<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Modulus<N>) -> Limbs<N> {
    // t holds N + 1 limbs of the running sum, the last one at most 1 bit wide.
    let mut t = [0u32; N];
    let mut top = 0u64;
    for &a_i in a {
        let a_i = u64::from(a_i);
        let mut carry = 0u64;
        for (t_j, &b_j) in t.iter_mut().zip(b) {
            let sum = u64::from(*t_j) + a_i * u64::from(b_j) + carry;
            *t_j = sum as u32;
            carry = sum >> 32;
        }
        let high = top + carry;
        // t + factor·m is divisible by 2^32: drop its low limb while adding.
        let factor = u64::from(t.first().copied().unwrap_or(0).wrapping_mul(m.neg_inverse));
        let mut carry = 0u64;
        let mut previous: Option<&mut u32> = None;
        for (t_j, &m_j) in t.iter_mut().zip(&m.value) {
            let sum = u64::from(*t_j) + factor * u64::from(m_j) + carry;
            if let Some(slot) = previous {
                *slot = sum as u32;
            }
            carry = sum >> 32;
            previous = Some(t_j);
        }
        let sum = high + carry;
        if let Some(slot) = previous {
            *slot = sum as u32;
        }
        top = sum >> 32;
    }
    // Below 2m: one subtraction at most.
    if top != 0 || !less_than(&t, &m.value) {
        sub_in_place(&mut t, &m.value);
    }
    t
}

/// a + b mod m, for a, b < m.
pub fn add<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Modulus<N>) -> Limbs<N> {
    let mut out = *a;
    let carry = add_in_place(&mut out, b);
    if carry || !less_than(&out, &m.value) {
        sub_in_place(&mut out, &m.value);
    }
    out
}

/// a − b mod m, for a, b < m.
pub fn sub<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Modulus<N>) -> Limbs<N> {
    sub_value(a, b, &m.value)
}

/// Into Montgomery form: a·R mod m, for any a < R.
pub fn to_montgomery<const N: usize>(a: &Limbs<N>, m: &Modulus<N>) -> Limbs<N> {
    mul(a, &m.r_squared, m)
}

/// Out of Montgomery form: a·R⁻¹ mod m.
#[cfg(test)]
pub fn from_montgomery<const N: usize>(a: &Limbs<N>, m: &Modulus<N>) -> Limbs<N> {
    mul(a, &one(), m)
}

/// a⁻¹ mod m (m prime, given by its value) for a plain (not Montgomery) a in [1, m − 1], by the
/// binary extended Euclidean algorithm; `None` for zero. Variable time. Once per verification,
/// so `mont256` uses it too.
pub fn invert<const N: usize>(a: &Limbs<N>, m: &Limbs<N>) -> Option<Limbs<N>> {
    if *a == zero() {
        return None;
    }
    let one = one::<N>();
    // Invariants: x1·a ≡ u and x2·a ≡ v (mod m); u and v shrink to their gcd, 1.
    let (mut u, mut v) = (*a, *m);
    let (mut x1, mut x2) = (one, zero());
    while u != one && v != one {
        while is_even(&u) {
            shr1(&mut u, false);
            halve(&mut x1, m);
        }
        while is_even(&v) {
            shr1(&mut v, false);
            halve(&mut x2, m);
        }
        if less_than(&u, &v) {
            sub_in_place(&mut v, &u);
            x2 = sub_value(&x2, &x1, m);
        } else {
            sub_in_place(&mut u, &v);
            x1 = sub_value(&x1, &x2, m);
        }
    }
    Some(if u == one { x1 } else { x2 })
}

/// a − b mod m, for a, b < m.
fn sub_value<const N: usize>(a: &Limbs<N>, b: &Limbs<N>, m: &Limbs<N>) -> Limbs<N> {
    let mut out = *a;
    if sub_in_place(&mut out, b) {
        add_in_place(&mut out, m);
    }
    out
}

/// x/2 mod m for x < m (m odd).
fn halve<const N: usize>(x: &mut Limbs<N>, m: &Limbs<N>) {
    let carry = !is_even(x) && add_in_place(x, m);
    shr1(x, carry);
}

fn is_even<const N: usize>(x: &Limbs<N>) -> bool {
    x.first().is_some_and(|low| low & 1 == 0)
}

/// x >>= 1, with `top` shifted in as the top bit.
fn shr1<const N: usize>(x: &mut Limbs<N>, top: bool) {
    let mut high = u32::from(top);
    for limb in x.iter_mut().rev() {
        let low = *limb & 1;
        *limb = (*limb >> 1) | (high << 31);
        high = low;
    }
}

/// a < b.
pub fn less_than<const N: usize>(a: &Limbs<N>, b: &Limbs<N>) -> bool {
    let mut borrow = 0u64;
    for (&a_i, &b_i) in a.iter().zip(b) {
        borrow = u64::from(a_i)
            .wrapping_sub(u64::from(b_i))
            .wrapping_sub(borrow)
            >> 63;
    }
    borrow != 0
}

/// a −= b; true on a borrow out.
fn sub_in_place<const N: usize>(a: &mut Limbs<N>, b: &Limbs<N>) -> bool {
    let mut borrow = 0u64;
    for (a_i, &b_i) in a.iter_mut().zip(b) {
        let diff = u64::from(*a_i)
            .wrapping_sub(u64::from(b_i))
            .wrapping_sub(borrow);
        *a_i = diff as u32;
        borrow = diff >> 63;
    }
    borrow != 0
}

/// a += b; true on a carry out.
pub fn add_in_place<const N: usize>(a: &mut Limbs<N>, b: &Limbs<N>) -> bool {
    let mut carry = 0u64;
    for (a_i, &b_i) in a.iter_mut().zip(b) {
        let sum = u64::from(*a_i) + u64::from(b_i) + carry;
        *a_i = sum as u32;
        carry = sum >> 32;
    }
    carry != 0
}

/// 4N big-endian bytes as limbs; `None` for any other length.
pub fn from_be_bytes<const N: usize>(bytes: &[u8]) -> Option<Limbs<N>> {
    if bytes.len() != 4 * N {
        return None;
    }
    let mut out = zero::<N>();
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks_exact(4)) {
        *limb = chunk
            .iter()
            .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::es256::field::P as P256_FIELD;
    use crate::signature::mont256;
    use crate::signature::mont256::tests::{below, values};

    /// The P-256 field's modulus, whose hand-written constants `mont256` tests pin down.
    const P256: Modulus<8> =
        Modulus::from_hex("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");

    #[test]
    fn derived_constants_match_the_hand_written_ones() {
        let m = &P256_FIELD;
        assert_eq!(P256.value, m.value);
        assert_eq!(P256.neg_inverse, m.neg_inverse);
        assert_eq!(P256.r_squared, m.r_squared);
        assert_eq!(P256.one, mont256::to_montgomery(&mont256::ONE, m));
    }

    #[test]
    fn agrees_with_the_unrolled_arithmetic() {
        let m = &P256_FIELD;
        let xs = values(11, 300);
        let ys = values(12, 300);
        for (x, y) in xs.iter().zip(&ys) {
            let (x, y) = (below(*x, m), below(*y, m));
            assert_eq!(mul(&x, &y, &P256), mont256::mul(&x, &y, m));
            assert_eq!(add(&x, &y, &P256), mont256::add(&x, &y, m));
            assert_eq!(sub(&x, &y, &P256), mont256::sub(&x, &y, m));
            assert_eq!(invert(&x, &P256.value), mont256::invert(&x, m));
            assert_eq!(from_montgomery(&to_montgomery(&x, &P256), &P256), x);
        }
        // The extremes: m − 1 squared, and zero.
        let mut top = m.value;
        top[0] -= 1;
        assert_eq!(mul(&top, &top, &P256), mont256::mul(&top, &top, m));
        assert_eq!(invert(&zero::<8>(), &P256.value), None);
    }

    #[test]
    fn hex_is_read_big_endian() {
        assert_eq!(limbs_from_hex::<2>("0000000100000002"), [2, 1]);
        assert_eq!(from_be_bytes::<2>(&[0, 0, 0, 1, 0, 0, 0, 2]), Some([2, 1]));
        assert_eq!(from_be_bytes::<2>(&[0; 7]), None);
    }
}
