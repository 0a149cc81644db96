//! The circuit planner: a cheaper garbled circuit that computes the same
//! integers as the quantised network on every input of its declared range.
//!
//! # What it does
//!
//! From an [`IntNetwork`] and the input interval, [`plan`] proves the
//! interval of every activation ([`interval_bounds`], the quantiser's proof)
//! and then, measuring every candidate on the cost counter, keeps what pays:
//!
//! * **Sub-bases for signs.** A sign, ReLU or max-pool decides the sign of a
//!   value whose proven interval is `[lo, hi]` (for max pooling, the
//!   differences of the window: `[lo - hi, hi - lo]`). Any subset of the
//!   base's residues whose signed range `[-floor(Q'/2), ceil(Q'/2))`
//!   contains that interval decides it exactly: the residues it keeps are
//!   those of the value itself, and CRT on the subset recovers the value.
//!   Dropping residues is free. The planner takes the subset with the
//!   cheapest exact sign gadget. The bit then goes back into every residue
//!   of the full base (multiply-by-bit for ReLU and max, a projection of the
//!   bit for sign), so every layer's output stays on the full base.
//! * **Monotone reorderings.** For every `f` among ReLU, sign and rescaling
//!   (any rounding) — all monotone non-decreasing —
//!   `max(f(a), f(b)) = f(max(a, b))`, so `f` followed by max pooling may
//!   become max pooling followed by `f`, on a quarter of the elements for a
//!   2×2 window. For ReLU and rescaling (`f(0) = 0`, monotone),
//!   `ReLU(f(x)) = f(ReLU(x))`, so a ReLU followed by a rescale may become the
//!   rescale followed by the ReLU, whose smaller values take a smaller
//!   sub-base. Each rewrite is kept only if the rewritten network's proof
//!   still holds (no value or max-pool difference leaves the base's range,
//!   so neither order ever wraps modulo `Q`) and the total cost drops.
//! * **Dead ReLUs.** A ReLU whose input is proven non-negative is the
//!   identity: it becomes a free reshape to the same shape (indices of later
//!   residual adds do not move).
//!
//! Equality with the unplanned network holds for every input in the
//! declared range, because every rewrite is an identity on integers that
//! never wrap and every sub-base contains its proven interval. The engine
//! refuses inputs outside that range for a planned circuit
//! ([`crate::engine::Plan::planned`]); the planned plaintext twin
//! ([`PlannedNetwork::eval_plain`]) models the sub-base gadgets exactly, so
//! garbled equals it bit for bit on any input.
//!
//! A network whose unplanned proof fails (values may wrap) is returned
//! unchanged: the planner never relies on a bound it cannot prove.

use crate::engine::plan::{Gadget, measure, sub_sign};
use crate::network::{IntLayer, IntNetwork};
use crate::quantize::{Interval, check_ranges, interval_bounds};
use anyhow::{Context, Result, anyhow, ensure};
use dash_core::CrtBase;
use dash_core::gadgets::rescale::Rescale;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Bases up to this many residues have every subset considered (`2^k`
/// candidates, each a digit-order search, cached per process); larger
/// bases (none of the bundled models: they use 7 or 8 primes) keep their
/// signs on the whole base, so planning stays well under a second.
const MAX_SUBSET_SEARCH: usize = 8;

/// The planner's result: the rewritten network, the sub-base each sign
/// decides on, and the input range the proof covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNetwork {
    /// The rewritten network (same base, same input and output shapes).
    pub network: IntNetwork,
    /// The input range the proof covers; the engine refuses other inputs.
    pub input_range: Interval,
    /// Per layer of `network`: the residues (ascending indices into the
    /// base) its sign decides on, or `None` for the whole base (or no sign).
    pub sub_bases: Vec<Option<Vec<usize>>>,
    /// What the planner changed, in order, for reports.
    pub rewrites: Vec<String>,
}

impl PlannedNetwork {
    /// The unplanned circuit as a planned network (nothing rewritten, every
    /// sign on the whole base).
    pub fn identity(net: &IntNetwork, input_range: Interval) -> PlannedNetwork {
        PlannedNetwork {
            network: net.clone(),
            input_range,
            sub_bases: vec![None; net.layers.len()],
            rewrites: Vec::new(),
        }
    }

