//! What `dashgc bench --networks` sets beside the engine's layer times: a
//! layer's gadget run once on one [`Lanes`] backend of [`LANES`] elements,
//! with no driver around it (no chunking, no gathering from a tensor, no
//! material stream, no thread pool), and a linear layer's kernel on its
//! own. The gap between these and a whole layer through
//! [`garble`](super::garble) / [`evaluate`](super::evaluate) is the
//! driver's cost.

use super::driver::{EvaluateRun, GarbleRun, LANES, OneDigits};
use super::error::{EngineError, EngineResult};
use super::lanes::{LaneWire, Lanes};
use super::linear::linear_layer;
use super::plan::{Gadget, Op, Plan};
use super::{EngineKeys, EngineOnes};
use crate::network::IntLayer;
use crate::tensor::CrtTensor;
use dash_core::{Block, Bundle, FixedKeyHash, GarblerKeys};
use rand_core::CryptoRng;

/// Layer 0's gadget of a plan on one run of [`LANES`] elements, garbled
/// and evaluated again and again over the same rows.
pub(crate) struct GadgetRun {
    plan: Plan,
    hash: FixedKeyHash,
    keys: Box<EngineKeys>,
    garbler_ones: OneDigits,
    evaluator_ones: EngineOnes,
    /// The garbler's input zero labels, one bundle per window position;
    /// the evaluator's labels are the same (every lane holds the value 0).
    zero: Vec<Bundle<LaneWire>>,
    rows: Vec<Block>,
}

impl GadgetRun {
    /// A run of the gadget of `plan`'s first layer, with fresh keys.
    pub(crate) fn new<R: CryptoRng + ?Sized>(plan: &Plan, rng: &mut R) -> EngineResult<GadgetRun> {
        let data = &plan.data;
        let gadget = first_gadget(plan)?;
        let keys: Box<EngineKeys> = Box::new(GarblerKeys::generate(rng, &data.moduli)?);
        let hash = FixedKeyHash::new();
        let garbler_ones = OneDigits::of_keys(&hash, &keys, &data.moduli)?;
        let mut zero = Vec::with_capacity(gadget.arity());
        for _ in 0..gadget.arity() {
            let mut wires = Vec::with_capacity(data.net.base.len());
            for &m in data.net.base.moduli() {
                let mut digits = Vec::with_capacity(LANES * m.digits());
                for _ in 0..LANES {
                    digits.extend_from_slice(keys.input(m, rng)?.as_label().digits());
                }
                wires.push(LaneWire::from_trusted(m, digits));
            }
            zero.push(Bundle::from_wires(wires)?);
        }
        let rows = vec![Block::ZERO; data.costs[0].layout().rows(LANES)];
        let evaluator_ones = keys.one_labels();
        Ok(GadgetRun { plan: plan.clone(), hash, keys, garbler_ones, evaluator_ones, zero, rows })
    }

    /// Elements per run.
    pub(crate) fn elements(&self) -> usize {
        LANES
    }

    /// Garbles the run into its rows; returns the output zero labels.
    pub(crate) fn garble(&mut self) -> EngineResult<Bundle<LaneWire>> {
        let data = &self.plan.data;
        let ops = GarbleRun { hash: &self.hash, keys: &self.keys, ones: &self.garbler_ones, rows: &mut self.rows };
        let mut lanes = Lanes::new(ops, LANES, data.costs[0].layout(), 0);
        Ok(first_gadget(&self.plan)?.run(data.sign.as_ref(), &mut lanes, &self.zero)?)
    }

    /// Evaluates the run from the rows of the last [`GadgetRun::garble`];
    /// returns the output labels.
    pub(crate) fn evaluate(&self) -> EngineResult<Bundle<LaneWire>> {
        let data = &self.plan.data;
        let ops = EvaluateRun { hash: &self.hash, ones: &self.evaluator_ones, rows: &self.rows };
        let mut lanes = Lanes::new(ops, LANES, data.costs[0].layout(), 0);
        Ok(first_gadget(&self.plan)?.run(data.sign.as_ref(), &mut lanes, &self.zero)?)
    }
}

fn first_gadget(plan: &Plan) -> EngineResult<&Gadget> {
    match plan.data.ops.first() {
        Some(Op::Gadget(g)) => Ok(g),
        _ => Err(EngineError::Model("the layer benchmark needs a non-linear first layer".into())),
    }
}

/// Layer 0 of a plan, a linear layer, run by its kernel on a tensor of
/// arbitrary labels: what both parties do for it (the garbler on zero
/// labels, the evaluator on labels).
pub(crate) struct LinearRun {
    plan: Plan,
    x: CrtTensor,
    ones: Vec<Vec<u16>>,
}

