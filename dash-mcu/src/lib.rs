//! # dash-mcu
//!
//! The data owner on a microcontroller: a device that holds an input (a
//! sensor reading, an image), garbles a **whole network inference** on it,
//! streams the material out to an untrusted evaluator, and accepts only a
//! verified answer.
//!
//! | module | what |
//! |---|---|
//! | [`netfile`] | the compact, versioned, bounded network format the firmware embeds in flash (written by `dashgc device export`) |
//! | [`garble`] | [`garble::DevicePlan`] (gadgets and gate ranges, checked against the image) and [`garble::garble`]: the host's circuit, byte for byte, in a few tens of KiB of RAM |
//!
//! Like `dash-core` it is `no_std`, allocation-free and free of `unsafe`;
//! the firmware (`firmware/src/bin/netgarbler.rs`) supplies the transport
//! ([`garble::Link`]), the generator and the clock.
//!
//! The garbled circuit is exactly the one `dash-host`'s engine garbles for
//! the same network and the same generator output: the same key-generation
//! order, the same gate identifiers (`first_gate + e·g`), the same rows in
//! the same order, the same material stream (`dash-host/src/format.rs`).
//! `dash-host/tests/device_parity.rs` seeds both with one test generator and
//! compares the streams byte for byte.

#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod garble;
pub mod netfile;

/// Why the device could not garble, send or accept an inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum McuError {
    /// A `dash-core` error. [`dash_core::Error::AuthenticityCheckFailed`]
    /// means the evaluator's answer was rejected.
    Core(dash_core::Error),
    /// The network image is malformed, truncated or corrupted.
    Format,
    /// The network image has another format version.
    Version,
    /// The image holds a layer kind or layout the device garbler does not
    /// support (the first layer must be dense; no pooling or rescaling).
    Unsupported,
    /// The image's moduli or per-element costs differ from the gadgets this
    /// build constructs: the host and the device would garble different
    /// circuits.
    PlanMismatch,
    /// A buffer given to the garbler is too small for the network.
    Capacity,
    /// The transport failed.
    Link,
    /// An input value lies outside the CRT base's signed range, or the
    /// input has the wrong length.
    Input,
}

impl From<dash_core::Error> for McuError {
    fn from(e: dash_core::Error) -> McuError {
        McuError::Core(e)
    }
}

impl McuError {
    /// Whether this is the rejection of a forged or corrupted answer.
    pub fn is_authenticity(&self) -> bool {
        matches!(self, McuError::Core(dash_core::Error::AuthenticityCheckFailed))
    }
}

/// The index of the first largest value (ties go to the lower index), as
/// `dash-host`'s `model::argmax`: the predicted class.
pub fn argmax(values: &[i64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}
