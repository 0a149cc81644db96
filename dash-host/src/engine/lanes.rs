//! Lanes: a gadget run once for a whole run of a layer's elements.
//!
//! A gadget's gates do not depend on data, so every element of a layer runs
//! the same sequence of operations, on its own gate identifiers and rows
//! ([`Layout`]). [`Lanes`] is a `dash-core` [`Backend`] whose wire
//! ([`LaneWire`]) is the label of *every* element of the run, one lane per
//! element, `lanes × n` digits in the tensors' row layout. Free operations
//! run digit by digit over all lanes; each projection and multiply-by-bit is
//! one call of a [`LaneOps`] across the lanes: the core's lane-batched
//! garbling or evaluation ([`dash_core::lanes`]) on the CPU, or a device
//! batch ([`crate::offload`]).
//!
//! The gadget code is the same generic function that runs on the plaintext
//! backend and the cost counter, so the garbler and the evaluator cannot
//! drift apart.

use super::plan::Layout;
use dash_core::lanes::LaneRows;
use dash_core::{Backend, Error, MAX_PROJECTION_INPUT, Modulus};
use rayon::prelude::*;
use zeroize::Zeroizing;

/// Digits above which a free operation splits over the thread pool (device
/// chunks are that wide; CPU tasks are not).
const PARALLEL_DIGITS: usize = 1 << 18;

/// One wire of a run of elements: the label of every element (lane),
/// `lanes × n` digits. On the garbler's side these are zero labels, so the
/// digits are cleared on drop.
#[derive(Clone, Debug)]
pub struct LaneWire {
    modulus: Modulus,
    digits: Zeroizing<Vec<u16>>,
}

impl LaneWire {
    /// A wire from its lanes' digits (`lanes × modulus.digits()`, each
    /// below `p`).
    pub fn new(modulus: Modulus, digits: Vec<u16>) -> Result<LaneWire, Error> {
        if !digits.len().is_multiple_of(modulus.digits()) || digits.iter().any(|&d| d >= modulus.value()) {
            return Err(Error::InvalidDigits);
        }
        Ok(LaneWire { modulus, digits: Zeroizing::new(digits) })
    }

    /// A wire from digits the engine built itself (every digit below `p`:
    /// labels read out of label tensors or written by the lane calls).
    pub(crate) fn from_trusted(modulus: Modulus, digits: Vec<u16>) -> LaneWire {
        debug_assert!(digits.len().is_multiple_of(modulus.digits()));
        LaneWire { modulus, digits: Zeroizing::new(digits) }
    }

    /// The modulus.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// The digits, lane after lane.
    pub fn digits(&self) -> &[u16] {
        &self.digits
    }

    /// The number of lanes.
    pub fn lanes(&self) -> usize {
        self.digits.len() / self.modulus.digits()
    }

    fn zip_with(&self, other: &LaneWire, f: impl Fn(u16, u16) -> u16 + Sync) -> Result<LaneWire, Error> {
        if self.modulus != other.modulus {
            return Err(Error::ModulusMismatch { left: self.modulus.value(), right: other.modulus.value() });
        }
        if self.digits.len() != other.digits.len() {
            return Err(Error::LengthMismatch);
        }
        let mut digits = vec![0u16; self.digits.len()];
        if digits.len() >= PARALLEL_DIGITS {
            digits.par_iter_mut().zip(self.digits.par_iter().zip(other.digits.par_iter())).for_each(|(o, (&a, &b))| {
                *o = f(a, b);
            });
        } else {
            for (o, (&a, &b)) in digits.iter_mut().zip(self.digits.iter().zip(other.digits.iter())) {
                *o = f(a, b);
            }
        }
        Ok(LaneWire::from_trusted(self.modulus, digits))
    }

    fn map(&self, f: impl Fn(u16) -> u16 + Sync) -> LaneWire {
        let mut digits = vec![0u16; self.digits.len()];
        if digits.len() >= PARALLEL_DIGITS {
            digits.par_iter_mut().zip(self.digits.par_iter()).for_each(|(o, &a)| *o = f(a));
        } else {
            for (o, &a) in digits.iter_mut().zip(self.digits.iter()) {
                *o = f(a);
            }
        }
        LaneWire::from_trusted(self.modulus, digits)
    }
}

/// Where one gate of the gadget sits, for every lane: lane `i` is element
/// `first_element + i` of the layer, its gate identifier is
/// `layout.gate(first_element + i, local_gate)`, and its rows are at `rows`
/// in the run's row buffer (which starts at the run's first element).
#[derive(Clone, Copy, Debug)]
pub struct GateSite {
    /// The layer's layout.
    pub layout: Layout,
    /// The layer element of lane 0.
    pub first_element: usize,
    /// The gate's number within one element's gadget.
    pub local_gate: u64,
    /// Where each lane's rows of this gate are.
    pub rows: LaneRows,
}

