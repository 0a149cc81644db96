//! The optional progress callback of long runs.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

/// Where progress goes: a callable called as `progress(done, total)` after
/// each image, or an object with an `update(n)` method (a `tqdm` bar),
/// called as `update(1)` after each image.
pub struct Progress {
    target: Option<(Py<PyAny>, bool)>,
    total: usize,
}

impl Progress {
    /// Checks `progress` (None, a callable, or an object with `update`).
    pub fn new(progress: Option<&Bound<'_, PyAny>>, total: usize) -> PyResult<Progress> {
        let target = match progress {
            None => None,
            Some(p) if p.is_none() => None,
            Some(p) if p.is_callable() => Some((p.clone().unbind(), false)),
            Some(p) if p.hasattr("update")? => Some((p.clone().unbind(), true)),
            Some(p) => {
                return Err(PyTypeError::new_err(format!(
                    "progress must be a callable progress(done, total) or an object with update(n) such as a tqdm bar, not {}",
                    p.get_type().name()?
                )));
            }
        };
        Ok(Progress { target, total })
    }

    /// Reports `done` images of the total; an exception the callback raises
    /// is returned.
    pub fn report(&self, py: Python<'_>, done: usize) -> PyResult<()> {
        match &self.target {
            None => Ok(()),
            Some((bar, true)) => bar.call_method1(py, "update", (1,)).map(|_| ()),
            Some((f, false)) => f.call1(py, (done, self.total)).map(|_| ()),
        }
    }
}
