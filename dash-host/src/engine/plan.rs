//! [`Plan`]: what both parties derive from a network before garbling or
//! evaluating it, and [`Layout`], the one place that says which gate
//! identifiers and rows each element of a layer owns.

use super::error::{EngineError, EngineResult};
use super::{MAX_MODULI, OFFLOAD_CHUNK_ROWS};
use crate::format::Header;
use crate::network::{IntLayer, IntNetwork};
use crate::offload::OffloadHandle;
use crate::planner::PlannedNetwork;
use dash_core::gadgets::compare::max_window;
use dash_core::gadgets::rescale::Rescale;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{Backend, Block, Bundle, CostCounter, CrtBase, Error, Modulus};
use std::sync::Arc;

/// What a layer computes, as the engine runs it.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// Free: integer arithmetic on label digits.
    Linear,
    /// A gadget per output element.
    Gadget(Gadget),
}

/// The gadget a non-linear layer runs per output element. A `sub` sign
/// decides on a sub-base (a subset of the network's residues, chosen by the
/// planner from the value's proven interval); `None` decides on the whole
/// base with the plan's shared sign gadget.
#[derive(Clone, Debug)]
pub(crate) enum Gadget {
    Relu { sub: Option<Box<SubSign>> },
    Sign { sub: Option<Box<SubSign>> },
    MaxPool { window: usize, sub: Option<Box<SubSign>> },
    Rescale(Box<Rescale>),
}

/// An exact sign gadget on a sub-base of the network's base: the residues
/// at `indices` (ascending) of every input bundle. Dropping residues costs
/// nothing; the decision is exact for every value in the sub-base's signed
/// range, which the planner proves the value lies in. The result goes back
/// into every residue of the full base by multiply-by-bit (ReLU, max) or a
/// projection of the bit (sign), so the layer's output is on the full base.
#[derive(Clone, Debug)]
pub(crate) struct SubSign {
    pub(crate) gadget: SignGadget,
    pub(crate) indices: Vec<usize>,
}

impl SubSign {
    /// The residues of `x` this sign reads (clones of the wires; free).
    fn select<W: Clone>(&self, x: &Bundle<W>) -> Result<Bundle<W>, Error> {
        let wires = self.indices.iter().map(|&i| x.wires().get(i).cloned().ok_or(Error::LengthMismatch));
        Bundle::from_wires(wires.collect::<Result<Vec<_>, _>>()?)
    }

    /// `[x >= 0]` decided on the sub-base.
    fn nonneg_bit<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<B::Wire, Error> {
        self.gadget.nonneg_bit(b, &self.select(x)?)
    }
}

/// Every residue of `x` times `bit` (the full base, whatever base decided
/// the bit).
fn mul_each<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, bit: &B::Wire) -> Result<Bundle<B::Wire>, Error> {
    let wires = x.wires().iter().map(|w| b.mul_bit(w, bit)).collect::<Result<Vec<_>, _>>()?;
    Bundle::from_wires(wires)
}

/// `max(x, y) = y + (x - y)·[x - y >= 0]`, the sign of the difference
/// decided on `sub`.
fn max2_sub<B: Backend>(
    sub: &SubSign,
    b: &mut B,
    x: &Bundle<B::Wire>,
    y: &Bundle<B::Wire>,
) -> Result<Bundle<B::Wire>, Error> {
    let d = dash_core::crt::sub(b, x, y)?;
    let bit = sub.nonneg_bit(b, &d)?;
    let r = mul_each(b, &d, &bit)?;
    dash_core::crt::add(b, y, &r)
}

/// The same balanced tree as `dash_core::gadgets::compare::max_window`
/// (split at `len / 2`, left then right), which the plaintext twins follow.
fn max_tree_sub<B: Backend>(sub: &SubSign, b: &mut B, xs: &[Bundle<B::Wire>]) -> Result<Bundle<B::Wire>, Error> {
    match xs {
        [] => Err(Error::InvalidParameter),
        [x] => Ok(x.clone()),
        _ => {
            let (lo, hi) = xs.split_at(xs.len() / 2);
            let a = max_tree_sub(sub, b, lo)?;
            let c = max_tree_sub(sub, b, hi)?;
            max2_sub(sub, b, &a, &c)
        }
    }
}

