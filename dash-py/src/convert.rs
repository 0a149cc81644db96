//! numpy arrays in and out: images checked against the model's input
//! (shape, integer dtype, declared range), outputs as arrays.

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A batch of images, checked: `n` inputs of the model's length, every
/// value inside the declared input range.
pub struct Batch {
    pub inputs: Vec<Vec<i64>>,
}

/// Reads `images` (anything `numpy.asarray` takes) as a batch for a model
/// taking `input_shape` integers in `range`. The first axis is the batch;
/// the rest must hold exactly one input each (any shape of that size: the
/// model's own, flattened, or e.g. `(28, 28)` for `(1, 28, 28)`), read in
/// C order. Wrong shapes, non-integer dtypes and values outside the range
/// raise `ValueError`, with what was expected.
pub fn batch(py: Python<'_>, images: &Bound<'_, PyAny>, input_shape: &[usize], range: (i64, i64)) -> PyResult<Batch> {
    let np = py.import("numpy")?;
    let arr = np.call_method1("asarray", (images,))?;
    let dtype = arr.getattr("dtype")?;
    let kind: String = dtype.getattr("kind")?.extract()?;
    let itemsize: usize = dtype.getattr("itemsize")?.extract()?;
    let dtype_name: String = dtype.str()?.extract()?;
    let input_len: usize = input_shape.iter().product();
    if kind != "i" && kind != "u" {
        return Err(PyValueError::new_err(format!(
            "images must be an integer array (dtype {dtype_name} given): the model takes integers in [{}, {}]; \
             quantise float images first, e.g. np.round(x / input_scale).astype(np.int64)",
            range.0, range.1
        )));
    }
    let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
    let per_image: usize = shape.iter().skip(1).product();
    if shape.len() < 2 || per_image != input_len {
        let hint =
            if shape.iter().product::<usize>() == input_len { " (one image? pass a batch: images[None])" } else { "" };
        return Err(PyValueError::new_err(format!(
            "images of shape {shape:?}: expected (N, {}) or (N, {input_len}), a batch of N inputs of {input_len} values{hint}",
            input_shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
        )));
    }
    let n = shape[0];
    if n == 0 {
        return Err(PyValueError::new_err("no images (the batch is empty)"));
    }
    if kind == "u" && itemsize == 8 {
        // uint64 above i64::MAX would wrap to a negative int64 below.
        let max: u64 = arr.call_method0("max")?.extract()?;
        if max > i64::MAX as u64 {
            return Err(PyValueError::new_err(format!(
                "image value {max} is outside the model's input range [{}, {}]",
                range.0, range.1
            )));
        }
    }
    let contiguous = np.call_method1("ascontiguousarray", (arr, np.getattr("int64")?))?;
    let view: PyReadonlyArrayDyn<'_, i64> = contiguous.extract()?;
    let flat = view.as_slice().map_err(|e| PyValueError::new_err(format!("images: {e}")))?;
    let mut inputs = Vec::with_capacity(n);
    for (i, image) in flat.chunks_exact(input_len).enumerate() {
        if let Some((j, v)) = image.iter().enumerate().find(|(_, v)| !(range.0..=range.1).contains(*v)) {
            return Err(PyValueError::new_err(format!(
                "image {i}: value {v} at flat position {j} is outside the model's input range [{}, {}]",
                range.0, range.1
            )));
        }
        inputs.push(image.to_vec());
    }
    Ok(Batch { inputs })
}

/// `rows` (all of one length) as an `(N, M)` int64 array.
pub fn int_matrix<'py>(py: Python<'py>, rows: &[Vec<i64>], width: usize) -> PyResult<Bound<'py, PyAny>> {
    let flat: Vec<i64> = rows.iter().flatten().copied().collect();
    Ok(PyArray1::from_vec(py, flat).reshape([rows.len(), width])?.into_any())
}

/// `rows` (all of one length) as an `(N, M)` float64 array.
pub fn float_matrix<'py>(py: Python<'py>, rows: &[Vec<f64>], width: usize) -> PyResult<Bound<'py, PyAny>> {
    let flat: Vec<f64> = rows.iter().flatten().copied().collect();
    Ok(PyArray1::from_vec(py, flat).reshape([rows.len(), width])?.into_any())
}

/// A vector as a one-dimensional int64 array.
pub fn int_vector<'py>(py: Python<'py>, v: Vec<i64>) -> Bound<'py, PyAny> {
    PyArray1::from_vec(py, v).into_any()
}
