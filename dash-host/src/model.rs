//! Float models — the project's JSON model format and ONNX files
//! ([`crate::onnx`]) — and their float reference inference.
//!
//! A [`FloatModel`] is a chain of [`FloatLayer`]s on one tensor (no batch
//! dimension: `[n]` vectors or `[C, H, W]` images, row-major). Residual
//! connections are [`FloatLayer::ResidualAdd`] layers that add an earlier
//! activation of the chain.
//!
//! # JSON format (`"format": "dash-model"`, `"version": 2`)
//!
//! ```json
//! {
//!   "format": "dash-model",
//!   "version": 2,
//!   "name": "secureml_mlp",
//!   "description": "free text (optional)",
//!   "input": { "shape": [784], "min": 0, "max": 255, "scale": 0.00392156862745098 },
//!   "layers": [
//!     { "type": "dense", "inputs": 784, "outputs": 128, "weights": [...], "bias": [...] },
//!     { "type": "relu" },
//!     ...
//!   ],
//!   "metrics": { "float_test_accuracy": 0.9809, "test_images": 10000 },
//!   "training": { ... free-form, optional ... }
//! }
//! ```
//!
//! * `input`: the network takes integers in `[min, max]` (MNIST pixels:
//!   0..255); the float network sees `integer · scale`. The declared integer
//!   range is what [`crate::quantize`] proves its bounds for.
//! * `dense`: `y = W·x + b` on the flattened input, `weights` row-major
//!   `outputs × inputs` (row `o` holds the weights of output `o`), `bias` of
//!   length `outputs`.
//! * `conv2d` (version 2): `in_channels`, `out_channels`, `kernel` `[kh, kw]`,
//!   `stride` `[sh, sw]`, `pads` `[top, left, bottom, right]` (zero padding,
//!   default none), `weights` `out × in × kh × kw` row-major, `bias`;
//!   cross-correlation with dilation 1 and one group, as ONNX `Conv`.
//! * `max_pool`, `avg_pool` (version 2): `kernel`, `stride`; no padding,
//!   windows that do not fit are dropped (ONNX `ceil_mode = 0`).
//! * `batch_norm` (version 2): `gamma`, `beta`, `mean`, `var`, `epsilon`, one
//!   value per channel; [`FloatModel::fold_batch_norms`] folds it into the
//!   preceding `dense` or `conv2d` layer (the quantiser does so first).
//! * `reshape` (version 2): `shape`, same number of elements.
//! * `residual_add` (version 2): `from`, the index of an earlier activation
//!   (0 = the input, `i + 1` = the output of layer `i`) of the same shape,
//!   added element-wise.
//! * `relu`, `sign` (`+1` for `x >= 0`, else `-1`), `flatten`: no parameters.
//! * `metrics` (optional): figures recorded by the training script.
//!
//! Version 1 files (dense, relu, sign and flatten only) still load. Unknown
//! top-level keys are rejected, as are unknown layer types, non-finite or
//! huge weights, and shapes that do not chain. Sizes are bounded
//! ([`MAX_MODEL_BYTES`], [`MAX_LAYERS`], [`MAX_PARAMETERS`],
//! [`MAX_ACTIVATION`]), so a hostile file yields an error, not a panic or an
//! allocation storm.

use crate::network::{Padding, conv_taps, sweep};
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::path::Path;

/// The format name in the `format` field.
pub const FORMAT: &str = "dash-model";

/// The format version this build writes about and reads (and every older one).
pub const VERSION: u32 = 2;

/// Largest model file accepted.
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// Most layers in a model.
pub const MAX_LAYERS: usize = 256;

/// Most weights and biases in all layers together.
pub const MAX_PARAMETERS: usize = 1 << 26;

/// Most elements of any activation.
pub const MAX_ACTIVATION: usize = 1 << 24;

/// Most multiply-adds of one layer (bounds the float reference's work).
pub const MAX_LAYER_MACS: usize = 1 << 32;

/// Largest magnitude accepted for a weight, bias or input scale.
pub const MAX_ABS_PARAMETER: f64 = 1e6;

/// Largest absolute integer input bound accepted.
pub const MAX_INPUT_BOUND: i64 = 1 << 30;

/// Largest kernel side, stride or padding accepted.
pub const MAX_WINDOW: usize = 1 << 10;