impl GateSite {
    /// Lane `lane`'s gate identifier.
    #[inline]
    pub fn gate(&self, lane: usize) -> u64 {
        self.layout.gate(self.first_element + lane, self.local_gate)
    }
}

/// What a party does with a gate across the lanes: garble it (rows out) or
/// evaluate it (rows in), on the CPU or a device.
pub trait LaneOps {
    /// The digits of this party's label of the constant-one wire of modulus
    /// `m` (the garbler's zero label `O_p`, the evaluator's `O_p + Δ_p`).
    fn one(&self, m: Modulus) -> Result<&[u16], Error>;

    /// One projection `table: Z_m → Z_out` per lane, at `site`.
    fn project(
        &mut self,
        site: GateSite,
        input: &LaneWire,
        out: Modulus,
        table: impl Fn(u16) -> u16,
    ) -> Result<LaneWire, Error>;

    /// Several projections of one wire per lane, projection `j` at
    /// `sites[j]` (consecutive gates, each one's rows right after the
    /// previous one's). The default runs them one by one; parties override
    /// it to hash each lane's label once for all of them.
    fn project_many(
        &mut self,
        sites: &[GateSite],
        input: &LaneWire,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
    ) -> Result<Vec<LaneWire>, Error> {
        let mut wires = Vec::with_capacity(outs.len());
        for (j, (&site, &out)) in sites.iter().zip(outs).enumerate() {
            wires.push(self.project(site, input, out, |x| table(j, x))?);
        }
        Ok(wires)
    }

    /// One multiply-by-bit `x·b` per lane, at `site` (`p + 1` rows).
    fn mul_bit(&mut self, site: GateSite, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error>;
}

/// The lane backend: a run of `lanes` elements of one layer, from element
/// `first_element`, whose gates go to `ops`.
pub struct Lanes<T> {
    ops: T,
    lanes: usize,
    layout: Layout,
    first_element: usize,
    local_gate: u64,
    local_row: usize,
}

impl<T: LaneOps> Lanes<T> {
    /// A run of `lanes` elements from `first_element` of a layer laid out
    /// as `layout`.
    pub fn new(ops: T, lanes: usize, layout: Layout, first_element: usize) -> Lanes<T> {
        Lanes { ops, lanes, layout, first_element, local_gate: 0, local_row: 0 }
    }

    /// Gates and rows each element used (to check against the plan).
    pub fn used(&self) -> (u64, usize) {
        (self.local_gate, self.local_row)
    }

    /// The party.
    pub fn ops_mut(&mut self) -> &mut T {
        &mut self.ops
    }

    /// The next gate, taking `rows` rows of each element.
    fn site(&mut self, rows: usize) -> Result<GateSite, Error> {
        if self.local_gate >= self.layout.gates_per_element {
            return Err(Error::GateIdsExhausted);
        }
        let end = self.local_row.checked_add(rows).ok_or(Error::SourceExhausted)?;
        if end > self.layout.rows_per_element {
            return Err(Error::SourceExhausted);
        }
        let site = GateSite {
            layout: self.layout,
            first_element: self.first_element,
            local_gate: self.local_gate,
            rows: LaneRows { stride: self.layout.rows_per_element, offset: self.local_row },
        };
        self.local_gate += 1;
        self.local_row = end;
        Ok(site)
    }
}

impl<T: LaneOps> Backend for Lanes<T> {
    type Wire = LaneWire;

    fn modulus_of(&self, wire: &LaneWire) -> Modulus {
        wire.modulus
    }

    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<LaneWire, Error> {
        let c = modulus.reduce(value as u32);
        let one: Vec<u16> = self.ops.one(modulus)?.iter().map(|&d| modulus.mul(d, c)).collect();
        let digits = Zeroizing::new(one);
        Ok(LaneWire::from_trusted(modulus, digits.repeat(self.lanes)))
    }

    fn add(&mut self, a: &LaneWire, b: &LaneWire) -> Result<LaneWire, Error> {
        let m = a.modulus;
        a.zip_with(b, move |x, y| m.add(x, y))
    }

    fn sub(&mut self, a: &LaneWire, b: &LaneWire) -> Result<LaneWire, Error> {
        let m = a.modulus;
        a.zip_with(b, move |x, y| m.sub(x, y))
    }

    fn neg(&mut self, a: &LaneWire) -> Result<LaneWire, Error> {
        let m = a.modulus;
        Ok(a.map(move |x| m.neg(x)))
    }

    fn cmul(&mut self, a: &LaneWire, c: u16) -> Result<LaneWire, Error> {
        let m = a.modulus;
        let c = m.reduce(c as u32);
        Ok(a.map(move |x| m.mul(x, c)))
    }

