//! ONNX import: an ONNX model file to a [`FloatModel`].
//!
//! Everything is resolved **by name**: the graph input is the one graph
//! input that no initializer names; every node input is looked up among the
//! initializers, the graph input and the outputs of other nodes; attributes
//! are looked up by their names. Nodes are then ordered topologically by
//! these names (the order in the file does not matter; cycles, undefined
//! names and duplicate names are errors), nodes that do not lead to the
//! graph output are dropped, and the rest is evaluated symbolically:
//! constant sub-graphs (`Constant`, `Shape`, `Gather`, `Unsqueeze`,
//! `Squeeze`, `Concat`, `Cast`, `Reshape`, `Flatten`, `Transpose`,
//! `Add`/`Sub`/`Mul`/`Div` of constants) are
//! folded, and the operators on the data path become [`FloatLayer`]s of one
//! chain, with residual `Add`s joining an earlier activation.
//!
//! | ONNX | becomes |
//! |---|---|
//! | `Gemm` (`alpha`, `beta`, `transB`; `transA` only where the activation is `[1, K]` as `Aᵀ`), `MatMul` with a constant matrix | `dense` |
//! | `Conv` (`pads` incl. asymmetric, `strides`, `auto_pad` `NOTSET`/`VALID`/`SAME_UPPER`/`SAME_LOWER`; dilation 1, one group) | `conv2d` |
//! | `Add` of a constant to a dense/conv output | folded into its bias |
//! | `Add` of two activations | `residual_add` |
//! | `BatchNormalization` | folded into the preceding dense/conv |
//! | `MaxPool`, `AveragePool` (no padding), `GlobalAveragePool`, `GlobalMaxPool` | `max_pool`, `avg_pool` |
//! | `Relu`, `Clip(0, ∞)` | `relu` |
//! | `Sign`; `Tanh`, `Clip(-1, 1)`, `HardTanh` only with [`ImportOptions::tanh_as_sign`] | `sign` |
//! | `Flatten`, `Reshape` (shape as input or attribute; `0` and `-1`) | `flatten`, `reshape` |
//! | `Identity`, `Dropout`, float `Cast` | nothing |
//! | `Mul`/`Div` of the graph input by a positive scalar | the input scale |
//!
//! Tensors carry a batch dimension in ONNX and none in a [`FloatModel`]:
//! the graph input's first dimension is the batch (a fixed 1 or a symbolic
//! name), and every activation is `[1, …]` to the operators above. Opsets 7
//! to [`MAX_OPSET`] of the default domain are read, including attributes
//! that became inputs across opsets (`Reshape` shape, `Squeeze`/`Unsqueeze`
//! axes, `Clip` bounds). Any other operator, domain or attribute value is
//! an error naming the node and the operator; sizes are bounded
//! ([`MAX_ONNX_BYTES`], [`MAX_NODES`], [`MAX_TENSOR_ELEMENTS`],
//! [`MAX_RANK`]) and no input makes the importer panic.

pub mod proto;

use crate::model::{FloatLayer, FloatModel, InputSpec, MAX_ACTIVATION, MAX_LAYERS, MAX_PARAMETERS, Metrics};
use crate::network::Padding;
use anyhow::{Context, Result, anyhow, bail, ensure};
use prost::Message;
use proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, data_type};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Largest ONNX file accepted.
pub const MAX_ONNX_BYTES: usize = 64 << 20;

/// Most nodes in a graph.
pub const MAX_NODES: usize = 4096;

/// Most elements of one constant tensor (and of all together).
pub const MAX_TENSOR_ELEMENTS: usize = MAX_PARAMETERS;

/// Highest tensor rank accepted.
pub const MAX_RANK: usize = 8;

/// Oldest default-domain opset read.
pub const MIN_OPSET: i64 = 7;

/// Newest default-domain opset read.
pub const MAX_OPSET: i64 = 24;

/// How to read an ONNX model: the integer input it takes, and choices the
/// file cannot make.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportOptions {
    /// Smallest integer input value (MNIST pixels: 0).
    pub input_min: i64,
    /// Largest integer input value (MNIST pixels: 255).
    pub input_max: i64,
    /// Float value of one integer input unit: the ONNX graph sees
    /// `integer · input_scale` (MNIST trained on `x/255`: `1/255`).
    pub input_scale: f64,
    /// Treat `Tanh`, `Clip(-1, 1)` and `HardTanh` as the sign activation
    /// (what a sign network trained with a tanh surrogate computes at
    /// inference); without it they are errors.
    pub tanh_as_sign: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { input_min: 0, input_max: 255, input_scale: 1.0 / 255.0, tanh_as_sign: false }
    }
}

/// Reads and imports an ONNX file.
pub fn import_file(path: impl AsRef<Path>, options: &ImportOptions) -> Result<FloatModel> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read model {}", path.display()))?;
    ensure!(
        meta.len() <= MAX_ONNX_BYTES as u64,
        "model {} is {} bytes, more than the {MAX_ONNX_BYTES} accepted",
        path.display(),
        meta.len()
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read model {}", path.display()))?;
    let mut model = import_bytes(&bytes, options).with_context(|| format!("in ONNX model {}", path.display()))?;
    if model.name.is_empty() {
        model.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    Ok(model)
}

/// Imports an ONNX model from its bytes.
pub fn import_bytes(bytes: &[u8], options: &ImportOptions) -> Result<FloatModel> {
    ensure!(bytes.len() <= MAX_ONNX_BYTES, "model is {} bytes, more than the {MAX_ONNX_BYTES} accepted", bytes.len());
    let model = ModelProto::decode(bytes).map_err(|e| anyhow!("not an ONNX model (protobuf: {e})"))?;
    import_model(&model, options)
}

/// Imports a decoded ONNX model.
pub fn import_model(model: &ModelProto, options: &ImportOptions) -> Result<FloatModel> {
    let opset = default_opset(model)?;
    let graph = model.graph.as_ref().context("the model has no graph")?;
    let mut imp = Importer::new(graph, opset, options)?;
    imp.run()?;
    let mut metrics = Metrics::default();
    for p in &model.metadata_props {
        match p.key.as_str() {
            "float_test_accuracy" => metrics.float_test_accuracy = p.value.trim().parse().ok(),
            "test_images" => metrics.test_images = p.value.trim().parse().ok(),
            _ => {}
        }
    }
    let description = [model.doc_string.as_str(), graph.doc_string.as_str()]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or("")
        .chars()
        .take(4096)
        .collect();
    let float = FloatModel {
        name: graph.name.chars().take(256).collect(),
        description,
        input: InputSpec {
            shape: imp.shapes[0].clone(),
            min: options.input_min,
            max: options.input_max,
            scale: options.input_scale * imp.input_factor,
        },
        layers: imp.layers,
        metrics,
    };
    float.validate().context("the imported model")?;
    float.fold_batch_norms()
}

fn default_opset(model: &ModelProto) -> Result<i64> {
    let mut found = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            ensure!(found.is_none(), "the default-domain opset is imported twice");
            found = Some(o.version);
        }
    }
    // IR version 3 files without opset_import mean opset 1: too old.
    let v = found.context("the model imports no default-domain (ai.onnx) opset")?;
    ensure!(
        (MIN_OPSET..=MAX_OPSET).contains(&v),
        "opset {v} is not supported (this importer reads opsets {MIN_OPSET} to {MAX_OPSET})"
    );
    Ok(v)
}

/// A constant's values.
#[derive(Clone, Debug, PartialEq)]
enum Values {
    Float(Vec<f64>),
    Int(Vec<i64>),
}

/// A constant tensor.
#[derive(Clone, Debug, PartialEq)]
struct Const {
    dims: Vec<usize>,
    values: Values,
}

impl Const {
    fn len(&self) -> usize {
        match &self.values {
            Values::Float(v) => v.len(),
            Values::Int(v) => v.len(),
        }
    }

