//! Logging for firmware, behind the `defmt` feature.
//!
//! With the feature the macros below are `defmt`'s; without it they expand
//! to nothing (the arguments are only borrowed, so no unused-variable
//! warnings and no code). Only public values are ever logged: moduli, gadget
//! parameters, gate and ciphertext counts, errors. Labels, offsets, zero
//! labels and keys have no `defmt::Format` impl, so they cannot be logged by
//! mistake.

#[cfg(feature = "defmt")]
macro_rules! log_info {
    ($($t:tt)*) => { ::defmt::info!($($t)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! log_info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

#[cfg(feature = "defmt")]
macro_rules! log_debug {
    ($($t:tt)*) => { ::defmt::debug!($($t)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! log_debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

#[cfg(feature = "defmt")]
macro_rules! log_warn {
    ($($t:tt)*) => { ::defmt::warn!($($t)*) };
}

#[cfg(not(feature = "defmt"))]
macro_rules! log_warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

/// A modulus is public: its prime is all that is shown.
#[cfg(feature = "defmt")]
impl defmt::Format for crate::modulus::Modulus {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Z_{=u16}", self.value())
    }
}