impl Gadget {
    /// Input bundles per output element.
    pub(crate) fn arity(&self) -> usize {
        match self {
            Gadget::MaxPool { window, .. } => *window,
            Gadget::Relu { .. } | Gadget::Sign { .. } | Gadget::Rescale(_) => 1,
        }
    }

    /// Whether output element `e` reads input element `e` alone (and the
    /// layer keeps its shape).
    pub(crate) fn is_elementwise(&self) -> bool {
        match self {
            Gadget::MaxPool { .. } => false,
            Gadget::Relu { .. } | Gadget::Sign { .. } | Gadget::Rescale(_) => true,
        }
    }

    /// The residues the sign decides on, if a sub-base (indices into the
    /// network's base).
    pub(crate) fn sub_base(&self) -> Option<&[usize]> {
        match self {
            Gadget::Relu { sub } | Gadget::Sign { sub } | Gadget::MaxPool { sub, .. } => {
                sub.as_deref().map(|s| s.indices.as_slice())
            }
            Gadget::Rescale(_) => None,
        }
    }

    /// Runs the gadget on any backend: the cost counter, the per-element
    /// core backends, and the engine's lanes.
    pub(crate) fn run<B: Backend>(
        &self,
        sign: Option<&SignGadget>,
        b: &mut B,
        xs: &[Bundle<B::Wire>],
    ) -> Result<Bundle<B::Wire>, Error> {
        let sign = || sign.ok_or(Error::InvalidParameter);
        let x = xs.first().ok_or(Error::LengthMismatch)?;
        match self {
            Gadget::Relu { sub: None } => sign()?.relu(b, x),
            Gadget::Relu { sub: Some(s) } => {
                let bit = s.nonneg_bit(b, x)?;
                mul_each(b, x, &bit)
            }
            Gadget::Sign { sub: None } => sign()?.sign_activation(b, x),
            Gadget::Sign { sub: Some(s) } => {
                // +1 / -1 in every residue of the full base from the bit
                // [x >= 0] (one projection per odd residue; mod 2 they are
                // the same residue, the constant 1).
                let bit = s.nonneg_bit(b, x)?;
                let mut out = Vec::with_capacity(x.len());
                for w in x.wires() {
                    let m = b.modulus_of(w);
                    let p = m.value();
                    out.push(if p == 2 {
                        b.constant(1, m)?
                    } else {
                        b.project(&bit, m, |s| if s == 1 { 1 } else { p - 1 })?
                    });
                }
                Bundle::from_wires(out)
            }
            Gadget::MaxPool { sub: None, .. } => max_window(sign()?, b, xs),
            Gadget::MaxPool { sub: Some(s), .. } => max_tree_sub(s, b, xs),
            Gadget::Rescale(r) => r.apply(b, x),
        }
    }
}

/// Cost and gate range of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// Output elements.
    pub elements: u64,
    /// Ciphertexts per element (0 for linear layers).
    pub rows_per_element: u64,
    /// Gate identifiers per element.
    pub gates_per_element: u64,
    /// First gate identifier of the layer.
    pub first_gate: u64,
    /// Rows of the whole layer.
    pub rows: u64,
}

impl LayerCost {
    /// The layer's gate and row layout.
    pub fn layout(&self) -> Layout {
        Layout {
            first_gate: self.first_gate,
            gates_per_element: self.gates_per_element,
            rows_per_element: self.rows_per_element as usize,
        }
    }
}

/// Which gate identifiers and rows each element of a non-linear layer owns.
/// A gadget's cost does not depend on data, so element `e` owns the gate
/// identifiers `first_gate + e·g ..` and the rows `e·c .. (e + 1)·c` of the
/// layer (`g`, `c` measured on the cost counter). Both parties, the CPU
/// lanes and the device lanes number gates and find rows through this type
/// and nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// First gate identifier of the layer.
    pub first_gate: u64,
    /// Gate identifiers per element (`g`).
    pub gates_per_element: u64,
    /// Rows per element (`c`).
    pub rows_per_element: usize,
}

impl Layout {
    /// The identifier of element `element`'s gate number `local` (counted
    /// from 0 within the element's gadget).
    #[inline]
    pub fn gate(&self, element: usize, local: u64) -> u64 {
        self.first_gate + element as u64 * self.gates_per_element + local
    }

    /// Rows of `elements` elements.
    #[inline]
    pub fn rows(&self, elements: usize) -> usize {
        elements * self.rows_per_element
    }
}