    fn floats(&self) -> Vec<f64> {
        match &self.values {
            Values::Float(v) => v.clone(),
            Values::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    fn ints(&self, what: &str) -> Result<Vec<i64>> {
        match &self.values {
            Values::Int(v) => Ok(v.clone()),
            Values::Float(_) => bail!("{what} must be an integer tensor"),
        }
    }

    fn scalar_f64(&self, what: &str) -> Result<f64> {
        ensure!(self.len() == 1, "{what} must be a scalar, got shape {:?}", self.dims);
        Ok(self.floats()[0])
    }

    /// Same values, another shape.
    fn with_dims(&self, dims: Vec<usize>) -> Const {
        Const { dims, values: self.values.clone() }
    }

    /// Picks elements by flat index.
    fn pick(&self, dims: Vec<usize>, idx: &[usize]) -> Const {
        let values = match &self.values {
            Values::Float(v) => Values::Float(idx.iter().map(|&i| v[i]).collect()),
            Values::Int(v) => Values::Int(idx.iter().map(|&i| v[i]).collect()),
        };
        Const { dims, values }
    }
}

fn elements(dims: &[usize]) -> Result<usize> {
    ensure!(dims.len() <= MAX_RANK, "rank {} is above {MAX_RANK}", dims.len());
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .with_context(|| format!("shape {dims:?} has too many elements"))
}

fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 0x1f) as i32;
    let frac = (bits & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// Decodes a tensor's values.
fn tensor_const(t: &TensorProto) -> Result<Const> {
    use data_type::*;
    ensure!(t.data_location == 0 && t.external_data.is_empty(), "external tensor data is not supported");
    ensure!(t.segment.is_none(), "segmented tensors are not supported");
    ensure!(t.dims.len() <= MAX_RANK, "rank {} is above {MAX_RANK}", t.dims.len());
    let dims = t
        .dims
        .iter()
        .map(|&d| {
            usize::try_from(d).ok().filter(|&d| d <= MAX_TENSOR_ELEMENTS).with_context(|| format!("bad dimension {d}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let n = elements(&dims)?;
    let raw = &t.raw_data;
    let fixed = |size: usize| -> Result<Vec<&[u8]>> {
        ensure!(raw.len() == n * size, "raw data is {} bytes, expected {n} elements of {size} bytes", raw.len());
        Ok(raw.chunks_exact(size).collect())
    };
    let count = |len: usize| -> Result<()> {
        ensure!(len == n, "{len} values for shape {dims:?} ({n} elements)");
        Ok(())
    };
    let values = match t.data_type {
        FLOAT | DOUBLE | FLOAT16 | BFLOAT16 => Values::Float(if !raw.is_empty() {
            match t.data_type {
                FLOAT => fixed(4)?.iter().map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
                DOUBLE => fixed(8)?.iter().map(|b| f64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))).collect(),
                FLOAT16 => fixed(2)?.iter().map(|b| f16_to_f64(u16::from_le_bytes([b[0], b[1]]))).collect(),
                _ => fixed(2)?
                    .iter()
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64)
                    .collect(),
            }
        } else {
            match t.data_type {
                FLOAT => {
                    count(t.float_data.len())?;
                    t.float_data.iter().map(|&v| v as f64).collect()
                }
                DOUBLE => {
                    count(t.double_data.len())?;
                    t.double_data.clone()
                }
                FLOAT16 => {
                    count(t.int32_data.len())?;
                    t.int32_data.iter().map(|&v| f16_to_f64(v as u16)).collect()
                }
                _ => {
                    count(t.int32_data.len())?;
                    t.int32_data.iter().map(|&v| f32::from_bits((v as u32 & 0xffff) << 16) as f64).collect()
                }
            }
        }),
        INT64 | INT32 | INT16 | INT8 | UINT8 | UINT16 | BOOL | UINT32 | UINT64 => Values::Int(if !raw.is_empty() {
            match t.data_type {
                INT64 => fixed(8)?.iter().map(|b| i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))).collect(),
                UINT64 => fixed(8)?
                    .iter()
                    .map(|b| i64::try_from(u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]))).unwrap_or(i64::MAX))
                    .collect(),
                INT32 => fixed(4)?.iter().map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect(),
                UINT32 => fixed(4)?.iter().map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64).collect(),
                INT16 => fixed(2)?.iter().map(|b| i16::from_le_bytes([b[0], b[1]]) as i64).collect(),
                UINT16 => fixed(2)?.iter().map(|b| u16::from_le_bytes([b[0], b[1]]) as i64).collect(),
                INT8 => fixed(1)?.iter().map(|b| b[0] as i8 as i64).collect(),
                _ => fixed(1)?.iter().map(|b| b[0] as i64).collect(),
            }
        } else {
            match t.data_type {
                INT64 => {
                    count(t.int64_data.len())?;
                    t.int64_data.clone()
                }
                UINT64 | UINT32 if !t.uint64_data.is_empty() => {
                    count(t.uint64_data.len())?;
                    t.uint64_data.iter().map(|&v| i64::try_from(v).unwrap_or(i64::MAX)).collect()
                }
                _ => {
                    count(t.int32_data.len())?;
                    t.int32_data.iter().map(|&v| v as i64).collect()
                }
            }
        }),
        STRING => bail!("string tensors are not supported"),
        other => bail!("tensor data type {other} is not supported"),
    };
    Ok(Const { dims, values })
}

/// What a name stands for during import.
#[derive(Clone, Debug)]
enum Value {
    Const(Const),
    /// Activation `index` of the chain (0 = the graph input).
    Act(usize),
}

struct Importer<'a> {
    graph: &'a GraphProto,
    opset: i64,
    options: &'a ImportOptions,
    values: HashMap<&'a str, Value>,
    /// Shape of every activation without the batch dimension.
    shapes: Vec<Vec<usize>>,
    /// ONNX shape of every activation: `[1, …shape]`, except after a
    /// `Reshape` whose target does not start with the batch (one image:
    /// the same values, e.g. a `[K, 1]` column for `Gemm` with `transA`).
    full_shapes: Vec<Vec<usize>>,
    layers: Vec<FloatLayer>,
    /// How many node inputs (plus graph outputs) name each tensor.
    consumers: HashMap<&'a str, usize>,
    const_elements: usize,
    /// Product of the positive scalars the graph multiplies its raw input by.
    input_factor: f64,
}

/// The node an import error happened in, attached to the error as context:
/// a caller names the node and its operator without parsing the message
/// (`error.downcast_ref::<NodeContext>()`, as the Python module's
/// `ModelError` does). It displays as the message always read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// The node's name, or, for an unnamed node, its first output's.
    pub node: String,
    /// Whether the node has no name of its own (`node` is its output's).
    pub unnamed: bool,
    /// The operator (`op_type`).
    pub op: String,
    /// The model's default-domain opset.
    pub opset: i64,
}

impl NodeContext {
    fn of(node: &NodeProto, opset: i64) -> NodeContext {
        let name: String = node.name.chars().take(80).collect();
        let op: String = node.op_type.chars().take(40).collect();
        if name.is_empty() {
            let out: String = node.output.first().map(|s| s.chars().take(80).collect()).unwrap_or_default();
            NodeContext { node: out, unnamed: true, op, opset }
        } else {
            NodeContext { node: name, unnamed: false, op, opset }
        }
    }
}

impl std::fmt::Display for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NodeContext { node, unnamed, op, opset } = self;
        if *unnamed {
            write!(f, "node producing {node:?} ({op}) (opset {opset})")
        } else {
            write!(f, "node {node:?} ({op}) (opset {opset})")
        }
    }
}

fn node_label(node: &NodeProto) -> String {
    let name: String = node.name.chars().take(80).collect();
    let op: String = node.op_type.chars().take(40).collect();
    if name.is_empty() {
        let out: String = node.output.first().map(|s| s.chars().take(80).collect()).unwrap_or_default();
        format!("node producing {out:?} ({op})")
    } else {
        format!("node {name:?} ({op})")
    }
}

/// A node's attributes, by name.
struct Attrs<'a> {
    by_name: HashMap<&'a str, &'a AttributeProto>,
}

