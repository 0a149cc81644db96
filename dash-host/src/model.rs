//! Float models in the project's JSON model format, and their float
//! reference inference.
//!
//! # Format (`"format": "dash-model"`, `"version": 1`)
//!
//! ```json
//! {
//!   "format": "dash-model",
//!   "version": 1,
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
//! * `dense`: `y = W·x + b` with `weights` row-major, `outputs × inputs`
//!   (row `o` holds the weights of output `o`), `bias` of length `outputs`.
//! * `relu`, `sign` (`+1` for `x >= 0`, else `-1`), `flatten`: no parameters.
//! * `metrics` (optional): figures recorded by the training script.
//!
//! Unknown top-level keys other than these are rejected, as are unknown
//! layer types, non-finite or huge weights, and shapes that do not chain.
//! Sizes are bounded ([`MAX_MODEL_BYTES`], [`MAX_LAYERS`],
//! [`MAX_PARAMETERS`]), so a hostile file yields an error, not a panic or
//! an allocation storm.

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::path::Path;

/// The format name in the `format` field.
pub const FORMAT: &str = "dash-model";

/// The format version this reader understands.
pub const VERSION: u32 = 1;

/// Largest model file accepted.
pub const MAX_MODEL_BYTES: usize = 256 << 20;

/// Most layers in a model.
pub const MAX_LAYERS: usize = 256;

/// Most weights and biases in all layers together.
pub const MAX_PARAMETERS: usize = 1 << 26;

/// Largest magnitude accepted for a weight, bias or input scale.
pub const MAX_ABS_PARAMETER: f64 = 1e6;

/// Largest absolute integer input bound accepted.
pub const MAX_INPUT_BOUND: i64 = 1 << 30;

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
    /// `y = W·x + b`, `weights` row-major `outputs × inputs`.
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
    /// `max(x, 0)`.
    Relu,
    /// `+1` for `x >= 0`, else `-1`.
    Sign,
    /// To one dimension.
    Flatten,
}

impl FloatLayer {
    /// A short name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FloatLayer::Dense { .. } => "dense",
            FloatLayer::Relu => "relu",
            FloatLayer::Sign => "sign",
            FloatLayer::Flatten => "flatten",
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
            Some(VERSION) => {}
            Some(v) => bail!("model format version {v} is not supported (this build reads version {VERSION})"),
            None => bail!("model file has no \"version\" field"),
        }
        let file: ModelFile = serde_json::from_str(text).context("malformed model file")?;
        debug_assert_eq!((file.format.as_str(), file.version), (FORMAT, VERSION));
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

    /// Reads and parses a model file.
    pub fn load(path: impl AsRef<Path>) -> Result<FloatModel> {
        let path = path.as_ref();
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
    /// length of every activation (`[input, after layer 0, …]`).
    pub fn shapes(&self) -> Result<Vec<usize>> {
        let inp = &self.input;
        ensure!(
            !inp.shape.is_empty() && inp.shape.len() <= 4 && inp.shape.iter().all(|&d| d > 0 && d <= 1 << 16),
            "input shape {:?} is empty or out of bounds",
            inp.shape
        );
        let n = inp.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= 1 << 24);
        let mut len = n.with_context(|| format!("input shape {:?} has too many elements", inp.shape))?;
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
        let mut lens = vec![len];
        for (i, layer) in self.layers.iter().enumerate() {
            if let FloatLayer::Dense { inputs, outputs, weights, bias } = layer {
                let ctx = || format!("layer {i} (dense)");
                ensure!(*inputs == len, "{}: takes {inputs} inputs, the previous layer gives {len}", ctx());
                ensure!(*outputs > 0 && *outputs <= 1 << 24, "{}: {outputs} outputs out of bounds", ctx());
                let count = inputs.checked_mul(*outputs).filter(|&c| c <= MAX_PARAMETERS);
                let count = count.with_context(|| format!("{}: {inputs}×{outputs} weights are too many", ctx()))?;
                ensure!(
                    weights.len() == count,
                    "{}: {} weights, expected inputs×outputs = {count}",
                    ctx(),
                    weights.len()
                );
                ensure!(bias.len() == *outputs, "{}: {} biases, expected {outputs}", ctx(), bias.len());
                params += count + outputs;
                ensure!(params <= MAX_PARAMETERS, "{}: more than {MAX_PARAMETERS} parameters in all", ctx());
                if let Some((j, w)) =
                    weights.iter().chain(bias).enumerate().find(|(_, w)| !w.is_finite() || w.abs() > MAX_ABS_PARAMETER)
                {
                    bail!("{}: parameter {j} is {w}, not finite or above {MAX_ABS_PARAMETER} in magnitude", ctx());
                }
                len = *outputs;
            }
            lens.push(len);
        }
        Ok(lens)
    }

    /// Validates the model ([`FloatModel::shapes`]).
    pub fn validate(&self) -> Result<()> {
        self.shapes().map(|_| ())
    }

    /// Number of outputs (classes).
    pub fn output_len(&self) -> usize {
        self.shapes().ok().and_then(|s| s.last().copied()).unwrap_or(0)
    }

    /// Float reference inference on integer inputs (each multiplied by the
    /// input scale), in `f64`.
    pub fn infer(&self, input: &[i64]) -> Result<Vec<f64>> {
        ensure!(
            input.len() == self.input_len(),
            "input has {} values, the model takes {}",
            input.len(),
            self.input_len()
        );
        let mut x: Vec<f64> = input.iter().map(|&v| v as f64 * self.input.scale).collect();
        for layer in &self.layers {
            x = match layer {
                FloatLayer::Dense { inputs, weights, bias, .. } => weights
                    .chunks_exact(*inputs)
                    .zip(bias)
                    .map(|(row, b)| row.iter().zip(&x).fold(*b, |acc, (w, v)| acc + w * v))
                    .collect(),
                FloatLayer::Relu => x.into_iter().map(|v| v.max(0.0)).collect(),
                FloatLayer::Sign => x.into_iter().map(|v| if v >= 0.0 { 1.0 } else { -1.0 }).collect(),
                FloatLayer::Flatten => x,
            };
        }
        Ok(x)
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
        assert_eq!(m.shapes().unwrap(), vec![2, 2, 2, 1]);
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
            (TINY.replace("\"version\":1", "\"version\":2"), "version 2"),
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
        assert_eq!(m.shapes().unwrap(), vec![784, 128, 128, 128, 128, 10]);
        assert_eq!((m.input.min, m.input.max), (0, 255));
        assert!(m.metrics.float_test_accuracy.unwrap() >= 0.97);
    }
}
