//! Garbling and evaluation of a whole [`IntNetwork`](crate::network::IntNetwork),
//! layer by layer, streamed, on all cores.
//!
//! | module | one concept |
//! |---|---|
//! | [`plan`] | [`Plan`]: shapes, gadgets, costs and the gate/row [`Layout`] of every layer, shared by both parties |
//! | `linear` | the linear kernels (dense, convolution, sum pooling, residual add) on digit buffers, constant-time |
//! | [`lanes`] | [`LaneWire`] and the [`Lanes`] backend: one gadget run for a run of elements |
//! | `driver` | the one layer walk both parties run, and the CPU gate handlers of each party |
//! | [`garbler`] | [`garble`] → [`GarblerSession`] → [`AwaitingAnswer`]: single-use keys |
//! | [`evaluator`] | [`EvaluatorSession`]: header checks, then the layers on the CPU or a device |
//! | [`error`] | [`EngineError`], the errors callers match |
//!
//! # How a layer runs
//!
//! * **Linear layers** (dense, convolution, sum pooling, residual add,
//!   bias) cost nothing: per residue, integer arithmetic mod `p` on label
//!   digits (`linear`).
//! * **Non-linear layers** (ReLU, sign, max pooling, rescale) run a
//!   `dash-core` gadget per output element. A gadget's cost does not depend
//!   on data, so element `e` owns the gate identifiers `first_gate + e·g ..`
//!   and the rows `e·c ..` of the layer's material ([`Layout`]). The driver
//!   cuts a chunk of elements into runs of [`LANES`] and runs the gadget
//!   once per run on the lane backend, where every projection is one
//!   batched call of the core across the run ([`dash_core::lanes`]). Runs
//!   are independent, so rayon spreads them over all cores and the result
//!   does not depend on the schedule.
//!
//! # Streaming
//!
//! The garbler writes a [`format`](mod@crate::format) header, then each
//! layer's rows as it produces them, in chunks of at most [`CHUNK_ROWS`]
//! rows; the evaluator reads them back the same way. Peak memory is the
//! activations of about one layer plus one chunk, never the circuit.
//!
//! # Keys and decoding
//!
//! One [`EngineKeys`] per inference covers every modulus the plan uses (CRT
//! primes and every gadget modulus). The garbler keeps only the input zero
//! labels (to encode the input once) and the output zero labels (to decode
//! once); [`AwaitingAnswer::decode_output`] verifies every returned label
//! and fails closed with [`EngineError::Authenticity`].

mod driver;
pub mod error;
pub mod evaluator;
pub mod garbler;
pub mod lanes;
pub(crate) mod layer_bench;
mod linear;
pub mod plan;

pub use driver::LANES;
pub use error::{EngineError, EngineResult};
pub use evaluator::{EvaluatorSession, evaluate};
pub use garbler::{AwaitingAnswer, EncodeError, GarblerSession, garble};
pub use lanes::{LaneWire, Lanes};
pub use plan::{LayerCost, Layout, Plan};

use dash_core::{GarblerKeys, OneLabels};

/// Capacity of the key set: distinct moduli one inference may use.
pub const MAX_MODULI: usize = 64;

/// The garbler's keys for one inference.
pub type EngineKeys = GarblerKeys<MAX_MODULI>;

/// The evaluator's one-labels for one inference.
pub type EngineOnes = OneLabels<MAX_MODULI>;

/// Linear layer `i` of `plan` on either party's labels, as the engine runs
/// it: `x` is the layer's input, `earlier[j]` the activation entering layer
/// `j` where a residual add reads it, and `ones[r]` the digits of this
/// party's label of the constant-one wire for residue `r`.
///
/// Not a stable API: the entry of the constant-time check
/// (`examples/ct_kernels.rs`, run under valgrind by CI) to the kernels, which
/// must see exactly the engine's code. Shapes and lengths are checked; the
/// digits are not (they are secret on the garbler's side, and checking them
/// would branch on them), so they must be reduced.
#[doc(hidden)]
pub fn ct_hook_linear_layer(
    plan: &Plan,
    i: usize,
    x: crate::tensor::CrtTensor,
    earlier: &[Option<crate::tensor::CrtTensor>],
    ones: &[Vec<u16>],
) -> EngineResult<crate::tensor::CrtTensor> {
    let data = &plan.data;
    if !matches!(data.ops.get(i), Some(plan::Op::Linear)) {
        return Err(EngineError::Model(format!("layer {i} is not a linear layer of this plan")));
    }
    let base = &data.net.base;
    if x.base() != base || x.shape() != data.shapes[i].as_slice() {
        return Err(EngineError::Input(format!("layer {i}: the input's base or shape is not the layer's")));
    }
    let ones_fit = ones.len() == base.len() && ones.iter().zip(base.moduli()).all(|(o, m)| o.len() == m.digits());
    if !ones_fit {
        return Err(EngineError::Input("one-labels: one label per residue of the base".into()));
    }
    if let crate::network::IntLayer::ResidualAdd { from } = data.net.layers[i] {
        let fits =
            earlier.get(from).and_then(|a| a.as_ref()).is_some_and(|a| a.base() == base && a.shape() == x.shape());
        if !fits {
            return Err(EngineError::Input(format!("layer {i}: the residual source {from} is missing or misshapen")));
        }
    }
    linear::linear_layer(data, i, x, earlier, ones, None)
}

/// Most rows one chunk of a layer holds in memory (16 MiB).
pub const CHUNK_ROWS: usize = 1 << 20;

/// Most rows one chunk of a layer holds when the evaluator offloads to a
/// device (256 MiB on the host; the device takes it in pieces of
/// `Gpu::max_batch_rows`).
pub const OFFLOAD_CHUNK_ROWS: usize = 1 << 24;
