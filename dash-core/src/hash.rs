//! The tweakable circular-correlation-robust hash, from fixed-key AES.
//!
//! `H(t, x) = π(π(x) ⊕ t) ⊕ π(x)`, where `π` is AES-128 under a fixed,
//! public key (Guo–Katz–Wang–Yu, ePrint 2019/074). Inputs are labels packed
//! injectively into 128 bits ([`crate::Label::to_block`]). Every use takes a
//! [`Tweak`] that names its domain, its gate and its row group, so no two
//! uses in one circuit ever share a tweak (see `docs/SECURITY.md`).
//!
//! On x86-64 the `aes` crate picks its backend at run time from the CPU's
//! features: VAES with AVX-512 (64 blocks per pass), VAES (30), AES-NI (8);
//! elsewhere (Cortex-M) its bit-sliced software backend. All are
//! constant-time. Each method here runs its whole batch inside one call
//! into that backend, so one portable build reaches the widest path the CPU
//! offers.

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

/// Blocks per batch in the callers that hash a fixed number of gates at a
/// time (`projection::evaluate_batch`). Any length works; the hash itself
/// keeps the backend's full width in flight (see [`FixedKeyHash::par_blocks`]).
pub const HASH_LANES: usize = 8;

/// Fixed-key AES as a tweakable hash. Build once and share (`&FixedKeyHash`
/// is `Sync`); building expands the AES key schedule.
///
/// Every method runs its whole batch inside *one* call into the `aes`
/// crate's backend (`encrypt_with_backend`), which the crate picks once per
/// call from the CPU's features, at run time: VAES with AVX-512 (64 blocks
/// per pass), VAES on 256-bit registers (30), AES-NI (8), or the bit-sliced
/// software backend. Inside that call the backend's instructions are
/// inlined into the hash's loops, so there is no dispatch per block and the
/// backend's full width of blocks is in flight; both AES passes of a group
/// run back to back. One portable build, no `-C target-cpu`.
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

    /// Blocks per pass of the AES backend chosen at run time on this CPU:
    /// 64 (VAES with AVX-512), 30 (VAES, 256-bit), 8 (AES-NI; also the
    /// ARMv8 backend), 4, 2 or 1 (the bit-sliced software backend on 64-,
    /// 32- and 16-bit targets). Public information about the machine, for
    /// reports.
    pub fn par_blocks(&self) -> usize {
        let mut width = 0;
        self.aes.encrypt_with_backend(Width(&mut width));
        width
    }

    /// The raw permutation `π` on a batch of blocks, in place. Exposed for
    /// benchmarks (the AES block rate every speed figure is compared with).
    pub fn permute(&self, blocks: &mut [Block]) {
        self.aes.encrypt_with_backend(Run::<_, true, false> { blocks, tweaks: NoTweak });
    }

    /// [`FixedKeyHash::permute`] with `groups` backend passes in flight per
    /// group (1, 2 or 4; other values act as 1) instead of the hash's own
    /// choice. Benchmarks only: `dashgc bench` measures the best of these
    /// beside the reference, so ratios can be read against the CPU's rate.
    #[doc(hidden)]
    pub fn permute_in_flight(&self, groups: usize, blocks: &mut [Block]) {
        match groups {
            2 => self.aes.encrypt_with_backend(Fixed::<2>(blocks)),
            4 => self.aes.encrypt_with_backend(Fixed::<4>(blocks)),
            _ => self.aes.encrypt_with_backend(Fixed::<1>(blocks)),
        }
    }

    /// `H(t, x)` for one block (both passes in one backend call).
    #[inline]
    pub fn hash(&self, tweak: Tweak, x: Block) -> Block {
        let mut out = [x];
        self.aes.encrypt_with_backend(Run::<_, true, true> { blocks: &mut out, tweaks: Same::new(tweak) });
        out[0]
    }

    /// `H(tweaks[i], blocks[i])` for every `i`, in place: the batched form
    /// that keeps the AES pipeline full.
    pub fn hash_batch(&self, tweaks: &[Tweak], blocks: &mut [Block]) -> Result<(), Error> {
        if tweaks.len() != blocks.len() {
            return Err(Error::LengthMismatch);
        }
        self.aes.encrypt_with_backend(Run::<_, true, true> { blocks, tweaks: Each(tweaks) });
        Ok(())
    }

    /// `H(tweak, blocks[i])` for every `i`, in place (the rows of one gate).
    pub fn hash_batch_same_tweak(&self, tweak: Tweak, blocks: &mut [Block]) {
        self.aes.encrypt_with_backend(Run::<_, true, true> { blocks, tweaks: Same::new(tweak) });
    }

    /// The second half of `H(tweak, x)` for every `x`, given `first[i] = π(x_i)`:
    /// `out[i] = π(first[i] ⊕ t) ⊕ first[i]`, for `i < min(first.len(), out.len())`.
    /// Projections of one wire share the first half (the wire's labels are
    /// the same; only the tweak differs), so the garbler computes it once
    /// for all of them.
    pub(crate) fn finish_same_tweak(&self, tweak: Tweak, first: &[Block], out: &mut [Block]) {
        let n = first.len().min(out.len());
        out[..n].copy_from_slice(&first[..n]);
        self.aes.encrypt_with_backend(Run::<_, false, true> { blocks: &mut out[..n], tweaks: Same::new(tweak) });
    }
}