impl<'a> Attrs<'a> {
    fn new(node: &'a NodeProto) -> Result<Attrs<'a>> {
        let mut by_name = HashMap::new();
        for a in &node.attribute {
            ensure!(a.ref_attr_name.is_empty(), "attribute {:?} refers to a function attribute", a.name);
            ensure!(by_name.insert(a.name.as_str(), a).is_none(), "attribute {:?} appears twice", a.name);
        }
        Ok(Attrs { by_name })
    }

    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The attribute's type, inferring it for old files that omit it.
    fn kind(a: &AttributeProto) -> i32 {
        use proto::attribute_type::*;
        if a.r#type != UNDEFINED {
            a.r#type
        } else if !a.ints.is_empty() {
            INTS
        } else if !a.floats.is_empty() {
            FLOATS
        } else if a.t.is_some() {
            TENSOR
        } else if !a.s.is_empty() {
            STRING
        } else if a.f != 0.0 {
            FLOAT
        } else {
            INT
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.by_name.get(name) {
            None => Ok(default),
            Some(a) if Self::kind(a) == proto::attribute_type::INT => Ok(a.i),
            Some(_) => bail!("attribute {name:?} must be an integer"),
        }
    }

    fn float(&self, name: &str, default: f64) -> Result<f64> {
        match self.by_name.get(name) {
            None => Ok(default),
            Some(a) if Self::kind(a) == proto::attribute_type::FLOAT => Ok(a.f as f64),
            Some(_) => bail!("attribute {name:?} must be a float"),
        }
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.by_name.get(name) {
            None => Ok(None),
            Some(a) if Self::kind(a) == proto::attribute_type::INTS => {
                ensure!(a.ints.len() <= 64, "attribute {name:?} has {} values", a.ints.len());
                Ok(Some(a.ints.clone()))
            }
            Some(_) => bail!("attribute {name:?} must be a list of integers"),
        }
    }

    fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.by_name.get(name) {
            None => Ok(default.to_string()),
            Some(a) if Self::kind(a) == proto::attribute_type::STRING => {
                String::from_utf8(a.s.clone()).map_err(|_| anyhow!("attribute {name:?} is not UTF-8"))
            }
            Some(_) => bail!("attribute {name:?} must be a string"),
        }
    }

    /// Rejects attributes other than `known`.
    fn only(&self, known: &[&str]) -> Result<()> {
        if let Some(name) = self.by_name.keys().find(|k| !known.contains(k)) {
            bail!("attribute {name:?} is not supported");
        }
        Ok(())
    }
}

/// `[a, b]` from a two-element attribute list, each in `lo..=hi`.
fn pair(v: &[i64], what: &str, lo: i64, hi: i64) -> Result<[usize; 2]> {
    ensure!(v.len() == 2, "{what} must have 2 values (2-D), got {v:?}");
    ensure!(v.iter().all(|x| (lo..=hi).contains(x)), "{what} {v:?} out of range {lo}..={hi}");
    Ok([v[0] as usize, v[1] as usize])
}

/// Numpy-style broadcast of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let n = a.len().max(b.len());
    let get = |s: &[usize], i: usize| if i + s.len() >= n { s[i + s.len() - n] } else { 1 };
    (0..n)
        .map(|i| match (get(a, i), get(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => bail!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"),
        })
        .collect()
}

