//! The one layer driver both parties run.
//!
//! [`run_network`] walks the layers: linear layers through
//! [`super::linear`], non-linear layers through the party's
//! [`Party::nonlinear`], which moves the layer's material chunk by chunk
//! and hands each chunk to [`run_gadget`]: the chunk is cut into runs of
//! [`LANES`] elements, each run is one [`Lanes`] backend on one core, and
//! the gadget runs once per run. Garbler and evaluator differ only in their
//! [`LaneOps`] (garble or evaluate a gate across the lanes) and in which
//! way the rows travel.

use super::error::{EngineError, EngineResult};
use super::lanes::{GateSite, LaneOps, LaneWire, Lanes};
use super::linear::linear_layer;
use super::plan::{Gadget, Op, Plan, element_inputs};
use super::{CHUNK_ROWS, EngineKeys, EngineOnes};
use crate::offload::OffloadHandle;
use crate::tensor::CrtTensor;
use dash_core::lanes::{self as core_lanes};
use dash_core::{Block, Bundle, Domain, Error, FixedKeyHash, Modulus, Tweak};
use rayon::prelude::*;
use zeroize::Zeroizing;

/// Elements per run (one core's share of a chunk, one `Lanes` backend): wide
/// enough that a gate's per-call work (reducing the table, laying it out for
/// rotation, filling the AES pipeline) is spread thin, narrow enough that a
/// gadget's live wires stay in the core's cache.
pub const LANES: usize = 128;

/// A party's side of the walk.
pub(crate) trait Party {
    /// Per CRT residue, the digits of this party's label of the constant-one
    /// wire (what linear layers multiply biases into).
    fn base_ones(&self) -> &[Vec<u16>];

    /// Where dense and convolution layers run (`None`: the CPU).
    fn linear_device(&self) -> Option<&OffloadHandle>;

    /// Non-linear layer `i` on `x`: its material moves (written or read)
    /// and its gadget runs on every element.
    fn nonlinear(&mut self, plan: &Plan, i: usize, gadget: &Gadget, x: &CrtTensor) -> EngineResult<CrtTensor>;
}

/// Walks every layer of the plan from `input` (either party).
pub(crate) fn run_network<P: Party>(plan: &Plan, party: &mut P, input: CrtTensor) -> EngineResult<CrtTensor> {
    let data = &plan.data;
    let mut acts: Vec<Option<CrtTensor>> = vec![None; data.shapes.len()];
    let mut x = input;
    for (i, op) in data.ops.iter().enumerate() {
        if data.keep[i] {
            acts[i] = Some(x.clone());
        }
        x = match op {
            Op::Linear => linear_layer(data, i, x, &acts, party.base_ones(), party.linear_device()),
            Op::Gadget(g) => party.nonlinear(plan, i, g, &x),
        }
        .map_err(|e| e.at_layer(i))?;
    }
    Ok(x)
}

/// Elements of a non-linear layer per chunk of material held in memory.
pub(crate) fn elements_per_chunk(rows_per_element: u64, chunk_rows: usize) -> usize {
    (chunk_rows as u64 / rows_per_element.max(1)).max(1) as usize
}

/// The CPU chunk size.
pub(crate) fn cpu_chunk(rows_per_element: u64) -> usize {
    elements_per_chunk(rows_per_element, CHUNK_ROWS)
}

/// One run of a chunk: its first element (in the layer), its length, and
/// the party's gate handler over the run's rows.
pub(crate) struct Run<T> {
    pub first: usize,
    pub count: usize,
    pub ops: T,
}

/// Runs layer `i`'s gadget on every run, in parallel, and writes each
/// run's outputs into `y` (elements `first .. first + count`).
pub(crate) fn run_gadget<T: LaneOps + Send>(
    plan: &Plan,
    i: usize,
    gadget: &Gadget,
    x: &CrtTensor,
    runs: Vec<Run<T>>,
    y: &mut CrtTensor,
) -> EngineResult<()> {
    let data = &plan.data;
    let layout = data.costs[i].layout();
    let sign = data.sign.as_ref();
    let outputs = runs
        .into_par_iter()
        .map(|run| {
            let xs = gather(plan, i, gadget, x, run.first, run.count);
            let mut lanes = Lanes::new(run.ops, run.count, layout, run.first);
            let out = gadget.run(sign, &mut lanes, &xs)?;
            if lanes.used() != (layout.gates_per_element, layout.rows_per_element) {
                return Err(EngineError::Model("the gadget used an unexpected number of gates or rows".into()));
            }
            Ok((run.first, out))
        })
        .collect::<EngineResult<Vec<_>>>()?;
    for (first, bundle) in outputs {
        for (t, w) in y.residues_mut().iter_mut().zip(bundle.wires()) {
            let n = t.label_len();
            t.digits_mut()[first * n..first * n + w.digits().len()].copy_from_slice(w.digits());
        }
    }
    Ok(())
}

