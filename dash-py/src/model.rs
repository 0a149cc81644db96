//! `dashgc.Model`, `dashgc.infer` and `dashgc.InferenceResult`.

use crate::convert;
use crate::errors::{Error, engine_error, model_error, no_panic};
use crate::progress::Progress;
use anyhow::Context;
use dash_host::engine::Plan;
use dash_host::inference::{LABEL_BYTES, SPOOL_TO_DISK_BYTES, infer_one};
use dash_host::model::{FloatModel, argmax};
use dash_host::quantize::{QuantizeOptions, Quantized, quantize};
use dash_host::{onnx, protocol};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A loaded model: the float model, its quantised integer network and the
/// garbling plan. Shared (read-only) by every inference, server and client
/// made from it.
pub struct Loaded {
    pub name: String,
    pub float: FloatModel,
    pub q: Quantized,
    pub plan: Plan,
}

impl Loaded {
    pub fn input_range(&self) -> (i64, i64) {
        // The range was declared as i64 (checked by the quantiser).
        (self.q.input_range.lo as i64, self.q.input_range.hi as i64)
    }

    pub fn output_len(&self) -> usize {
        self.plan.output_shape().iter().product()
    }

    /// Checks `images` against this model's input.
    pub fn batch(&self, py: Python<'_>, images: &Bound<'_, PyAny>) -> PyResult<convert::Batch> {
        convert::batch(py, images, self.plan.input_shape(), self.input_range())
    }

    /// The result object for verified integer `outputs`.
    pub fn result(
        &self,
        py: Python<'_>,
        outputs: &[Vec<i64>],
        timings: Bound<'_, PyDict>,
        bytes: Bound<'_, PyDict>,
    ) -> PyResult<InferenceResult> {
        let width = self.output_len();
        let predictions: Vec<i64> = outputs.iter().map(|o| argmax(o) as i64).collect();
        let scale = self.q.output_scale;
        let logits: Vec<Vec<f64>> = outputs.iter().map(|o| o.iter().map(|&v| v as f64 / scale).collect()).collect();
        Ok(InferenceResult {
            predictions: convert::int_vector(py, predictions)?.unbind(),
            outputs: convert::int_matrix(py, outputs, width)?.unbind(),
            logits: convert::float_matrix(py, &logits, width)?.unbind(),
            timings: timings.unbind(),
            bytes: bytes.unbind(),
            images: outputs.len(),
        })
    }
}

fn is_json(path: &Path) -> anyhow::Result<bool> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("onnx") => Ok(false),
        Some("json") => Ok(true),
        // Neither extension: a JSON model starts with '{', an ONNX protobuf never does.
        _ => {
            use std::io::Read;
            let mut first = [0u8; 64];
            let n = std::fs::File::open(path)
                .and_then(|mut f| f.read(&mut first))
                .with_context(|| format!("cannot read model {}", path.display()))?;
            Ok(first[..n].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'))
        }
    }
}

fn load(
    path: &Path,
    input_scale: Option<f64>,
    input_range: Option<(i64, i64)>,
    tanh_as_sign: bool,
    activation_bits: u32,
    planned: bool,
) -> anyhow::Result<Loaded> {
    let float = if is_json(path)? {
        let mut m = FloatModel::load(path)?;
        if let Some(s) = input_scale {
            m.input.scale = s;
        }
        if let Some((lo, hi)) = input_range {
            m.input.min = lo;
            m.input.max = hi;
        }
        m
    } else {
        let defaults = onnx::ImportOptions::default();
        let (input_min, input_max) = input_range.unwrap_or((defaults.input_min, defaults.input_max));
        let options = onnx::ImportOptions {
            input_min,
            input_max,
            input_scale: input_scale.unwrap_or(defaults.input_scale),
            tanh_as_sign,
        };
        onnx::import_file(path, &options)?
    };
    let q = quantize(&float, &QuantizeOptions { activation_bits, ..Default::default() }).context("quantisation")?;
    // The circuit `dashgc run` garbles (the planner's unless asked not to).
    let plan = dash_host::planner::circuit_plan(&q, planned)?;
    let name = if float.name.is_empty() {
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    } else {
        float.name.clone()
    };
    Ok(Loaded { name, float, q, plan })
}

/// A model ready for private inference: read from an ONNX or JSON file,
/// quantised (every intermediate value proved inside the CRT range) and
/// planned. Make one with `Model.load`.
#[pyclass(frozen, module = "dashgc")]
pub struct Model {
    pub(crate) inner: Arc<Loaded>,
}

