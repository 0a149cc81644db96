//! [`EngineError`]: what can go wrong while planning, garbling, evaluating
//! or decoding, as a type callers can match.

use dash_core::Error as CoreError;

/// An error of the engine. Variants name what failed so that a caller can
/// react (refuse a forged answer, report a malformed stream, retry I/O)
/// without parsing messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The output check failed: a returned label is not a valid label of
    /// its wire, so the evaluator's answer was forged or corrupted. Nothing
    /// was decoded.
    #[error("output verification failed: the evaluator's answer was forged or corrupted")]
    Authenticity,
    /// The garbled material is malformed: wrong header, sizes, tags or
    /// trailer, or a row that does not decrypt to a label.
    #[error("malformed garbled material{}: {detail}", at(*.layer))]
    Material {
        /// The layer being read, if known.
        layer: Option<usize>,
        /// What was wrong.
        detail: String,
    },
    /// The model cannot be planned (a gadget for its base, its size).
    #[error("cannot plan the model: {0}")]
    Model(String),
    /// The input (values or labels) does not fit the model.
    #[error("invalid input: {0}")]
    Input(String),
    /// Reading or writing the material stream failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `dash-core` error while garbling or evaluating a layer.
    #[error("dash-core{}: {source}", at(*.layer))]
    Core {
        /// The layer, if known.
        layer: Option<usize>,
        /// The core error.
        #[source]
        source: CoreError,
    },
    /// The offload device failed (not the material).
    #[error("offload device: {0}")]
    Device(String),
}

fn at(layer: Option<usize>) -> String {
    layer.map(|i| format!(" (layer {i})")).unwrap_or_default()
}

/// `Result` with an [`EngineError`].
pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    /// A [`EngineError::Material`] error with no layer.
    pub fn material(detail: impl Into<String>) -> EngineError {
        EngineError::Material { layer: None, detail: detail.into() }
    }

    /// Attaches layer `i` to material and core errors that have none.
    pub fn at_layer(self, i: usize) -> EngineError {
        match self {
            EngineError::Material { layer: None, detail } => EngineError::Material { layer: Some(i), detail },
            EngineError::Core { layer: None, source } => EngineError::Core { layer: Some(i), source },
            e => e,
        }
    }

    /// Whether this is the authenticity failure (a forged or corrupted
    /// answer).
    pub fn is_authenticity(&self) -> bool {
        matches!(self, EngineError::Authenticity)
    }
}

impl From<CoreError> for EngineError {
    /// Core errors that mean tampered material or a failed output check
    /// get their own variants; the rest stay core errors.
    fn from(e: CoreError) -> EngineError {
        match e {
            CoreError::AuthenticityCheckFailed => EngineError::Authenticity,
            CoreError::InvalidLabelEncoding => {
                EngineError::material("a garbled row does not decrypt to a label (tampered or corrupted material)")
            }
            source => EngineError::Core { layer: None, source },
        }
    }
}