/// The tweaks of a run: block `i`'s as an AES block, and those of a
/// stretch of the run (so each stretch indexes its own, bounds checked once).
trait Tweaks: Copy {
    fn at(self, i: usize) -> aes::Block;
    fn part(self, start: usize, len: usize) -> Self;
}

/// One tweak for the whole run (the rows of one gate).
#[derive(Clone, Copy)]
struct Same(aes::Block);

impl Same {
    #[inline(always)]
    fn new(t: Tweak) -> Same {
        Same(t.0.to_le_bytes().into())
    }
}

impl Tweaks for Same {
    #[inline(always)]
    fn at(self, _: usize) -> aes::Block {
        self.0
    }

    #[inline(always)]
    fn part(self, _: usize, _: usize) -> Self {
        self
    }
}

/// A tweak per block.
#[derive(Clone, Copy)]
struct Each<'a>(&'a [Tweak]);

impl Tweaks for Each<'_> {
    #[inline(always)]
    fn at(self, i: usize) -> aes::Block {
        self.0[i].0.to_le_bytes().into()
    }

    #[inline(always)]
    fn part(self, start: usize, len: usize) -> Self {
        Each(&self.0[start..start + len])
    }
}

/// No second pass (the permutation alone).
#[derive(Clone, Copy)]
struct NoTweak;

impl Tweaks for NoTweak {
    #[inline(always)]
    fn at(self, _: usize) -> aes::Block {
        aes::Block::default()
    }

    #[inline(always)]
    fn part(self, _: usize, _: usize) -> Self {
        self
    }
}

// Blocks stay in AES's byte form between the passes, and XOR goes through
// a vector register on x86-64: as `u128` (or byte by byte) it goes through
// general registers, lane shuffles and stores in halves (which a later
// 16-byte load cannot forward from), which cost the hash more than AES.

#[inline(always)]
fn load(b: &Block) -> aes::Block {
    b.to_bytes().into()
}

#[inline(always)]
fn store(b: &mut Block, a: &aes::Block) {
    *b = Block::from_bytes((*a).into());
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn xor(a: &aes::Block, b: &aes::Block) -> aes::Block {
    use safe_arch::m128i;
    let (a, b): ([u8; 16], [u8; 16]) = ((*a).into(), (*b).into());
    <[u8; 16]>::from(m128i::from(a) ^ m128i::from(b)).into()
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn xor(a: &aes::Block, b: &aes::Block) -> aes::Block {
    let (a, b): ([u8; 16], [u8; 16]) = ((*a).into(), (*b).into());
    (u128::from_le_bytes(a) ^ u128::from_le_bytes(b)).to_le_bytes().into()
}

/// One run of blocks through the backend, in place. `FIRST`: `y = π(x)`
/// (the first pass; without it the blocks already hold `y`). `SECOND`:
/// `y ⊕ π(y ⊕ t_i)`. So `permute` is (true, false), `H` is (true, true) and
/// `finish_same_tweak` is (false, true).
///
/// Order: the part that does not fill a backend pass first (a short,
/// latency-bound stretch that the whole passes after it overlap), then
/// whole passes, both AES passes of each back to back. (Two or four
/// backend passes in flight per group were no faster on AES-NI: see
/// `FixedKeyHash::permute_in_flight` and BENCHMARKS.md.) Which path a block
/// takes depends only on the run's length and the backend (public), never
/// on a block's value.
struct Run<'a, T: Tweaks, const FIRST: bool, const SECOND: bool> {
    blocks: &'a mut [Block],
    tweaks: T,
}

impl<T: Tweaks, const FIRST: bool, const SECOND: bool> BlockSizeUser for Run<'_, T, FIRST, SECOND> {
    type BlockSize = U16;
}