    fn add_assign(&mut self, a: &mut LaneWire, b: &LaneWire) -> Result<(), Error> {
        if a.modulus != b.modulus {
            return Err(Error::ModulusMismatch { left: a.modulus.value(), right: b.modulus.value() });
        }
        if a.digits.len() != b.digits.len() {
            return Err(Error::LengthMismatch);
        }
        let m = a.modulus;
        for (x, &y) in a.digits.iter_mut().zip(b.digits.iter()) {
            *x = m.add(*x, y);
        }
        Ok(())
    }

    fn add_constant(&mut self, a: &LaneWire, c: u16) -> Result<LaneWire, Error> {
        // a + c·(the one-label), lane by lane.
        let m = a.modulus;
        let c = m.reduce(c as u32);
        let shift: Zeroizing<Vec<u16>> = Zeroizing::new(self.ops.one(m)?.iter().map(|&d| m.mul(d, c)).collect());
        let n = m.digits();
        let mut out = a.clone();
        for lane in out.digits.chunks_exact_mut(n) {
            for (x, &s) in lane.iter_mut().zip(shift.iter()) {
                *x = m.add(*x, s);
            }
        }
        Ok(out)
    }

    fn project(&mut self, a: &LaneWire, out: Modulus, table: impl Fn(u16) -> u16) -> Result<LaneWire, Error> {
        if a.modulus.value() > MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(a.modulus.value()));
        }
        if a.lanes() != self.lanes {
            return Err(Error::LengthMismatch);
        }
        let site = self.site(a.modulus.value() as usize - 1)?;
        self.ops.project(site, a, out, table)
    }

    /// All projections first, then `each` in order: the gates and rows are
    /// those of one `project` per output, as on every other backend, as
    /// long as `each` is free (the gadgets only add in it; a gate used in
    /// `each` is refused, since it would be numbered differently here).
    fn project_many(
        &mut self,
        a: &LaneWire,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
        mut each: impl FnMut(&mut Self, usize, &LaneWire) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if a.modulus.value() > MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(a.modulus.value()));
        }
        if a.lanes() != self.lanes {
            return Err(Error::LengthMismatch);
        }
        if outs.is_empty() {
            // Nothing to project (as on every other backend: no gate used).
            return Ok(());
        }
        let rows = a.modulus.value() as usize - 1;
        let sites = outs.iter().map(|_| self.site(rows)).collect::<Result<Vec<_>, _>>()?;
        let wires = self.ops.project_many(&sites, a, outs, table)?;
        let gates = self.local_gate;
        for (j, w) in wires.iter().enumerate() {
            each(self, j, w)?;
        }
        if self.local_gate != gates {
            return Err(Error::InvalidParameter);
        }
        Ok(())
    }

    fn mul_bit(&mut self, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error> {
        let p = x.modulus;
        if bit.modulus != Modulus::TWO {
            return Err(Error::NotABit(bit.modulus.value()));
        }
        if p.value() > MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(p.value()));
        }
        if x.lanes() != self.lanes || bit.lanes() != self.lanes {
            return Err(Error::LengthMismatch);
        }
        let site = self.site(p.value() as usize + 1)?;
        self.ops.mul_bit(site, x, bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A party that has no gates to give.
    struct NoGates;

    impl LaneOps for NoGates {
        fn one(&self, _m: Modulus) -> Result<&[u16], Error> {
            Err(Error::InvalidParameter)
        }

        fn project(
            &mut self,
            _: GateSite,
            _: &LaneWire,
            _: Modulus,
            _: impl Fn(u16) -> u16,
        ) -> Result<LaneWire, Error> {
            Err(Error::InvalidParameter)
        }

        fn mul_bit(&mut self, _: GateSite, _: &LaneWire, _: &LaneWire) -> Result<LaneWire, Error> {
            Err(Error::InvalidParameter)
        }
    }

    /// Found by the `network` fuzz target: a sign gadget whose residue has
    /// no digit to feed projects it into no modulus at all; that must use
    /// no gate and succeed, as on the per-element backends.
    #[test]
    fn projecting_into_no_modulus_uses_no_gate() {
        let m3 = Modulus::new(3).unwrap();
        let layout = Layout { first_gate: 0, gates_per_element: 0, rows_per_element: 0 };
        let mut lanes = Lanes::new(NoGates, 2, layout, 0);
        let wire = LaneWire::new(m3, vec![0; 2 * m3.digits()]).unwrap();
        let mut called = false;
        lanes
            .project_many(
                &wire,
                &[],
                |_, x| x,
                |_, _, _| {
                    called = true;
                    Ok(())
                },
            )
            .unwrap();
        assert!(!called);
        assert_eq!(lanes.used(), (0, 0));
        // One output with no gate left is refused, not run.
        assert_eq!(lanes.project_many(&wire, &[m3], |_, x| x, |_, _, _| Ok(())), Err(Error::GateIdsExhausted));
    }
}