    /// The model hash both parties agree on for this circuit: the network's
    /// canonical bytes, the input range and every sub-base, under a domain
    /// separate from the unplanned hash ([`IntNetwork::hash`]), so a client
    /// and a server that planned differently, or only one of which planned,
    /// are refused at the header instead of computing garbage.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"dash-planned-network/1");
        h.update(self.network.canonical_bytes());
        h.update(self.input_range.lo.to_le_bytes());
        h.update(self.input_range.hi.to_le_bytes());
        h.update((self.sub_bases.len() as u64).to_le_bytes());
        for sb in &self.sub_bases {
            match sb {
                None => h.update([0u8]),
                Some(idx) => {
                    h.update([1u8]);
                    h.update((idx.len() as u64).to_le_bytes());
                    for &i in idx {
                        h.update((i as u64).to_le_bytes());
                    }
                }
            }
        }
        h.finalize().into()
    }

    /// The plaintext twin of the planned circuit (sub-base signs modelled
    /// exactly): the garbled circuit's outputs, bit for bit, on any input in
    /// the base's range, and the unplanned network's outputs on every input
    /// in [`PlannedNetwork::input_range`].
    pub fn eval_plain(&self, input: &[i64]) -> Result<Vec<i64>> {
        self.network.eval_plain_on_sub_bases(input, &self.sub_bases)
    }
}

/// What one candidate network costs, with its sub-base choices.
struct Costed {
    layers: Vec<IntLayer>,
    sub_bases: Vec<Option<Vec<usize>>>,
    ciphertexts: u64,
}

/// Costs gadgets and sub-bases once per planning.
struct Coster {
    base: CrtBase,
    /// Exact sign ciphertexts per subset mask (`None`: no exact gadget).
    sign_cost: HashMap<u32, Option<u64>>,
    /// Ciphertexts per element of a gadget, by a description of it.
    gadget_cost: HashMap<String, Option<u64>>,
}

impl Coster {
    fn sign_cost(&mut self, mask: u32) -> Option<u64> {
        if let Some(c) = self.sign_cost.get(&mask) {
            return *c;
        }
        let primes: Vec<u16> =
            (0..self.base.len()).filter(|i| mask >> i & 1 == 1).map(|i| self.base.moduli()[i].value()).collect();
        // Costs depend on the primes alone: shared by every planning in the
        // process (the digit-order search is the planner's slowest step).
        static COSTS: std::sync::Mutex<Option<HashMap<Vec<u16>, Option<u64>>>> = std::sync::Mutex::new(None);
        let cached = COSTS.lock().ok().and_then(|g| g.as_ref().and_then(|m| m.get(&primes).copied()));
        let c = cached.unwrap_or_else(|| {
            let c = CrtBase::new(&primes)
                .ok()
                .and_then(|b| SignGadget::new(&b, Accuracy::Exact).ok())
                .map(|g| g.sign_ciphertexts());
            if let Ok(mut g) = COSTS.lock() {
                g.get_or_insert_with(HashMap::new).insert(primes, c);
            }
            c
        });
        self.sign_cost.insert(mask, c);
        c
    }

    /// The cheapest subset of the base whose signed range contains `need`,
    /// as ascending indices; `None` when the whole base is as cheap (or
    /// nothing smaller fits).
    fn sub_base(&mut self, need: Interval) -> Option<Vec<usize>> {
        let k = self.base.len();
        if k > MAX_SUBSET_SEARCH {
            return None;
        }
        let full = (1u32 << k) - 1;
        let mut best = (self.sign_cost(full)?, full);
        for mask in 1..full {
            let q: u128 =
                (0..k).filter(|i| mask >> i & 1 == 1).map(|i| self.base.moduli()[i].value() as u128).product();
            let (min, max) = (-((q / 2) as i128), (q - q / 2) as i128 - 1);
            if need.lo < min || need.hi > max {
                continue;
            }
            if let Some(c) = self.sign_cost(mask)
                && c < best.0
            {
                best = (c, mask);
            }
        }
        (best.1 != full).then(|| (0..k).filter(|i| best.1 >> i & 1 == 1).collect())
    }

    /// Ciphertexts per element of layer `layer` with the sign on `sub`.
    fn per_element(&mut self, layer: &IntLayer, sub: Option<&[usize]>) -> Result<u64> {
        let key = format!("{layer:?}|{sub:?}");
        let key = match layer {
            IntLayer::Relu | IntLayer::Sign | IntLayer::MaxPool { .. } | IntLayer::Rescale { .. } => key,
            _ => return Ok(0),
        };
        if let Some(c) = self.gadget_cost.get(&key) {
            return c.context("no exact gadget for this layer on this base");
        }
        let sub = match sub {
            Some(idx) => Some(Box::new(sub_sign(&self.base, idx).map_err(|e| anyhow!("sub-base {idx:?}: {e}"))?)),
            None => None,
        };
        let gadget = match layer {
            IntLayer::Relu => Gadget::Relu { sub },
            IntLayer::Sign => Gadget::Sign { sub },
            IntLayer::MaxPool { kernel, .. } => Gadget::MaxPool { window: kernel[0] * kernel[1], sub },
            IntLayer::Rescale { divisor, rounding } => Gadget::Rescale(Box::new(
                Rescale::new(&self.base, *divisor, *rounding).map_err(|e| anyhow!("rescale by {divisor}: {e}"))?,
            )),
            _ => return Ok(0),
        };
        let shared = if sub_needs_shared(&gadget) { SignGadget::new(&self.base, Accuracy::Exact).ok() } else { None };
        let c = measure(&gadget, shared.as_ref(), &self.base).ok().map(|(c, _, _)| c);
        self.gadget_cost.insert(key, c);
        c.context("no exact gadget for this layer on this base")
    }

