//! Rotating a gate's table by a secret amount: the garbler's one step that
//! handles the input wire's secret colour as an amount.

use subtle::Choice;
use zeroize::Zeroize;

/// Rotates `table[..m]` right by the secret `amount < m`
/// (`out[c] = in[c - amount mod m]`) without any secret-dependent branch or
/// memory index: a barrel shifter, one conditional rotation by `2^bit` per
/// bit of `amount`, each a masked select (`keep ^ ((keep ^ moved) & mask)`,
/// the mask all-ones or all-zeros) between the table and its rotation by
/// that public distance. Which positions are read and written, and how many
/// steps run, depend only on `m`. `scratch` must be as long as `table`.
///
/// Tables of at most 32 entries (every CRT prime's) go to `rotate_short`,
/// which needs no scratch. For longer ones the steps alternate between
/// `table` and `scratch` (every element is written from the other buffer,
/// so nothing is copied back between steps); the result is copied into
/// `table` once at the end if it landed in `scratch` (the step count is
/// public).
pub(crate) fn rotate_constant_time(table: &mut [u16], scratch: &mut [u16], amount: u16) {
    if table.len() <= SHORT {
        rotate_short(table, amount);
        return;
    }
    let m = table.len().min(scratch.len());
    let (mut from, mut to) = (&mut table[..m], &mut scratch[..m]);
    let mut bit = 0;
    while (1usize << bit) < m {
        let shift = (1usize << bit) % m;
        let mask = bit_mask(amount, bit);
        // to[c] = mask ? from[c - shift] : from[c], in two runs split where
        // c - shift wraps.
        let (head, tail) = from.split_at(m - shift);
        let (to_low, to_high) = to.split_at_mut(shift);
        let (from_low, from_high) = (&from[..shift], &from[shift..]);
        for ((t, &keep), &moved) in to_low.iter_mut().zip(from_low).zip(tail) {
            *t = keep ^ ((keep ^ moved) & mask);
        }
        for ((t, &keep), &moved) in to_high.iter_mut().zip(from_high).zip(head) {
            *t = keep ^ ((keep ^ moved) & mask);
        }
        core::mem::swap(&mut from, &mut to);
        bit += 1;
    }
    // `from` holds the result; `to` is the other buffer.
    if bit % 2 == 1 {
        to.copy_from_slice(from);
    }
}

/// Longest table [`rotate_short`] takes.
pub(crate) const SHORT: usize = 32;

/// A table of at most [`SHORT`] entries laid out twice
/// (`ext[j] = table[j mod m]` for `j < 2m`, zeros after, with room to read
/// past the window), what [`rotate_doubled`] rotates. A batch of gates with
/// one table builds it once.
pub(crate) struct DoubledTable {
    ext: [u16; 3 * SHORT],
    m: usize,
}

impl DoubledTable {
    /// The doubled layout of `table`, if it has at most [`SHORT`] entries.
    pub(crate) fn new(table: &[u16]) -> Option<DoubledTable> {
        let m = table.len();
        if m > SHORT {
            return None;
        }
        let mut ext = [0u16; 3 * SHORT];
        let (low, high) = ext.split_at_mut(m);
        for ((l, h), &v) in low.iter_mut().zip(high.iter_mut()).zip(table) {
            (*l, *h) = (v, v);
        }
        Some(DoubledTable { ext, m })
    }
}

impl Drop for DoubledTable {
    fn drop(&mut self) {
        self.ext[..].zeroize();
    }
}

/// [`rotate_constant_time`] for at most [`SHORT`] entries.
fn rotate_short(table: &mut [u16], amount: u16) {
    if let Some(doubled) = DoubledTable::new(table) {
        rotate_doubled(&doubled, amount, table);
    }
}

/// Writes to `out[c]` (`c < min(m, out.len())`) the entry `c` of the
/// doubled table's `m`-entry table rotated right by the secret
/// `amount < m`. On the doubled layout, rotating right by `a` is reading
/// from `s = m - a` on (`out[c] = ext[c + s]`, `1 <= s <= m`), and that
/// shift toward index 0 by the secret `s` is one masked select per bit of
/// `s` over the whole window at a compile-time distance: straight vector
/// code, no run-time lengths.
pub(crate) fn rotate_doubled(table: &DoubledTable, amount: u16, out: &mut [u16]) {
    rotate_doubled_with::<false>(table, amount, out);
}

