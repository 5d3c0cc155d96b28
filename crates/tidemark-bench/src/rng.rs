//! A tiny deterministic generator (SplitMix64): the same seed gives the
//! same workload on every machine and every version, which a dependency's
//! generator does not promise.

/// SplitMix64 (Steele, Lea, Flood 2014; the constants of `java.util.SplittableRandom`).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for `(a, b)`, independent of the one for any other pair.
    pub(crate) fn keyed(seed: u64, a: u64, b: u64) -> Self {
        Self(mix(
            mix(seed ^ mix(a)) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-1, 1)`.
    pub(crate) fn signed(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }

    /// Uniform in `0..=max`.
    pub(crate) fn upto(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

/// The SplitMix64 finalizer: a bijective 64-bit mix.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_same_seed_same_sequence() {
        let (mut a, mut b) = (Rng(7), Rng(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(
            Rng::keyed(1, 2, 3).next_u64(),
            Rng::keyed(1, 3, 2).next_u64()
        );
    }

    #[test]
    fn rng_unit_in_range() {
        let mut r = Rng(1);
        for _ in 0..10_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.upto(4) <= 4);
        }
    }
}