impl<T: Tweaks, const FIRST: bool, const SECOND: bool> BlockCipherEncClosure for Run<'_, T, FIRST, SECOND> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let width = B::ParBlocksSize::USIZE;
        let (blocks, tweaks) = (self.blocks, self.tweaks);
        let n = blocks.len();
        let tail = n % width;
        // A short tail runs block by block; one of at least half a pass
        // runs as one padded pass (as fast on AES-NI, twice as fast where a
        // pass uses wide registers, and one call instead of several on the
        // bit-sliced backend, whose single blocks cost a whole pass).
        if 2 * tail >= width {
            group::<B, T, FIRST, SECOND, 1>(backend, &mut blocks[..tail], tweaks.part(0, tail));
        } else {
            singles::<B, T, FIRST, SECOND>(backend, &mut blocks[..tail], tweaks.part(0, tail));
        }
        for (k, pass) in blocks[tail..].chunks_exact_mut(width).enumerate() {
            group::<B, T, FIRST, SECOND, 1>(backend, pass, tweaks.part(tail + k * width, width));
        }
    }
}

/// Blocks one at a time (each through the backend's single-block path),
/// first pass over all of them, then the second: the passes of different
/// blocks are independent, so the core overlaps them.
#[inline(always)]
fn singles<B: BlockCipherEncBackend<BlockSize = U16>, T: Tweaks, const FIRST: bool, const SECOND: bool>(
    backend: &B,
    blocks: &mut [Block],
    tweaks: T,
) {
    if FIRST {
        for b in blocks.iter_mut() {
            let mut a = load(b);
            backend.encrypt_block_inplace(&mut a);
            store(b, &a);
        }
    }
    if SECOND {
        for (i, b) in blocks.iter_mut().enumerate() {
            let y = load(b);
            let mut z = xor(&y, &tweaks.at(i));
            backend.encrypt_block_inplace(&mut z);
            store(b, &xor(&z, &y));
        }
    }
}

/// Up to `G` backend passes' worth of blocks (`blocks.len() <= G · width`;
/// a shorter slice is padded with zero blocks, whose results are dropped),
/// each AES pass issued for all `G` groups before the next one. `tweaks`
/// are this stretch's own.
#[inline(always)]
fn group<
    B: BlockCipherEncBackend<BlockSize = U16>,
    T: Tweaks,
    const FIRST: bool,
    const SECOND: bool,
    const G: usize,
