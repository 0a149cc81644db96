//! 128-bit blocks: hash inputs and outputs, ciphertexts, packed labels.

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// 128 bits, little-endian when turned into bytes.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Block(pub u128);

/// Zero is the cleared block, so `zeroize` is one volatile write, and
/// slices of blocks clear in bulk (the garbler clears its hash buffers).
impl zeroize::DefaultIsZeroes for Block {}

impl Block {
    /// The all-zero block.
    pub const ZERO: Block = Block(0);

    /// Bytes of a block: of a garbled row, of a packed label on the wire.
    pub const BYTES: usize = 16;

    /// The block's 16 bytes, little-endian.
    #[inline]
    pub const fn to_bytes(self) -> [u8; Block::BYTES] {
        self.0.to_le_bytes()
    }

    /// A block from 16 little-endian bytes.
    #[inline]
    pub const fn from_bytes(bytes: [u8; Block::BYTES]) -> Block {
        Block(u128::from_le_bytes(bytes))
    }
}

impl core::ops::BitXor for Block {
    type Output = Block;
    #[inline(always)]
    fn bitxor(self, rhs: Block) -> Block {
        Block(self.0 ^ rhs.0)
    }
}

impl core::ops::BitXorAssign for Block {
    #[inline(always)]
    fn bitxor_assign(&mut self, rhs: Block) {
        self.0 ^= rhs.0;
    }
}

impl ConstantTimeEq for Block {
    fn ct_eq(&self, other: &Block) -> Choice {
        self.0.ct_eq(&other.0)
    }
}

impl ConditionallySelectable for Block {
    fn conditional_select(a: &Block, b: &Block, choice: Choice) -> Block {
        Block(u128::conditional_select(&a.0, &b.0, choice))
    }
}

/// Blocks print as hex: they are ciphertexts or evaluator-side labels, never
/// garbler secrets (those live in types whose `Debug` is redacted).
impl core::fmt::Debug for Block {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Block({:032x})", self.0)
    }
}
