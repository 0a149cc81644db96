//! The module's exception types and how engine, protocol and import errors
//! become them.

use dash_host::engine::EngineError;
use dash_host::onnx::NodeContext;
use dash_host::protocol::ProtocolError as WireError;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

pyo3::create_exception!(dashgc, Error, PyException, "Base class of every error the dashgc module raises.");
pyo3::create_exception!(
    dashgc,
    AuthenticityError,
    Error,
    "The evaluator's answer was forged or corrupted: an output label is not a valid label of its wire. Nothing was decoded."
);
pyo3::create_exception!(
    dashgc,
    ProtocolError,
    Error,
    "Client and server failed to agree or to communicate (connection, timeout, model mismatch, a refused or malformed message)."
);
pyo3::create_exception!(
    dashgc,
    ModelError,
    Error,
    "A model file cannot be read, imported, quantised or planned. `.node` and `.op` name the ONNX node and operator that failed (None when the failure is not a node's)."
);

/// A `ModelError` for `e`, with the failing ONNX node and operator (if the
/// import failed at a node) as the attributes `node` and `op`.
pub fn model_error(py: Python<'_>, e: &anyhow::Error) -> PyErr {
    let node = e.downcast_ref::<NodeContext>();
    let err = ModelError::new_err(format!("{e:#}"));
    let value = err.value(py);
    // Setting attributes on a fresh exception object cannot fail in
    // practice; if it did, the message still names the node.
    let _ = value.setattr("node", node.map(|n| n.node.clone()));
    let _ = value.setattr("op", node.map(|n| n.op.clone()));
    err
}

/// An engine failure as a Python exception: a failed output check is an
/// `AuthenticityError`, an input the network cannot take a `ValueError`,
/// anything else a `dashgc.Error`.
pub fn engine_error(e: &anyhow::Error) -> PyErr {
    match e.chain().find_map(|c| c.downcast_ref::<EngineError>()) {
        Some(EngineError::Authenticity) => AuthenticityError::new_err(format!("{e:#}")),
        Some(EngineError::Input(_)) => PyValueError::new_err(format!("{e:#}")),
        _ => Error::new_err(format!("{e:#}")),
    }
}

/// A protocol failure as a Python exception: an answer that failed
/// verification is an `AuthenticityError`, anything else a `ProtocolError`.
pub fn protocol_error(e: &WireError) -> PyErr {
    protocol_error_at(e, None)
}

/// [`protocol_error`], the message prefixed by what was being done.
pub fn protocol_error_at(e: &WireError, doing: Option<&str>) -> PyErr {
    let text = match doing {
        Some(d) => format!("{d}: {e}"),
        None => e.to_string(),
    };
    match e {
        WireError::Verification(_) => {
            AuthenticityError::new_err(format!("the server's answer was forged or corrupted: {text}"))
        }
        _ => ProtocolError::new_err(text),
    }
}

/// Runs `f`, turning a panic into a `dashgc.Error` so that none crosses
/// into Python (where pyo3 would raise `PanicException`, which callers
/// cannot catch as an ordinary error).
pub fn no_panic<T>(what: &str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(Error::new_err(format!("internal error while {what} (a bug; please report it): {detail}")))
        }
    }
}