    /// Proves `layers` on the input range and costs them with the best
    /// sub-base per sign; `None` when the proof fails (values may wrap).
    fn cost(&mut self, net: &IntNetwork, layers: Vec<IntLayer>, input: Interval) -> Result<Option<Costed>> {
        let cand = IntNetwork { input_shape: net.input_shape.clone(), layers, base: net.base.clone() };
        if cand.validate().is_err() {
            return Ok(None);
        }
        let Ok(bounds) = interval_bounds(&cand, input) else { return Ok(None) };
        if check_ranges(&cand, &bounds).is_err() {
            return Ok(None);
        }
        let mut sub_bases = Vec::with_capacity(cand.layers.len());
        let mut ciphertexts = 0u64;
        for (i, layer) in cand.layers.iter().enumerate() {
            let h = hull(&bounds[i]);
            let need = match layer {
                IntLayer::Relu | IntLayer::Sign => Some(h),
                IntLayer::MaxPool { .. } => Some(Interval::new(h.lo - h.hi, h.hi - h.lo)),
                _ => None,
            };
            let mut sub = need.and_then(|n| self.sub_base(n));
            let elements = bounds[i + 1].len() as u64;
            // A sub-base whose gadget cannot be built falls back to the
            // whole base; a layer with no gadget at all rules the
            // candidate out.
            let c = match self.per_element(layer, sub.as_deref()) {
                Ok(c) => c,
                Err(_) if sub.is_some() => {
                    sub = None;
                    match self.per_element(layer, None) {
                        Ok(c) => c,
                        Err(_) => return Ok(None),
                    }
                }
                Err(_) => return Ok(None),
            };
            ciphertexts = ciphertexts.saturating_add(c.saturating_mul(elements));
            sub_bases.push(sub);
        }
        Ok(Some(Costed { layers: cand.layers, sub_bases, ciphertexts }))
    }
}

/// Whether running `gadget` needs the plan's whole-base sign gadget.
fn sub_needs_shared(gadget: &Gadget) -> bool {
    matches!(gadget, Gadget::Relu { sub: None } | Gadget::Sign { sub: None } | Gadget::MaxPool { sub: None, .. })
}

fn hull(xs: &[Interval]) -> Interval {
    let lo = xs.iter().map(|i| i.lo).min().unwrap_or(0);
    let hi = xs.iter().map(|i| i.hi).max().unwrap_or(0);
    Interval::new(lo, hi)
}

/// Whether activation `a` (the output of layer `a - 1`) is read by a
/// residual add, so the layers around it must not move.
fn referenced(layers: &[IntLayer], a: usize) -> bool {
    layers.iter().any(|l| matches!(l, IntLayer::ResidualAdd { from } if *from == a))
}

/// The candidate rewrites of `layers`: each swaps layers `j` and `j + 1`
/// (see the module documentation for why each keeps the integers).
fn swaps(layers: &[IntLayer]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for j in 0..layers.len().saturating_sub(1) {
        if referenced(layers, j + 1) {
            continue;
        }
        let (a, b) = (&layers[j], &layers[j + 1]);
        let ok = match (a, b) {
            (IntLayer::Relu | IntLayer::Sign | IntLayer::Rescale { .. }, IntLayer::MaxPool { .. }) => true,
            (IntLayer::Relu, IntLayer::Rescale { divisor, .. }) => *divisor >= 1,
            _ => false,
        };
        if ok {
            out.push((j, format!("layers {j}, {}: {} after {}", j + 1, a.name(), b.name())));
        }
    }
    out
}