/// [`rotate_doubled`], in memory if `IN_MEMORY` (what targets without SSE2
/// always do; the tests run both on x86-64).
#[inline(always)]
fn rotate_doubled_with<const IN_MEMORY: bool>(table: &DoubledTable, amount: u16, out: &mut [u16]) {
    // The steps run over the 2m live entries rounded up to a vector of
    // eight (the length is public).
    match (2 * table.m).div_ceil(8) {
        0..=2 => rotate_window::<16, IN_MEMORY>(table, amount, out),
        3 => rotate_window::<24, IN_MEMORY>(table, amount, out),
        4 => rotate_window::<32, IN_MEMORY>(table, amount, out),
        5 => rotate_window::<40, IN_MEMORY>(table, amount, out),
        6 => rotate_window::<48, IN_MEMORY>(table, amount, out),
        7 => rotate_window::<56, IN_MEMORY>(table, amount, out),
        _ => rotate_window::<64, IN_MEMORY>(table, amount, out),
    }
}

/// [`rotate_doubled`] with the steps over the first `L >= 2m` entries: in
/// SSE2 registers where there are some, unless `IN_MEMORY`.
#[inline(always)]
fn rotate_window<const L: usize, const IN_MEMORY: bool>(table: &DoubledTable, amount: u16, out: &mut [u16]) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    if !IN_MEMORY {
        return rotate_window_sse2::<L>(table, amount, out);
    }
    rotate_window_in_memory::<L>(table, amount, out);
}

/// [`rotate_doubled`] with the steps over the first `L >= 2m` entries, in
/// SSE2 registers: a shift by `K < 8` entries is two byte shifts and an OR
/// per vector, by `K >= 8` a vector move. No step reads memory that the one
/// before it has just written: unaligned reloads of fresh stores stall
/// store forwarding, which cost the in-memory steps most of their time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn rotate_window_sse2<const L: usize>(table: &DoubledTable, amount: u16, out: &mut [u16]) {
    use safe_arch::{
        bitand_m128i, bitor_m128i, bitxor_m128i, byte_shl_imm_u128_m128i, byte_shr_imm_u128_m128i, m128i,
        set_splat_i16_m128i,
    };
    const VECTORS: usize = 3 * SHORT / 8;
    const { assert!(L.is_multiple_of(8) && L <= 2 * SHORT) };
    let m = table.m;
    let groups = table.ext.as_chunks::<8>().0;
    let mut v: [m128i; VECTORS] = core::array::from_fn(|i| m128i::from(groups.get(i).copied().unwrap_or([0; 8])));
    let s = (m as u16).wrapping_sub(amount);
    let select =
        |keep: m128i, moved: m128i, mask: m128i| bitxor_m128i(keep, bitand_m128i(bitxor_m128i(keep, moved), mask));
    // Vector i reads vector i + 1 (or further), which is updated after it.
    let step = |v: &mut [m128i; VECTORS], bit: u32, moved: &dyn Fn(&[m128i; VECTORS], usize) -> m128i| {
        let mask = set_splat_i16_m128i(bit_mask(s, bit) as i16);
        for i in 0..L / 8 {
            v[i] = select(v[i], moved(v, i), mask);
        }
    };
    step(&mut v, 0, &|v, i| bitor_m128i(byte_shr_imm_u128_m128i::<2>(v[i]), byte_shl_imm_u128_m128i::<14>(v[i + 1])));
    if m >= 2 {
        step(&mut v, 1, &|v, i| {
            bitor_m128i(byte_shr_imm_u128_m128i::<4>(v[i]), byte_shl_imm_u128_m128i::<12>(v[i + 1]))
        });
    }
    if m >= 4 {
        step(&mut v, 2, &|v, i| {
            bitor_m128i(byte_shr_imm_u128_m128i::<8>(v[i]), byte_shl_imm_u128_m128i::<8>(v[i + 1]))
        });
    }
    if m >= 8 {
        step(&mut v, 3, &|v, i| v[i + 1]);
    }
    if m >= 16 {
        step(&mut v, 4, &|v, i| v[i + 2]);
    }
    if m >= 32 {
        step(&mut v, 5, &|v, i| v[i + 4]);
    }
    // The first m <= L/2 entries are the result.
    let mut rotated = [[0u16; 8]; VECTORS];
    for (r, x) in rotated[..L / 16 + 1].iter_mut().zip(v) {
        *r = x.into();
    }
    for (o, &x) in out.iter_mut().zip(&rotated.as_flattened()[..m]) {
        *o = x;
    }
    rotated[..L / 16 + 1].as_flattened_mut().zeroize();
}