/// Flat index into `src` (shape `src_dims`) for every element of the
/// broadcast shape `to`.
fn broadcast_index(src_dims: &[usize], to: &[usize]) -> Result<Vec<usize>> {
    let n = elements(to)?;
    ensure!(src_dims.len() <= to.len(), "cannot broadcast {src_dims:?} to {to:?}");
    let off = to.len() - src_dims.len();
    let mut strides = vec![0usize; to.len()];
    let mut s = 1;
    for i in (0..src_dims.len()).rev() {
        ensure!(src_dims[i] == to[off + i] || src_dims[i] == 1, "cannot broadcast {src_dims:?} to {to:?}");
        strides[off + i] = if src_dims[i] == 1 { 0 } else { s };
        s *= src_dims[i];
    }
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; to.len()];
    for _ in 0..n {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..to.len()).rev() {
            idx[d] += 1;
            if idx[d] < to[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(out)
}

fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    ensure!((-r..r).contains(&a), "axis {a} out of range for rank {rank}");
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Output size of a pooling/convolution sweep with ONNX's `ceil_mode`.
fn sweep_ceil(n: usize, k: usize, s: usize) -> Option<usize> {
    if n < k { None } else { Some((n - k).div_ceil(s) + 1) }
}

impl<'a> Importer<'a> {
    fn new(graph: &'a GraphProto, opset: i64, options: &'a ImportOptions) -> Result<Importer<'a>> {
        ensure!(graph.node.len() <= MAX_NODES, "the graph has {} nodes, more than {MAX_NODES}", graph.node.len());
        ensure!(graph.initializer.len() <= MAX_NODES, "the graph has {} initializers", graph.initializer.len());
        ensure!(graph.input.len() <= MAX_NODES, "the graph has {} inputs", graph.input.len());
        let mut imp = Importer {
            graph,
            opset,
            options,
            values: HashMap::new(),
            shapes: Vec::new(),
            full_shapes: Vec::new(),
            layers: Vec::new(),
            consumers: HashMap::new(),
            const_elements: 0,
            input_factor: 1.0,
        };
        for t in &graph.initializer {
            ensure!(!t.name.is_empty(), "an initializer has no name");
            let c = tensor_const(t).with_context(|| format!("initializer {:?}", t.name))?;
            imp.count_const(&c)?;
            ensure!(imp.values.insert(&t.name, Value::Const(c)).is_none(), "initializer {:?} is defined twice", t.name);
        }
        // The data input: the one graph input no initializer names (older
        // files list initializers among the inputs too).
        let mut seen = HashSet::new();
        let mut data_inputs = Vec::new();
        for vi in &graph.input {
            ensure!(seen.insert(vi.name.as_str()), "graph input {:?} is listed twice", vi.name);
            if !imp.values.contains_key(vi.name.as_str()) {
                data_inputs.push(vi);
            }
        }
        let input = match data_inputs.as_slice() {
            [one] => *one,
            [] => bail!("the graph has no data input (every input is an initializer)"),
            more => bail!(
                "the graph has {} data inputs ({:?}); one is supported",
                more.len(),
                more.iter().map(|v| v.name.as_str()).take(8).collect::<Vec<_>>()
            ),
        };
        ensure!(!input.name.is_empty(), "the graph input has no name");
        let shape = Self::input_shape(input).with_context(|| format!("graph input {:?}", input.name))?;
        imp.values.insert(&input.name, Value::Act(0));
        imp.full_shapes.push([&[1], shape.as_slice()].concat());
        imp.shapes.push(shape);
        Ok(imp)
    }

    fn input_shape(vi: &proto::ValueInfoProto) -> Result<Vec<usize>> {
        let tt = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).context("not a tensor")?;
        let dims = &tt.shape.as_ref().context("no shape given")?.dim;
        ensure!((2..=4).contains(&dims.len()), "rank {} not supported (expected [N, …] of rank 2 to 4)", dims.len());
        // The first dimension is the batch: fixed 1, or symbolic/unknown.
        match &dims[0].value {
            Some(proto::DimensionValue::DimValue(1)) | Some(proto::DimensionValue::DimParam(_)) | None => {}
            Some(proto::DimensionValue::DimValue(v)) => bail!("batch dimension {v}: only 1 (or symbolic) is supported"),
        }
        let shape = dims[1..]
            .iter()
            .map(|d| match &d.value {
                Some(proto::DimensionValue::DimValue(v)) if (1..=1 << 16).contains(v) => Ok(*v as usize),
                other => bail!("dimension {other:?} must be a fixed size 1..=65536"),
            })
            .collect::<Result<Vec<_>>>()?;
        ensure!(elements(&shape)? <= MAX_ACTIVATION, "input shape {shape:?} too large");
        Ok(shape)
    }

    fn count_const(&mut self, c: &Const) -> Result<()> {
        self.const_elements = self.const_elements.saturating_add(c.len());
        ensure!(
            self.const_elements <= MAX_TENSOR_ELEMENTS,
            "constants hold more than {MAX_TENSOR_ELEMENTS} elements in all"
        );
        Ok(())
    }

    /// Topological order of the nodes that lead to the graph output, by names.
    fn order(&self) -> Result<Vec<usize>> {
        let nodes = &self.graph.node;
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for o in n.output.iter().filter(|o| !o.is_empty()) {
                ensure!(
                    !self.values.contains_key(o.as_str()),
                    "{}: output {o:?} has the name of an initializer or graph input",
                    node_label(n)
                );
                ensure!(producer.insert(o, i).is_none(), "{}: output {o:?} is produced twice", node_label(n));
            }
        }
        let outputs = &self.graph.output;
        ensure!(outputs.len() == 1, "the graph has {} outputs; one is supported", outputs.len());
        let out = outputs[0].name.as_str();
        ensure!(
            producer.contains_key(out) || self.values.contains_key(out),
            "the graph output {out:?} is not produced by any node"
        );
        // Nodes the output depends on.
        let mut needed = vec![false; nodes.len()];
        let mut stack: Vec<&str> = vec![out];
        while let Some(name) = stack.pop() {
            if let Some(&p) = producer.get(name)
                && !needed[p]
            {
                needed[p] = true;
                stack.extend(nodes[p].input.iter().filter(|s| !s.is_empty()).map(String::as_str));
            }
        }
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, n) in nodes.iter().enumerate().filter(|(i, _)| needed[*i]) {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                if let Some(&p) = producer.get(inp.as_str()) {
                    deps[i].push(p);
                    users[p].push(i);
                } else if !self.values.contains_key(inp.as_str()) {
                    bail!(
                        "{}: input {inp:?} is not defined (no initializer, graph input or node output)",
                        node_label(n)
                    );
                }
            }
        }
        let mut missing: Vec<usize> = deps.iter().map(Vec::len).collect();
        let mut ready: std::collections::BTreeSet<usize> =
            (0..nodes.len()).filter(|&i| needed[i] && missing[i] == 0).collect();
        let mut order = Vec::new();
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                missing[u] -= 1;
                if missing[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        let want = needed.iter().filter(|&&b| b).count();
        if order.len() < want {
            let stuck = (0..nodes.len()).find(|&i| needed[i] && missing[i] > 0).unwrap_or(0);
            bail!("the graph has a cycle through {}", node_label(&nodes[stuck]));
        }
        Ok(order)
    }

    fn run(&mut self) -> Result<()> {
        let order = self.order()?;
        let graph = self.graph;
        for &i in &order {
            for inp in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
                *self.consumers.entry(inp).or_default() += 1;
            }
        }
        let out_name = graph.output[0].name.as_str();
        *self.consumers.entry(out_name).or_default() += 1;
        // Kahn's algorithm again, now on the values: of the nodes whose
        // inputs are all known, those that compute constants (plumbing) go
        // first, then the data path in topological order, so that the data
        // path is one chain in the order it is met.
        let mut users: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut missing: HashMap<usize, usize> = HashMap::new();
        let mut ready_const = std::collections::BTreeSet::new();
        let mut ready_data = std::collections::BTreeSet::new();
        let is_const = |imp: &Importer, i: usize| {
            let n = &graph.node[i];
            n.op_type == "Shape"
                || n.input
                    .iter()
                    .filter(|s| !s.is_empty())
                    .all(|s| matches!(imp.values.get(s.as_str()), Some(Value::Const(_))))
        };
        for (pos, &i) in order.iter().enumerate() {
            let mut names: Vec<&str> =
                graph.node[i].input.iter().filter(|s| !s.is_empty()).map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            let unknown: Vec<&str> = names.into_iter().filter(|s| !self.values.contains_key(s)).collect();
            for s in &unknown {
                users.entry(s).or_default().push(pos);
            }
            if unknown.is_empty() {
                if is_const(self, i) {
                    ready_const.insert(pos)
                } else {
                    ready_data.insert(pos)
                };
            }
            missing.insert(pos, unknown.len());
        }
        let mut done = 0;
        while let Some(pos) = ready_const.pop_first().or_else(|| ready_data.pop_first()) {
            let node = &graph.node[order[pos]];
            self.node(node).with_context(|| NodeContext::of(node, self.opset))?;
            done += 1;
            // Reads still to come: what decides whether a bias may fold.
            for inp in node.input.iter().filter(|s| !s.is_empty()) {
                if let Some(c) = self.consumers.get_mut(inp.as_str()) {
                    *c = c.saturating_sub(1);
                }
            }
            for o in node.output.iter().filter(|o| !o.is_empty() && self.values.contains_key(o.as_str())) {
                for &u in users.get(o.as_str()).map(Vec::as_slice).unwrap_or(&[]) {
                    let m = missing.get_mut(&u).context("internal: unknown node")?;
                    *m -= 1;
                    if *m == 0 {
                        if is_const(self, order[u]) {
                            ready_const.insert(u)
                        } else {
                            ready_data.insert(u)
                        };
                    }
                }
            }
        }
        if done < order.len() {
            let stuck = (0..order.len()).find(|p| missing.get(p).is_some_and(|&m| m > 0)).unwrap_or(0);
            let node = &graph.node[order[stuck]];
            bail!("{}: an input is never computed (an unused optional output of another node?)", node_label(node));
        }
        match self.values.get(out_name) {
            Some(Value::Act(a)) if *a == self.shapes.len() - 1 => {}
            Some(Value::Act(_)) => bail!("the graph output {out_name:?} is not the last activation"),
            _ => bail!("the graph output {out_name:?} is a constant, not computed from the input"),
        }
        ensure!(!self.layers.is_empty(), "the graph computes nothing from its input");
        Ok(())
    }

    fn input(&self, node: &'a NodeProto, k: usize) -> Result<&Value> {
        let name = node.input.get(k).filter(|s| !s.is_empty()).with_context(|| format!("input {k} is missing"))?;
        self.values.get(name.as_str()).with_context(|| format!("input {name:?} is not defined"))
    }

    fn opt_input(&self, node: &'a NodeProto, k: usize) -> Result<Option<&Value>> {
        match node.input.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(_) => self.input(node, k).map(Some),
        }
    }

    fn const_input(&self, node: &'a NodeProto, k: usize, what: &str) -> Result<Const> {
        match self.input(node, k)? {
            Value::Const(c) => Ok(c.clone()),
            Value::Act(_) => bail!("{what} (input {k}) must be a constant or initializer"),
        }
    }

    fn act_input(&self, node: &'a NodeProto, k: usize) -> Result<usize> {
        match self.input(node, k)? {
            Value::Act(a) => Ok(*a),
            Value::Const(_) => bail!("input {k} must be computed from the graph input, not a constant"),
        }
    }

    /// The activation must be the latest of the chain (the graph may not
    /// branch except through residual adds).
    fn head(&self, node: &'a NodeProto, k: usize) -> Result<usize> {
        let a = self.act_input(node, k)?;
        ensure!(
            a == self.shapes.len() - 1,
            "input {:?} is not the latest activation: the graph branches, and only residual Adds may join branches",
            node.input[k]
        );
        Ok(a)
    }

    /// How many inputs of nodes not yet evaluated (the current one
    /// included) and graph outputs read activation `a`, under any of its
    /// names.
    fn uses(&self, a: usize) -> usize {
        self.values
            .iter()
            .filter(|(_, v)| matches!(v, Value::Act(x) if *x == a))
            .map(|(name, _)| self.consumers.get(name).copied().unwrap_or(0))
            .sum()
    }

    /// ONNX shape (with the batch dimension) of activation `a`.
    fn full_shape(&self, a: usize) -> Vec<usize> {
        self.full_shapes[a].clone()
    }

    fn set_output(&mut self, node: &'a NodeProto, k: usize, v: Value) -> Result<()> {
        if let Some(name) = node.output.get(k).filter(|s| !s.is_empty()) {
            if let Value::Const(c) = &v {
                self.count_const(c)?;
            }
            self.values.insert(name, v);
        }
        Ok(())
    }

    /// Fails if output `k` or later is used (e.g. MaxPool indices).
    fn unused_outputs_from(&self, node: &'a NodeProto, k: usize) -> Result<()> {
        for name in node.output.iter().skip(k).filter(|s| !s.is_empty()) {
            ensure!(
                self.consumers.get(name.as_str()).copied().unwrap_or(0) == 0,
                "output {name:?} is used, and only the first output is supported"
            );
        }
        Ok(())
    }

    fn push(&mut self, node: &'a NodeProto, layer: FloatLayer, shape: Vec<usize>) -> Result<()> {
        ensure!(self.layers.len() < MAX_LAYERS, "more than {MAX_LAYERS} layers");
        ensure!(elements(&shape)? <= MAX_ACTIVATION, "activation shape {shape:?} too large");
        self.layers.push(layer);
        self.full_shapes.push([&[1], shape.as_slice()].concat());
        self.shapes.push(shape);
        let a = self.shapes.len() - 1;
        self.set_output(node, 0, Value::Act(a))
    }

    fn node(&mut self, node: &'a NodeProto) -> Result<()> {
        ensure!(
            node.domain.is_empty() || node.domain == "ai.onnx",
            "operator domain {:?} is not supported",
            node.domain
        );
        ensure!(node.input.len() <= 64 && node.output.len() <= 16, "too many inputs or outputs");
        let attrs = Attrs::new(node)?;
        let all_const = node
            .input
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| matches!(self.values.get(s.as_str()), Some(Value::Const(_))));
        let op = node.op_type.as_str();
        match op {
            "Constant" => {
                let c = self.constant(&attrs)?;
                self.set_output(node, 0, Value::Const(c))
            }
            "Identity" | "Dropout" => {
                if op == "Dropout" {
                    attrs.only(&["ratio", "seed", "is_test"])?;
                    if let Some(Value::Const(t)) = self.opt_input(node, 2)? {
                        ensure!(t.floats().iter().all(|&v| v == 0.0), "Dropout in training mode");
                    }
                    self.unused_outputs_from(node, 1)?;
                } else {
                    attrs.only(&[])?;
                }
                let v = self.input(node, 0)?.clone();
                self.set_output(node, 0, v)
            }
            "Cast" => {
                attrs.only(&["to", "saturate", "round_mode"])?;
                let to = attrs.int("to", -1)? as i32;
                match self.input(node, 0)?.clone() {
                    Value::Const(c) => {
                        let c = cast(&c, to)?;
                        self.set_output(node, 0, Value::Const(c))
                    }
                    v @ Value::Act(_) => {
                        ensure!(
                            matches!(
                                to,
                                data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16 | data_type::BFLOAT16
                            ),
                            "a cast of the data to type {to} is not supported (float types only)"
                        );
                        self.set_output(node, 0, v)
                    }
                }
            }
            "Shape" => {
                attrs.only(&["start", "end"])?;
                let dims = match self.input(node, 0)? {
                    Value::Const(c) => c.dims.clone(),
                    Value::Act(a) => self.full_shape(*a),
                };
                let r = dims.len() as i64;
                let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
                let (s, e) = (clampi(attrs.int("start", 0)?), clampi(attrs.int("end", r)?));
                let dims: Vec<i64> = dims.get(s..e.max(s)).unwrap_or(&[]).iter().map(|&d| d as i64).collect();
                let c = Const { dims: vec![dims.len()], values: Values::Int(dims) };
                self.set_output(node, 0, Value::Const(c))
            }
            "Gather" if all_const => {
                attrs.only(&["axis"])?;
                let data = self.const_input(node, 0, "data")?;
                let idx = self.const_input(node, 1, "indices")?;
                let c = gather(&data, &idx, attrs.int("axis", 0)?)?;
                self.set_output(node, 0, Value::Const(c))
            }
            "Unsqueeze" | "Squeeze" if all_const => {
                attrs.only(&["axes"])?;
                let data = self.const_input(node, 0, "data")?;
                let axes = if self.opset >= 13 {
                    ensure!(!attrs.has("axes"), "axes is an input from opset 13 on, not an attribute");
                    match self.opt_input(node, 1)? {
                        Some(Value::Const(c)) => Some(c.ints("axes")?),
                        Some(Value::Act(_)) => bail!("axes must be constant"),
                        None => None,
                    }
                } else {
                    attrs.ints("axes")?
                };
                let c = if op == "Unsqueeze" {
                    unsqueeze(&data, &axes.context("Unsqueeze needs axes")?)?
                } else {
                    squeeze(&data, axes.as_deref())?
                };
                self.set_output(node, 0, Value::Const(c))
            }
            "Concat" if all_const => {
                attrs.only(&["axis"])?;
                let parts: Vec<Const> = (0..node.input.len())
                    .filter(|&k| !node.input[k].is_empty())
                    .map(|k| self.const_input(node, k, "part"))
                    .collect::<Result<_>>()?;
                let c = concat(
                    &parts,
                    attrs.int("axis", i64::MIN).and_then(|a| {
                        ensure!(a != i64::MIN, "Concat needs an axis");
                        Ok(a)
                    })?,
                )?;
                self.set_output(node, 0, Value::Const(c))
            }
            "Add" | "Sub" | "Mul" | "Div" if all_const => {
                attrs.only(&[])?;
                let a = self.const_input(node, 0, "A")?;
                let b = self.const_input(node, 1, "B")?;
                let c = binary(op, &a, &b)?;
                self.set_output(node, 0, Value::Const(c))
            }
            "Transpose" if all_const => {
                attrs.only(&["perm"])?;
                let data = self.const_input(node, 0, "data")?;
                let c = transpose(&data, attrs.ints("perm")?.as_deref())?;
                self.set_output(node, 0, Value::Const(c))
            }
            "Reshape" => self.reshape(node, &attrs),
            "Flatten" => {
                attrs.only(&["axis"])?;
                let ax = attrs.int("axis", 1)?;
                match self.input(node, 0)?.clone() {
                    Value::Const(c) => {
                        let ax = if ax < 0 { ax + c.dims.len() as i64 } else { ax };
                        ensure!((0..=c.dims.len() as i64).contains(&ax), "axis out of range");
                        let (l, r) = c.dims.split_at(ax as usize);
                        let dims = vec![l.iter().product(), r.iter().product()];
                        self.set_output(node, 0, Value::Const(c.with_dims(dims)))
                    }
                    Value::Act(_) => {
                        self.head(node, 0)?;
                        let a = self.shapes.len() - 1;
                        let full = self.full_shape(a);
                        let ax = if ax < 0 { ax + full.len() as i64 } else { ax };
                        ensure!((0..=full.len() as i64).contains(&ax), "axis {ax} out of range");
                        let (l, r) = full.split_at(ax as usize);
                        ensure!(
                            l.iter().product::<usize>() == 1,
                            "flattening to [{}, …] would merge the batch dimension",
                            l.iter().product::<usize>()
                        );
                        let n: usize = r.iter().product();
                        self.push(node, FloatLayer::Flatten, vec![n])
                    }
                }
            }
            "Relu" => {
                attrs.only(&[])?;
                let a = self.head(node, 0)?;
                let s = self.shapes[a].clone();
                self.push(node, FloatLayer::Relu, s)
            }
            "Sign" => {
                attrs.only(&[])?;
                let a = self.head(node, 0)?;
                let s = self.shapes[a].clone();
                self.push(node, FloatLayer::Sign, s)
            }
            "Tanh" | "HardTanh" | "Hardtanh" => {
                ensure!(
                    self.options.tanh_as_sign,
                    "{op} is only supported as the sign activation, when asked for (--tanh-as-sign)"
                );
                if op == "Tanh" {
                    attrs.only(&[])?;
                }
                let a = self.head(node, 0)?;
                let s = self.shapes[a].clone();
                self.push(node, FloatLayer::Sign, s)
            }
            "Clip" => self.clip(node, &attrs),
            "Gemm" => self.gemm(node, &attrs),
            "MatMul" => {
                attrs.only(&[])?;
                let a = self.head(node, 0)?;
                let b = self.const_input(node, 1, "B")?;
                let full = self.full_shape(a);
                ensure!(
                    full.len() == 2 && full[0] == 1,
                    "MatMul of an activation of shape {full:?} (only [1, K] is supported)"
                );
                let &[k, n] = b.dims.as_slice() else { bail!("B must be a matrix, got shape {:?}", b.dims) };
                ensure!(k == full[1], "B has {k} rows, the input has {} columns", full[1]);
                let bv = b.floats();
                let weights = (0..n).flat_map(|o| (0..k).map(move |i| (o, i))).map(|(o, i)| bv[i * n + o]).collect();
                self.push(node, FloatLayer::Dense { inputs: k, outputs: n, weights, bias: vec![0.0; n] }, vec![n])
            }
            "Add" => self.add(node, &attrs),
            "Conv" => self.conv(node, &attrs),
            "MaxPool" | "AveragePool" => self.pool(node, &attrs),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                attrs.only(&[])?;
                let a = self.head(node, 0)?;
                let &[c, h, w] = self.shapes[a].as_slice() else {
                    bail!("needs an [N, C, H, W] input, got {:?}", self.full_shape(a))
                };
                let (kernel, stride) = ([h, w], [1, 1]);
                let layer = if op == "GlobalMaxPool" {
                    FloatLayer::MaxPool { kernel, stride }
                } else {
                    FloatLayer::AvgPool { kernel, stride }
                };
                self.push(node, layer, vec![c, 1, 1])
            }
            "BatchNormalization" => {
                attrs.only(&["epsilon", "momentum", "spatial", "training_mode", "is_test", "consumed_inputs"])?;
                ensure!(attrs.int("spatial", 1)? == 1, "spatial = 0 is not supported");
                ensure!(attrs.int("training_mode", 0)? == 0, "training mode is not supported");
                self.unused_outputs_from(node, 1)?;
                let a = self.head(node, 0)?;
                let c = self.shapes[a][0];
                let param = |k: usize, what: &str| -> Result<Vec<f64>> {
                    let t = self.const_input(node, k, what)?;
                    ensure!(t.len() == c, "{what} has {} values, the input has {c} channels", t.len());
                    Ok(t.floats())
                };
                let layer = FloatLayer::BatchNorm {
                    gamma: param(1, "scale")?,
                    beta: param(2, "B")?,
                    mean: param(3, "mean")?,
                    var: param(4, "var")?,
                    epsilon: attrs.float("epsilon", 1e-5)?,
                };
                let s = self.shapes[a].clone();
                self.push(node, layer, s)
            }
            "Mul" | "Div"
                if self.layers.iter().all(|l| matches!(l, FloatLayer::Reshape { .. } | FloatLayer::Flatten)) =>
            {
                // Input normalisation by a positive scalar (e.g. x/255 in
                // the graph): it only changes the input's scale.
                attrs.only(&[])?;
                let (k, c) = match (self.input(node, 0)?, self.input(node, 1)?) {
                    (Value::Act(_), Value::Const(c)) => (0, c.clone()),
                    (Value::Const(c), Value::Act(_)) if op == "Mul" => (1, c.clone()),
                    _ => bail!("{op} of the input is only supported by a constant scalar"),
                };
                let a = self.head(node, k)?;
                let v = c.scalar_f64("the factor")?;
                ensure!(
                    v.is_finite() && v > 0.0,
                    "{op} of the input by {v}: only positive factors fold into the input scale"
                );
                self.input_factor *= if op == "Mul" { v } else { 1.0 / v };
                ensure!(self.input_factor.is_finite() && self.input_factor > 0.0, "input scale out of range");
                self.set_output(node, 0, Value::Act(a))
            }
            "Gather" | "Unsqueeze" | "Squeeze" | "Concat" | "Sub" | "Mul" | "Div" | "Transpose" => {
                bail!("operator {op} is only supported on constants (here its input is computed from the data)")
            }
            other => bail!("operator {other:?} is not supported"),
        }
    }

    fn constant(&mut self, attrs: &Attrs) -> Result<Const> {
        attrs.only(&["value", "value_float", "value_floats", "value_int", "value_ints"])?;
        ensure!(attrs.by_name.len() == 1, "Constant needs exactly one value attribute");
        let (name, a) = attrs.by_name.iter().next().map(|(k, v)| (*k, *v)).context("no value")?;
        Ok(match name {
            "value" => tensor_const(a.t.as_ref().context("value is not a tensor")?)?,
            "value_float" => Const { dims: vec![], values: Values::Float(vec![attrs.float(name, 0.0)?]) },
            "value_int" => Const { dims: vec![], values: Values::Int(vec![attrs.int(name, 0)?]) },
            "value_ints" => {
                let v = attrs.ints(name)?.unwrap_or_default();
                Const { dims: vec![v.len()], values: Values::Int(v) }
            }
            _ => {
                ensure!(a.floats.len() <= 1 << 20, "too many values");
                Const {
                    dims: vec![a.floats.len()],
                    values: Values::Float(a.floats.iter().map(|&f| f as f64).collect()),
                }
            }
        })
    }

    fn reshape(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        attrs.only(&["shape", "allowzero"])?;
        let target = match self.opt_input(node, 1)? {
            Some(Value::Const(c)) => c.ints("shape")?,
            Some(Value::Act(_)) => bail!("the target shape must be constant"),
            None => attrs.ints("shape")?.context("no target shape (input 1 or attribute)")?,
        };
        ensure!(!target.is_empty() && target.len() <= MAX_RANK, "target shape {target:?} unsupported");
        let allow_zero = attrs.int("allowzero", 0)? != 0;
        let value = self.input(node, 0)?.clone();
        let from = match &value {
            Value::Const(c) => c.dims.clone(),
            Value::Act(a) => self.full_shape(*a),
        };
        let total = elements(&from)?;
        let mut dims = Vec::with_capacity(target.len());
        let mut infer = None;
        for (i, &t) in target.iter().enumerate() {
            dims.push(match t {
                0 if !allow_zero => *from.get(i).with_context(|| format!("0 at {i} copies a missing dimension"))?,
                -1 => {
                    ensure!(infer.replace(i).is_none(), "more than one -1 in {target:?}");
                    1
                }
                t if t >= 0 && t as usize <= MAX_TENSOR_ELEMENTS => t as usize,
                t => bail!("bad target dimension {t}"),
            });
        }
        let known = elements(&dims)?;
        if let Some(i) = infer {
            ensure!(known > 0 && total % known == 0, "cannot infer -1 in {target:?} for {from:?}");
            dims[i] = total / known;
        }
        ensure!(elements(&dims)? == total, "cannot reshape {from:?} to {dims:?}");
        match value {
            Value::Const(c) => self.set_output(node, 0, Value::Const(c.with_dims(dims))),
            Value::Act(_) => {
                self.head(node, 0)?;
                // [1, …] keeps the batch; a target without it (possible with
                // one image) is the same values.
                let shape = if dims.len() >= 2 && dims[0] == 1 { dims[1..].to_vec() } else { dims.clone() };
                ensure!(shape.len() <= 4, "reshape to rank {} is not supported", shape.len() + 1);
                self.push(node, FloatLayer::Reshape { shape: shape.clone() }, shape)?;
                if let Some(last) = self.full_shapes.last_mut() {
                    *last = dims;
                }
                Ok(())
            }
        }
    }

    fn clip(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        let (lo, hi) = if self.opset >= 11 {
            attrs.only(&[])?;
            let bound = |k: usize, default: f64| -> Result<f64> {
                match self.opt_input(node, k)? {
                    None => Ok(default),
                    Some(Value::Const(c)) => c.scalar_f64("a bound"),
                    Some(Value::Act(_)) => bail!("bounds must be constant"),
                }
            };
            (bound(1, f64::NEG_INFINITY)?, bound(2, f64::INFINITY)?)
        } else {
            attrs.only(&["min", "max"])?;
            (attrs.float("min", f64::NEG_INFINITY)?, attrs.float("max", f64::INFINITY)?)
        };
        let a = self.head(node, 0)?;
        let s = self.shapes[a].clone();
        if lo == 0.0 && hi == f64::INFINITY {
            self.push(node, FloatLayer::Relu, s)
        } else if lo == -1.0 && hi == 1.0 {
            ensure!(self.options.tanh_as_sign, "Clip(-1, 1) (hard tanh) is only supported as sign, when asked for");
            self.push(node, FloatLayer::Sign, s)
        } else {
            bail!("Clip({lo}, {hi}) is not supported (only Clip(0, ∞) as ReLU and Clip(-1, 1) as sign)")
        }
    }

    fn gemm(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        attrs.only(&["alpha", "beta", "transA", "transB", "broadcast"])?;
        let alpha = attrs.float("alpha", 1.0)?;
        let beta = attrs.float("beta", 1.0)?;
        let (ta, tb) = (attrs.int("transA", 0)? != 0, attrs.int("transB", 0)? != 0);
        let a = self.head(node, 0)?;
        let full = self.full_shape(a);
        ensure!(full.len() == 2, "Gemm of an activation of shape {full:?} (needs rank 2; Flatten first)");
        // One row of A (or of Aᵀ with transA: a [K, 1] column) per image.
        let k = if ta {
            ensure!(full[1] == 1, "transA = 1 needs a [K, 1] column (one image), got {full:?}");
            full[0]
        } else {
            ensure!(full[0] == 1, "Gemm needs a [1, K] row (one image), got {full:?}");
            full[1]
        };
        let b = self.const_input(node, 1, "B")?;
        let &[r, c] = b.dims.as_slice() else { bail!("B must be a matrix, got shape {:?}", b.dims) };
        let (bk, n) = if tb { (c, r) } else { (r, c) };
        ensure!(bk == k, "B is {r}×{c}{}, which does not take {k} inputs", if tb { " (transposed)" } else { "" });
        let bv = b.floats();
        let weights: Vec<f64> = (0..n)
            .flat_map(|o| (0..k).map(move |i| (o, i)))
            .map(|(o, i)| alpha * if tb { bv[o * k + i] } else { bv[i * n + o] })
            .collect();
        let bias = match self.opt_input(node, 2)? {
            None => vec![0.0; n],
            Some(Value::Act(_)) => bail!("C must be a constant"),
            Some(Value::Const(cst)) => {
                let idx = broadcast_index(&cst.dims, &[1, n]).context("C does not broadcast to [1, N]")?;
                let v = cst.floats();
                idx.iter().map(|&i| beta * v[i]).collect()
            }
        };
        self.push(node, FloatLayer::Dense { inputs: k, outputs: n, weights, bias }, vec![n])
    }

    fn add(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        attrs.only(&["broadcast", "axis"])?;
        ensure!(!attrs.has("axis"), "Add with a legacy broadcast axis is not supported");
        let (x, y) = (self.input(node, 0)?.clone(), self.input(node, 1)?.clone());
        match (x, y) {
            (Value::Act(p), Value::Act(q)) => {
                let last = self.shapes.len() - 1;
                let other = if p == last {
                    q
                } else if q == last {
                    p
                } else {
                    bail!("neither summand is the latest activation")
                };
                ensure!(other != last, "adding an activation to itself is not supported");
                ensure!(
                    self.shapes[p] == self.shapes[q],
                    "residual add of shapes {:?} and {:?} (no broadcasting)",
                    self.full_shape(p),
                    self.full_shape(q)
                );
                let s = self.shapes[last].clone();
                self.push(node, FloatLayer::ResidualAdd { from: other }, s)
            }
            (Value::Act(_), Value::Const(c)) | (Value::Const(c), Value::Act(_)) => {
                let k = if matches!(self.input(node, 0)?, Value::Act(_)) { 0 } else { 1 };
                let a = self.head(node, k)?;
                let full = self.full_shape(a);
                let idx = broadcast_index(&c.dims, &full)
                    .with_context(|| format!("the constant of shape {:?} does not broadcast to {full:?}", c.dims))?;
                let v = c.floats();
                let add: Vec<f64> = idx.iter().map(|&i| v[i]).collect();
                // Only the bias of the layer that produced this activation,
                // and only if nothing else reads the activation before it.
                let private = self.uses(a) == 1;
                let Some(layer) = self.layers.last_mut().filter(|l| l.is_linear_map() && private) else {
                    bail!("adding a constant is only supported as the bias of a Gemm/MatMul/Conv output used once");
                };
                let bias = match layer {
                    FloatLayer::Dense { bias, .. } | FloatLayer::Conv2d { bias, .. } => bias,
                    _ => bail!("internal: not a linear layer"),
                };
                let per = add.len() / bias.len().max(1);
                for (ch, b) in bias.iter_mut().enumerate() {
                    let chunk = &add[ch * per..(ch + 1) * per];
                    ensure!(
                        chunk.iter().all(|&v| v == chunk[0]),
                        "the constant varies within a channel (only per-channel biases fold)"
                    );
                    *b += chunk[0];
                }
                // The activation now stands for the sum (its old names have
                // no other reader).
                let name_out = node.output.first().filter(|s| !s.is_empty());
                if let Some(o) = name_out {
                    self.values.insert(o, Value::Act(a));
                }
                Ok(())
            }
            (Value::Const(_), Value::Const(_)) => bail!("internal: constant add not folded"),
        }
    }

    fn conv(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        attrs.only(&["auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"])?;
        let a = self.head(node, 0)?;
        let &[c, h, w] = self.shapes[a].as_slice() else {
            bail!("needs an [N, C, H, W] input, got {:?}", self.full_shape(a))
        };
        let wt = self.const_input(node, 1, "W")?;
        let &[m, wc, kh, kw] = wt.dims.as_slice() else { bail!("W must be [M, C, kH, kW], got {:?}", wt.dims) };
        ensure!(attrs.int("group", 1)? == 1, "group = {} (only 1 is supported)", attrs.int("group", 1)?);
        ensure!(wc == c, "W takes {wc} channels, the input has {c}");
        if let Some(d) = attrs.ints("dilations")? {
            ensure!(d.iter().all(|&v| v == 1), "dilations {d:?} (only 1 is supported)");
        }
        if let Some(ks) = attrs.ints("kernel_shape")? {
            ensure!(
                pair(&ks, "kernel_shape", 1, 1 << 10)? == [kh, kw],
                "kernel_shape {ks:?} differs from W's {kh}×{kw}"
            );
        }
        let kernel = [kh, kw];
        let stride = match attrs.ints("strides")? {
            Some(s) => pair(&s, "strides", 1, 1 << 10)?,
            None => [1, 1],
        };
        let padding = self.padding(attrs, [h, w], kernel, stride)?;
        let bias = match self.opt_input(node, 2)? {
            None => vec![0.0; m],
            Some(Value::Const(b)) => {
                ensure!(b.len() == m, "B has {} values, W has {m} output channels", b.len());
                b.floats()
            }
            Some(Value::Act(_)) => bail!("B must be a constant"),
        };
        let pads = [padding.top, padding.left, padding.bottom, padding.right];
        let oh = crate::network::sweep(h + pads[0] + pads[2], kh, stride[0]);
        let ow = crate::network::sweep(w + pads[1] + pads[3], kw, stride[1]);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            bail!("kernel {kernel:?} does not fit {h}×{w} padded by {pads:?}")
        };
        let layer =
            FloatLayer::Conv2d { in_channels: c, out_channels: m, kernel, stride, pads, weights: wt.floats(), bias };
        self.push(node, layer, vec![m, oh, ow])
    }

    /// Explicit or automatic padding.
    fn padding(&self, attrs: &Attrs, hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Result<Padding> {
        let auto = attrs.string("auto_pad", "NOTSET")?;
        let explicit = attrs.ints("pads")?;
        Ok(match auto.as_str() {
            "NOTSET" => match explicit {
                None => Padding::valid(),
                Some(p) => {
                    ensure!(p.len() == 4, "pads must have 4 values (2-D), got {p:?}");
                    ensure!(p.iter().all(|v| (0..=1 << 10).contains(v)), "pads {p:?} out of range");
                    let p: Vec<usize> = p.iter().map(|&v| v as usize).collect();
                    // ONNX order: [top, left, bottom, right].
                    Padding { top: p[0], left: p[1], bottom: p[2], right: p[3] }
                }
            },
            "VALID" => Padding::valid(),
            "SAME_UPPER" | "SAME_LOWER" => {
                let upper = Padding::same(hw, kernel, stride);
                if auto == "SAME_UPPER" {
                    upper
                } else {
                    // The odd pixel goes before instead of after.
                    Padding { top: upper.bottom, left: upper.right, bottom: upper.top, right: upper.left }
                }
            }
            other => bail!("auto_pad {other:?} is not supported"),
        })
    }

    fn pool(&mut self, node: &'a NodeProto, attrs: &Attrs) -> Result<()> {
        let max = node.op_type == "MaxPool";
        attrs.only(&[
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
            "storage_order",
        ])?;
        self.unused_outputs_from(node, 1)?;
        let a = self.head(node, 0)?;
        let &[c, h, w] = self.shapes[a].as_slice() else {
            bail!("needs an [N, C, H, W] input, got {:?}", self.full_shape(a))
        };
        let kernel =
            pair(&attrs.ints("kernel_shape")?.context("kernel_shape is required")?, "kernel_shape", 1, 1 << 10)?;
        let stride = match attrs.ints("strides")? {
            Some(s) => pair(&s, "strides", 1, 1 << 10)?,
            None => [1, 1],
        };
        if let Some(d) = attrs.ints("dilations")? {
            ensure!(d.iter().all(|&v| v == 1), "dilations {d:?} (only 1 is supported)");
        }
        ensure!(attrs.int("storage_order", 0)? == 0, "storage_order = 1 is not supported");
        let p = self.padding(attrs, [h, w], kernel, stride)?;
        ensure!(p == Padding::valid(), "padded pooling ({p:?}) is not supported");
        let (Some(oh), Some(ow)) =
            (crate::network::sweep(h, kernel[0], stride[0]), crate::network::sweep(w, kernel[1], stride[1]))
        else {
            bail!("window {kernel:?} does not fit {h}×{w}")
        };
        if attrs.int("ceil_mode", 0)? != 0 {
            ensure!(
                sweep_ceil(h, kernel[0], stride[0]) == Some(oh) && sweep_ceil(w, kernel[1], stride[1]) == Some(ow),
                "ceil_mode = 1 adds partial windows here, which is not supported"
            );
        }
        let layer = if max { FloatLayer::MaxPool { kernel, stride } } else { FloatLayer::AvgPool { kernel, stride } };
        self.push(node, layer, vec![c, oh, ow])
    }
}