/// Everything both parties derive from the network before garbling or
/// evaluating: shapes, gadgets, per-layer costs and gate ranges, the moduli
/// to key, and the weights reduced modulo each prime. Build it once per
/// model and reuse it for every inference; cloning is cheap (the plan is
/// shared), so sessions, servers and other front ends each hold their own.
#[derive(Clone)]
pub struct Plan {
    pub(crate) data: Arc<PlanData>,
    /// Where dense/conv layers and the evaluator's projection batches run
    /// (`None`: the CPU).
    pub(crate) offload: Option<OffloadHandle>,
    /// Rows per evaluator chunk when offloading.
    pub(crate) offload_chunk_rows: usize,
}

impl core::fmt::Debug for Plan {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Plan")
            .field("layers", &self.data.ops.len())
            .field("rows", &self.total_rows())
            .field("offload", &self.offload)
            .finish()
    }
}

pub(crate) struct PlanData {
    pub(crate) net: Arc<IntNetwork>,
    pub(crate) shapes: Vec<Vec<usize>>,
    pub(crate) ops: Vec<Op>,
    pub(crate) sign: Option<SignGadget>,
    pub(crate) costs: Vec<LayerCost>,
    pub(crate) moduli: Vec<Modulus>,
    pub(crate) hash: [u8; 32],
    /// Per layer, per residue: weights and biases reduced mod the prime.
    pub(crate) reduced: Vec<Vec<(Vec<u16>, Vec<u16>)>>,
    /// Whether activation `i` is needed again by a residual add.
    pub(crate) keep: Vec<bool>,
    /// The inputs a planned circuit's proof covers (`None`: the base's
    /// whole signed range).
    pub(crate) input_range: Option<(i128, i128)>,
}

/// The exact sign gadget on the residues `indices` (ascending, distinct) of
/// `base`.
pub(crate) fn sub_sign(base: &CrtBase, indices: &[usize]) -> Result<SubSign, Error> {
    if indices.is_empty() || indices.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::InvalidParameter);
    }
    let primes = indices
        .iter()
        .map(|&i| base.moduli().get(i).map(|m| m.value()).ok_or(Error::InvalidParameter))
        .collect::<Result<Vec<u16>, _>>()?;
    let sub = CrtBase::new(&primes)?;
    Ok(SubSign { gadget: SignGadget::new(&sub, Accuracy::Exact)?, indices: indices.to_vec() })
}

/// A network for [`Plan::new`]: shared as it is, or copied once.
impl From<&IntNetwork> for Arc<IntNetwork> {
    fn from(net: &IntNetwork) -> Arc<IntNetwork> {
        Arc::new(net.clone())
    }
}

pub(crate) fn measure(
    gadget: &Gadget,
    sign: Option<&SignGadget>,
    base: &CrtBase,
) -> Result<(u64, u64, Vec<u16>), Error> {
    let mut cc = CostCounter::new();
    let xs: Vec<Bundle<Modulus>> = (0..gadget.arity())
        .map(|_| Bundle::from_wires(base.moduli().iter().map(|&m| cc.input(m))))
        .collect::<Result<_, _>>()?;
    gadget.run(sign, &mut cc, &xs)?;
    Ok((cc.ciphertexts, cc.gates, cc.moduli()?.to_vec()))
}

fn reduce_all(values: &[i64], p: u16) -> Vec<u16> {
    values.iter().map(|&v| v.rem_euclid(p as i64) as u16).collect()
}

fn model_error(what: String) -> impl FnOnce(Error) -> EngineError {
    move |e| EngineError::Model(format!("{what}: {e}"))
}

impl Plan {
    /// Plans `net` (validates it, builds the gadgets, measures costs). A
    /// borrowed network is copied once; pass an `Arc` to share it.
    pub fn new(net: impl Into<Arc<IntNetwork>>) -> EngineResult<Plan> {
        let net: Arc<IntNetwork> = net.into();
        let hash = net.hash();
        Plan::build(net, &[], hash, None)
    }

    /// Plans the planner's circuit ([`crate::planner`]): its rewritten
    /// network, with each sign, ReLU and max-pool deciding on the sub-base
    /// the planner chose, and inputs limited to the range the planner's
    /// proof assumed. The model hash covers all of it
    /// ([`PlannedNetwork::hash`]), so a party that planned differently (or
    /// not at all) is refused at the header.
    pub fn planned(planned: &PlannedNetwork) -> EngineResult<Plan> {
        let net = Arc::new(planned.network.clone());
        Plan::build(net, &planned.sub_bases, planned.hash(), Some((planned.input_range.lo, planned.input_range.hi)))
    }

