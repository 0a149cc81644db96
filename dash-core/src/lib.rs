//! # dash-core
//!
//! Arithmetic garbling for private neural-network inference (Dash), with no
//! standard library and no allocation.
//!
//! A trusted **garbler** (the data owner) holds the input; an untrusted
//! **evaluator** runs the network on labels and returns output labels that
//! the garbler decodes *and verifies*. This crate holds everything both
//! sides need, sized for microcontrollers and enclaves:
//!
//! | module | what |
//! |---|---|
//! | [`modulus`] | prime moduli only, constant-time digit arithmetic |
//! | [`label`] | labels: `floor(128/log2 p)` digits, packing into 128 bits |
//! | [`delta`] | the secret offsets `Δ_p` and zero labels, zeroised on drop |
//! | [`hash`] | fixed-key-AES tweakable CCR hash, batched |
//! | [`projection`] | projection gates with row reduction (`m - 1` rows) |
//! | [`lanes`] | one gate over many gadget instances at once (a layer's elements), on digit buffers |
//! | [`backend`] | the [`Backend`] trait: plaintext, cost counter |
//! | [`garbler`], [`evaluator`] | the garbling and evaluating backends |
//! | [`crt`] | CRT bases and bundles, verified decoding |
//! | [`compact`] | an evaluator with 24-byte packed wires, for small RAM |
//! | [`material`] | sinks and sources of garbled rows |
//!
//! ## Example: a garbled CRT computation, verified
//!
//! ```
//! use dash_core::{crt, Backend, Block, Bundle, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, SliceSink, SliceSource};
//! # use rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! // One definition of the circuit 3·x - y + 10, for every backend.
//! fn circuit<B: Backend>(b: &mut B, x: &Bundle<B::Wire>, y: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
//!     let t = crt::cmul(b, x, 3)?;
//!     let t = crt::sub(b, &t, y)?;
//!     crt::add_constant(b, &t, 10)
//! }
//!
//! let base = CrtBase::first(5)?;                       // Q = 2·3·5·7·11 = 2310
//! let keys: GarblerKeys = GarblerKeys::generate(&mut rng, base.moduli())?;
//! let hash = FixedKeyHash::new();
//!
//! // Garbler: zero labels for two inputs, then the circuit on zero labels.
//! let (x0, y0) = (keys.input_bundle(&base, &mut rng)?, keys.input_bundle(&base, &mut rng)?);
//! let mut garbler = Garbler::new(&hash, &keys, SliceSink::new(&mut []));
//! let out0 = circuit(&mut garbler, &x0, &y0)?;
//!
//! // Online: the evaluator gets one label per input wire, and the one-labels.
//! let (x, y) = (keys.encode_bundle(&base, &x0, 100)?, keys.encode_bundle(&base, &y0, -7)?);
//! let ones = keys.one_labels();
//! let mut evaluator = Evaluator::new(&hash, &ones, SliceSource::new(&[]));
//! let out = circuit(&mut evaluator, &x, &y)?;
//! let returned: Vec<Block> = out.wires().iter().map(|l| l.to_block()).collect();
//!
//! // The garbler decodes and verifies.
//! assert_eq!(keys.decode_bundle(&base, &out0, &returned)?, 317);
//! # Ok::<(), dash_core::Error>(())
//! ```
//!
//! See `docs/SECURITY.md` in the repository for the threat model and the
//! argument for each rule the code keeps.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[macro_use]
mod log;

pub mod backend;
pub mod block;
pub mod compact;
pub mod compact_garbler;
pub mod crt;
pub mod delta;
pub mod error;
pub mod evaluator;
pub mod gadgets;
pub mod garbler;
pub mod hash;
pub mod label;
pub mod lanes;
pub mod material;
pub mod modulus;
pub mod projection;
mod rotate;

pub use backend::{Backend, CostCounter, PlainWire, Plaintext};
pub use block::Block;
pub use crt::{Bundle, CrtBase};
pub use delta::{Delta, ZeroLabel};
pub use error::Error;
pub use evaluator::Evaluator;
pub use garbler::{Garbler, GarblerKeys, GateCounter, OneLabels};
pub use hash::{Domain, FixedKeyHash, Tweak};
pub use label::Label;
pub use material::{CountingSink, MaterialSink, MaterialSource, SliceSink, SliceSource};
pub use modulus::{MAX_DIGITS, MAX_MODULUS, MAX_PROJECTION_INPUT, Modulus};
