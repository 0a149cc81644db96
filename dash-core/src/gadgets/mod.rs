//! Gadgets: the non-linear half of Dash, each written once on [`crate::Backend`].
//!
//! | module | gadgets |
//! |---|---|
//! | [`sign`] | exact and approximate sign bit, sign activation (±1), ReLU |
//! | [`compare`] | comparison and max of two CRT values, max over a window |
//! | [`rescale`] | exact halving, division by products of base primes |
//! | [`basechange`] | extending and shrinking the CRT base of a value |

pub mod basechange;
pub mod compare;
pub mod rescale;
pub mod sign;
