//! Rotating a gate's table by a secret amount: the garbler's one step that
//! handles the input wire's secret colour as an amount.

use subtle::Choice;

/// Rotates `table[..m]` right by the secret `amount < m`
/// (`out[c] = in[c - amount mod m]`) without any secret-dependent branch or
/// memory index: a barrel shifter, one conditional rotation by `2^bit` per
/// bit of `amount`, each a masked select (`keep ^ ((keep ^ moved) & mask)`,
/// the mask all-ones or all-zeros) between the table and its rotation by
/// that public distance. Which positions are read and written, and how many
/// steps run, depend only on `m`. `scratch` must be as long as `table`.
///
/// The steps alternate between `table` and `scratch` (every element is
/// written from the other buffer, so nothing is copied back between steps);
/// the result is copied into `table` once at the end if it landed in
/// `scratch` (the step count is public).
pub(crate) fn rotate_constant_time(table: &mut [u16], scratch: &mut [u16], amount: u16) {
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
        for m in [2usize, 3, 5, 8, 16, 17, 31, 32, 33, 64, 97, 251] {
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
