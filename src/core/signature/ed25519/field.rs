//! The field of Ed25519, p = 2^255 − 19, as ten signed limbs of 26 and 25 bits alternately
//! (radix 2^25.5): a product of two limbs, times 38 at most, fits comfortably in an i64, which
//! wasm multiplies natively (unlike the 64×64→128 products of a 51-bit radix).
//!
//! Limb i weighs 2^⌈25.5·i⌉. After a multiplication the limbs are below 2^25 (even) and 2^24
//! (odd) in magnitude; sums and differences of a few such values may be multiplied as they are
//! (the bounds leave room for operands up to 2^27). Nothing here is secret: variable time.

/// Bit offsets of the limbs, and 255 for the end of the last.
const OFFSETS: [u32; 11] = [0, 26, 51, 77, 102, 128, 153, 179, 204, 230, 255];

#[derive(Debug, Clone, Copy)]
pub struct Fe([i32; 10]);

impl Fe {
    pub const ZERO: Fe = Fe([0; 10]);
    pub const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    /// d = −121665/121666, of the curve −x² + y² = 1 + d·x²·y².
    pub const D: Fe = Fe([
        56195235, 13857412, 51736253, 6949390, 114729, 24766616, 60832955, 30306712, 48412415,
        21499315,
    ]);
    pub const D2: Fe = Fe([
        45281625, 27714825, 36363642, 13898781, 229458, 15978800, 54557047, 27058993, 29715967,
        9444199,
    ]);
    /// A square root of −1: 2^((p−1)/4).
    pub const SQRT_M1: Fe = Fe([
        34513072, 25610706, 9377949, 3500415, 12389472, 33281959, 41962654, 31548777, 326685,
        11406482,
    ]);

    /// The low 255 bits of 32 little-endian bytes (bit 255, a sign in point encodings, is
    /// left out), not necessarily reduced.
    pub fn from_bytes(bytes: &[u8; 32]) -> Fe {
        let mut padded = [0u8; 40];
        for (to, from) in padded.iter_mut().zip(bytes) {
            *to = *from;
        }
        let mut limbs = [0i32; 10];
        for (limb, bounds) in limbs.iter_mut().zip(OFFSETS.windows(2)) {
            if let [start, end] = *bounds {
                let first = (start / 8) as usize;
                let word = padded.get(first..first + 8).map_or(0, |chunk| {
                    chunk
                        .iter()
                        .rev()
                        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
                });
                *limb = ((word >> (start % 8)) & ((1 << (end - start)) - 1)) as i32;
            }
        }
        Fe(limbs)
    }

    /// The canonical encoding: the value reduced below p, 32 little-endian bytes (bit 255 zero).
    pub fn to_bytes(self) -> [u8; 32] {
        let mut h = self.0.map(i64::from);
        // Floor carries make every limb non-negative and in range, the value below 2^255 …
        carry_floor(&mut h);
        carry_floor(&mut h);
        // … then p is subtracted if the value is at least p, i.e. if value + 19 reaches 2^255.
        let mut probe = h;
        probe[0] += 19;
        let at_least_p = carry_floor_no_wrap(&mut probe) != 0;
        if at_least_p {
            h[0] += 19;
            carry_floor_no_wrap(&mut h);
        }
        let mut bytes = [0u8; 32];
        let mut acc = 0u64;
        let mut acc_bits = 0;
        let mut out = bytes.iter_mut();
        for (limb, bounds) in h.iter().zip(OFFSETS.windows(2)) {
            if let [start, end] = *bounds {
                acc |= (*limb as u64) << acc_bits;
                acc_bits += end - start;
                while acc_bits >= 8 {
                    if let Some(byte) = out.next() {
                        *byte = acc as u8;
                    }
                    acc >>= 8;
                    acc_bits -= 8;
                }
            }
        }
        if let Some(byte) = out.next() {
            *byte = acc as u8;
        }
        bytes
    }

    pub fn is_zero(self) -> bool {
        self.to_bytes() == [0; 32]
    }

    /// Whether the reduced value is odd ("negative" in RFC 8032's encoding of x).
    pub fn is_negative(self) -> bool {
        self.to_bytes()[0] & 1 == 1
    }