/// The gadget's input bundles for elements `first .. first + count`: one
/// bundle per window position, each wire a residue's digits of every lane.
fn gather(plan: &Plan, i: usize, gadget: &Gadget, x: &CrtTensor, first: usize, count: usize) -> Vec<Bundle<LaneWire>> {
    let data = &plan.data;
    let arity = gadget.arity();
    // An element-wise gadget reads its own element: each residue is one
    // contiguous copy. A max-pool reads a window, even a 1×1 one, whose
    // stride still picks which elements are read.
    if gadget.is_elementwise() {
        let wires = x.residues().iter().map(|t| {
            let n = t.label_len();
            LaneWire::from_trusted(t.modulus(), t.digits()[first * n..(first + count) * n].to_vec())
        });
        return vec![Bundle::from_wires(wires).expect("a CRT base has at least one residue")];
    }
    let (layer, s, o) = (&data.net.layers[i], &data.shapes[i], &data.shapes[i + 1]);
    let mut windows: Vec<Vec<Vec<u16>>> =
        (0..arity).map(|_| x.residues().iter().map(|t| Vec::with_capacity(count * t.label_len())).collect()).collect();
    let mut idx = Vec::with_capacity(arity);
    for e in first..first + count {
        element_inputs(layer, s, o, e, &mut idx);
        for (window, &q) in windows.iter_mut().zip(&idx) {
            for (digits, t) in window.iter_mut().zip(x.residues()) {
                digits.extend_from_slice(t.label_digits(q));
            }
        }
    }
    windows
        .into_iter()
        .map(|w| {
            let wires = w.into_iter().zip(x.residues()).map(|(d, t)| LaneWire::from_trusted(t.modulus(), d));
            Bundle::from_wires(wires).expect("a CRT base has at least one residue")
        })
        .collect()
}

/// The constant-one labels of every modulus of the plan, as digits, looked
/// up by modulus (a handful of entries).
pub(crate) struct OneDigits(pub(crate) Vec<(Modulus, Zeroizing<Vec<u16>>)>);

impl OneDigits {
    /// The garbler's constant-one zero labels `O_p` of every modulus in
    /// `moduli` under `keys` (secret: cleared on drop).
    pub(crate) fn of_keys(
        hash: &FixedKeyHash,
        keys: &super::EngineKeys,
        moduli: &[Modulus],
    ) -> Result<OneDigits, Error> {
        use dash_core::Backend as _;
        let mut probe = dash_core::Garbler::new(hash, keys, dash_core::CountingSink::default());
        let mut ones = Vec::with_capacity(moduli.len());
        for &m in moduli {
            ones.push((m, Zeroizing::new(probe.constant(1, m)?.as_label().digits().to_vec())));
        }
        Ok(OneDigits(ones))
    }

    pub(crate) fn get(&self, m: Modulus) -> Result<&[u16], Error> {
        self.0.iter().find(|(k, _)| *k == m).map(|(_, d)| d.as_slice()).ok_or(Error::MissingDelta(m.value()))
    }
}

/// The garbler's gates across a run: the core's lane garbling into the
/// run's rows.
pub(crate) struct GarbleRun<'a> {
    pub hash: &'a FixedKeyHash,
    pub keys: &'a EngineKeys,
    pub ones: &'a OneDigits,
    pub rows: &'a mut [Block],
}

impl LaneOps for GarbleRun<'_> {
    fn one(&self, m: Modulus) -> Result<&[u16], Error> {
        self.ones.get(m)
    }

    fn project(
        &mut self,
        site: GateSite,
        input: &LaneWire,
        out: Modulus,
        table: impl Fn(u16) -> u16,
    ) -> Result<LaneWire, Error> {
        let (din, dout) = (self.keys.delta(input.modulus())?, self.keys.delta(out)?);
        let mut digits = vec![0u16; input.lanes() * out.digits()];
        let tweak = |lane| Tweak::new(Domain::Projection, site.gate(lane), 0);
        let status = core_lanes::garble_projection(
            self.hash,
            tweak,
            input.digits(),
            din,
            dout,
            table,
            self.rows,
            site.rows,
            &mut digits,
        );
        let wire = LaneWire::from_trusted(out, digits);
        status.map(|()| wire)
    }

    fn project_many(
        &mut self,
        sites: &[GateSite],
        input: &LaneWire,
        outs: &[Modulus],
        table: impl Fn(usize, u16) -> u16,
    ) -> Result<Vec<LaneWire>, Error> {
        let din = self.keys.delta(input.modulus())?;
        let deltas = outs.iter().map(|&m| self.keys.delta(m)).collect::<Result<Vec<_>, _>>()?;
        let mut digits: Vec<Vec<u16>> = outs.iter().map(|m| vec![0u16; input.lanes() * m.digits()]).collect();
        let mut slices: Vec<&mut [u16]> = digits.iter_mut().map(|d| d.as_mut_slice()).collect();
        let tweak = |lane, j: usize| Tweak::new(Domain::Projection, sites[j].gate(lane), 0);
        let at = sites.first().ok_or(Error::LengthMismatch)?.rows;
        let status = core_lanes::garble_projection_many(
            self.hash,
            tweak,
            input.digits(),
            din,
            &deltas,
            table,
            self.rows,
            at,
            &mut slices,
        );
        let wires = digits.into_iter().zip(outs).map(|(d, &m)| LaneWire::from_trusted(m, d)).collect();
        status.map(|()| wires)
    }

    fn mul_bit(&mut self, site: GateSite, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error> {
        let (dx, db) = (self.keys.delta(x.modulus())?, self.keys.delta(bit.modulus())?);
        let mut digits = vec![0u16; x.digits().len()];
        let gate = |lane| site.gate(lane);
        let status = core_lanes::garble_mul_bit_lanes(
            self.hash,
            gate,
            x.digits(),
            bit.digits(),
            dx,
            db,
            self.rows,
            site.rows,
            &mut digits,
        );
        let wire = LaneWire::from_trusted(x.modulus(), digits);
        status.map(|()| wire)
    }
}