>(
    backend: &B,
    blocks: &mut [Block],
    tweaks: T,
) {
    let width = B::ParBlocksSize::USIZE;
    // Filled by plain loops: `Array::from_fn` is not inlined here.
    let mut y: [ParBlocks<B>; G] = core::array::from_fn(|_| Array::default());
    for (g, y) in y.iter_mut().enumerate() {
        for (i, y) in y.iter_mut().enumerate() {
            if let Some(b) = blocks.get(g * width + i) {
                *y = load(b);
            }
        }
    }
    if FIRST {
        for p in y.iter_mut() {
            backend.encrypt_par_blocks_inplace(p);
        }
    }
    if !SECOND {
        for (g, y) in y.iter().enumerate() {
            for (i, y) in y.iter().enumerate() {
                if let Some(b) = blocks.get_mut(g * width + i) {
                    store(b, y);
                }
            }
        }
        return;
    }
    let len = blocks.len();
    // The first pass's results go through memory: without this barrier the
    // compiler reorders the second pass into one chain of rounds per block
    // (to save registers), which the core cannot overlap well, and the
    // hash ran at 3.5 AES blocks instead of 2 (AES-NI, benches/aes.rs).
    let y = core::hint::black_box(y);
    let mut z: [ParBlocks<B>; G] = core::array::from_fn(|_| Array::default());
    for (g, (z, y)) in z.iter_mut().zip(&y).enumerate() {
        for (i, (z, y)) in z.iter_mut().zip(y).enumerate() {
            let j = g * width + i;
            *z = if j < len { xor(y, &tweaks.at(j)) } else { *y };
        }
    }
    for p in z.iter_mut() {
        backend.encrypt_par_blocks_inplace(p);
    }
    for (g, (y, z)) in y.iter().zip(&z).enumerate() {
        for (i, (y, z)) in y.iter().zip(z).enumerate() {
            if let Some(b) = blocks.get_mut(g * width + i) {
                store(b, &xor(z, y));
            }
        }
    }
}

/// [`FixedKeyHash::permute_in_flight`]: whole passes in groups of `G`, the
/// rest block by block.
struct Fixed<'a, const G: usize>(&'a mut [Block]);

impl<const G: usize> BlockSizeUser for Fixed<'_, G> {
    type BlockSize = U16;
}

impl<const G: usize> BlockCipherEncClosure for Fixed<'_, G> {
    #[inline(always)]
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, backend: &B) {
        let width = B::ParBlocksSize::USIZE;
        let mut chunks = self.0.chunks_exact_mut(G * width);
        for c in chunks.by_ref() {
            group::<B, NoTweak, true, false, G>(backend, c, NoTweak);
        }
        singles::<B, NoTweak, true, false>(backend, chunks.into_remainder(), NoTweak);
    }
}

/// [`FixedKeyHash::par_blocks`].
struct Width<'a>(&'a mut usize);

impl BlockSizeUser for Width<'_> {
    type BlockSize = U16;
}