/// [`rotate_doubled`] with the steps over the first `L >= 2m` entries, on
/// a copy of the doubled table in memory.
#[inline(always)]
fn rotate_window_in_memory<const L: usize>(table: &DoubledTable, amount: u16, out: &mut [u16]) {
    let m = table.m;
    let mut ext = table.ext;
    let s = (m as u16).wrapping_sub(amount);
    // The steps a shift of at most m needs (m is public).
    shift_step::<L, 1>(&mut ext, bit_mask(s, 0));
    if m >= 2 {
        shift_step::<L, 2>(&mut ext, bit_mask(s, 1));
    }
    if m >= 4 {
        shift_step::<L, 4>(&mut ext, bit_mask(s, 2));
    }
    if m >= 8 {
        shift_step::<L, 8>(&mut ext, bit_mask(s, 3));
    }
    if m >= 16 {
        shift_step::<L, 16>(&mut ext, bit_mask(s, 4));
    }
    if m >= 32 {
        shift_step::<L, 32>(&mut ext, bit_mask(s, 5));
    }
    for (o, &v) in out.iter_mut().zip(&ext[..m]) {
        *o = v;
    }
    ext[..].zeroize();
}

/// `ext[j] = mask ? ext[j + K] : ext[j]` for the first `L` entries (each
/// read comes before the write that could change it: `j + K > j`). Every
/// final entry `c < m` only ever reads positions below `c + s < 2m <= L`.
#[inline(always)]
fn shift_step<const L: usize, const K: usize>(ext: &mut [u16; 3 * SHORT], mask: u16) {
    for j in 0..L {
        let (keep, moved) = (ext[j], ext[j + K]);
        ext[j] = keep ^ ((keep ^ moved) & mask);
    }
}

/// The all-ones mask if bit `bit` of the secret `x` is set, else zero (a
/// mask, not a branch: `Choice` keeps the compiler from making it one).
#[inline(always)]
fn bit_mask(x: u16, bit: u32) -> u16 {
    0u16.wrapping_sub(Choice::from(((x >> bit) & 1) as u8).unwrap_u8() as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn constant_time_rotation_rotates() {
        for m in [2usize, 3, 5, 7, 8, 9, 11, 15, 16, 17, 20, 23, 25, 27, 29, 31, 32, 33, 47, 64, 97, 251] {
            let table: [u16; 251] = core::array::from_fn(|i| i as u16 * 3 + 1);
            for a in 0..m {
                let mut t = [0u16; 251];
                t[..m].copy_from_slice(&table[..m]);
                let mut s = [0u16; 251];
                rotate_constant_time(&mut t[..m], &mut s[..m], a as u16);
                for c in 0..m {
                    assert_eq!(t[c], table[(c + m - a) % m], "m {m} a {a}");
                }
            }
        }
    }

    /// The in-memory steps (the targets without SSE2, the Cortex-M among
    /// them) rotate like the formula too, for every short table length and
    /// amount and every window the dispatch can pick for it.
    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn in_memory_rotation_rotates() {
        let table: [u16; SHORT] = core::array::from_fn(|i| i as u16 * 5 + 2);
        for m in 1..=SHORT {
            let doubled = DoubledTable::new(&table[..m]).unwrap();
            for a in 0..m {
                let mut out = [0u16; SHORT];
                rotate_doubled_with::<true>(&doubled, a as u16, &mut out[..m]);
                let mut fast = [0u16; SHORT];
                rotate_doubled(&doubled, a as u16, &mut fast[..m]);
                for c in 0..m {
                    assert_eq!(out[c], table[(c + m - a) % m], "m {m} a {a}");
                }
                assert_eq!(fast, out, "m {m} a {a}");
            }
        }
        assert!(DoubledTable::new(&[0u16; SHORT + 1]).is_none());
    }
}