fn cast(c: &Const, to: i32) -> Result<Const> {
    use data_type::*;
    let values = match to {
        FLOAT | DOUBLE | FLOAT16 | BFLOAT16 => Values::Float(c.floats()),
        INT64 | INT32 | INT16 | INT8 | UINT8 | UINT16 | UINT32 | UINT64 => Values::Int(match &c.values {
            Values::Int(v) => v.clone(),
            Values::Float(v) => v.iter().map(|&x| x.trunc().clamp(i64::MIN as f64, i64::MAX as f64) as i64).collect(),
        }),
        BOOL => Values::Int(c.floats().iter().map(|&x| (x != 0.0) as i64).collect()),
        other => bail!("cast to type {other} is not supported"),
    };
    Ok(Const { dims: c.dims.clone(), values })
}

fn gather(data: &Const, idx: &Const, ax: i64) -> Result<Const> {
    let r = data.dims.len();
    ensure!(r >= 1, "Gather on a scalar");
    let ax = axis(ax, r)?;
    let n = data.dims[ax] as i64;
    let picks = idx
        .ints("indices")?
        .iter()
        .map(|&i| {
            ensure!((-n..n).contains(&i), "index {i} out of range for a dimension of {n}");
            Ok(if i < 0 { (i + n) as usize } else { i as usize })
        })
        .collect::<Result<Vec<_>>>()?;
    let outer: usize = data.dims[..ax].iter().product();
    let inner: usize = data.dims[ax + 1..].iter().product();
    let mut dims = data.dims[..ax].to_vec();
    dims.extend(&idx.dims);
    dims.extend(&data.dims[ax + 1..]);
    elements(&dims)?;
    let mut flat = Vec::new();
    for o in 0..outer {
        for &p in &picks {
            flat.extend((0..inner).map(|j| (o * data.dims[ax] + p) * inner + j));
        }
    }
    Ok(data.pick(dims, &flat))
}