impl LinearRun {
    /// The first layer of `plan` on labels drawn from `rng`.
    pub(crate) fn new<R: CryptoRng + ?Sized>(plan: &Plan, rng: &mut R) -> EngineResult<LinearRun> {
        let data = &plan.data;
        if !matches!(data.ops.first(), Some(Op::Linear)) {
            return Err(EngineError::Model("the linear benchmark needs a linear first layer".into()));
        }
        let keys: Box<EngineKeys> = Box::new(GarblerKeys::generate(rng, &data.moduli)?);
        let mut x = CrtTensor::zeros(&data.net.base, plan.input_shape());
        for t in x.residues_mut() {
            let m = t.modulus();
            for e in 0..t.len() {
                t.label_digits_mut(e).copy_from_slice(keys.input(m, rng)?.as_label().digits());
            }
        }
        let ones = x.residues().iter().map(|t| vec![1u16; t.label_len()]).collect();
        Ok(LinearRun { plan: plan.clone(), x, ones })
    }

    /// Runs the kernel once (on a copy of the input: the kernel consumes it).
    pub(crate) fn run(&self) -> EngineResult<CrtTensor> {
        let acts = vec![None; self.plan.data.shapes.len()];
        linear_layer(&self.plan.data, 0, self.x.clone(), &acts, &self.ones, None)
    }

    /// Multiply-adds per residue digit of one run (a convolution counts
    /// every kernel position, padding included): each is done once per
    /// digit of every residue.
    pub(crate) fn macs(&self) -> u64 {
        let out: usize = self.plan.data.shapes[1].iter().product();
        let per_output = match &self.plan.network().layers[0] {
            IntLayer::Dense { inputs, .. } => *inputs,
            IntLayer::Conv2d { in_channels, kernel, .. } => in_channels * kernel[0] * kernel[1],
            _ => 1,
        };
        (out * per_output) as u64
    }

    /// Digits of one label across every residue.
    pub(crate) fn digits_per_element(&self) -> u64 {
        self.x.residues().iter().map(|t| t.label_len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{IntNetwork, Rounding};
    use dash_core::CrtBase;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// With every lane at 0, each gadget's output is 0 again: the
    /// evaluator's output labels are the garbler's output zero labels, so
    /// the run garbles and evaluates the whole gadget, not a part of it.
    #[test]
    fn a_run_evaluates_to_the_garbled_zero_labels() {
        let base = CrtBase::first(5).unwrap();
        let layers = [
            (vec![LANES], IntLayer::Relu),
            (vec![LANES], IntLayer::Rescale { divisor: 6, rounding: Rounding::Floor }),
            (vec![1, 2, 2 * LANES], IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] }),
        ];
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        for (shape, layer) in layers {
            let net = IntNetwork::new(shape, vec![layer], base.clone()).unwrap();
            let plan = Plan::new(&net).unwrap();
            let mut run = GadgetRun::new(&plan, &mut rng).unwrap();
            let zero = run.garble().unwrap();
            assert!(run.rows.iter().any(|r| *r != Block::ZERO), "no rows written");
            let got = run.evaluate().unwrap();
            for (g, z) in got.wires().iter().zip(zero.wires()) {
                assert_eq!(g.digits(), z.digits(), "{:?}", net.layers[0]);
            }
            // Corrupted rows change the answer: the rows are really read.
            for r in &mut run.rows {
                *r = Block(r.0 ^ 1);
            }
            // (A row may also fail to decrypt to a label at all.)
            if let Ok(bad) = run.evaluate() {
                assert!(bad.wires().iter().zip(zero.wires()).any(|(b, z)| b.digits() != z.digits()));
            }
        }
    }

    #[test]
    fn the_linear_kernel_counts_its_multiply_adds() {
        let base = CrtBase::first(3).unwrap();
        let digits: usize = base.moduli().iter().map(|m| m.digits()).sum();
        let layer = IntLayer::Dense { inputs: 4, outputs: 2, weights: vec![1; 8], bias: vec![0; 2] };
        let net = IntNetwork::new(vec![4], vec![layer], base).unwrap();
        let run = LinearRun::new(&Plan::new(&net).unwrap(), &mut ChaCha20Rng::seed_from_u64(6)).unwrap();
        assert_eq!(run.macs(), 8);
        assert_eq!(run.digits_per_element(), digits as u64);
        assert_eq!(run.run().unwrap().len(), 2);
    }
}