/// Plans `net` for inputs in `input_range` (module documentation). The
/// result computes the same integers as `net` on every such input; a
/// network whose values the proof cannot bound is returned unchanged.
pub fn plan(net: &IntNetwork, input_range: Interval) -> Result<PlannedNetwork> {
    net.validate()?;
    ensure!(input_range.lo <= input_range.hi, "empty input range [{}, {}]", input_range.lo, input_range.hi);
    ensure!(
        input_range.lo >= net.base.min_value() && input_range.hi <= net.base.max_value(),
        "input range [{}, {}] is outside the base's range",
        input_range.lo,
        input_range.hi
    );
    let mut coster = Coster { base: net.base.clone(), sign_cost: HashMap::new(), gadget_cost: HashMap::new() };
    let Some(mut best) = coster.cost(net, net.layers.clone(), input_range)? else {
        return Ok(PlannedNetwork::identity(net, input_range));
    };
    let mut rewrites = Vec::new();
    // Dead ReLUs first: free, and they only shrink later intervals' needs.
    let bounds = interval_bounds(net, input_range)?;
    let mut layers = best.layers.clone();
    for (i, layer) in net.layers.iter().enumerate() {
        if matches!(layer, IntLayer::Relu) && bounds[i].iter().all(|iv| iv.lo >= 0) {
            let shape = net.shapes()?[i + 1].clone();
            layers[i] = IntLayer::Reshape { shape };
            rewrites.push(format!("layer {i}: relu of a proven non-negative value removed"));
        }
    }
    if !rewrites.is_empty()
        && let Some(c) = coster.cost(net, layers, input_range)?
    {
        best = c;
    }
    // Greedy: apply the swap that saves most, until none saves anything.
    // Every swap moves a max pool earlier or a ReLU later, so this ends.
    for _ in 0..4 * net.layers.len() + 1 {
        let mut improved: Option<(Costed, String)> = None;
        for (j, what) in swaps(&best.layers) {
            let mut cand = best.layers.clone();
            cand.swap(j, j + 1);
            if let Some(c) = coster.cost(net, cand, input_range)? {
                let bar = improved.as_ref().map_or(best.ciphertexts, |(b, _)| b.ciphertexts);
                if c.ciphertexts < bar {
                    improved = Some((c, what));
                }
            }
        }
        match improved {
            Some((c, what)) => {
                best = c;
                rewrites.push(what);
            }
            None => break,
        }
    }
    for (i, sb) in best.sub_bases.iter().enumerate() {
        if let Some(idx) = sb {
            let primes: Vec<u16> = idx.iter().map(|&j| net.base.moduli()[j].value()).collect();
            rewrites.push(format!("layer {i}: {} decides its sign on {primes:?}", best.layers[i].name()));
        }
    }
    let network = IntNetwork::new(net.input_shape.clone(), best.layers, net.base.clone())?;
    ensure!(network.output_shape()? == net.output_shape()?, "internal: the planner changed the output shape");
    Ok(PlannedNetwork { network, input_range, sub_bases: best.sub_bases, rewrites })
}

/// One layer of a circuit as `dashgc plan` reports it.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
pub struct LayerRow {
    /// Layer index in the circuit's network.
    pub layer: usize,
    /// Layer kind.
    pub kind: &'static str,
    /// Output elements.
    pub elements: u64,
    /// The gadget per element (`"-"` for linear layers).
    pub gadget: String,
    /// The primes the layer's gadget decides on (empty for linear layers).
    pub base: Vec<u16>,
    /// Ciphertexts of the whole layer.
    pub ciphertexts: u64,
    /// Bytes of the whole layer (16 per ciphertext).
    pub bytes: u64,
}

/// The per-layer table of a plan.
pub fn layer_rows(plan: &crate::engine::Plan) -> Vec<LayerRow> {
    let net = plan.network();
    let subs = plan.sub_bases();
    let primes: Vec<u16> = net.base.moduli().iter().map(|m| m.value()).collect();
    net.layers
        .iter()
        .zip(plan.costs())
        .zip(subs)
        .enumerate()
        .map(|(i, ((layer, cost), sub))| {
            let base = match (layer.is_linear(), sub) {
                (true, _) => Vec::new(),
                (false, Some(idx)) => idx.iter().map(|&j| primes[j]).collect(),
                (false, None) => primes.clone(),
            };
            let gadget = match layer {
                IntLayer::Relu => "relu".to_string(),
                IntLayer::Sign => "sign".to_string(),
                IntLayer::MaxPool { kernel, .. } => format!("max{}", kernel[0] * kernel[1]),
                IntLayer::Rescale { divisor, .. } => format!("rescale/{divisor}"),
                _ => "-".to_string(),
            };
            LayerRow {
                layer: i,
                kind: layer.name(),
                elements: cost.elements,
                gadget,
                base,
                ciphertexts: cost.rows,
                bytes: cost.rows * 16,
            }
        })
        .collect()
}

/// The circuit both parties run for a quantised model: the planner's
/// ([`plan`] on the quantiser's declared input range) or, with `planned`
/// false, today's unplanned circuit. Client and server call this with the
/// same model and choice; the model hash in the material's header tells
/// them apart otherwise.
pub fn circuit_plan(q: &crate::quantize::Quantized, planned: bool) -> Result<crate::engine::Plan> {
    if !planned {
        return crate::engine::Plan::new(&q.network).context("planning the garbled circuit");
    }
    let p = plan(&q.network, q.input_range).context("planning the circuit")?;
    crate::engine::Plan::planned(&p).context("planning the garbled circuit")
}
