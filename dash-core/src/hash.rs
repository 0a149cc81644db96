//! The tweakable circular-correlation-robust hash, from fixed-key AES.
//!
//! `H(t, x) = π(π(x) ⊕ t) ⊕ π(x)`, where `π` is AES-128 under a fixed,
//! public key (Guo–Katz–Wang–Yu, ePrint 2019/074). Inputs are labels packed
//! injectively into 128 bits ([`crate::Label::to_block`]). Every use takes a
//! [`Tweak`] that names its domain, its gate and its row group, so no two
//! uses in one circuit ever share a tweak (see `docs/SECURITY.md`).
//!
//! On x86-64 the `aes` crate uses AES-NI when the CPU has it; elsewhere
//! (Cortex-M) its bit-sliced software backend, which is constant-time.

use crate::block::Block;
use crate::error::Error;
use aes::Aes128;
use aes::cipher::array::Array;
use aes::cipher::consts::U16;
use aes::cipher::typenum::Unsigned;
use aes::cipher::{
    BlockCipherEncBackend, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, KeyInit, ParBlocks,
};

/// The fixed public AES key. Any public constant serves (the security
/// argument treats `π` as a random permutation that everyone can query);
/// what matters is that garbler and evaluator agree on it.
const FIXED_KEY: [u8; 16] = *b"dash-core/tccr/1";

/// What a hash call is for. Each domain occupies its own tweak space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Domain {
    /// Rows of a projection gate.
    Projection = 1,
    /// The evaluator half of a multiply-by-bit gate.
    MulBit = 2,
    /// Output decoding tags.
    Output = 3,
    /// Deriving labels from a seed.
    Derivation = 4,
}

/// A 128-bit tweak: `domain (8 bits) ‖ 0 (24 bits) ‖ sub (32 bits) ‖ gate (64 bits)`.
/// Distinct `(domain, gate, sub)` give distinct tweaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tweak(pub u128);

impl Tweak {
    /// The tweak for one use.
    #[inline]
    pub const fn new(domain: Domain, gate: u64, sub: u32) -> Tweak {
        Tweak(((domain as u128) << 120) | ((sub as u128) << 64) | gate as u128)
    }
}

/// Blocks hashed per AES call: enough to fill the AES-NI pipeline.
pub const HASH_LANES: usize = 8;

/// Fixed-key AES as a tweakable hash. Build once and share (`&FixedKeyHash`
/// is `Sync`); building expands the AES key schedule.
#[derive(Clone)]
pub struct FixedKeyHash {
    aes: Aes128,
}

impl Default for FixedKeyHash {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for FixedKeyHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FixedKeyHash")
    }
}

impl FixedKeyHash {
    /// The hash under the crate's fixed public key.
    pub fn new() -> FixedKeyHash {
        FixedKeyHash { aes: Aes128::new(&FIXED_KEY.into()) }
    }

    /// The raw permutation `π` on a batch of blocks, in place. Exposed for
    /// benchmarks (the AES block rate every speed figure is compared with).
    pub fn permute(&self, blocks: &mut [Block]) {
        let mut lanes = [aes::Block::default(); HASH_LANES];
        for chunk in blocks.chunks_mut(HASH_LANES) {
            for (l, b) in lanes.iter_mut().zip(chunk.iter()) {
                *l = b.to_bytes().into();
            }
            self.aes.encrypt_blocks(&mut lanes[..chunk.len()]);
            for (b, l) in chunk.iter_mut().zip(lanes.iter()) {
                *b = Block::from_bytes((*l).into());
            }
        }
    }

    /// `H(t, x)` for one block.
    #[inline]
    pub fn hash(&self, tweak: Tweak, x: Block) -> Block {
        let mut first: aes::Block = x.to_bytes().into();
        self.aes.encrypt_block(&mut first);
        let y = u128::from_le_bytes(first.into());
        let mut second: aes::Block = (y ^ tweak.0).to_le_bytes().into();
        self.aes.encrypt_block(&mut second);
        Block(y ^ u128::from_le_bytes(second.into()))
    }

    /// `H(tweaks[i], blocks[i])` for every `i`, in place: the batched form
    /// that keeps AES-NI's pipeline full.
    pub fn hash_batch(&self, tweaks: &[Tweak], blocks: &mut [Block]) -> Result<(), Error> {
        if tweaks.len() != blocks.len() {
            return Err(Error::LengthMismatch);
        }
        let mut first = [aes::Block::default(); HASH_LANES];
        let mut second = [aes::Block::default(); HASH_LANES];
        for (chunk, tw) in blocks.chunks_mut(HASH_LANES).zip(tweaks.chunks(HASH_LANES)) {
            let n = chunk.len();
            for (l, b) in first.iter_mut().zip(chunk.iter()) {
                *l = b.to_bytes().into();
            }
            self.aes.encrypt_blocks(&mut first[..n]);
            for i in 0..n {
                let y = u128::from_le_bytes(first[i].into());
                second[i] = (y ^ tw[i].0).to_le_bytes().into();
            }
            self.aes.encrypt_blocks(&mut second[..n]);
            for i in 0..n {
                let y = u128::from_le_bytes(first[i].into());
                let z = u128::from_le_bytes(second[i].into());
                chunk[i] = Block(y ^ z);
            }
        }
        Ok(())
    }

    /// `H(tweak, blocks[i])` for every `i`, in place (the rows of one gate).
    ///
    /// Runs inside one backend call (`SameTweak`): no per-call dispatch or
    /// staging buffers, the AES pipeline's width of blocks at a time.
    pub fn hash_batch_same_tweak(&self, tweak: Tweak, blocks: &mut [Block]) {
        self.aes.encrypt_with_backend(SameTweak { tweak: tweak.0, blocks });
    }

