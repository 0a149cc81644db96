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

/// Most rows one chunk of a layer holds in memory (16 MiB).
pub const CHUNK_ROWS: usize = 1 << 20;

/// Most rows one chunk of a layer holds when the evaluator offloads to a
/// device (256 MiB on the host; the device takes it in pieces of
/// `Gpu::max_batch_rows`).
pub const OFFLOAD_CHUNK_ROWS: usize = 1 << 24;