impl BlockCipherEncClosure for Width<'_> {
    fn call<B: BlockCipherEncBackend<BlockSize = U16>>(self, _: &B) {
        *self.0 = B::ParBlocksSize::USIZE;
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

    /// `H(t, x)` straight from the definition, one `encrypt_block` per pass:
    /// the reference every path is compared with.
    fn reference(aes: &Aes128, t: Tweak, x: Block) -> Block {
        let mut first: aes::Block = x.to_bytes().into();
        aes.encrypt_block(&mut first);
        let y = u128::from_le_bytes(first.into());
        let mut second: aes::Block = (y ^ t.0).to_le_bytes().into();
        aes.encrypt_block(&mut second);
        Block(y ^ u128::from_le_bytes(second.into()))
    }

    fn pseudo_block(i: usize) -> Block {
        let x = (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
        Block(x ^ (x >> 67))
    }

    /// Every batched path against the one-block `hash` (and it against the
    /// definition), for every length up to 100 (9 under Miri): empty runs,
    /// short tails run block by block, padded tails, whole passes, for
    /// whichever backend this CPU gets (8 blocks per pass with AES-NI, 30 or
    /// 64 with VAES, 4 for the software backend that Miri runs).
    #[test]
    fn every_path_equals_one_block_hash_for_every_length() {
        let h = FixedKeyHash::new();
        let aes = Aes128::new(&FIXED_KEY.into());
        let max = if cfg!(miri) { 9 } else { 100 };
        let xs: [Block; 100] = core::array::from_fn(pseudo_block);
        let tweaks: [Tweak; 100] =
            core::array::from_fn(|i| Tweak::new(Domain::Projection, pseudo_block(1000 + i).0 as u64, i as u32));
        let t = Tweak::new(Domain::MulBit, 0xdead_beef, 2);
        for n in 0..=max {
            let xs = &xs[..n];
            // Only the first n (the rest stay zero): Miri runs this too.
            let each: [Block; 100] = core::array::from_fn(|i| xs.get(i).map_or(Block::ZERO, |x| h.hash(tweaks[i], *x)));
            let same: [Block; 100] = core::array::from_fn(|i| xs.get(i).map_or(Block::ZERO, |x| h.hash(t, *x)));
            for i in 0..n {
                assert_eq!(each[i], reference(&aes, tweaks[i], xs[i]), "hash, block {i}");
            }

            let mut batch = [Block::ZERO; 100];
            batch[..n].copy_from_slice(xs);
            h.hash_batch(&tweaks[..n], &mut batch[..n]).unwrap();
            assert_eq!(batch[..n], each[..n], "hash_batch, length {n}");
            assert!(batch[n..].iter().all(|b| *b == Block::ZERO), "hash_batch wrote past its slice");

            let mut batch = [Block::ZERO; 100];
            batch[..n].copy_from_slice(xs);
            h.hash_batch_same_tweak(t, &mut batch[..n]);
            assert_eq!(batch[..n], same[..n], "hash_batch_same_tweak, length {n}");
            assert!(batch[n..].iter().all(|b| *b == Block::ZERO), "hash_batch_same_tweak wrote past its slice");

            let mut first = [Block::ZERO; 100];
            first[..n].copy_from_slice(xs);
            h.permute(&mut first[..n]);
            for i in 0..n {
                let mut b: aes::Block = xs[i].to_bytes().into();
                aes.encrypt_block(&mut b);
                assert_eq!(first[i], Block::from_bytes(b.into()), "permute, length {n}, block {i}");
            }
            assert!(first[n..].iter().all(|b| *b == Block::ZERO), "permute wrote past its slice");
            for groups in [0, 1, 2, 3, 4] {
                let mut p = [Block::ZERO; 100];
                p[..n].copy_from_slice(xs);
                h.permute_in_flight(groups, &mut p[..n]);
                assert_eq!(p, first, "permute_in_flight({groups}), length {n}");
            }

            let mut out = [Block::ZERO; 100];
            h.finish_same_tweak(t, &first[..n], &mut out[..n]);
            assert_eq!(out[..n], same[..n], "finish_same_tweak, length {n}");
            assert!(out[n..].iter().all(|b| *b == Block::ZERO), "finish_same_tweak wrote past its slice");
            // Unequal lengths: the shorter decides.
            if n > 0 {
                let mut out = [Block::ZERO; 100];
                h.finish_same_tweak(t, &first[..n - 1], &mut out[..n]);
                assert_eq!(out[..n - 1], same[..n - 1]);
                assert_eq!(out[n - 1], Block::ZERO);
            }
        }
    }

    #[test]
    fn hash_known_answer() {
        // Computed independently (OpenSSL AES-128-ECB under b"dash-core/tccr/1",
        // blocks as little-endian u128): pins H bit for bit on every path.
        let x = Block(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let t = Tweak::new(Domain::Projection, 42, 3);
        let want = Block(0x50ff_9499_71f3_d60f_17a9_b44f_a1a2_de16);
        let h = FixedKeyHash::new();
        assert_eq!(h.hash(t, x), want);
        let lengths: &[usize] = if cfg!(miri) { &[1, 3, 4, 5] } else { &[1, 7, 8, 9, 16, 17, 30, 31, 64, 65] };
        for &n in lengths {
            let mut v = [x; 65];
            h.hash_batch_same_tweak(t, &mut v[..n]);
            assert!(v[..n].iter().all(|b| *b == want), "same tweak, length {n}");
            let mut v = [x; 65];
            h.hash_batch(&[t; 65][..n], &mut v[..n]).unwrap();
            assert!(v[..n].iter().all(|b| *b == want), "per-block tweaks, length {n}");
        }
        let mut first = [x];
        h.permute(&mut first);
        assert_eq!(first[0], Block(0x9b87_86a5_4ff7_b461_aa59_8b45_aace_cd5a));
        let mut zero = [Block::ZERO];
        h.permute(&mut zero);
        assert_eq!(zero[0], Block(0x7a23_7005_fa79_192e_0adf_bd3c_9916_5285));
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