fn transpose(data: &Const, perm: Option<&[i64]>) -> Result<Const> {
    let r = data.dims.len();
    let perm: Vec<usize> = match perm {
        None => (0..r).rev().collect(),
        Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_>>()?,
    };
    let mut seen = vec![false; r];
    ensure!(perm.len() == r && perm.iter().all(|&p| !std::mem::replace(&mut seen[p], true)), "bad perm {perm:?}");
    let dims: Vec<usize> = perm.iter().map(|&p| data.dims[p]).collect();
    // Row-major strides of the source, permuted.
    let mut strides = vec![1usize; r];
    for i in (0..r.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * data.dims[i + 1];
    }
    let n = elements(&dims)?;
    let mut idx = vec![0usize; r];
    let mut flat = Vec::with_capacity(n);
    for _ in 0..n {
        flat.push(idx.iter().zip(&perm).map(|(i, &p)| i * strides[p]).sum());
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(data.pick(dims, &flat))
}

fn unsqueeze(data: &Const, axes: &[i64]) -> Result<Const> {
    let r = data.dims.len() + axes.len();
    ensure!(r <= MAX_RANK, "rank {r} too large");
    let mut set = BTreeMap::new();
    for &a in axes {
        ensure!(set.insert(axis(a, r)?, ()).is_none(), "axis {a} repeated");
    }
    let mut src = data.dims.iter();
    let dims = (0..r).map(|i| if set.contains_key(&i) { 1 } else { src.next().copied().unwrap_or(1) }).collect();
    Ok(data.with_dims(dims))
}

fn squeeze(data: &Const, axes: Option<&[i64]>) -> Result<Const> {
    let r = data.dims.len();
    let drop: Vec<usize> = match axes {
        None => (0..r).filter(|&i| data.dims[i] == 1).collect(),
        Some(ax) => ax.iter().map(|&a| axis(a, r)).collect::<Result<_>>()?,
    };
    for &d in &drop {
        ensure!(data.dims[d] == 1, "cannot squeeze axis {d} of size {}", data.dims[d]);
    }
    let dims = (0..r).filter(|i| !drop.contains(i)).map(|i| data.dims[i]).collect();
    Ok(data.with_dims(dims))
}

fn concat(parts: &[Const], ax: i64) -> Result<Const> {
    let first = parts.first().context("Concat of nothing")?;
    let r = first.dims.len();
    let ax = axis(ax, r)?;
    let ints = parts.iter().all(|p| matches!(p.values, Values::Int(_)));
    let mut dims = first.dims.clone();
    dims[ax] = 0;
    for p in parts {
        ensure!(p.dims.len() == r, "Concat of ranks {} and {}", r, p.dims.len());
        for (i, (&x, &y)) in first.dims.iter().zip(&p.dims).enumerate() {
            ensure!(i == ax || x == y, "Concat of shapes {:?} and {:?}", first.dims, p.dims);
        }
        dims[ax] += p.dims[ax];
    }
    elements(&dims)?;
    let outer: usize = first.dims[..ax].iter().product();
    let floats: Vec<Vec<f64>> = if ints { vec![] } else { parts.iter().map(Const::floats).collect() };
    let mut fl = Vec::new();
    let mut il = Vec::new();
    for o in 0..outer {
        for (j, p) in parts.iter().enumerate() {
            let chunk: usize = p.dims[ax..].iter().product();
            match &p.values {
                Values::Int(v) if ints => il.extend_from_slice(&v[o * chunk..(o + 1) * chunk]),
                _ => fl.extend_from_slice(&floats[j][o * chunk..(o + 1) * chunk]),
            }
        }
    }
    Ok(Const { dims, values: if ints { Values::Int(il) } else { Values::Float(fl) } })
}

fn binary(op: &str, a: &Const, b: &Const) -> Result<Const> {
    let dims = broadcast_shape(&a.dims, &b.dims)?;
    let (ia, ib) = (broadcast_index(&a.dims, &dims)?, broadcast_index(&b.dims, &dims)?);
    let values = match (&a.values, &b.values) {
        (Values::Int(x), Values::Int(y)) => Values::Int(
            ia.iter()
                .zip(&ib)
                .map(|(&i, &j)| {
                    let (p, q) = (x[i], y[j]);
                    match op {
                        "Add" => p.checked_add(q),
                        "Sub" => p.checked_sub(q),
                        "Mul" => p.checked_mul(q),
                        _ => p.checked_div(q).map(|d| if (p % q != 0) && ((p < 0) != (q < 0)) { d - 1 } else { d }),
                    }
                    .with_context(|| format!("integer {op} of {p} and {q} overflows or divides by zero"))
                })
                .collect::<Result<_>>()?,
        ),
        _ => {
            let (x, y) = (a.floats(), b.floats());
            Values::Float(
                ia.iter()
                    .zip(&ib)
                    .map(|(&i, &j)| match op {
                        "Add" => x[i] + y[j],
                        "Sub" => x[i] - y[j],
                        "Mul" => x[i] * y[j],
                        _ => x[i] / y[j],
                    })
                    .collect(),
            )
        }
    };
    Ok(Const { dims, values })
}
