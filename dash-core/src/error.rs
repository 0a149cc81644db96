//! The one error type of `dash-core`.
//!
//! Every fallible operation returns [`Error`]; nothing in the crate panics on
//! data. The variants name what was wrong, never a secret value.

use core::fmt;

/// What went wrong. Carries only public information (moduli, sizes), never
/// label digits or offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A modulus was requested that is not a prime.
    NotPrime(u16),
    /// A prime outside the supported range (2..=[`crate::MAX_MODULUS`]) or whose
    /// labels would carry fewer than 120 bits of entropy.
    UnsupportedModulus(u16),
    /// Two wires (or a wire and an offset) of different moduli were combined.
    ModulusMismatch {
        /// Modulus of the left operand.
        left: u16,
        /// Modulus of the right operand.
        right: u16,
    },
    /// A projection's input modulus is larger than
    /// [`crate::MAX_PROJECTION_INPUT`].
    ProjectionInputTooLarge(u16),
    /// A digit slice had the wrong length or a digit was not reduced.
    InvalidDigits,
    /// A 128-bit block is not the encoding of any label of the modulus.
    InvalidLabelEncoding,
    /// A returned output label is not a valid label of its wire: the
    /// evaluator (or the channel) tampered with it. Fail closed.
    AuthenticityCheckFailed,
    /// The garbler has no offset for this modulus (not declared up front).
    MissingDelta(u16),
    /// A `GarblerKeys` or `OneLabels` set is full.
    TooManyModuli,
    /// A sink had no room for more garbled material.
    SinkFull,
    /// A source ran out of garbled material before the circuit did.
    SourceExhausted,
    /// Two slices that must have equal length did not.
    LengthMismatch,
    /// A CRT base was empty, too long, or had repeated primes.
    InvalidCrtBase,
    /// An integer lies outside the range a CRT base can hold.
    ValueOutOfRange,
    /// A wire of modulus 2 was expected (a bit) but another was given.
    NotABit(u16),
    /// A gadget parameter was out of its documented range.
    InvalidParameter,
    /// A gadget needs more gate identifiers than remain in the 64-bit space.
    GateIdsExhausted,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotPrime(p) => write!(f, "modulus {p} is not prime; every wire must have a prime modulus"),
            Error::UnsupportedModulus(p) => write!(
                f,
                "modulus {p} is not supported (primes 2..={} whose labels hold at least 120 bits)",
                crate::MAX_MODULUS
            ),
            Error::ModulusMismatch { left, right } => {
                write!(f, "moduli differ: {left} and {right}")
            }
            Error::ProjectionInputTooLarge(p) => {
                write!(f, "projection input modulus {p} exceeds the limit {}", crate::MAX_PROJECTION_INPUT)
            }
            Error::InvalidDigits => {
                write!(f, "digit slice has the wrong length or an unreduced digit")
            }
            Error::InvalidLabelEncoding => {
                write!(f, "block does not encode a label of this modulus")
            }
            Error::AuthenticityCheckFailed => {
                write!(f, "output label failed the authenticity check: the evaluator's result was forged or corrupted")
            }
            Error::MissingDelta(p) => write!(f, "no offset was generated for modulus {p}"),
            Error::TooManyModuli => write!(f, "too many distinct moduli for this key set"),
            Error::SinkFull => write!(f, "garbled-material sink is full"),
            Error::SourceExhausted => write!(f, "garbled-material source ended early"),
            Error::LengthMismatch => write!(f, "slice lengths do not match"),
            Error::InvalidCrtBase => {
                write!(f, "invalid CRT base (empty, too long, or repeated primes)")
            }
            Error::ValueOutOfRange => write!(f, "value outside the range of the CRT base"),
            Error::NotABit(p) => write!(f, "expected a wire of modulus 2, got modulus {p}"),
            Error::InvalidParameter => write!(f, "gadget parameter out of range"),
            Error::GateIdsExhausted => write!(f, "gate identifiers exhausted"),
        }
    }
}

impl core::error::Error for Error {}