    fn build(
        net: Arc<IntNetwork>,
        sub_bases: &[Option<Vec<usize>>],
        hash: [u8; 32],
        input_range: Option<(i128, i128)>,
    ) -> EngineResult<Plan> {
        let shapes = net.shapes().map_err(|e| EngineError::Model(format!("{e:#}")))?;
        let base = &net.base;
        let needs_sign =
            net.layers.iter().any(|l| matches!(l, IntLayer::Relu | IntLayer::Sign | IntLayer::MaxPool { .. }));
        let sign = if needs_sign {
            Some(
                SignGadget::new(base, Accuracy::Exact)
                    .map_err(model_error("building the exact sign gadget for this base".into()))?,
            )
        } else {
            None
        };
        let mut moduli: Vec<Modulus> = base.moduli().to_vec();
        let (mut ops, mut costs, mut reduced) = (Vec::new(), Vec::new(), Vec::new());
        let mut keep = vec![false; shapes.len()];
        let mut gate = 0u64;
        if !sub_bases.is_empty() && sub_bases.len() != net.layers.len() {
            return Err(EngineError::Model("the sub-bases do not match the network's layers".into()));
        }
        for (i, layer) in net.layers.iter().enumerate() {
            let sub =
                match sub_bases.get(i) {
                    Some(Some(indices)) => Some(Box::new(sub_sign(base, indices).map_err(model_error(format!(
                        "layer {i}: the exact sign gadget on the sub-base {indices:?}"
                    )))?)),
                    _ => None,
                };
            if sub.is_some() && !matches!(layer, IntLayer::Relu | IntLayer::Sign | IntLayer::MaxPool { .. }) {
                return Err(EngineError::Model(format!("layer {i} ({}) takes no sub-base", layer.name())));
            }
            // Exhaustive: a new layer kind must be placed here on purpose.
            let op = match layer {
                IntLayer::Relu => Op::Gadget(Gadget::Relu { sub }),
                IntLayer::Sign => Op::Gadget(Gadget::Sign { sub }),
                IntLayer::MaxPool { kernel, .. } => Op::Gadget(Gadget::MaxPool { window: kernel[0] * kernel[1], sub }),
                IntLayer::Rescale { divisor, rounding } => Op::Gadget(Gadget::Rescale(Box::new(
                    Rescale::new(base, *divisor, *rounding)
                        .map_err(model_error(format!("layer {i}: rescale by {divisor} on this base")))?,
                ))),
                IntLayer::Dense { .. }
                | IntLayer::Conv2d { .. }
                | IntLayer::SumPool { .. }
                | IntLayer::Flatten
                | IntLayer::Reshape { .. }
                | IntLayer::ResidualAdd { .. } => Op::Linear,
            };
            debug_assert_eq!(matches!(op, Op::Linear), layer.is_linear());
            if let IntLayer::ResidualAdd { from } = layer {
                keep[*from] = true;
            }
            let elements = shapes[i + 1].iter().product::<usize>() as u64;
            let (rows_per_element, gates_per_element) = match &op {
                Op::Linear => (0, 0),
                Op::Gadget(g) => {
                    let (c, n, ms) =
                        measure(g, sign.as_ref(), base).map_err(model_error(format!("layer {i}: costing")))?;
                    for m in ms {
                        let m = Modulus::new(m).map_err(model_error(format!("layer {i}")))?;
                        if !moduli.contains(&m) {
                            moduli.push(m);
                        }
                    }
                    (c, n)
                }
            };
            let too_large = || EngineError::Model(format!("layer {i} is too large"));
            let rows = elements.checked_mul(rows_per_element).ok_or_else(too_large)?;
            costs.push(LayerCost { elements, rows_per_element, gates_per_element, first_gate: gate, rows });
            gate = elements
                .checked_mul(gates_per_element)
                .and_then(|g| gate.checked_add(g))
                .ok_or_else(|| EngineError::Model("gate identifiers exhausted".into()))?;
            reduced.push(match layer {
                IntLayer::Dense { weights, bias, .. } | IntLayer::Conv2d { weights, bias, .. } => base
                    .moduli()
                    .iter()
                    .map(|m| (reduce_all(weights, m.value()), reduce_all(bias, m.value())))
                    .collect(),
                _ => Vec::new(),
            });
            ops.push(op);
        }
        if moduli.len() > MAX_MODULI {
            return Err(EngineError::Model(format!(
                "the network needs {} moduli, at most {MAX_MODULI} supported",
                moduli.len()
            )));
        }
        let data = PlanData { net, shapes, ops, sign, costs, moduli, hash, reduced, keep, input_range };
        Ok(Plan { data: Arc::new(data), offload: None, offload_chunk_rows: OFFLOAD_CHUNK_ROWS })
    }