#[pymethods]
impl Model {
    /// Reads an ONNX (`.onnx`) or JSON model file, quantises and plans it.
    ///
    /// `input_scale` is the float value of one integer input unit (the
    /// network sees `integer * input_scale`); `input_range` the smallest
    /// and largest integer input. For ONNX they default to 1/255 and
    /// (0, 255) (MNIST pixels, trained on x/255); a JSON model declares its
    /// own, which these override. `tanh_as_sign` reads Tanh, Clip(-1, 1)
    /// and HardTanh as the sign activation (ONNX). `activation_bits` bounds
    /// hidden activations after rescaling by 2**bits. `plan` (the default)
    /// garbles the circuit planner's cheaper circuit, which computes the
    /// same integers, as `dashgc run` does; `plan=False` today's unplanned
    /// circuit (`dashgc run --no-plan`).
    ///
    /// Raises ModelError (with `.node` and `.op` when an ONNX node failed)
    /// for a file that cannot be read, imported, quantised or planned,
    /// FileNotFoundError for a missing file, ValueError for bad arguments.
    #[staticmethod]
    #[pyo3(signature = (path, input_scale=None, input_range=None, *, tanh_as_sign=false, activation_bits=9, plan=true))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        input_scale: Option<f64>,
        input_range: Option<(i64, i64)>,
        tanh_as_sign: bool,
        activation_bits: u32,
        plan: bool,
    ) -> PyResult<Model> {
        if let Some(s) = input_scale
            && !(s.is_finite() && s > 0.0)
        {
            return Err(PyValueError::new_err(format!("input_scale must be a positive finite number, not {s}")));
        }
        if let Some((lo, hi)) = input_range
            && lo > hi
        {
            return Err(PyValueError::new_err(format!(
                "input_range ({lo}, {hi}): the smallest input exceeds the largest"
            )));
        }
        if !path.exists() {
            return Err(PyFileNotFoundError::new_err(format!("no model file {}", path.display())));
        }
        let loaded = py.detach(|| {
            no_panic("loading the model", || {
                Ok(load(&path, input_scale, input_range, tanh_as_sign, activation_bits, plan))
            })
        })?;
        match loaded {
            Ok(l) => Ok(Model { inner: Arc::new(l) }),
            Err(e) => Err(model_error(py, &e)),
        }
    }

    /// The model's name (from the file, else the file name).
    #[getter]
    fn name(&self) -> String {
        self.inner.name.clone()
    }

    /// Shape of one input, e.g. (1, 28, 28) or (784,).
    #[getter]
    fn input_shape(&self) -> Vec<usize> {
        self.inner.plan.input_shape().to_vec()
    }

    /// Number of output values (classes) per input.
    #[getter]
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }

    /// Smallest and largest integer input value.
    #[getter]
    fn input_range(&self) -> (i64, i64) {
        self.inner.input_range()
    }

    /// Float value of one integer input unit.
    #[getter]
    fn input_scale(&self) -> f64 {
        self.inner.float.input.scale
    }

    /// Integer output units per unit of the float model's outputs
    /// (`logits = outputs / output_scale`).
    #[getter]
    fn output_scale(&self) -> f64 {
        self.inner.q.output_scale
    }

    /// The CRT primes the network computes modulo.
    #[getter]
    fn base(&self) -> Vec<u16> {
        self.inner.q.primes()
    }

    /// SHA-256 of the integer network, hex: what client and server agree on.
    #[getter]
    fn model_hash(&self) -> String {
        self.inner.plan.model_hash().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What one private inference costs.
    ///
    /// Returns a dict: `ciphertexts` (garbled rows per image),
    /// `bytes_per_image` (the garbled material of one image as streamed:
    /// header, rows, trailer), `online_bytes_per_image` (one online round
    /// on the wire: input labels out, output labels back), `base` (the CRT
    /// primes) and `layer_ciphertexts` (rows per layer).
    fn costs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let plan = &self.inner.plan;
        let d = PyDict::new(py);
        d.set_item("ciphertexts", plan.total_rows())?;
        d.set_item("bytes_per_image", protocol::material_bytes(plan))?;
        d.set_item("online_bytes_per_image", protocol::online_bytes(plan))?;
        d.set_item("base", self.inner.q.primes())?;
        d.set_item("layer_ciphertexts", plan.costs().iter().map(|c| c.rows).collect::<Vec<_>>())?;
        Ok(d)
    }

    /// The quantised integer network on `images`, in plaintext (no
    /// cryptography): the reference the garbled outputs equal exactly.
    ///
    /// Returns an (N, output_len) int64 array. Raises ValueError for
    /// images of the wrong shape, dtype or range.
    fn eval_plain<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let batch = self.inner.batch(py, images)?;
        let inner = &self.inner;
        let outputs = py.detach(|| {
            no_panic("evaluating the integer network", || {
                batch
                    .inputs
                    .iter()
                    .map(|x| inner.q.network.eval_plain(x).map_err(|e| Error::new_err(format!("{e:#}"))))
                    .collect::<PyResult<Vec<_>>>()
            })
        })?;
        convert::int_matrix(py, &outputs, inner.output_len())
    }

    /// The float model's outputs on `images` (the float reference, before
    /// quantisation). Returns an (N, output_len) float64 array.
    fn eval_float<'py>(&self, py: Python<'py>, images: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let batch = self.inner.batch(py, images)?;
        let inner = &self.inner;
        let outputs = py.detach(|| {
            no_panic("evaluating the float model", || {
                batch
                    .inputs
                    .iter()
                    .map(|x| inner.float.infer(x).map_err(|e| Error::new_err(format!("{e:#}"))))
                    .collect::<PyResult<Vec<_>>>()
            })
        })?;
        convert::float_matrix(py, &outputs, inner.output_len())
    }

    fn __repr__(&self) -> String {
        let i = &self.inner;
        format!(
            "<dashgc.Model {:?}: input {:?} in {:?}, {} outputs, CRT base {:?}, {} ciphertexts per image>",
            i.name,
            i.plan.input_shape(),
            i.input_range(),
            i.output_len(),
            i.q.primes(),
            i.plan.total_rows()
        )
    }
}