/// The bundled SecureML MLP (784-128-128-10, ReLU), trained on MNIST by
/// `scripts/train_mlp.py`.
pub static BUNDLED_MLP_JSON: &str = include_str!("../../models/secureml_mlp.json");

/// The declared integer input of a model.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Shape of the input tensor (`[784]`, or `[C, H, W]`).
    pub shape: Vec<usize>,
    /// Smallest integer input value.
    pub min: i64,
    /// Largest integer input value.
    pub max: i64,
    /// Float value of one integer unit: the float network sees `x · scale`.
    pub scale: f64,
}

/// One float layer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FloatLayer {
    /// `y = W·x + b` on the flattened input, `weights` row-major `outputs × inputs`.
    Dense {
        /// Input length.
        inputs: usize,
        /// Output length.
        outputs: usize,
        /// `outputs × inputs` weights, row-major.
        weights: Vec<f64>,
        /// `outputs` biases.
        bias: Vec<f64>,
    },
    /// 2-D cross-correlation (dilation 1, one group) on `[C, H, W]`.
    Conv2d {
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// `[kh, kw]`.
        kernel: [usize; 2],
        /// `[sh, sw]`, each at least 1.
        stride: [usize; 2],
        /// Zero padding `[top, left, bottom, right]`.
        #[serde(default)]
        pads: [usize; 4],
        /// `out_channels × in_channels × kh × kw` weights, row-major.
        weights: Vec<f64>,
        /// `out_channels` biases.
        bias: Vec<f64>,
    },
    /// Max pooling on `[C, H, W]`, no padding.
    MaxPool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
    },
    /// Average pooling on `[C, H, W]`, no padding.
    AvgPool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
    },
    /// Per-channel `gamma·(x − mean)/sqrt(var + epsilon) + beta` (channel =
    /// first dimension); folded away by [`FloatModel::fold_batch_norms`].
    BatchNorm {
        /// Scales.
        gamma: Vec<f64>,
        /// Offsets.
        beta: Vec<f64>,
        /// Running means.
        mean: Vec<f64>,
        /// Running variances.
        var: Vec<f64>,
        /// Added to the variance.
        epsilon: f64,
    },
    /// `max(x, 0)`.
    Relu,
    /// `+1` for `x >= 0`, else `-1`.
    Sign,
    /// To one dimension.
    Flatten,
    /// To `shape` (same number of elements, row-major order kept).
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Adds activation `from` (0 = the input, `i + 1` = the output of layer
    /// `i`, earlier than this layer's input) element-wise.
    ResidualAdd {
        /// Index of the other summand's activation.
        from: usize,
    },
}

impl FloatLayer {
    /// A short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FloatLayer::Dense { .. } => "dense",
            FloatLayer::Conv2d { .. } => "conv2d",
            FloatLayer::MaxPool { .. } => "max_pool",
            FloatLayer::AvgPool { .. } => "avg_pool",
            FloatLayer::BatchNorm { .. } => "batch_norm",
            FloatLayer::Relu => "relu",
            FloatLayer::Sign => "sign",
            FloatLayer::Flatten => "flatten",
            FloatLayer::Reshape { .. } => "reshape",
            FloatLayer::ResidualAdd { .. } => "residual_add",
        }
    }

    /// Whether the layer is a dense layer or a convolution.
    pub fn is_linear_map(&self) -> bool {
        matches!(self, FloatLayer::Dense { .. } | FloatLayer::Conv2d { .. })
    }

    /// Padding of a convolution (valid for other layers).
    pub fn padding(&self) -> Padding {
        match self {
            FloatLayer::Conv2d { pads: [top, left, bottom, right], .. } => {
                Padding { top: *top, left: *left, bottom: *bottom, right: *right }
            }
            _ => Padding::valid(),
        }
    }
}

/// Figures recorded with a model.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Metrics {
    /// Float accuracy on the MNIST test set, as the training script measured it.
    #[serde(default)]
    pub float_test_accuracy: Option<f64>,
    /// How many test images that figure is over.
    #[serde(default)]
    pub test_images: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    format: String,
    version: u32,
    name: String,
    #[serde(default)]
    description: Option<String>,
    input: InputSpec,
    layers: Vec<FloatLayer>,
    #[serde(default)]
    metrics: Metrics,
    #[serde(default)]
    #[allow(dead_code)]
    training: Option<serde_json::Value>,
}

