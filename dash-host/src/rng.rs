//! The garbler's randomness: ChaCha20 seeded from the operating system.
//!
//! With rand_core 0.10 the OS generator is `getrandom::SysRng` (getrandom
//! 0.4, feature `sys_rng`), a *fallible* generator (`TryRng`); a seedable
//! generator is built from it with `SeedableRng::try_from_rng`, which
//! surfaces an OS failure as an error instead of a panic. The result is an
//! infallible `Rng + CryptoRng`, which is what `dash-core` asks for.

use anyhow::{Context, Result};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A fresh ChaCha20 generator with a 256-bit seed from the OS.
pub fn os_seeded() -> Result<ChaCha20Rng> {
    ChaCha20Rng::try_from_rng(&mut getrandom::SysRng).context("the operating system's random generator failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    #[test]
    fn two_generators_differ() {
        let (mut a, mut b) = (os_seeded().unwrap(), os_seeded().unwrap());
        assert_ne!((a.next_u64(), a.next_u64()), (b.next_u64(), b.next_u64()));
    }

    #[test]
    fn is_a_crypto_rng() {
        fn needs_crypto<R: rand_core::CryptoRng>(_: &mut R) {}
        needs_crypto(&mut os_seeded().unwrap());
    }
}
