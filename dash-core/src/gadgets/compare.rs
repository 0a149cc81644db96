//! Comparison, maximum and minimum of CRT values, and max pooling.
//!
//! Everything here is the sign gadget of [`super::sign`] applied to a
//! difference, so each function inherits its gadget's accuracy:
//!
//! * `less_than(x, y) = [x - y < 0]`,
//! * `max2(x, y) = y + ReLU(x - y)`, `min2(x, y) = x - ReLU(x - y)`,
//! * `max_window` / `min_window`: a balanced tree of `max2` / `min2`
//!   (`n - 1` of them for `n` values, depth `ceil(log2 n)`).
//!
//! # Precondition
//!
//! The difference `x - y` must lie in the signed range of the base,
//! `[-floor(Q/2), ceil(Q/2))`; otherwise it wraps and the comparison is
//! that of the wrapped value. Inputs in `[-floor(Q/4), floor(Q/4)]` always
//! satisfy it (for `max_window`/`min_window` every value of the window must
//! be in that range: the maximum and minimum of such values are too).
//!
//! With an [`Accuracy::Approximate`](super::sign::Accuracy) gadget of
//! error window `W`, a comparison can only be wrong when `0 <= x - y < W`
//! (or when `x - y` is within `W` of `-floor(Q/2)`, excluded by the
//! precondition with margin); `max2` then returns `y` instead of `x`, an
//! error below `W`.
//!
//! # Cost
//!
//! `less_than` costs [`SignGadget::sign_ciphertexts`]; `max2` and `min2`
//! cost [`SignGadget::relu_ciphertexts`]; a window of `n` values costs
//! `n - 1` times that.

use super::sign::SignGadget;
use crate::backend::Backend;
use crate::crt::{self, Bundle};
use crate::error::Error;

/// The bit `[x < y]` (a wire of modulus 2). See the module precondition.
pub fn less_than<B: Backend>(
    g: &SignGadget,
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
) -> Result<B::Wire, Error> {
    let d = crt::sub(b, x, y)?;
    g.sign_bit(b, &d)
}

/// The bit `[x >= y]` (a wire of modulus 2), at the cost of
/// [`less_than`]. See the module precondition.
pub fn greater_equal<B: Backend>(
    g: &SignGadget,
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
) -> Result<B::Wire, Error> {
    let d = crt::sub(b, x, y)?;
    g.nonneg_bit(b, &d)
}

/// `max(x, y) = y + ReLU(x - y)`. See the module precondition.
pub fn max2<B: Backend>(
    g: &SignGadget,
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
) -> Result<Bundle<B::Wire>, Error> {
    let d = crt::sub(b, x, y)?;
    let r = g.relu(b, &d)?;
    crt::add(b, y, &r)
}

/// `min(x, y) = x - ReLU(x - y)`. See the module precondition.
pub fn min2<B: Backend>(
    g: &SignGadget,
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
) -> Result<Bundle<B::Wire>, Error> {
    let d = crt::sub(b, x, y)?;
    let r = g.relu(b, &d)?;
    crt::sub(b, x, &r)
}

/// The maximum of a non-empty window (max pooling), by a balanced tree of
/// [`max2`]. Fails with [`Error::InvalidParameter`] on an empty slice. See
/// the module precondition.
pub fn max_window<B: Backend>(g: &SignGadget, b: &mut B, xs: &[Bundle<B::Wire>]) -> Result<Bundle<B::Wire>, Error> {
    tree(g, b, xs, max2)
}

/// The minimum of a non-empty window, by a balanced tree of [`min2`].
/// Fails with [`Error::InvalidParameter`] on an empty slice.
pub fn min_window<B: Backend>(g: &SignGadget, b: &mut B, xs: &[Bundle<B::Wire>]) -> Result<Bundle<B::Wire>, Error> {
    tree(g, b, xs, min2)
}

type Combine<B> = fn(
    &SignGadget,
    &mut B,
    &Bundle<<B as Backend>::Wire>,
    &Bundle<<B as Backend>::Wire>,
) -> Result<Bundle<<B as Backend>::Wire>, Error>;

fn tree<B: Backend>(
    g: &SignGadget,
    b: &mut B,
    xs: &[Bundle<B::Wire>],
    f: Combine<B>,
) -> Result<Bundle<B::Wire>, Error> {
    match xs {
        [] => Err(Error::InvalidParameter),
        [x] => Ok(x.clone()),
        _ => {
            let (lo, hi) = xs.split_at(xs.len() / 2);
            let a = tree(g, b, lo, f)?;
            let c = tree(g, b, hi, f)?;
            f(g, b, &a, &c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{CostCounter, PlainWire, Plaintext};
    use crate::crt::CrtBase;
    use crate::gadgets::sign::Accuracy;

    fn bundle(base: &CrtBase, v: i128) -> Bundle<PlainWire> {
        let r = base.encode(v).unwrap();
        Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap()
    }

    fn value(base: &CrtBase, x: &Bundle<PlainWire>) -> i128 {
        let r: heapless::Vec<u16, 16> = x.wires().iter().map(|w| w.value()).collect();
        base.decode(&r).unwrap()
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn pairs_exhaustive_within_the_precondition() {
        for k in [3, 4] {
            let base = CrtBase::first(k).unwrap();
            let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
            let quarter = (base.product() / 4) as i128;
            let mut pt = Plaintext;
            for x in -quarter..=quarter {
                for y in -quarter..=quarter {
                    let (bx, by) = (bundle(&base, x), bundle(&base, y));
                    assert_eq!(less_than(&g, &mut pt, &bx, &by).unwrap().value(), u16::from(x < y));
                    assert_eq!(greater_equal(&g, &mut pt, &bx, &by).unwrap().value(), u16::from(x >= y));
                    assert_eq!(value(&base, &max2(&g, &mut pt, &bx, &by).unwrap()), x.max(y));
                    assert_eq!(value(&base, &min2(&g, &mut pt, &bx, &by).unwrap()), x.min(y));
                }
            }
        }
    }

    #[cfg_attr(miri, ignore = "too slow under Miri")]
    #[test]
    fn windows_and_costs() {
        let base = CrtBase::first(6).unwrap();
        let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let mut pt = Plaintext;
        let vals: [i128; 9] = [-7000, 12, 7000, -1, 0, 6999, -7000, 3, 5];
        for n in 1..=vals.len() {
            let xs: heapless::Vec<Bundle<PlainWire>, 9> = vals[..n].iter().map(|&v| bundle(&base, v)).collect();
            let want_max = vals[..n].iter().copied().max().unwrap();
            let want_min = vals[..n].iter().copied().min().unwrap();
            assert_eq!(value(&base, &max_window(&g, &mut pt, &xs).unwrap()), want_max);
            assert_eq!(value(&base, &min_window(&g, &mut pt, &xs).unwrap()), want_min);
            let mut cc = CostCounter::new();
            let ws: heapless::Vec<Bundle<_>, 9> =
                (0..n).map(|_| Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap()).collect();
            max_window(&g, &mut cc, &ws).unwrap();
            assert_eq!(cc.ciphertexts, (n as u64 - 1) * g.relu_ciphertexts());
        }
        assert_eq!(max_window::<Plaintext>(&g, &mut pt, &[]).unwrap_err(), Error::InvalidParameter);
    }
}
