//! ONNX import: models built here with the importer's protobuf types, for
//! every supported operator and attribute combination and several opsets,
//! checked against a direct float computation written out below; and
//! malformed files, which must give errors and never panic.

use dash_host::model::{FloatLayer, FloatModel};
use dash_host::onnx::proto::*;
use dash_host::onnx::{ImportOptions, import_bytes};
use dash_host::quantize::{QuantizeOptions, interval_bounds, quantize};
use prost::Message;

// ---------------------------------------------------------------- builders

fn ftensor(name: &str, dims: &[i64], data: &[f32]) -> TensorProto {
    // Alternate between the two encodings ONNX allows.
    let raw = data.len().is_multiple_of(2);
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: if raw { vec![] } else { data.to_vec() },
        raw_data: if raw { data.iter().flat_map(|v| v.to_le_bytes()).collect() } else { vec![] },
        ..Default::default()
    }
}

fn itensor(name: &str, dims: &[i64], data: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        int64_data: data.to_vec(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ai(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INT, i: v, ..Default::default() }
}
fn af(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::FLOAT, f: v, ..Default::default() }
}
fn ais(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INTS, ints: v.to_vec(), ..Default::default() }
}
fn astr(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::STRING, s: v.as_bytes().to_vec(), ..Default::default() }
}
fn at(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::TENSOR, t: Some(t), ..Default::default() }
}

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d < 0 { DimensionValue::DimParam("N".into()) } else { DimensionValue::DimValue(d) }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: data_type::FLOAT, shape: Some(TensorShapeProto { dim }) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct G {
    opset: i64,
    input: Vec<i64>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    output: String,
}