/// A validated float model.
#[derive(Clone, Debug, PartialEq)]
pub struct FloatModel {
    /// The model's name.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// The declared integer input.
    pub input: InputSpec,
    /// The layers, in order.
    pub layers: Vec<FloatLayer>,
    /// Recorded figures.
    pub metrics: Metrics,
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ACTIVATION)
}

fn check_params<'a>(values: impl Iterator<Item = &'a f64>, what: &dyn Fn() -> String) -> Result<()> {
    if let Some((j, w)) = values.enumerate().find(|(_, w)| !w.is_finite() || w.abs() > MAX_ABS_PARAMETER) {
        bail!("{}: parameter {j} is {w}, not finite or above {MAX_ABS_PARAMETER} in magnitude", what());
    }
    Ok(())
}

fn check_window(kernel: [usize; 2], stride: [usize; 2], what: &dyn Fn() -> String) -> Result<()> {
    ensure!(
        kernel.iter().chain(&stride).all(|&v| (1..=MAX_WINDOW).contains(&v)),
        "{}: kernel {kernel:?} and stride {stride:?} must be 1..={MAX_WINDOW}",
        what()
    );
    Ok(())
}

impl FloatModel {
    /// Parses and validates a model from JSON text.
    pub fn from_json(text: &str) -> Result<FloatModel> {
        ensure!(
            text.len() <= MAX_MODEL_BYTES,
            "model is {} bytes, more than the {MAX_MODEL_BYTES} accepted",
            text.len()
        );
        // Check the header first, so that a file of another kind or version
        // gets a clear message rather than a field-level one.
        #[derive(Deserialize)]
        struct Header {
            format: Option<String>,
            version: Option<u32>,
        }
        let header: Header =
            serde_json::from_str(text).context("malformed model file (not a JSON object of this format)")?;
        match header.format.as_deref() {
            Some(FORMAT) => {}
            Some(other) => bail!("model format is {other:?}, expected {FORMAT:?}"),
            None => bail!("model file has no \"format\" field (expected {FORMAT:?})"),
        }
        match header.version {
            Some(1..=VERSION) => {}
            Some(v) => bail!("model format version {v} is not supported (this build reads versions 1 to {VERSION})"),
            None => bail!("model file has no \"version\" field"),
        }
        let file: ModelFile = serde_json::from_str(text).context("malformed model file")?;
        if file.version == 1
            && let Some((i, l)) = file.layers.iter().enumerate().find(|(_, l)| {
                !matches!(l, FloatLayer::Dense { .. } | FloatLayer::Relu | FloatLayer::Sign | FloatLayer::Flatten)
            })
        {
            bail!("layer {i} ({}) needs model format version 2", l.name());
        }
        debug_assert_eq!(file.format, FORMAT);
        let model = FloatModel {
            name: file.name,
            description: file.description.unwrap_or_default(),
            input: file.input,
            layers: file.layers,
            metrics: file.metrics,
        };
        model.validate()?;
        Ok(model)
    }