    /// The second half of `H(tweak, x)` for every `x`, given `first[i] = π(x_i)`:
    /// `out[i] = π(first[i] ⊕ t) ⊕ first[i]`. Projections of one wire share
    /// the first half (the wire's labels are the same; only the tweak
    /// differs), so the garbler computes it once for all of them.
    pub(crate) fn finish_same_tweak(&self, tweak: Tweak, first: &[Block], out: &mut [Block]) {
        let mut second = [aes::Block::default(); HASH_LANES];
        for (f, o) in first.chunks(HASH_LANES).zip(out.chunks_mut(HASH_LANES)) {
            let n = f.len().min(o.len());
            for (l, x) in second.iter_mut().zip(&f[..n]) {
                *l = (x.0 ^ tweak.0).to_le_bytes().into();
            }
            self.aes.encrypt_blocks(&mut second[..n]);
            for ((o, l), x) in o.iter_mut().zip(&second[..n]).zip(f) {
                *o = Block(u128::from_le_bytes((*l).into()) ^ x.0);
            }
        }
    }
}

/// [`FixedKeyHash::hash_batch_same_tweak`] as a closure over the AES
/// backend: full pipeline-width groups go through `encrypt_par_blocks`
/// (both passes of a group back to back), the rest block by block.
struct SameTweak<'a> {
    tweak: u128,
    blocks: &'a mut [Block],
}

impl BlockSizeUser for SameTweak<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for SameTweak<'_> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let width = B::ParBlocksSize::USIZE;
        let t = self.tweak;
        // The partial group first: its blocks go through AES one at a time,
        // a latency-bound chain that the full groups after it overlap.
        let (tail, full) = self.blocks.split_at_mut(self.blocks.len() % width);
        for b in tail.iter_mut() {
            let mut first = b.to_bytes().into();
            backend.encrypt_block_inplace(&mut first);
            let y = u128::from_le_bytes(first.into());
            let mut second = (y ^ t).to_le_bytes().into();
            backend.encrypt_block_inplace(&mut second);
            *b = Block(y ^ u128::from_le_bytes(second.into()));
        }
        for group in full.chunks_exact_mut(width) {
            let mut first: ParBlocks<B> = Array::from_fn(|i| group[i].to_bytes().into());
            backend.encrypt_par_blocks_inplace(&mut first);
            let mut second: ParBlocks<B> =
                Array::from_fn(|i| (u128::from_le_bytes(first[i].into()) ^ t).to_le_bytes().into());
            backend.encrypt_par_blocks_inplace(&mut second);
            for ((b, f), s) in group.iter_mut().zip(first.iter()).zip(second.iter()) {
                *b = Block(u128::from_le_bytes((*f).into()) ^ u128::from_le_bytes((*s).into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn batch_equals_single_and_tweaks_separate() {
        let h = FixedKeyHash::new();
        let xs: [Block; 19] = core::array::from_fn(|i| Block(i as u128 * 0x9e3779b97f4a7c15));
        let tweaks: [Tweak; 19] = core::array::from_fn(|i| Tweak::new(Domain::Projection, i as u64, 0));
        let mut batch = xs;
        h.hash_batch(&tweaks, &mut batch).unwrap();
        for i in 0..19 {
            assert_eq!(batch[i], h.hash(tweaks[i], xs[i]));
        }
        let x = Block(42);
        assert_ne!(h.hash(Tweak::new(Domain::Projection, 1, 0), x), h.hash(Tweak::new(Domain::Output, 1, 0), x));
        assert_ne!(h.hash(Tweak::new(Domain::Projection, 1, 0), x), h.hash(Tweak::new(Domain::Projection, 1, 1), x));
        assert_eq!(h.hash_batch(&tweaks[..3], &mut batch[..4]), Err(Error::LengthMismatch));
    }

    #[test]
    fn same_tweak_batch_equals_single() {
        let h = FixedKeyHash::new();
        let xs: [Block; 21] = core::array::from_fn(|i| Block((i as u128 + 1) * 0x0123_4567_89ab_cdef_0f1e_2d3c));
        let t = Tweak::new(Domain::Projection, 77, 3);
        let mut batch = xs;
        h.hash_batch_same_tweak(t, &mut batch);
        for i in 0..21 {
            assert_eq!(batch[i], h.hash(t, xs[i]));
        }
        let mut first = xs;
        h.permute(&mut first);
        let mut out = [Block::ZERO; 21];
        h.finish_same_tweak(t, &first, &mut out);
        assert_eq!(out, batch);
    }

    #[test]
    fn tweak_fields_do_not_overlap() {
        let a = Tweak::new(Domain::Projection, u64::MAX, 0);
        let b = Tweak::new(Domain::Projection, 0, 1);
        let c = Tweak::new(Domain::MulBit, 0, 0);
        let fields = |t: Tweak| (t.0 >> 120, (t.0 >> 64) as u32, t.0 as u64);
        assert_eq!(fields(a), (1, 0, u64::MAX));
        assert_eq!(fields(b), (1, 1, 0));
        assert_eq!(fields(c), (2, 0, 0));
    }

    #[test]
    fn fixed_key_known_answer() {
        // Pins the permutation so that garbler and evaluator builds agree:
        // AES-128 under the fixed key, checked against the aes crate.
        let h = FixedKeyHash::new();
        let mut b = [Block::ZERO];
        h.permute(&mut b);
        let reference = {
            let aes = Aes128::new(&FIXED_KEY.into());
            let mut blk = aes::Block::default();
            aes.encrypt_block(&mut blk);
            Block::from_bytes(blk.into())
        };
        assert_eq!(b[0], reference);
        assert_ne!(b[0], Block::ZERO);
    }
}