    #[cfg(test)]
    pub fn equals(self, other: Fe) -> bool {
        self.to_bytes() == other.to_bytes()
    }

    #[inline(always)]
    pub fn add(self, other: Fe) -> Fe {
        let mut out = [0i32; 10];
        unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
            out[I] = self.0[I] + other.0[I];
        });
        Fe(out)
    }

    #[inline(always)]
    pub fn sub(self, other: Fe) -> Fe {
        let mut out = [0i32; 10];
        unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
            out[I] = self.0[I] - other.0[I];
        });
        Fe(out)
    }

    #[inline(always)]
    pub fn neg(self) -> Fe {
        Fe::ZERO.sub(self)
    }

    /// The product, limbs carried back into range.
    #[inline(never)]
    pub fn mul(self, other: Fe) -> Fe {
        let (f, g) = (widen(self.0), widen(other.0));
        let mut h = [0i64; 10];
        unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
            unrolled!(J in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
                h[(I + J) % 10] += f[I] * (g[J] * const { product_factor(I, J) });
            });
        });
        Fe(carry(h))
    }

    /// The square: each cross product once, doubled.
    #[inline(never)]
    pub fn square(self) -> Fe {
        let f = widen(self.0);
        let mut h = [0i64; 10];
        unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
            unrolled!(J in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
                h[(I + J) % 10] += f[I] * (f[J] * const { square_factor(I, J) });
            });
        });
        Fe(carry(h))
    }

    /// self^(2^k).
    fn square_times(self, k: u32) -> Fe {
        (0..k).fold(self, |acc, _| acc.square())
    }

    /// self^(2^250 − 1) and self^11, the common head of the two exponentiations below.
    fn pow_2_250_minus_1(self) -> (Fe, Fe) {
        let z2 = self.square();
        let z9 = z2.square_times(2).mul(self);
        let z11 = z9.mul(z2);
        let z_5_0 = z11.square().mul(z9);
        let z_10_0 = z_5_0.square_times(5).mul(z_5_0);
        let z_20_0 = z_10_0.square_times(10).mul(z_10_0);
        let z_40_0 = z_20_0.square_times(20).mul(z_20_0);
        let z_50_0 = z_40_0.square_times(10).mul(z_10_0);
        let z_100_0 = z_50_0.square_times(50).mul(z_50_0);
        let z_200_0 = z_100_0.square_times(100).mul(z_100_0);
        (z_200_0.square_times(50).mul(z_50_0), z11)
    }

    /// self^((p − 5)/8) = self^(2^252 − 3), for square roots.
    pub fn pow_p58(self) -> Fe {
        self.pow_2_250_minus_1().0.square_times(2).mul(self)
    }

    /// self^(p − 2) = self⁻¹ (zero for zero).
    pub fn invert(self) -> Fe {
        let (z_250_0, z11) = self.pow_2_250_minus_1();
        z_250_0.square_times(5).mul(z11)
    }
}

/// The factor of f_i·g_j in limb (i + j) mod 10 of a product: 2 when both limbs are odd (with
/// weights 2^⌈25.5·i⌉ their product lands half a bit high), times 19 when it wraps past limb 9
/// (2^255 ≡ 19).
const fn product_factor(i: usize, j: usize) -> i64 {
    let odd = if i % 2 == 1 && j % 2 == 1 { 2 } else { 1 };
    let wrap = if i + j >= 10 { 19 } else { 1 };
    odd * wrap
}

/// The same for a square, where f_i·f_j and f_j·f_i are one term: twice for i < j, none for
/// i > j (the multiplication by zero folds away).
const fn square_factor(i: usize, j: usize) -> i64 {
    let cross = if i < j {
        2
    } else if i == j {
        1
    } else {
        0
    };
    cross * product_factor(i, j)
}

/// Bits of limb i: 26 for even limbs, 25 for odd.
const fn limb_bits(i: usize) -> u32 {
    if i.is_multiple_of(2) {
        26
    } else {
        25
    }
}

