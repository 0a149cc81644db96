//! # dash-host
//!
//! The host side of Dash: everything that needs `std`.
//!
//! | module | what |
//! |---|---|
//! | [`material`] | in-memory sinks for garbled material |
//! | [`network`] | the integer network (layers, shapes, plaintext twin, model hash) |
//! | [`tensor`] | label tensors (one modulus, contiguous digits) and CRT tensors |
//! | [`engine`] | garbling and evaluation of an `IntNetwork`, streamed, on all cores |
//! | [`offload`] | `--device cpu\|cuda\|auto` and the engine's GPU offload (lane-batched gadgets) |
//! | [`export`] | the integer network as the compact image a device garbler embeds (`dash-mcu`) |
//! | [`device_eval`] | `dashgc device`: export, test inputs, and the evaluator serving a garbling microcontroller |
//! | [`format`](mod@format) | the versioned binary format of streamed garbled material |
//! | [`mnist`] | the IDX reader (raw or gzipped) and the bundled MNIST test set |
//! | [`model`] | float models (JSON format, conv/pool/BN/residual graph), float reference inference |
//! | [`onnx`] | ONNX import to a float model |
//! | [`quantize`] | quantisation and range planning: float model to a proven-in-range `IntNetwork` |
//! | [`protocol`] | the client–server protocol: wire format, `dashgc serve` and `dashgc query` |
//! | [`inference`] | private MNIST inference end to end: quantise, garble, evaluate, verify, report |
//! | [`rng`] | the garbler's CSPRNG, seeded from the operating system |
//! | [`costs`] | the gadget cost table behind `dashgc costs` (from the cost-counting backend) |
//! | [`bench`](mod@bench) | the micro-benchmarks behind `dashgc bench` |
//! | [`demo`] | the small CRT garble → evaluate → verify → tamper walk-through behind `dashgc demo --toy` |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use dash_core;

pub mod bench;
pub mod costs;
pub mod demo;
pub mod device_eval;
pub mod engine;
pub mod export;
pub mod format;
pub mod inference;
pub mod material;
pub mod mnist;
pub mod model;
pub mod network;
pub mod offload;
pub mod onnx;
pub mod planner;
pub mod protocol;
pub mod quantize;
pub mod rng;
pub mod tensor;
