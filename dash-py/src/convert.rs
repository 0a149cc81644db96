//! numpy arrays in and out: images checked against the model's input
//! (shape, integer dtype, declared range), outputs as arrays.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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
    // Through numpy's own conversion and a byte copy rather than the
    // `numpy` crate: that crate's dependencies (ndarray, num-traits with
    // `std`) would change the features dash-host is built with, and every
    // wheel build would recompile the engine.
    let little = np.call_method1("dtype", ("<i8",))?;
    let contiguous = np.call_method1("ascontiguousarray", (arr, little))?;
    let raw = contiguous.call_method0("tobytes")?.cast_into::<PyBytes>()?;
    let flat: Vec<i64> =
        raw.as_bytes().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect();
    if flat.len() != n * input_len {
        return Err(PyValueError::new_err(format!("images: {} values read, {} expected", flat.len(), n * input_len)));
    }
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

/// `rows` (all of length `width`) as an `(N, width)` int64 array.
pub fn int_matrix<'py>(py: Python<'py>, rows: &[Vec<i64>], width: usize) -> PyResult<Bound<'py, PyAny>> {
    array(py, rows.to_vec(), "int64", [rows.len(), width])
}

/// `rows` (all of length `width`) as an `(N, width)` float64 array.
pub fn float_matrix<'py>(py: Python<'py>, rows: &[Vec<f64>], width: usize) -> PyResult<Bound<'py, PyAny>> {
    array(py, rows.to_vec(), "float64", [rows.len(), width])
}

/// A vector as a one-dimensional int64 array.
pub fn int_vector<'py>(py: Python<'py>, v: Vec<i64>) -> PyResult<Bound<'py, PyAny>> {
    let n = v.len();
    array(py, v, "int64", [n])
}

/// `numpy.array(values, dtype).reshape(shape)`: the reshape keeps the
/// shape right for an empty batch too.
fn array<'py, T, const D: usize>(
    py: Python<'py>,
    values: T,
    dtype: &str,
    shape: [usize; D],
) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py>,
{
    let np = py.import("numpy")?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("dtype", dtype)?;
    np.call_method("array", (values,), Some(&kwargs))?.call_method1("reshape", (shape.to_vec(),))
}
