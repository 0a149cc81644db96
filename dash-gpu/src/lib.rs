//! # dash-gpu
//!
//! CUDA offload for `dash-core` label tensors. This crate is the seam where
//! device code will live (see the GPU issue); it currently exposes nothing
//! but re-exports the core types it will operate on.

#![deny(missing_docs)]

pub use dash_core::{Label, Modulus};