/// The outcome of a private inference on a batch: every output label was
/// decoded and verified (anything else raises).
#[pyclass(frozen, get_all, module = "dashgc")]
pub struct InferenceResult {
    /// (N,) int64: the arg-max of each image's outputs.
    pub predictions: Py<PyAny>,
    /// (N, output_len) int64: the decoded, verified integer outputs (equal
    /// to `Model.eval_plain`).
    pub outputs: Py<PyAny>,
    /// (N, output_len) float64: `outputs / model.output_scale`, in the
    /// float model's units.
    pub logits: Py<PyAny>,
    /// Seconds per phase (dict; see `dashgc.infer` and `Client.infer`).
    pub timings: Py<PyDict>,
    /// Bytes (dict): `material` (garbled material, all images) and
    /// `online` (input and output labels, all images).
    pub bytes: Py<PyDict>,
    /// Number of images.
    pub images: usize,
}

#[pymethods]
impl InferenceResult {
    fn __len__(&self) -> usize {
        self.images
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "<dashgc.InferenceResult: {} images, predictions {}, timings {}>",
            self.images,
            self.predictions.bind(py).repr()?,
            self.timings.bind(py).repr()?
        ))
    }
}

/// Private inference of `images` with both parties in this process: for
/// each image, garble a fresh circuit (fresh keys), encode the image,
/// evaluate, and decode and verify every output label.
///
/// `images`: an integer array (N, *model.input_shape) or (N, input size),
/// values in `model.input_range` (uint8 pixels for MNIST models).
/// `progress`: None, a callable `progress(done, total)`, or a tqdm bar
/// (`update(1)` per image).
///
/// Returns an InferenceResult; its `timings` has `garble`, `evaluate`,
/// `encode_decode` and `total` seconds. The GIL is released while each
/// image runs. Raises ValueError for bad images, AuthenticityError if an
/// output fails verification, dashgc.Error otherwise.
#[pyfunction]
#[pyo3(signature = (model, images, *, progress=None))]
pub fn infer<'py>(
    py: Python<'py>,
    model: &Model,
    images: &Bound<'py, PyAny>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<InferenceResult> {
    let inner = &model.inner;
    let batch = inner.batch(py, images)?;
    let n = batch.inputs.len();
    let progress = Progress::new(progress, n)?;
    let mut rng = dash_host::rng::os_seeded().map_err(|e| Error::new_err(format!("{e:#}")))?;
    let start = Instant::now();
    let (mut garble, mut evaluate, mut codec, mut material) = (0.0, 0.0, 0.0, 0u64);
    let mut outputs = Vec::with_capacity(n);
    for (i, x) in batch.inputs.iter().enumerate() {
        let plan = &inner.plan;
        let rng = &mut rng;
        let one = py.detach(|| {
            no_panic("running a private inference", || {
                infer_one(plan, rng, x, SPOOL_TO_DISK_BYTES)
                    .with_context(|| format!("image {i}"))
                    .map_err(|e| engine_error(&e))
            })
        })?;
        garble += one.garble_seconds;
        evaluate += one.eval_seconds;
        codec += one.encode_decode_seconds;
        material += one.material_bytes;
        outputs.push(one.output);
        py.check_signals()?;
        progress.report(py, i + 1)?;
    }
    let total = start.elapsed().as_secs_f64();
    let timings = PyDict::new(py);
    timings.set_item("garble", garble)?;
    timings.set_item("evaluate", evaluate)?;
    timings.set_item("encode_decode", codec)?;
    timings.set_item("total", total)?;
    let k = inner.q.network.base.len() as u64;
    let labels = (inner.float.input_len() + inner.output_len()) as u64 * k;
    let bytes = PyDict::new(py);
    bytes.set_item("material", material)?;
    bytes.set_item("online", labels * LABEL_BYTES * n as u64)?;
    inner.result(py, &outputs, timings, bytes)
}