    /// Reads and parses a model file: ONNX if the name ends in `.onnx`
    /// ([`crate::onnx::import_file`] with default options), else the JSON
    /// format.
    pub fn load(path: impl AsRef<Path>) -> Result<FloatModel> {
        let path = path.as_ref();
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
            return crate::onnx::import_file(path, &crate::onnx::ImportOptions::default());
        }
        let meta = std::fs::metadata(path).with_context(|| format!("cannot read model {}", path.display()))?;
        ensure!(
            meta.len() <= MAX_MODEL_BYTES as u64,
            "model {} is {} bytes, more than the {MAX_MODEL_BYTES} accepted",
            path.display(),
            meta.len()
        );
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read model {}", path.display()))?;
        FloatModel::from_json(&text).with_context(|| format!("in model {}", path.display()))
    }

    /// The bundled SecureML MLP.
    pub fn bundled_mlp() -> Result<FloatModel> {
        FloatModel::from_json(BUNDLED_MLP_JSON)
    }

    /// Number of input values.
    pub fn input_len(&self) -> usize {
        self.input.shape.iter().product()
    }

    /// Checks sizes, values and that the layer shapes chain; returns the
    /// shape of every activation (`[input, after layer 0, …]`).
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        let inp = &self.input;
        ensure!(
            !inp.shape.is_empty() && inp.shape.len() <= 4 && inp.shape.iter().all(|&d| d > 0 && d <= 1 << 16),
            "input shape {:?} is empty or out of bounds",
            inp.shape
        );
        numel(&inp.shape).with_context(|| format!("input shape {:?} has too many elements", inp.shape))?;
        ensure!(inp.min <= inp.max, "input range [{}, {}] is empty", inp.min, inp.max);
        ensure!(
            inp.min >= -MAX_INPUT_BOUND && inp.max <= MAX_INPUT_BOUND,
            "input range [{}, {}] exceeds ±{MAX_INPUT_BOUND}",
            inp.min,
            inp.max
        );
        ensure!(
            inp.scale.is_finite() && inp.scale > 0.0 && inp.scale <= MAX_ABS_PARAMETER,
            "input scale {} must be positive and finite",
            inp.scale
        );
        ensure!(!self.layers.is_empty(), "model has no layers");
        ensure!(self.layers.len() <= MAX_LAYERS, "model has {} layers, more than {MAX_LAYERS}", self.layers.len());
        let mut params = 0usize;
        let mut shapes = vec![inp.shape.clone()];
        for (i, layer) in self.layers.iter().enumerate() {
            let s = &shapes[i];
            let ctx = || format!("layer {i} ({})", layer.name());
            let len = s.iter().product::<usize>();
            let mut count_params = |n: usize| -> Result<()> {
                params = params.saturating_add(n);
                ensure!(params <= MAX_PARAMETERS, "{}: more than {MAX_PARAMETERS} parameters in all", ctx());
                Ok(())
            };
            let out: Vec<usize> = match layer {
                FloatLayer::Dense { inputs, outputs, weights, bias } => {
                    ensure!(*inputs == len, "{}: takes {inputs} inputs, the previous layer gives {len}", ctx());
                    ensure!(*outputs > 0 && *outputs <= MAX_ACTIVATION, "{}: {outputs} outputs out of bounds", ctx());
                    let count = inputs.checked_mul(*outputs).filter(|&c| c <= MAX_PARAMETERS);
                    let count = count.with_context(|| format!("{}: {inputs}×{outputs} weights are too many", ctx()))?;
                    ensure!(
                        weights.len() == count,
                        "{}: {} weights, expected inputs×outputs = {count}",
                        ctx(),
                        weights.len()
                    );
                    ensure!(bias.len() == *outputs, "{}: {} biases, expected {outputs}", ctx(), bias.len());
                    count_params(count + outputs)?;
                    check_params(weights.iter().chain(bias), &ctx)?;
                    vec![*outputs]
                }
                FloatLayer::Conv2d { in_channels, out_channels, kernel, stride, pads, weights, bias } => {
                    let &[c, h, w] = s.as_slice() else { bail!("{}: needs a [C, H, W] input, got {s:?}", ctx()) };
                    ensure!(c == *in_channels, "{}: expects {in_channels} channels, the input has {c}", ctx());
                    ensure!(
                        (1..=1 << 16).contains(out_channels),
                        "{}: {out_channels} output channels out of bounds",
                        ctx()
                    );
                    check_window(*kernel, *stride, &ctx)?;
                    ensure!(pads.iter().all(|&p| p <= MAX_WINDOW), "{}: pads {pads:?} too large", ctx());
                    let count = [*out_channels, *in_channels, kernel[0], kernel[1]]
                        .iter()
                        .try_fold(1usize, |a, &d| a.checked_mul(d))
                        .filter(|&c| c <= MAX_PARAMETERS)
                        .with_context(|| format!("{}: too many weights", ctx()))?;
                    ensure!(weights.len() == count, "{}: {} weights, expected {count}", ctx(), weights.len());
                    ensure!(bias.len() == *out_channels, "{}: {} biases, expected {out_channels}", ctx(), bias.len());
                    count_params(count + out_channels)?;
                    check_params(weights.iter().chain(bias), &ctx)?;
                    let oh = sweep(h + pads[0] + pads[2], kernel[0], stride[0]);
                    let ow = sweep(w + pads[1] + pads[3], kernel[1], stride[1]);
                    let (Some(oh), Some(ow)) = (oh, ow) else {
                        bail!("{}: kernel {kernel:?} does not fit input {s:?} padded by {pads:?}", ctx())
                    };
                    let out = vec![*out_channels, oh, ow];
                    let macs = numel(&out).and_then(|n| n.checked_mul(in_channels * kernel[0] * kernel[1]));
                    ensure!(macs.is_some_and(|m| m <= MAX_LAYER_MACS), "{}: too much work", ctx());
                    out
                }
                FloatLayer::MaxPool { kernel, stride } | FloatLayer::AvgPool { kernel, stride } => {
                    let &[c, h, w] = s.as_slice() else { bail!("{}: needs a [C, H, W] input, got {s:?}", ctx()) };
                    check_window(*kernel, *stride, &ctx)?;
                    let (Some(oh), Some(ow)) = (sweep(h, kernel[0], stride[0]), sweep(w, kernel[1], stride[1])) else {
                        bail!("{}: window {kernel:?} does not fit input {s:?}", ctx())
                    };
                    let out = vec![c, oh, ow];
                    let work = numel(&out).and_then(|n| n.checked_mul(kernel[0] * kernel[1]));
                    ensure!(work.is_some_and(|m| m <= MAX_LAYER_MACS), "{}: too much work", ctx());
                    out
                }
                FloatLayer::BatchNorm { gamma, beta, mean, var, epsilon } => {
                    let c = s[0];
                    for (what, v) in [("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)] {
                        ensure!(v.len() == c, "{}: {} {what} values, expected {c} (channels)", ctx(), v.len());
                    }
                    count_params(4 * c)?;
                    check_params(gamma.iter().chain(beta).chain(mean).chain(var).chain([epsilon]), &ctx)?;
                    ensure!(var.iter().all(|v| v + epsilon > 0.0), "{}: var + epsilon must be positive", ctx());
                    s.clone()
                }
                FloatLayer::Relu | FloatLayer::Sign => s.clone(),
                FloatLayer::Flatten => vec![len],
                FloatLayer::Reshape { shape } => {
                    ensure!(
                        !shape.is_empty() && shape.len() <= 4 && numel(shape) == Some(len),
                        "{}: cannot reshape {s:?} to {shape:?}",
                        ctx()
                    );
                    shape.clone()
                }
                FloatLayer::ResidualAdd { from } => {
                    ensure!(*from < i, "{}: source activation {from} is not earlier than activation {i}", ctx());
                    ensure!(&shapes[*from] == s, "{}: adds shape {:?} to shape {s:?}", ctx(), shapes[*from]);
                    s.clone()
                }
            };
            shapes.push(out);
        }
        Ok(shapes)
    }

    /// Validates the model ([`FloatModel::shapes`]).
    pub fn validate(&self) -> Result<()> {
        self.shapes().map(|_| ())
    }

    /// Number of outputs (classes).
    pub fn output_len(&self) -> usize {
        self.shapes().ok().and_then(|s| s.last().map(|s| s.iter().product())).unwrap_or(0)
    }

    /// The model with every [`FloatLayer::BatchNorm`] folded into the
    /// preceding dense or convolution layer (weights and bias of output
    /// channel `c` times `gamma_c/sqrt(var_c + epsilon)`, bias shifted).
    /// Residual sources are renumbered. Fails when a batch normalisation
    /// does not directly follow a dense or convolution layer, or when the
    /// activation between them is also used by a residual add.
    pub fn fold_batch_norms(&self) -> Result<FloatModel> {
        self.validate()?;
        let mut layers: Vec<FloatLayer> = Vec::with_capacity(self.layers.len());
        // New activation index of every old one.
        let mut renumber = vec![0usize];
        for (i, layer) in self.layers.iter().enumerate() {
            if let FloatLayer::BatchNorm { gamma, beta, mean, var, epsilon } = layer {
                let used = self.layers.iter().any(|l| matches!(l, FloatLayer::ResidualAdd { from } if *from == i));
                ensure!(!used, "layer {i} (batch_norm): its input is also used by a residual add");
                let follows = renumber[i] == layers.len();
                let (weights, bias) = match layers.last_mut() {
                    Some(FloatLayer::Dense { weights, bias, .. }) | Some(FloatLayer::Conv2d { weights, bias, .. })
                        if follows =>
                    {
                        (weights, bias)
                    }
                    _ => bail!("layer {i} (batch_norm) does not follow a dense or convolution layer"),
                };
                let c = bias.len();
                ensure!(gamma.len() == c, "layer {i} (batch_norm): {} channels, the layer before has {c}", gamma.len());
                let per = weights.len() / c;
                for ch in 0..c {
                    let s = gamma[ch] / (var[ch] + epsilon).sqrt();
                    weights[ch * per..(ch + 1) * per].iter_mut().for_each(|w| *w *= s);
                    bias[ch] = (bias[ch] - mean[ch]) * s + beta[ch];
                }
                // The folded layer's output stands for the normalised value.
                renumber.push(layers.len());
                continue;
            }
            let mut layer = layer.clone();
            if let FloatLayer::ResidualAdd { from } = &mut layer {
                *from = renumber[*from];
            }
            layers.push(layer);
            renumber.push(layers.len());
        }
        let model = FloatModel { layers, ..self.clone() };
        model.validate().context("after folding batch normalisations")?;
        Ok(model)
    }

    /// Float reference inference on integer inputs (each multiplied by the
    /// input scale), in `f64`.
    pub fn infer(&self, input: &[i64]) -> Result<Vec<f64>> {
        let x: Vec<f64> = input.iter().map(|&v| v as f64 * self.input.scale).collect();
        self.infer_float(&x)
    }

    /// Float inference on float inputs (already scaled).
    pub fn infer_float(&self, input: &[f64]) -> Result<Vec<f64>> {
        Ok(self.infer_trace(input)?.pop().unwrap_or_default())
    }

    /// Float inference returning every activation (`[input, after layer 0, …]`).
    pub fn infer_trace(&self, input: &[f64]) -> Result<Vec<Vec<f64>>> {
        let shapes = self.shapes()?;
        ensure!(
            input.len() == self.input_len(),
            "input has {} values, the model takes {}",
            input.len(),
            self.input_len()
        );
        let mut acts: Vec<Vec<f64>> = vec![input.to_vec()];
        for (i, layer) in self.layers.iter().enumerate() {
            let x = &acts[i];
            let (s, out) = (&shapes[i], &shapes[i + 1]);
            let y: Vec<f64> = match layer {
                FloatLayer::Dense { inputs, weights, bias, .. } => weights
                    .chunks_exact(*inputs)
                    .zip(bias)
                    .map(|(row, b)| row.iter().zip(x).fold(*b, |acc, (w, v)| acc + w * v))
                    .collect(),
                FloatLayer::Conv2d { in_channels, kernel, stride, weights, bias, .. } => {
                    let (h, w, oh, ow) = (s[1], s[2], out[1], out[2]);
                    let mut y = Vec::with_capacity(numel(out).unwrap_or(0));
                    for (oc, &b) in bias.iter().enumerate() {
                        for r in 0..oh {
                            for c in 0..ow {
                                let taps =
                                    conv_taps([*in_channels, h, w], *kernel, *stride, layer.padding(), oc, [r, c]);
                                y.push(taps.fold(b, |acc, (wi, xi)| acc + weights[wi] * x[xi]));
                            }
                        }
                    }
                    y
                }
                FloatLayer::MaxPool { kernel, stride } | FloatLayer::AvgPool { kernel, stride } => {
                    let avg = matches!(layer, FloatLayer::AvgPool { .. });
                    let (h, w, oh, ow) = (s[1], s[2], out[1], out[2]);
                    let n = (kernel[0] * kernel[1]) as f64;
                    let mut y = Vec::with_capacity(numel(out).unwrap_or(0));
                    for ch in 0..s[0] {
                        for r in 0..oh {
                            for c in 0..ow {
                                let win = (0..kernel[0]).flat_map(|dy| {
                                    (0..kernel[1])
                                        .map(move |dx| x[(ch * h + r * stride[0] + dy) * w + c * stride[1] + dx])
                                });
                                y.push(if avg { win.sum::<f64>() / n } else { win.fold(f64::NEG_INFINITY, f64::max) });
                            }
                        }
                    }
                    y
                }
                FloatLayer::BatchNorm { gamma, beta, mean, var, epsilon } => {
                    let per = x.len() / s[0];
                    x.iter()
                        .enumerate()
                        .map(|(j, v)| {
                            let c = j / per;
                            gamma[c] * (v - mean[c]) / (var[c] + epsilon).sqrt() + beta[c]
                        })
                        .collect()
                }
                FloatLayer::Relu => x.iter().map(|v| v.max(0.0)).collect(),
                FloatLayer::Sign => x.iter().map(|&v| if v >= 0.0 { 1.0 } else { -1.0 }).collect(),
                FloatLayer::Flatten | FloatLayer::Reshape { .. } => x.clone(),
                FloatLayer::ResidualAdd { from } => x.iter().zip(&acts[*from]).map(|(a, b)| a + b).collect(),
            };
            acts.push(y);
        }
        Ok(acts)
    }

    /// The predicted class of one input ([`argmax`] of [`FloatModel::infer`]).
    pub fn predict(&self, input: &[i64]) -> Result<usize> {
        Ok(argmax(&self.infer(input)?))
    }
}