/// The evaluator's gates across a run on the CPU: the core's lane
/// evaluation over the run's rows.
pub(crate) struct EvaluateRun<'a> {
    pub hash: &'a FixedKeyHash,
    pub ones: &'a EngineOnes,
    pub rows: &'a [Block],
}

impl LaneOps for EvaluateRun<'_> {
    fn one(&self, m: Modulus) -> Result<&[u16], Error> {
        Ok(self.ones.get(m)?.digits())
    }

    fn project(
        &mut self,
        site: GateSite,
        input: &LaneWire,
        out: Modulus,
        _table: impl Fn(u16) -> u16,
    ) -> Result<LaneWire, Error> {
        let mut digits = vec![0u16; input.lanes() * out.digits()];
        let tweak = |lane| Tweak::new(Domain::Projection, site.gate(lane), 0);
        let m = input.modulus();
        core_lanes::evaluate_projection(self.hash, tweak, m, input.digits(), out, self.rows, site.rows, &mut digits)?;
        Ok(LaneWire::from_trusted(out, digits))
    }

    fn project_many(
        &mut self,
        sites: &[GateSite],
        input: &LaneWire,
        outs: &[Modulus],
        _table: impl Fn(usize, u16) -> u16,
    ) -> Result<Vec<LaneWire>, Error> {
        let mut digits: Vec<Vec<u16>> = outs.iter().map(|m| vec![0u16; input.lanes() * m.digits()]).collect();
        let mut slices: Vec<&mut [u16]> = digits.iter_mut().map(|d| d.as_mut_slice()).collect();
        let tweak = |lane, j: usize| Tweak::new(Domain::Projection, sites[j].gate(lane), 0);
        let at = sites.first().ok_or(Error::LengthMismatch)?.rows;
        let m = input.modulus();
        core_lanes::evaluate_projection_many(self.hash, tweak, m, input.digits(), outs, self.rows, at, &mut slices)?;
        Ok(digits.into_iter().zip(outs).map(|(d, &m)| LaneWire::from_trusted(m, d)).collect())
    }

    fn mul_bit(&mut self, site: GateSite, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error> {
        let mut digits = vec![0u16; x.digits().len()];
        let gate = |lane| site.gate(lane);
        let p = x.modulus();
        core_lanes::evaluate_mul_bit_lanes(
            self.hash,
            gate,
            p,
            x.digits(),
            bit.digits(),
            self.rows,
            site.rows,
            &mut digits,
        )?;
        Ok(LaneWire::from_trusted(p, digits))
    }
}

/// Cuts a chunk of `count` elements from `first`, whose rows are `rows`,
/// into runs of [`LANES`] (a mutable split for the garbler).
pub(crate) fn runs_mut<'r, T>(
    first: usize,
    count: usize,
    rows_per_element: usize,
    rows: &'r mut [Block],
    make: impl Fn(&'r mut [Block]) -> T,
) -> Vec<Run<T>> {
    let mut runs = Vec::with_capacity(count.div_ceil(LANES));
    let mut rest = rows;
    for start in (0..count).step_by(LANES) {
        let n = LANES.min(count - start);
        let (mine, tail) = rest.split_at_mut((n * rows_per_element).min(rest.len()));
        rest = tail;
        runs.push(Run { first: first + start, count: n, ops: make(mine) });
    }
    runs
}

/// [`runs_mut`] for the evaluator (rows read only).
pub(crate) fn runs<'r, T>(
    first: usize,
    count: usize,
    rows_per_element: usize,
    rows: &'r [Block],
    make: impl Fn(&'r [Block]) -> T,
) -> Vec<Run<T>> {
    (0..count)
        .step_by(LANES)
        .map(|start| {
            let n = LANES.min(count - start);
            let lo = (start * rows_per_element).min(rows.len());
            let hi = ((start + n) * rows_per_element).min(rows.len());
            Run { first: first + start, count: n, ops: make(&rows[lo..hi]) }
        })
        .collect()
}