impl G {
    fn new(opset: i64, input: &[i64]) -> G {
        G { opset, input: input.to_vec(), nodes: vec![], inits: vec![], output: String::new() }
    }
    fn n(mut self, n: NodeProto) -> G {
        self.output = n.output[0].clone();
        self.nodes.push(n);
        self
    }
    fn init(mut self, t: TensorProto) -> G {
        self.inits.push(t);
        self
    }
    fn proto(&self) -> ModelProto {
        ModelProto {
            ir_version: 7,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: self.opset }],
            producer_name: "dash-host tests".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                node: self.nodes.clone(),
                initializer: self.inits.clone(),
                input: vec![vi("x", &self.input)],
                output: vec![vi(&self.output, &[])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    fn bytes(&self) -> Vec<u8> {
        self.proto().encode_to_vec()
    }
    fn import(&self) -> FloatModel {
        import_bytes(&self.bytes(), &ImportOptions::default()).unwrap_or_else(|e| panic!("{e:#}"))
    }
    fn import_err(&self) -> String {
        format!("{:#}", import_bytes(&self.bytes(), &ImportOptions::default()).expect_err("must fail"))
    }
}

// ------------------------------------------------- a direct float reference

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
    fn v(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

/// NCHW convolution, batch 1, written from the ONNX definition.
#[allow(clippy::too_many_arguments)]
fn conv_ref(
    x: &[f64],
    [c, h, w]: [usize; 3],
    wt: &[f32],
    m: usize,
    [kh, kw]: [usize; 2],
    b: Option<&[f32]>,
    [pt, pl, pb, pr]: [usize; 4],
    [sh, sw]: [usize; 2],
) -> (Vec<f64>, [usize; 3]) {
    let oh = (h + pt + pb - kh) / sh + 1;
    let ow = (w + pl + pr - kw) / sw + 1;
    let mut y = vec![0.0; m * oh * ow];
    for o in 0..m {
        for r in 0..oh {
            for q in 0..ow {
                let mut acc = b.map_or(0.0, |b| b[o] as f64);
                for ic in 0..c {
                    for dy in 0..kh {
                        for dx in 0..kw {
                            let iy = (r * sh + dy) as isize - pt as isize;
                            let ix = (q * sw + dx) as isize - pl as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += wt[((o * c + ic) * kh + dy) * kw + dx] as f64
                                    * x[(ic * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
                y[(o * oh + r) * ow + q] = acc;
            }
        }
    }
    (y, [m, oh, ow])
}

fn pool_ref(
    x: &[f64],
    [c, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    max: bool,
) -> (Vec<f64>, [usize; 3]) {
    let (oh, ow) = ((h - kh) / sh + 1, (w - kw) / sw + 1);
    let mut y = Vec::new();
    for ch in 0..c {
        for r in 0..oh {
            for q in 0..ow {
                let vals: Vec<f64> = (0..kh)
                    .flat_map(|dy| (0..kw).map(move |dx| (dy, dx)))
                    .map(|(dy, dx)| x[(ch * h + r * sh + dy) * w + q * sw + dx])
                    .collect();
                y.push(if max {
                    vals.iter().cloned().fold(f64::MIN, f64::max)
                } else {
                    vals.iter().sum::<f64>() / vals.len() as f64
                });
            }
        }
    }
    (y, [c, oh, ow])
}

/// `alpha·op(A)·op(B) + beta·C` for `A` of shape `[1, K]`.
fn gemm_ref(x: &[f64], b: &[f32], [r, c]: [usize; 2], trans_b: bool, alpha: f64, beta: f64, cb: &[f64]) -> Vec<f64> {
    let (k, n) = if trans_b { (c, r) } else { (r, c) };
    (0..n)
        .map(|o| {
            let dot: f64 = (0..k).map(|i| x[i] * if trans_b { b[o * k + i] } else { b[i * n + o] } as f64).sum();
            alpha * dot + beta * cb[o]
        })
        .collect()
}

fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.max(0.0)).collect()
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-9 * (1.0 + w.abs()), "element {i}: got {g}, want {w}");
    }
}

fn input(rng: &mut Rng, n: usize) -> Vec<f64> {
    rng.v(n).iter().map(|&v| v as f64).collect()
}

// ------------------------------------------------------------------- tests

#[test]
fn gemm_attribute_combinations_and_opsets() {
    let mut rng = Rng(7);
    for opset in [7, 9, 11, 13, 17, 21] {
        for trans_b in [false, true] {
            for (alpha, beta) in [(1.0f32, 1.0f32), (0.5, 2.0), (-1.5, 0.0)] {
                for c_dims in [None, Some(vec![3i64]), Some(vec![1, 3]), Some(vec![1])] {
                    let b = rng.v(12);
                    let dims = if trans_b { [3i64, 4] } else { [4, 3] };
                    let c_vals = c_dims.as_ref().map(|d| rng.v(d.iter().product::<i64>() as usize));
                    let mut inputs = vec!["x", "B"];
                    let mut g = G::new(opset, &[-1, 4]).init(ftensor("B", &dims, &b));
                    if let (Some(d), Some(v)) = (&c_dims, &c_vals) {
                        g = g.init(ftensor("C", d, v));
                        inputs.push("C");
                    }
                    let mut attrs = vec![af("alpha", alpha), af("beta", beta), ai("transB", trans_b as i64)];
                    if opset < 7 {
                        attrs.push(ai("broadcast", 1));
                    }
                    let g = g.n(node("Gemm", "fc", &inputs, &["y"], attrs));
                    let m = g.import();
                    let x = input(&mut rng, 4);
                    let cb: Vec<f64> = match &c_vals {
                        None => vec![0.0; 3],
                        Some(v) if v.len() == 1 => vec![v[0] as f64; 3],
                        Some(v) => v.iter().map(|&x| x as f64).collect(),
                    };
                    let want =
                        gemm_ref(&x, &b, [dims[0] as usize, dims[1] as usize], trans_b, alpha as f64, beta as f64, &cb);
                    close(&m.infer_float(&x).unwrap(), &want);
                }
            }
        }
    }
}

/// `transA = 1` on an activation reshaped to a `[K, 1]` column.
#[test]
fn gemm_trans_a_on_a_column() {
    let mut rng = Rng(8);
    for opset in [9, 13, 21] {
        let b = rng.v(12);
        let g = G::new(opset, &[1, 4])
            .init(itensor("col", &[2], &[4, 1]))
            .init(ftensor("B", &[3, 4], &b))
            .init(ftensor("C", &[1, 3], &[0.5, -0.5, 0.25]))
            .n(node("Reshape", "col", &["x", "col"], &["xc"], vec![]))
            .n(node("Gemm", "fc", &["xc", "B", "C"], &["y"], vec![ai("transA", 1), ai("transB", 1), af("alpha", 2.0)]));
        let m = g.import();
        let x = input(&mut rng, 4);
        let want = gemm_ref(&x, &b, [3, 4], true, 2.0, 1.0, &[0.5, -0.5, 0.25]);
        close(&m.infer_float(&x).unwrap(), &want);
    }
    // A [4, 1] column without transA is not one image's row.
    let g = G::new(13, &[1, 4])
        .init(itensor("col", &[2], &[4, 1]))
        .init(ftensor("B", &[1, 3], &[1.0; 3]))
        .n(node("Reshape", "col", &["x", "col"], &["xc"], vec![]))
        .n(node("Gemm", "fc", &["xc", "B"], &["y"], vec![]));
    assert!(g.import_err().contains("row"), "{}", g.import_err());
}

#[test]
fn matmul_plus_add_and_nchw_reshape_before_dense() {
    let mut rng = Rng(11);
    for opset in [7, 13] {
        let (w, bias) = (rng.v(2 * 3 * 3 * 5), rng.v(5));
        // [1, 2, 3, 3] → Reshape [1, -1] (initializer) → MatMul → Add (bias first) → Relu.
        let g = G::new(opset, &[1, 2, 3, 3])
            .init(itensor("shape", &[2], &[1, -1]))
            .init(ftensor("W", &[18, 5], &w))
            .init(ftensor("bias", &[5], &bias))
            .n(node("Reshape", "flat", &["x", "shape"], &["f"], vec![]))
            .n(node("MatMul", "mm", &["f", "W"], &["h"], vec![]))
            .n(node("Add", "bias_add", &["bias", "h"], &["hb"], vec![]))
            .n(node("Relu", "act", &["hb"], &["y"], vec![]));
        let m = g.import();
        assert!(matches!(
            m.layers.as_slice(),
            [FloatLayer::Reshape { .. }, FloatLayer::Dense { .. }, FloatLayer::Relu]
        ));
        let x = input(&mut rng, 18);
        let want: Vec<f64> =
            (0..5).map(|o| (0..18).map(|i| x[i] * w[i * 5 + o] as f64).sum::<f64>() + bias[o] as f64).collect();
        close(&m.infer_float(&x).unwrap(), &relu(&want));
    }
    // Reshape with 0 (copy the batch) and the shape given as a Constant node.
    let w = rng.v(8 * 2);
    let g = G::new(13, &[1, 2, 2, 2])
        .init(ftensor("W", &[8, 2], &w))
        .n(node("Constant", "c", &[], &["shape"], vec![at("value", itensor("", &[2], &[0, 8]))]))
        .n(node("Reshape", "r", &["x", "shape"], &["f"], vec![]))
        .n(node("MatMul", "mm", &["f", "W"], &["y"], vec![]));
    let x = input(&mut rng, 8);
    let want: Vec<f64> = (0..2).map(|o| (0..8).map(|i| x[i] * w[i * 2 + o] as f64).sum()).collect();
    close(&g.import().infer_float(&x).unwrap(), &want);
    // Opset 1–4 style: the shape as an attribute still reads.
    let g = G::new(7, &[1, 2, 2, 2])
        .init(ftensor("W", &[8, 2], &w))
        .n(node("Reshape", "r", &["x"], &["f"], vec![ais("shape", &[1, 8])]))
        .n(node("MatMul", "mm", &["f", "W"], &["y"], vec![]));
    close(&g.import().infer_float(&x).unwrap(), &want);
}

/// PyTorch's older flatten export: Shape → Gather → Unsqueeze → Concat → Reshape.
#[test]
fn shape_plumbing_is_folded() {
    let mut rng = Rng(5);
    let w = rng.v(12 * 3);
    for opset in [9, 11, 13, 18] {
        let unsq = |name: &str, i: &str, o: &str| {
            if opset >= 13 {
                node("Unsqueeze", name, &[i, "axes0"], &[o], vec![])
            } else {
                node("Unsqueeze", name, &[i], &[o], vec![ais("axes", &[0])])
            }
        };
        let g = G::new(opset, &[1, 3, 2, 2])
            .init(ftensor("W", &[3, 12], &w))
            .init(itensor("axes0", &[1], &[0]))
            .init(itensor("idx0", &[], &[0]))
            .n(node("Shape", "shape", &["x"], &["s"], vec![]))
            .n(node("Gather", "batch", &["s", "idx0"], &["n"], vec![ai("axis", 0)]))
            .n(unsq("unsq", "n", "n1"))
            .n(node("Constant", "minus1", &[], &["m1"], vec![ais("value_ints", &[-1])]))
            .n(node("Cast", "cast", &["m1"], &["m1c"], vec![ai("to", data_type::INT64 as i64)]))
            .n(node("Concat", "cat", &["n1", "m1c"], &["target"], vec![ai("axis", 0)]))
            .n(node("Reshape", "reshape", &["x", "target"], &["f"], vec![]))
            .n(node("Gemm", "fc", &["f", "W"], &["y"], vec![ai("transB", 1)]));
        let m = g.import();
        let x = input(&mut rng, 12);
        let want = gemm_ref(&x, &w, [3, 12], true, 1.0, 1.0, &[0.0; 3]);
        close(&m.infer_float(&x).unwrap(), &want);
    }
    // A weight matrix given transposed through a constant Transpose, a bias
    // computed by constant arithmetic.
    let wt = rng.v(12);
    let g = G::new(13, &[1, 4])
        .init(ftensor("Wt", &[3, 4], &wt))
        .init(ftensor("half", &[], &[0.5]))
        .init(ftensor("b", &[3], &[1.0, 2.0, 4.0]))
        .n(node("Transpose", "t", &["Wt"], &["W"], vec![ais("perm", &[1, 0])]))
        .n(node("Mul", "scale_b", &["b", "half"], &["bh"], vec![]))
        .n(node("MatMul", "mm", &["x", "W"], &["h"], vec![]))
        .n(node("Add", "bias", &["h", "bh"], &["y"], vec![]));
    let x = input(&mut rng, 4);
    let want = gemm_ref(&x, &wt, [3, 4], true, 1.0, 1.0, &[0.5, 1.0, 2.0]);
    close(&g.import().infer_float(&x).unwrap(), &want);
    // Normalisation of the raw input by a scalar in the graph: the input scale.
    let g = G::new(13, &[1, 4])
        .init(ftensor("Wt", &[3, 4], &wt))
        .init(ftensor("d", &[], &[255.0]))
        .init(ftensor("two", &[1], &[2.0]))
        .n(node("Div", "norm", &["x", "d"], &["xn"], vec![]))
        .n(node("Mul", "twice", &["two", "xn"], &["x2"], vec![]))
        .n(node("Gemm", "fc", &["x2", "Wt"], &["y"], vec![ai("transB", 1)]));
    let opts = ImportOptions { input_scale: 1.0, ..Default::default() };
    let m = import_bytes(&g.bytes(), &opts).unwrap();
    assert!((m.input.scale - 2.0 / 255.0).abs() < 1e-15);
    let xi = [0i64, 100, 200, 255];
    let xf: Vec<f64> = xi.iter().map(|&v| v as f64 * 2.0 / 255.0).collect();
    close(&m.infer(&xi).unwrap(), &gemm_ref(&xf, &wt, [3, 4], true, 1.0, 1.0, &[0.0; 3]));
    // Squeeze of a constant (axes attribute before opset 13, input after).
    for opset in [11, 13] {
        let sq = if opset >= 13 {
            node("Squeeze", "sq", &["t", "ax"], &["t2"], vec![])
        } else {
            node("Squeeze", "sq", &["t"], &["t2"], vec![ais("axes", &[0])])
        };
        let g = G::new(opset, &[1, 4])
            .init(itensor("t", &[1, 2], &[1, 4]))
            .init(itensor("ax", &[1], &[0]))
            .init(ftensor("W", &[4, 2], &w[..8]))
            .n(sq)
            .n(node("Reshape", "r", &["x", "t2"], &["f"], vec![]))
            .n(node("MatMul", "mm", &["f", "W"], &["y"], vec![]));
        let m = g.import();
        assert_eq!(m.shapes().unwrap().last().unwrap(), &vec![2]);
    }
}

#[test]
fn conv_padding_stride_and_auto_pad() {
    let mut rng = Rng(3);
    let (c, h, w, m) = (2usize, 7usize, 6usize, 3usize);
    /// Attributes, then the padding, stride and kernel they mean.
    type Case = (Vec<AttributeProto>, [usize; 4], [usize; 2], [usize; 2]);
    let cases: Vec<Case> = vec![
        (vec![], [0; 4], [1, 1], [3, 3]),
        (vec![ais("pads", &[1, 1, 1, 1])], [1, 1, 1, 1], [1, 1], [3, 3]),
        (vec![ais("pads", &[0, 2, 1, 0]), ais("strides", &[2, 1])], [0, 2, 1, 0], [2, 1], [3, 3]),
        (vec![astr("auto_pad", "VALID"), ais("strides", &[2, 2])], [0; 4], [2, 2], [3, 2]),
        // SAME_UPPER, 7×6, kernel 2×2, stride 2: totals 1 and 0 → the odd row at the bottom.
        (vec![astr("auto_pad", "SAME_UPPER"), ais("strides", &[2, 2])], [0, 0, 1, 0], [2, 2], [2, 2]),
        (vec![astr("auto_pad", "SAME_LOWER"), ais("strides", &[2, 2])], [1, 0, 0, 0], [2, 2], [2, 2]),
        (vec![astr("auto_pad", "SAME_UPPER")], [1, 1, 1, 1], [1, 1], [3, 3]),
        (vec![astr("auto_pad", "SAME_LOWER")], [1, 1, 0, 0], [1, 1], [2, 2]),
        (vec![ais("kernel_shape", &[1, 3]), ais("dilations", &[1, 1]), ai("group", 1)], [0; 4], [1, 1], [1, 3]),
    ];
    for opset in [7, 11, 22] {
        for (attrs, pads, stride, kernel) in &cases {
            for with_bias in [false, true] {
                let wt = rng.v(m * c * kernel[0] * kernel[1]);
                let b = rng.v(m);
                let dims = [m as i64, c as i64, kernel[0] as i64, kernel[1] as i64];
                let mut g = G::new(opset, &[1, c as i64, h as i64, w as i64]).init(ftensor("W", &dims, &wt));
                let ins: Vec<&str> = if with_bias { vec!["x", "W", "B"] } else { vec!["x", "W"] };
                if with_bias {
                    g = g.init(ftensor("B", &[m as i64], &b));
                }
                let g = g.n(node("Conv", "conv", &ins, &["y"], attrs.clone()));
                let model = g.import();
                let x = input(&mut rng, c * h * w);
                let (want, shape) =
                    conv_ref(&x, [c, h, w], &wt, m, *kernel, with_bias.then_some(&b[..]), *pads, *stride);
                assert_eq!(model.shapes().unwrap().last().unwrap(), &shape.to_vec(), "{attrs:?}");
                close(&model.infer_float(&x).unwrap(), &want);
            }
        }
    }
    // Identity, then two bias Adds: both fold (the conv output has no other reader).
    let wt = rng.v(m * c * 9);
    let g = G::new(13, &[1, c as i64, h as i64, w as i64])
        .init(ftensor("W", &[m as i64, c as i64, 3, 3], &wt))
        .init(ftensor("b1", &[m as i64, 1, 1], &[1.0, 2.0, 3.0]))
        .init(ftensor("b2", &[], &[0.5]))
        .n(node("Conv", "conv", &["x", "W"], &["cv"], vec![]))
        .n(node("Identity", "id", &["cv"], &["cvi"], vec![]))
        .n(node("Add", "add1", &["cvi", "b1"], &["y1"], vec![]))
        .n(node("Add", "add2", &["b2", "y1"], &["y"], vec![]));
    let model = g.import();
    assert_eq!(model.layers.len(), 1);
    let x = input(&mut rng, c * h * w);
    let (want, _) = conv_ref(&x, [c, h, w], &wt, m, [3, 3], Some(&[1.5, 2.5, 3.5]), [0; 4], [1, 1]);
    close(&model.infer_float(&x).unwrap(), &want);
    // The conv output also read by a residual Add: the bias cannot fold.
    let mut g = g;
    g.nodes.push(node("Add", "skip", &["y", "cv"], &["z"], vec![]));
    g.output = "z".into();
    assert!(g.import_err().contains("bias"), "{}", g.import_err());
    // A separate per-channel bias Add ([1, M, 1, 1] and [M, 1, 1]) folds into the conv.
    for bdims in [vec![1i64, m as i64, 1, 1], vec![m as i64, 1, 1]] {
        let wt = rng.v(m * c * 9);
        let b = rng.v(m);
        let g = G::new(13, &[1, c as i64, h as i64, w as i64])
            .init(ftensor("W", &[m as i64, c as i64, 3, 3], &wt))
            .init(ftensor("b", &bdims, &b))
            .n(node("Conv", "conv", &["x", "W"], &["cv"], vec![]))
            .n(node("Add", "add", &["cv", "b"], &["y"], vec![]));
        let model = g.import();
        assert_eq!(model.layers.len(), 1);
        let x = input(&mut rng, c * h * w);
        let (want, _) = conv_ref(&x, [c, h, w], &wt, m, [3, 3], Some(&b), [0; 4], [1, 1]);
        close(&model.infer_float(&x).unwrap(), &want);
    }
}

#[test]
fn pooling_operators() {
    let mut rng = Rng(9);
    let (c, h, w) = (3usize, 6usize, 5usize);
    for opset in [7, 10, 12, 19] {
        for (kernel, stride) in [([2usize, 2usize], [2usize, 2usize]), ([3, 2], [1, 2]), ([2, 3], [2, 1])] {
            for op in ["MaxPool", "AveragePool"] {
                let mut attrs = vec![ais("kernel_shape", &[kernel[0] as i64, kernel[1] as i64])];
                attrs.push(ais("strides", &[stride[0] as i64, stride[1] as i64]));
                if opset >= 10 {
                    attrs.push(ai("ceil_mode", 0));
                }
                if op == "AveragePool" {
                    attrs.push(ai("count_include_pad", 0));
                }
                let g = G::new(opset, &[1, c as i64, h as i64, w as i64]).n(node(op, "pool", &["x"], &["y"], attrs));
                let m = g.import();
                let x = input(&mut rng, c * h * w);
                let (want, shape) = pool_ref(&x, [c, h, w], kernel, stride, op == "MaxPool");
                assert_eq!(m.shapes().unwrap().last().unwrap(), &shape.to_vec());
                close(&m.infer_float(&x).unwrap(), &want);
            }
        }
        for (op, max) in [("GlobalAveragePool", false), ("GlobalMaxPool", true)] {
            let g = G::new(opset, &[1, c as i64, h as i64, w as i64]).n(node(op, "gp", &["x"], &["y"], vec![]));
            let x = input(&mut rng, c * h * w);
            let (want, _) = pool_ref(&x, [c, h, w], [h, w], [1, 1], max);
            close(&g.import().infer_float(&x).unwrap(), &want);
        }
    }
    // MaxPool with its (unused) indices output, and ceil_mode that adds nothing.
    let g = G::new(12, &[1, 1, 4, 4]).n(node(
        "MaxPool",
        "mp",
        &["x"],
        &["y", "idx"],
        vec![ais("kernel_shape", &[2, 2]), ais("strides", &[2, 2]), ai("ceil_mode", 1)],
    ));
    assert_eq!(g.import().shapes().unwrap().last().unwrap(), &vec![1, 2, 2]);
}

#[test]
fn batch_norm_folds_into_conv_and_gemm() {
    let mut rng = Rng(13);
    for opset in [7, 9, 15] {
        let (c, m) = (2usize, 3usize);
        let wt = rng.v(m * c * 4);
        let bn: Vec<Vec<f32>> =
            (0..4).map(|i| if i == 3 { rng.v(m).iter().map(|v| v.abs() + 0.1).collect() } else { rng.v(m) }).collect();
        let mut attrs = vec![af("epsilon", 1e-3)];
        if opset < 9 {
            attrs.push(ai("spatial", 1));
        }
        let w2 = rng.v(m * 3 * 3 * 2);
        let g = G::new(opset, &[1, c as i64, 4, 4])
            .init(ftensor("W", &[m as i64, c as i64, 2, 2], &wt))
            .init(ftensor("g", &[m as i64], &bn[0]))
            .init(ftensor("b", &[m as i64], &bn[1]))
            .init(ftensor("mu", &[m as i64], &bn[2]))
            .init(ftensor("var", &[m as i64], &bn[3]))
            .init(ftensor("W2", &[2, 27], &w2))
            .n(node("Conv", "conv", &["x", "W"], &["cv"], vec![]))
            .n(node("BatchNormalization", "bn", &["cv", "g", "b", "mu", "var"], &["bnout"], attrs))
            .n(node("Relu", "r", &["bnout"], &["rl"], vec![]))
            .n(node("Flatten", "fl", &["rl"], &["f"], vec![ai("axis", 1)]))
            .n(node("Gemm", "fc", &["f", "W2"], &["y"], vec![ai("transB", 1)]));
        let model = g.import();
        assert!(!model.layers.iter().any(|l| matches!(l, FloatLayer::BatchNorm { .. })), "folded");
        let x = input(&mut rng, c * 16);
        let (cv, _) = conv_ref(&x, [c, 4, 4], &wt, m, [2, 2], None, [0; 4], [1, 1]);
        let per = cv.len() / m;
        let bnv: Vec<f64> = cv
            .iter()
            .enumerate()
            .map(|(j, v)| {
                let ch = j / per;
                bn[0][ch] as f64 * (v - bn[2][ch] as f64) / (bn[3][ch] as f64 + 1e-3f32 as f64).sqrt()
                    + bn[1][ch] as f64
            })
            .collect();
        let want = gemm_ref(&relu(&bnv), &w2, [2, 27], true, 1.0, 1.0, &[0.0; 2]);
        close(&model.infer_float(&x).unwrap(), &want);
    }
    // BatchNorm after Gemm (1-D batch norm).
    let w = rng.v(12);
    let ones = vec![1.0f32; 3];
    let g = G::new(14, &[1, 4])
        .init(ftensor("W", &[4, 3], &w))
        .init(ftensor("g", &[3], &[2.0, 0.5, -1.0]))
        .init(ftensor("b", &[3], &[0.1, 0.2, 0.3]))
        .init(ftensor("mu", &[3], &[0.0, 1.0, -1.0]))
        .init(ftensor("var", &[3], &ones))
        .n(node("Gemm", "fc", &["x", "W"], &["h"], vec![]))
        .n(node("BatchNormalization", "bn", &["h", "g", "b", "mu", "var"], &["y"], vec![af("epsilon", 0.0)]));
    let x = input(&mut rng, 4);
    let h = gemm_ref(&x, &w, [4, 3], false, 1.0, 1.0, &[0.0; 3]);
    let want: Vec<f64> =
        (0..3).map(|i| [2.0, 0.5, -1.0][i] * (h[i] - [0.0, 1.0, -1.0][i]) + [0.1f32, 0.2, 0.3][i] as f64).collect();
    close(&g.import().infer_float(&x).unwrap(), &want);
}

/// x → conv → relu → conv → (+ x) → relu → global average → gemm, with
/// the nodes listed in reverse order and Identity/Dropout/Cast on the way.
fn residual_graph(rng: &mut Rng, reverse: bool) -> (G, Vec<Vec<f32>>) {
    let c = 2usize;
    let params = vec![rng.v(c * c * 9), rng.v(c), rng.v(c * c * 9), rng.v(c), rng.v(c * 4)];
    let mut g = G::new(13, &[1, c as i64, 5, 5])
        .init(ftensor("W1", &[2, 2, 3, 3], &params[0]))
        .init(ftensor("B1", &[2], &params[1]))
        .init(ftensor("W2", &[2, 2, 3, 3], &params[2]))
        .init(ftensor("B2", &[2], &params[3]))
        .init(ftensor("W3", &[2, 4], &params[4]))
        .n(node("Identity", "id", &["x"], &["xi"], vec![]))
        .n(node("Conv", "c1", &["xi", "W1", "B1"], &["a"], vec![ais("pads", &[1, 1, 1, 1])]))
        .n(node("Relu", "r1", &["a"], &["ar"], vec![]))
        .n(node("Dropout", "do", &["ar"], &["ad", ""], vec![]))
        .n(node("Conv", "c2", &["ad", "W2", "B2"], &["b"], vec![astr("auto_pad", "SAME_UPPER")]))
        .n(node("Add", "skip", &["xi", "b"], &["s"], vec![]))
        .n(node("Relu", "r2", &["s"], &["sr"], vec![]))
        .n(node("Cast", "cast", &["sr"], &["sc"], vec![ai("to", 1)]))
        .n(node("GlobalAveragePool", "gap", &["sc"], &["p"], vec![]))
        .n(node("Flatten", "fl", &["p"], &["f"], vec![]))
        .n(node("MatMul", "fc", &["f", "W3"], &["y"], vec![]));
    if reverse {
        g.nodes.reverse();
    }
    (g, params)
}

#[test]
fn residual_network_in_any_node_order() {
    let mut rng = Rng(17);
    let (g, p) = residual_graph(&mut rng, false);
    let m = g.import();
    let (g2, _) = residual_graph(&mut Rng(17), true);
    assert_eq!(g2.import(), m, "node order in the file does not matter");
    assert!(m.layers.iter().any(|l| matches!(l, FloatLayer::ResidualAdd { from: 0 })));
    let x = input(&mut rng, 50);
    let (a, _) = conv_ref(&x, [2, 5, 5], &p[0], 2, [3, 3], Some(&p[1]), [1; 4], [1, 1]);
    let (b, _) = conv_ref(&relu(&a), [2, 5, 5], &p[2], 2, [3, 3], Some(&p[3]), [1; 4], [1, 1]);
    let s: Vec<f64> = relu(&b.iter().zip(&x).map(|(u, v)| u + v).collect::<Vec<_>>());
    let (gap, _) = pool_ref(&s, [2, 5, 5], [5, 5], [1, 1], false);
    let want: Vec<f64> = (0..4).map(|o| (0..2).map(|i| gap[i] * p[4][i * 4 + o] as f64).sum()).collect();
    close(&m.infer_float(&x).unwrap(), &want);
}

#[test]
fn sign_and_tanh_activations() {
    let w = [0.5f32, -0.25, 1.0, 0.75];
    let fc = |g: G| g.init(ftensor("W", &[2, 2], &w)).n(node("MatMul", "mm", &["x", "W"], &["h"], vec![]));
    let opts = ImportOptions { tanh_as_sign: true, ..Default::default() };
    for (opset, act) in [
        (9, node("Sign", "s", &["h"], &["y"], vec![])),
        (9, node("Tanh", "t", &["h"], &["y"], vec![])),
        (7, node("Clip", "c", &["h"], &["y"], vec![af("min", -1.0), af("max", 1.0)])),
        (13, node("Clip", "c", &["h", "lo", "hi"], &["y"], vec![])),
    ] {
        let is_sign = act.op_type == "Sign";
        let g = fc(G::new(opset, &[1, 2])).init(ftensor("lo", &[], &[-1.0])).init(ftensor("hi", &[], &[1.0])).n(act);
        if !is_sign {
            let e = g.import_err();
            assert!(e.contains("sign") && e.contains("(Tanh)") || e.contains("(Clip)"), "{e}");
        }
        let m = import_bytes(&g.bytes(), &opts).unwrap();
        assert_eq!(m.layers.last(), Some(&FloatLayer::Sign));
        // h = [0.5·x0 + x1, -0.25·x0 + 0.75·x1]
        assert_eq!(m.infer_float(&[1.0, -1.0]).unwrap(), vec![-1.0, -1.0]);
        assert_eq!(m.infer_float(&[1.0, 1.0]).unwrap(), vec![1.0, 1.0]);
    }
    // Clip(0, ∞) is a ReLU, in both opset styles.
    for g in [
        fc(G::new(7, &[1, 2])).n(node("Clip", "c", &["h"], &["y"], vec![af("min", 0.0)])),
        fc(G::new(13, &[1, 2])).init(ftensor("zero", &[], &[0.0])).n(node("Clip", "c", &["h", "zero"], &["y"], vec![])),
    ] {
        assert_eq!(g.import().layers.last(), Some(&FloatLayer::Relu));
    }
}

/// An imported CNN quantises, its interval bounds hold on random inputs,
/// and the integer network's predictions track the float ones.
#[test]
fn imported_cnn_quantises() {
    let mut rng = Rng(23);
    let g = G::new(13, &[1, 1, 8, 8])
        .init(ftensor("W1", &[4, 1, 3, 3], &rng.v(36)))
        .init(ftensor("B1", &[4], &rng.v(4)))
        .init(ftensor("W2", &[4, 4, 3, 3], &rng.v(144)))
        .init(ftensor("W3", &[3, 16], &rng.v(48)))
        .init(ftensor("B3", &[3], &rng.v(3)))
        .n(node("Conv", "c1", &["x", "W1", "B1"], &["a"], vec![ais("pads", &[1, 1, 1, 1])]))
        .n(node("Relu", "r1", &["a"], &["ar"], vec![]))
        .n(node("Conv", "c2", &["ar", "W2"], &["b"], vec![ais("pads", &[1, 1, 1, 1])]))
        .n(node("Add", "skip", &["b", "ar"], &["s"], vec![]))
        .n(node("MaxPool", "mp", &["s"], &["p"], vec![ais("kernel_shape", &[2, 2]), ais("strides", &[2, 2])]))
        .n(node("Relu", "r2", &["p"], &["pr"], vec![]))
        .n(node("AveragePool", "ap", &["pr"], &["q"], vec![ais("kernel_shape", &[2, 2]), ais("strides", &[2, 2])]))
        .n(node("Flatten", "fl", &["q"], &["f"], vec![]))
        .n(node("Gemm", "fc", &["f", "W3", "B3"], &["y"], vec![ai("transB", 1)]));
    let m = g.import();
    let q = quantize(&m, &QuantizeOptions::default()).unwrap();
    let bounds = interval_bounds(&q.network, q.input_range).unwrap();
    assert_eq!(bounds, q.bounds);
    let mut agree = 0;
    for t in 0..60 {
        let x: Vec<i64> = (0..64).map(|_| ((rng.f() + 1.0) * 127.5) as i64).collect();
        let x = if t == 0 { vec![255; 64] } else { x };
        let trace = q.network.eval_plain_trace(&x).unwrap();
        for (act, b) in trace.iter().zip(&q.bounds) {
            assert!(act.iter().zip(b).all(|(v, iv)| iv.contains(*v as i128)));
        }
        let f = m.infer(&x).unwrap();
        let i = trace.last().unwrap();
        for (fv, iv) in f.iter().zip(i) {
            assert!((fv - *iv as f64 / q.output_scale).abs() < 0.05 * (1.0 + fv.abs()), "{fv} vs {iv}");
        }
        agree += (m.predict(&x).unwrap() == q.predict(&x).unwrap()) as usize;
    }
    assert!(agree >= 57, "{agree}/60");
}

// ------------------------------------------------------- malformed models

fn small_valid() -> G {
    G::new(13, &[1, 1, 4, 4])
        .init(ftensor("W", &[2, 1, 3, 3], &[0.5; 18]))
        .init(ftensor("B", &[2], &[0.1, -0.1]))
        .init(itensor("shape", &[2], &[1, -1]))
        .init(ftensor("W2", &[8, 3], &[0.25; 24]))
        .n(node("Conv", "conv", &["x", "W", "B"], &["a"], vec![ais("pads", &[0, 0, 0, 0])]))
        .n(node("Relu", "relu", &["a"], &["r"], vec![]))
        .n(node("Reshape", "reshape", &["r", "shape"], &["f"], vec![]))
        .n(node("MatMul", "fc", &["f", "W2"], &["y"], vec![]))
}

fn err_of(g: &G) -> String {
    g.import_err()
}

#[test]
fn malformed_models_are_errors() {
    assert!(small_valid().import().layers.len() == 4);
    let expect = |g: G, want: &[&str]| {
        let e = err_of(&g);
        for w in want {
            assert!(e.contains(w), "{e:?} should mention {w:?}");
        }
    };
    // Unsupported operator: named with its node.
    let mut g = small_valid();
    g.nodes[1] = node("LSTM", "rnn7", &["a"], &["r"], vec![]);
    expect(g, &["rnn7", "LSTM", "not supported"]);
    // Missing initializer.
    let mut g = small_valid();
    g.inits.retain(|t| t.name != "W2");
    expect(g, &["fc", "W2", "not defined"]);
    // Wrong attribute type.
    let mut g = small_valid();
    g.nodes[0].attribute = vec![af("pads", 1.0)];
    expect(g, &["conv", "pads"]);
    // Float tensor as a reshape shape.
    let mut g = small_valid();
    g.inits[2] = ftensor("shape", &[2], &[1.0, -1.0]);
    expect(g, &["reshape", "integer"]);
    // Data of the wrong length.
    let mut g = small_valid();
    g.inits[0] = ftensor("W", &[2, 1, 3, 3], &[0.5; 17]);
    expect(g, &["initializer \"W\""]);
    // Absurd shapes.
    let mut g = small_valid();
    g.inits[0].dims = vec![1 << 40, 1, 3, 3];
    expect(g, &["W"]);
    let mut g = small_valid();
    g.inits[0].dims = vec![1 << 20, 1 << 20, 1 << 20, 1];
    expect(g, &["W"]);
    let mut g = small_valid();
    g.input = vec![1, 1, 1 << 40, 4];
    expect(g, &["graph input"]);
    let mut g = small_valid();
    g.inits[2] = itensor("shape", &[2], &[1 << 40, -1]);
    expect(g, &["reshape"]);
    let mut g = small_valid();
    g.nodes[0].attribute = vec![ais("pads", &[1 << 40, 0, 0, 0])];
    expect(g, &["conv", "pads"]);
    // Cycle.
    let mut g = small_valid();
    g.nodes[1] = node("Relu", "relu", &["f"], &["r"], vec![]);
    expect(g, &["cycle"]);
    // Duplicate names.
    let mut g = small_valid();
    g.nodes[1].output = vec!["a".into()];
    expect(g, &["produced twice"]);
    let mut g = small_valid();
    g.inits.push(ftensor("W", &[1], &[0.0]));
    expect(g, &["defined twice"]);
    let mut g = small_valid();
    g.nodes[1].output = vec!["W".into()];
    expect(g, &["initializer"]);
    // Opsets out of range, no graph, two inputs, branches.
    let mut g = small_valid();
    g.opset = 6;
    expect(g, &["opset 6"]);
    let mut g = small_valid();
    g.opset = 99;
    expect(g, &["opset 99"]);
    let mut p = small_valid().proto();
    p.graph = None;
    assert!(
        format!("{:#}", import_bytes(&p.encode_to_vec(), &ImportOptions::default()).unwrap_err()).contains("no graph")
    );
    let mut p = small_valid().proto();
    p.graph.as_mut().unwrap().input.push(vi("x2", &[1, 4]));
    assert!(
        format!("{:#}", import_bytes(&p.encode_to_vec(), &ImportOptions::default()).unwrap_err())
            .contains("data inputs")
    );
    let mut g = small_valid();
    g.nodes.push(node("Relu", "branch", &["a"], &["z"], vec![]));
    g.nodes.push(node("Add", "join", &["y", "z"], &["out"], vec![]));
    g.output = "out".into();
    let e = err_of(&g);
    assert!(e.contains("branch") || e.contains("latest activation") || e.contains("shapes"), "{e}");
    // Group and dilation that are not supported.
    let mut g = small_valid();
    g.nodes[0].attribute = vec![ai("group", 2)];
    expect(g, &["group"]);
    let mut g = small_valid();
    g.nodes[0].attribute = vec![ais("dilations", &[2, 2])];
    expect(g, &["dilations"]);
    // Not protobuf at all.
    assert!(import_bytes(b"\xff\xff\xff\xff", &ImportOptions::default()).is_err());
    assert!(import_bytes(b"", &ImportOptions::default()).is_err());
}

/// Every prefix of a valid model and many corrupted copies: errors or
/// models, never a panic.
#[test]
fn truncated_and_corrupted_bytes_never_panic() {
    let bytes = residual_graph(&mut Rng(1), false).0.bytes();
    let opts = ImportOptions::default();
    let mut ok = 0;
    for n in 0..bytes.len() {
        ok += import_bytes(&bytes[..n], &opts).is_ok() as usize;
    }
    assert!(ok < bytes.len() / 2, "most prefixes must fail ({ok} imported)");
    let mut rng = Rng(99);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + (rng.f().abs() * 4.0) as usize {
            let i = ((rng.f().abs() * b.len() as f32) as usize).min(b.len() - 1);
            b[i] = (rng.f().abs() * 255.0) as u8;
        }
        let _ = import_bytes(&b, &opts);
    }
}

/// Writes the models of these tests as a fuzzing seed corpus:
/// `ONNX_SEED_DIR=fuzz/corpus/onnx_import cargo test -p dash-host --test
/// onnx_import -- --ignored write_fuzz_seeds`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let Ok(dir) = std::env::var("ONNX_SEED_DIR") else { return };
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(31);
    let seeds = vec![
        ("conv_relu_reshape_matmul", small_valid()),
        ("residual", residual_graph(&mut rng, false).0),
        ("residual_reversed", residual_graph(&mut rng, true).0),
        (
            "gemm_bn",
            G::new(9, &[-1, 4])
                .init(ftensor("W", &[3, 4], &rng.v(12)))
                .init(ftensor("C", &[3], &rng.v(3)))
                .init(ftensor("g", &[3], &[1.0, 2.0, 3.0]))
                .init(ftensor("b", &[3], &[0.0, 0.5, 1.0]))
                .init(ftensor("mu", &[3], &[0.0, 0.1, 0.2]))
                .init(ftensor("var", &[3], &[1.0, 1.0, 2.0]))
                .n(node("Gemm", "fc", &["x", "W", "C"], &["h"], vec![ai("transB", 1), af("alpha", 0.5)]))
                .n(node("BatchNormalization", "bn", &["h", "g", "b", "mu", "var"], &["hb"], vec![]))
                .n(node("Tanh", "t", &["hb"], &["y"], vec![])),
        ),
        (
            "pools_sign",
            G::new(12, &[1, 2, 6, 6])
                .init(ftensor("W", &[2, 2, 3, 3], &rng.v(36)))
                .n(node(
                    "Conv",
                    "c",
                    &["x", "W"],
                    &["a"],
                    vec![astr("auto_pad", "SAME_LOWER"), ais("strides", &[2, 1])],
                ))
                .n(node("MaxPool", "mp", &["a"], &["m", "i"], vec![ais("kernel_shape", &[2, 2])]))
                .n(node("Sign", "s", &["m"], &["sg"], vec![]))
                .n(node(
                    "AveragePool",
                    "ap",
                    &["sg"],
                    &["p"],
                    vec![ais("kernel_shape", &[2, 2]), ais("strides", &[1, 2])],
                ))
                .n(node("GlobalAveragePool", "gap", &["p"], &["y"], vec![])),
        ),
        (
            "shape_plumbing",
            G::new(11, &[1, 2, 2, 2])
                .init(ftensor("W", &[8, 2], &rng.v(16)))
                .init(itensor("idx0", &[], &[0]))
                .n(node("Shape", "shape", &["x"], &["s"], vec![]))
                .n(node("Gather", "g", &["s", "idx0"], &["n"], vec![ai("axis", 0)]))
                .n(node("Unsqueeze", "u", &["n"], &["n1"], vec![ais("axes", &[0])]))
                .n(node("Constant", "m1", &[], &["m"], vec![at("value", itensor("", &[1], &[-1]))]))
                .n(node("Concat", "cat", &["n1", "m"], &["t"], vec![ai("axis", 0)]))
                .n(node("Reshape", "r", &["x", "t"], &["f"], vec![]))
                .n(node("MatMul", "mm", &["f", "W"], &["y"], vec![])),
        ),
    ];
    for (name, g) in seeds {
        import_bytes(&g.bytes(), &ImportOptions { tanh_as_sign: true, ..Default::default() }).unwrap();
        std::fs::write(format!("{dir}/{name}.onnx"), g.bytes()).unwrap();
    }
}