/// Index of the largest value (the first one on ties; 0 for an empty slice).
pub fn argmax<T: PartialOrd + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"format":"dash-model","version":1,"name":"tiny",
        "input":{"shape":[2],"min":0,"max":10,"scale":0.5},
        "layers":[{"type":"dense","inputs":2,"outputs":2,"weights":[1,-1,0.5,2],"bias":[0,1]},
                  {"type":"relu"},
                  {"type":"dense","inputs":2,"outputs":1,"weights":[1,-1],"bias":[0.25]}]}"#;

    #[test]
    fn tiny_model_infers() {
        let m = FloatModel::from_json(TINY).unwrap();
        assert_eq!(m.shapes().unwrap(), vec![vec![2], vec![2], vec![2], vec![1]]);
        // x = [2, 1]·0.5 = [1, 0.5]; h = relu([0.5, 0.5 + 1 + 1]) = [0.5, 2.5].
        assert_eq!(m.infer(&[2, 1]).unwrap(), vec![0.5 - 2.5 + 0.25]);
        assert!(m.infer(&[1]).is_err());
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn malformed_models_are_errors() {
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "malformed"),
            ("[1,2]".into(), "malformed"),
            ("{\"format\":\"onnx\",\"version\":1}".into(), "format"),
            (TINY.replace("\"version\":1", "\"version\":3"), "version 3"),
            (TINY.replace("\"version\":1,", ""), "version"),
            (TINY.replace("\"relu\"", "\"gelu\""), "malformed"),
            (TINY.replace("[1,-1,0.5,2]", "[1,-1,0.5]"), "3 weights"),
            (TINY.replace("[0,1]", "[0]"), "1 biases"),
            (TINY.replace("\"inputs\":2,\"outputs\":1", "\"inputs\":3,\"outputs\":1"), "takes 3 inputs"),
            (TINY.replace("[1,-1,0.5,2]", "[1,-1,0.5,1e300]"), "not finite"),
            (TINY.replace("\"min\":0", "\"min\":11"), "empty"),
            (TINY.replace("\"scale\":0.5", "\"scale\":-1"), "scale"),
            (TINY.replace("\"shape\":[2]", "\"shape\":[]"), "input shape"),
            (TINY.replace("\"name\"", "\"nom\""), "malformed"),
            (TINY.replace("\"inputs\":2,\"outputs\":2", "\"inputs\":2,\"outputs\":-2"), "malformed"),
            (
                TINY.replace("\"inputs\":2,\"outputs\":2", "\"inputs\":2,\"outputs\":18446744073709551615"),
                "out of bounds",
            ),
            (TINY[..TINY.len() / 2].to_string(), "malformed"),
        ];
        for (text, want) in cases {
            let e = FloatModel::from_json(&text).expect_err(&text);
            let msg = format!("{e:#}");
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
        }
        let e = FloatModel::load("/nonexistent/model.json").unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/model.json"));
    }

    #[test]
    fn bundled_model_loads() {
        let m = FloatModel::bundled_mlp().unwrap();
        let lens: Vec<usize> = m.shapes().unwrap().iter().map(|s| s.iter().product()).collect();
        assert_eq!(lens, vec![784, 128, 128, 128, 128, 10]);
        assert_eq!((m.input.min, m.input.max), (0, 255));
        assert!(m.metrics.float_test_accuracy.unwrap() >= 0.97);
    }
}
