//! # dash-gpu
//!
//! CUDA offload for Dash label tensors: linear layers mod p on label digits
//! (dense and 2-D convolution as a tiled integer GEMM, one stream per CRT
//! residue), batched projection-gate evaluation with fixed-key AES on the
//! device (bit-identical to `dash-core`'s hash, tweaks and row format), and
//! batched projection garbling.
//!
//! | module | what |
//! |---|---|
//! | [`device`] | finding a usable GPU without ever panicking, and saying why there is none |
//! | [`offload`] | the [`Offload`] interface the engine calls, its jobs and their checks |
//! | [`kernels`] | the CUDA C sources (`kernels/`), NVRTC programs and the PTX cache |
//! | `cuda` | the CUDA backend: device-resident label tensors, counted transfers (feature `cuda`) |
//! | `emu` | the same kernels compiled for the host, for parity tests without a GPU (feature `host-emu`) |
//!
//! Nothing here needs CUDA to build: `cudarc` loads the driver and NVRTC at
//! run time. `docs/GPU.md` describes the design, the memory bounds, and what
//! is verified with and without a GPU.

#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod device;
pub mod error;
pub mod kernels;
pub mod offload;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "host-emu")]
pub mod emu;

pub use dash_core::{Label, Modulus};
pub use device::{Availability, DeviceInfo, probe};
pub use error::GpuError;
pub use offload::{ConvGeometry, GarbleBatch, LinearResidue, Offload, ProjectionBatch};
