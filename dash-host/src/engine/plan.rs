//! [`Plan`]: what both parties derive from a network before garbling or
//! evaluating it, and [`Layout`], the one place that says which gate
//! identifiers and rows each element of a layer owns.

use super::error::{EngineError, EngineResult};
use super::{MAX_MODULI, OFFLOAD_CHUNK_ROWS};
use crate::format::Header;
use crate::network::{IntLayer, IntNetwork};
use crate::offload::OffloadHandle;
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

/// The gadget a non-linear layer runs per output element.
#[derive(Clone, Debug)]
pub(crate) enum Gadget {
    Relu,
    Sign,
    MaxPool { window: usize },
    Rescale(Box<Rescale>),
}

impl Gadget {
    /// Input bundles per output element.
    pub(crate) fn arity(&self) -> usize {
        match self {
            Gadget::MaxPool { window } => *window,
            Gadget::Relu | Gadget::Sign | Gadget::Rescale(_) => 1,
        }
    }

    /// Whether output element `e` reads input element `e` alone (and the
    /// layer keeps its shape).
    pub(crate) fn is_elementwise(&self) -> bool {
        match self {
            Gadget::MaxPool { .. } => false,
            Gadget::Relu | Gadget::Sign | Gadget::Rescale(_) => true,
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
            Gadget::Relu => sign()?.relu(b, x),
            Gadget::Sign => sign()?.sign_activation(b, x),
            Gadget::MaxPool { .. } => max_window(sign()?, b, xs),
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
}

/// A network for [`Plan::new`]: shared as it is, or copied once.
impl From<&IntNetwork> for Arc<IntNetwork> {
    fn from(net: &IntNetwork) -> Arc<IntNetwork> {
        Arc::new(net.clone())
    }
}

fn measure(gadget: &Gadget, sign: Option<&SignGadget>, base: &CrtBase) -> Result<(u64, u64, Vec<u16>), Error> {
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
        for (i, layer) in net.layers.iter().enumerate() {
            // Exhaustive: a new layer kind must be placed here on purpose.
            let op = match layer {
                IntLayer::Relu => Op::Gadget(Gadget::Relu),
                IntLayer::Sign => Op::Gadget(Gadget::Sign),
                IntLayer::MaxPool { kernel, .. } => Op::Gadget(Gadget::MaxPool { window: kernel[0] * kernel[1] }),
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
        let hash = net.hash();
        let data = PlanData { net, shapes, ops, sign, costs, moduli, hash, reduced, keep };
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
