//! # dash-host
//!
//! The host side of Dash: everything that needs `std`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use dash_core as core;