/// Rounding carries, limb to limb and from the top back to the bottom (times 19): limbs end
/// within ±2^25 (even) and ±2^24 (odd), limb 1 a little more.
#[inline(always)]
fn carry(mut h: [i64; 10]) -> [i32; 10] {
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
        let bits = const { limb_bits(I) };
        let c = (h[I] + (1 << (bits - 1))) >> bits;
        h[I] -= c << bits;
        if I == 9 {
            h[0] += 19 * c;
        } else {
            h[(I + 1) % 10] += c;
        }
    });
    let c = (h[0] + (1 << 25)) >> 26;
    h[0] -= c << 26;
    h[1] += c;
    let mut out = [0i32; 10];
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
        out[I] = h[I] as i32;
    });
    out
}

/// The limbs as i64, unrolled (`map` stays a loop in a size-optimized build).
#[inline(always)]
fn widen(limbs: [i32; 10]) -> [i64; 10] {
    let mut out = [0i64; 10];
    unrolled!(I in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] {
        out[I] = i64::from(limbs[I]);
    });
    out
}

/// Floor carries, wrapping the top carry back (times 19).
fn carry_floor(h: &mut [i64; 10]) {
    let top = carry_floor_no_wrap(h);
    h[0] += 19 * top;
}

/// Floor carries, limb 0 to 9; returns the carry out of limb 9 (bit 255 and up).
fn carry_floor_no_wrap(h: &mut [i64; 10]) -> i64 {
    let mut c = 0;
    for (limb, bounds) in h.iter_mut().zip(OFFSETS.windows(2)) {
        if let [start, end] = *bounds {
            *limb += c;
            c = *limb >> (end - start);
            *limb -= c << (end - start);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(seed: u64) -> Fe {
        let mut bytes = [0u8; 32];
        let mut state = seed;
        for byte in bytes.iter_mut() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *byte = (state >> 56) as u8;
        }
        Fe::from_bytes(&bytes)
    }

    /// p − 1 and the like, as bytes.
    fn p_minus(k: u8) -> [u8; 32] {
        let mut bytes = [0xff; 32];
        bytes[0] = 0xed - k;
        bytes[31] = 0x7f;
        bytes
    }

    #[test]
    fn encoding_reduces_and_round_trips() {
        assert_eq!(Fe::from_bytes(&p_minus(0)).to_bytes(), [0; 32], "p is 0");
        let mut one = [0; 32];
        one[0] = 1;
        let mut p_plus_one = p_minus(0);
        p_plus_one[0] += 1;
        assert_eq!(Fe::from_bytes(&p_plus_one).to_bytes(), one);
        assert_eq!(Fe::from_bytes(&p_minus(1)).to_bytes(), p_minus(1));
        assert_eq!(
            Fe::from_bytes(&[0xff; 32]).to_bytes()[0],
            0x12,
            "2^255 − 1 = p + 18"
        );
        for seed in 0..100 {
            let a = element(seed);
            let canonical = a.to_bytes();
            assert_eq!(Fe::from_bytes(&canonical).to_bytes(), canonical);
            assert!(canonical[31] < 0x80);
        }
    }

    #[test]
    fn ring_laws_hold() {
        for seed in 0..200 {
            let (a, b, c) = (element(seed), element(seed + 1000), element(seed + 2000));
            assert!(a.mul(b.add(c)).equals(a.mul(b).add(a.mul(c))));
            assert!(a.mul(b).equals(b.mul(a)));
            assert!(a.square().equals(a.mul(a)));
            assert!(a.sub(b).add(b).equals(a));
            // Products of sums and differences, the widest operands the point formulas use.
            let (wide, wider) = (a.add(b).add(c), a.sub(b).sub(c).sub(a));
            assert!(wide.mul(wider).equals(wide.mul(wider.add(Fe::ZERO))));
            assert!(wide.square().equals(wide.mul(wide)));
            assert!(a.mul(a.invert()).equals(Fe::ONE) || a.is_zero());
        }
        assert!(Fe::SQRT_M1.square().equals(Fe::ONE.neg()));
        assert!(Fe::D.add(Fe::D).equals(Fe::D2));
        // d·121666 = −121665.
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&121666u32.to_le_bytes());
        let mut minus = [0u8; 32];
        minus[..4].copy_from_slice(&121665u32.to_le_bytes());
        assert!(Fe::D
            .mul(Fe::from_bytes(&bytes))
            .equals(Fe::from_bytes(&minus).neg()));
    }
}