    /// Runs the evaluator's dense and convolution layers and non-linear
    /// layers (as layer-wide projection batches) on `device`; `None`
    /// restores the CPU path. Results are bit-identical either way. The
    /// garbler always runs on the CPU: its labels are secret, and device
    /// memory and the GPU's AES tables are not constant-time or scrubbed
    /// (`docs/GPU.md`).
    pub fn set_offload(&mut self, device: Option<OffloadHandle>) {
        self.offload = device;
    }

    /// Rows per chunk of a non-linear layer when the evaluator offloads
    /// (default [`OFFLOAD_CHUNK_ROWS`]; at least one element's rows are
    /// always taken). Smaller values bound host memory more tightly.
    pub fn set_offload_chunk_rows(&mut self, rows: usize) {
        self.offload_chunk_rows = rows;
    }

    /// The device offloaded to, if any.
    pub fn offload(&self) -> Option<&OffloadHandle> {
        self.offload.as_ref()
    }

    /// The network.
    pub fn network(&self) -> &IntNetwork {
        &self.data.net
    }

    /// The network, shared.
    pub fn shared_network(&self) -> Arc<IntNetwork> {
        self.data.net.clone()
    }

    /// Every modulus the inference keys (CRT primes first).
    pub fn moduli(&self) -> &[Modulus] {
        &self.data.moduli
    }

    /// Per-layer costs.
    pub fn costs(&self) -> &[LayerCost] {
        &self.data.costs
    }

    /// Rows (ciphertexts) of the whole network.
    pub fn total_rows(&self) -> u64 {
        self.data.costs.iter().map(|c| c.rows).sum()
    }

    /// Bytes of garbled rows (16 per row; the header and tags add a little).
    pub fn material_bytes(&self) -> u64 {
        self.total_rows() * 16
    }

    /// The model hash written into and checked against the header.
    pub fn model_hash(&self) -> [u8; 32] {
        self.data.hash
    }

    /// The inputs this plan accepts: a planned circuit's proof covers only
    /// the declared input range (`None`: the base's whole signed range).
    pub fn input_range(&self) -> Option<(i128, i128)> {
        self.data.input_range
    }

    /// Per layer, the residues (indices into the base) its sign decides on
    /// when a sub-base; `None` for the whole base or no sign.
    pub fn sub_bases(&self) -> Vec<Option<Vec<usize>>> {
        self.data
            .ops
            .iter()
            .map(|op| match op {
                Op::Gadget(g) => g.sub_base().map(<[usize]>::to_vec),
                Op::Linear => None,
            })
            .collect()
    }

    /// The input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.data.shapes[0]
    }

    /// The output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.data.shapes[self.data.shapes.len() - 1]
    }

    pub(crate) fn header(&self, ones: Vec<(u16, Block)>) -> Header {
        Header {
            model_hash: self.data.hash,
            primes: self.data.net.base.moduli().iter().map(|m| m.value()).collect(),
            ones,
            layer_rows: self.data.costs.iter().map(|c| c.rows).collect(),
        }
    }
}

/// Flat input indices of output element `e` of a layer `layer` with input
/// shape `s` and output shape `o`: the pooling window for max pooling, the
/// element itself otherwise.
pub(crate) fn element_inputs(layer: &IntLayer, s: &[usize], o: &[usize], e: usize, idx: &mut Vec<usize>) {
    idx.clear();
    match layer {
        IntLayer::MaxPool { kernel, stride } => {
            let (h, w, oh, ow) = (s[1], s[2], o[1], o[2]);
            let (ch, r, col) = (e / (oh * ow), (e / ow) % oh, e % ow);
            for dy in 0..kernel[0] {
                for dx in 0..kernel[1] {
                    idx.push((ch * h + r * stride[0] + dy) * w + col * stride[1] + dx);
                }
            }
        }
        _ => idx.push(e),
    }
}
