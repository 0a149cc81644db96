//! # dash-py
//!
//! The Python module `dashgc` over the Dash engine (`dash-host`): load an
//! ONNX or JSON model, run private inference on numpy images locally
//! ([`infer`]) or against a server ([`Server`], [`Client`]) over the
//! project's protocol, and get numpy arrays and plain objects back.
//!
//! | Python | Rust |
//! |---|---|
//! | `dashgc.Model.load` | [`dash_host::onnx::import_file`] / [`dash_host::model::FloatModel::load`], [`dash_host::quantize::quantize`], [`dash_host::engine::Plan::new`] |
//! | `dashgc.infer` | [`dash_host::inference::infer_one`] per image |
//! | `dashgc.Server` | [`dash_host::protocol::server::Service`] behind an accept loop that can stop |
//! | `dashgc.Client` | [`dash_host::protocol::client::Client`], [`dash_host::protocol::client::run_batch`] |
//!
//! Errors: `dashgc.Error` and its subclasses `AuthenticityError`,
//! `ProtocolError` and `ModelError` (with `.node` and `.op` for an ONNX
//! node that failed); bad images raise `ValueError`. Every call into the
//! engine runs inside `catch_unwind`, so a Rust panic surfaces as
//! `dashgc.Error`, never as pyo3's `PanicException`. Long runs release the
//! GIL and report progress through an optional callback.
//!
//! Built by maturin (`pip install ./dash-py`); `dashgc.pyi` beside this
//! crate's `pyproject.toml` is the typed interface.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod convert;
mod errors;
mod model;
mod net;
mod progress;

use pyo3::prelude::*;

pub use model::{InferenceResult, Model, infer};
pub use net::{Client, Server};

/// The `dashgc` Python module.
#[pymodule]
fn dashgc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("Error", py.get_type::<errors::Error>())?;
    m.add("AuthenticityError", py.get_type::<errors::AuthenticityError>())?;
    m.add("ProtocolError", py.get_type::<errors::ProtocolError>())?;
    m.add("ModelError", py.get_type::<errors::ModelError>())?;
    m.add_class::<Model>()?;
    m.add_class::<InferenceResult>()?;
    m.add_class::<Server>()?;
    m.add_class::<Client>()?;
    m.add_function(wrap_pyfunction!(infer, m)?)?;
    Ok(())
}
