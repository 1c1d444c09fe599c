//! Width-w non-adjacent form of a scalar of up to 384 bits, for variable-time multi-scalar
//! multiplication: digits d_i, each zero or odd with |d_i| < 2^(w−1), at least w − 1 zeros
//! after each non-zero one, with Σ d_i·2^i the scalar.

/// One digit more than the largest scalar has bits: the last carry.
pub const DIGITS: usize = 385;

/// The digits of a scalar of 32-bit limbs (least significant first), at most 12 of them.
pub fn wnaf(scalar: &[u32], width: u32) -> [i8; DIGITS] {
    let bit = |i: usize| -> u32 { scalar.get(i / 32).map_or(0, |limb| (limb >> (i % 32)) & 1) };
    let mut digits = [0i8; DIGITS];
    let used = (scalar.len() * 32 + 1).min(DIGITS);
    let mut position = 0;
    let mut carry = 0;
    while position < used {
        if bit(position) == carry {
            // A zero digit; with a carry of 1, the carry moves on over a 1 bit.
            position += 1;
            continue;
        }
        // Odd: the next w bits plus the carry. Above 2^(w−1) it becomes negative, carrying 1.
        let window = (0..width as usize).fold(carry, |acc, j| acc + (bit(position + j) << j));
        carry = window >> (width - 1);
        let digit = i64::from(window) - (i64::from(carry) << width);
        if let (Some(slot), Ok(digit)) = (digits.get_mut(position), i8::try_from(digit)) {
            *slot = digit;
        }
        position += width as usize;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::mont256::tests::values;

    /// Σ d_i·2^i of a 256-bit scalar's digits as nine 32-bit limbs (the ninth for the last
    /// carry); the digits past the 257th are zero.
    fn value_of(digits: &[i8; DIGITS]) -> [u32; 9] {
        assert!(digits[257..].iter().all(|d| *d == 0));
        let mut wide = [0i64; 9];
        for (i, d) in digits.iter().take(257).enumerate() {
            wide[i / 32] += i64::from(*d) << (i % 32);
        }
        let mut out = [0u32; 9];
        let mut carry = 0i64;
        for (o, w) in out.iter_mut().zip(wide) {
            let sum = w + carry;
            *o = sum as u32;
            carry = sum >> 32;
        }
        assert_eq!(carry, 0);
        out
    }

    #[test]
    fn digits_are_odd_small_sparse_and_sum_to_the_scalar() {
        let mut scalars = values(7, 100);
        scalars.extend([[0; 8], [1, 0, 0, 0, 0, 0, 0, 0], [u32::MAX; 8]]);
        for width in [2, 5, 6, 8] {
            for scalar in &scalars {
                let digits = wnaf(scalar, width);
                let bound = (1i16 << (width - 1)) - 1;
                for (i, d) in digits.iter().enumerate() {
                    let d = i16::from(*d);
                    assert!(d == 0 || (d % 2 != 0 && d.abs() <= bound));
                    if d != 0 {
                        let next = digits.iter().skip(i + 1).take(width as usize - 1);
                        assert!(next.clone().all(|x| *x == 0));
                    }
                }
                let mut expected = [0u32; 9];
                expected[..8].copy_from_slice(scalar);
                assert_eq!(value_of(&digits), expected, "w={width}");
            }
        }
    }
}
