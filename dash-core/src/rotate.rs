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
const SHORT: usize = 32;

/// [`rotate_constant_time`] for at most [`SHORT`] entries, on fixed-size
/// arrays: the table laid out twice (`ext[j] = table[j mod m]`, `j < 2m`),
/// rotating right by `a` is reading from `s = m - a` on
/// (`out[c] = ext[c + s]`, `1 <= s <= m`), and that shift toward index 0 by
/// the secret `s` is one masked select per bit of `s` over the whole array
/// at a compile-time distance: straight vector code, no run-time lengths.
fn rotate_short(table: &mut [u16], amount: u16) {
    // The steps run over the 2m live entries rounded up to a vector of
    // eight (the length is public).
    match (2 * table.len()).div_ceil(8) {
        0..=2 => rotate_window::<16>(table, amount),
        3 => rotate_window::<24>(table, amount),
        4 => rotate_window::<32>(table, amount),
        5 => rotate_window::<40>(table, amount),
        6 => rotate_window::<48>(table, amount),
        7 => rotate_window::<56>(table, amount),
        _ => rotate_window::<64>(table, amount),
    }
}

/// [`rotate_short`] with the steps over the first `L >= 2m` entries.
#[inline(always)]
fn rotate_window<const L: usize>(table: &mut [u16], amount: u16) {
    let m = table.len();
    // 2m live entries, and room to read 32 past the window.
    let mut ext = [0u16; 3 * SHORT];
    for (j, &v) in table.iter().enumerate() {
        ext[j] |= v;
        ext[j + m] |= v;
    }
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
    for (t, &v) in table.iter_mut().zip(&ext) {
        *t = v;
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
}
