//! Quantisation and range planning: from a [`FloatModel`] (dense,
//! convolution, pooling, batch-norm, residual layers) and its declared
//! integer input range to an [`IntNetwork`] on the smallest CRT base for
//! which **no value of the integer network can leave `[-Q/2, Q/2)` for any
//! input in the declared range**, proved by interval arithmetic.
//!
//! # The integer network
//!
//! The input is taken as it is (MNIST: pixels `0..=255`, float value
//! `pixel · scale`). Every value carries a *scale* `S`: an integer `v`
//! stands for the real `v / S`. A dense layer with real weights `W`, `b`
//! becomes
//!
//! ```text
//! y = round(a·W)·x + round(a·S·b)          (scale S·a)
//! ```
//!
//! with one weight factor `a > 0` per layer. A hidden layer (dense followed
//! by ReLU) is then divided by `d`, a product of distinct base primes (what
//! `dash_core`'s `Rescale` divides by exactly and cheaply), rounding to
//! nearest: `floor((y + floor(d/2))/d)`, where the `floor(d/2)` is folded
//! into the bias (free) so the cheapest, floor-rounding gadget suffices.
//! ReLU follows the division (`relu(round(y/d)) = round(relu(y)/d)`), and
//! the next layer has scale `S·a/d`. A dense layer followed by `sign` needs
//! no division (the sign ignores positive scales); the last layer's
//! outputs are decoded as they are and the class is their arg-max.
//!
//! # Convolutions, pooling and residual adds
//!
//! A convolution is quantised like a dense layer (`round(a·W)`, bias
//! `round(a·S·b)`, the same search for `a`). A linear layer is divided
//! after whenever another linear layer or a residual add follows before any
//! sign or the end of the network, so the division may precede max pooling,
//! flattening or ReLU alike. Max pooling, ReLU, flatten and reshape keep
//! the scale. **Average pooling** is an integer `SumPool`: the sum of `n`
//! values at scale `S` is the mean at scale `n·S`, so the `1/n` lives in
//! the scale and costs nothing. Batch normalisations are folded into the
//! preceding layer first ([`FloatModel::fold_batch_norms`]).
//!
//! A **residual add** needs both summands on one scale `T` (the skip
//! source's). The last linear layer of the branch then does not search for
//! `a`: for each candidate divisor `d` (1 or a product of base primes) it
//! takes `a = T·d/S` (divided by the sizes of any average pools on the way),
//! and keeps the largest `d` whose outputs still fit — the most weight
//! precision the base allows. The add's result is proven in range like
//! every other value.
//!
//! # Interval proof
//!
//! [`interval_bounds`] propagates, element by element, the exact integer
//! interval of every activation of an [`IntNetwork`] from the input box:
//! a dense output lies in `[b + Σ min(w·lo, w·hi), b + Σ max(w·lo, w·hi)]`,
//! a division maps `[lo, hi]` to `[round(lo/d), round(hi/d)]` (monotone),
//! ReLU clamps at 0, and so on. [`check_ranges`] fails unless every
//! interval (including the intermediate differences of max pooling) lies in
//! the signed range of the base. These are sound bounds over the whole input
//! box, not observations on samples, so `eval_plain` — and the garbled
//! circuit, which equals it — never wraps modulo `Q`.
//!
//! # Choices
//!
//! For each `k` from [`QuantizeOptions::min_k`] up (first `k` primes):
//!
//! 1. each layer's weight factor `a` is the largest for which the layer's
//!    proven output interval fits the base (binary search on `a`);
//! 2. after a hidden layer, `d` is chosen so that the proven activation
//!    bound `max hi / d` falls in `(2^(b-1), 2^b]` with
//!    `b =` [`QuantizeOptions::activation_bits`], taking the cheapest
//!    `Rescale` (fewest ciphertexts) among such divisors;
//! 3. the first `k` for which every layer keeps at least
//!    [`QuantizeOptions::min_weight_magnitude`] as its largest integer
//!    weight is taken: the smallest base that keeps enough weight
//!    precision, hence the least garbled material (every non-linear gadget
//!    grows with `k`).
//!
//! No data is looked at: the plan depends only on the weights and the
//! declared input range.

use crate::model::{FloatLayer, FloatModel};
use crate::network::{IntLayer, IntNetwork, Padding, Rounding};
use anyhow::{Context, Result, bail, ensure};
use dash_core::CrtBase;
use dash_core::gadgets::rescale::Rescale;
use rayon::prelude::*;

/// Tuning of [`quantize`].
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizeOptions {
    /// Proven bound on hidden activations after division: at most
    /// `2^activation_bits`.
    pub activation_bits: u32,
    /// Least acceptable largest integer weight magnitude in every layer
    /// (16: about five bits of weight precision).
    pub min_weight_magnitude: i64,
    /// Smallest number of CRT primes tried.
    pub min_k: usize,
    /// Largest number of CRT primes tried.
    pub max_k: usize,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions { activation_bits: 9, min_weight_magnitude: 16, min_k: 3, max_k: 10 }
    }
}

/// A closed integer interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// Smallest value.
    pub lo: i128,
    /// Largest value.
    pub hi: i128,
}

impl Interval {
    /// `[lo, hi]`.
    pub const fn new(lo: i128, hi: i128) -> Interval {
        Interval { lo, hi }
    }

    /// Whether `v` lies inside.
    pub fn contains(&self, v: i128) -> bool {
        self.lo <= v && v <= self.hi
    }

    fn hull(xs: impl Iterator<Item = Interval>) -> Interval {
        xs.fold(Interval::new(i128::MAX, i128::MIN), |a, b| Interval::new(a.lo.min(b.lo), a.hi.max(b.hi)))
    }

    fn add(self, o: Interval) -> Interval {
        Interval::new(self.lo + o.lo, self.hi + o.hi)
    }

    /// `w · self` for a constant `w`.
    fn scale(self, w: i128) -> Interval {
        if w >= 0 { Interval::new(w * self.lo, w * self.hi) } else { Interval::new(w * self.hi, w * self.lo) }
    }
}

/// What the quantiser chose for one float dense or convolution layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseChoice {
    /// Index of the layer in the float model (after folding batch
    /// normalisations).
    pub float_layer: usize,
    /// `"dense"` or `"conv2d"`.
    pub kind: &'static str,
    /// The weight factor `a`: integer weights are `round(a·w)`.
    pub weight_factor: f64,
    /// Largest integer weight magnitude.
    pub max_abs_weight: i64,
    /// Proven interval of the layer's integer outputs (hull over elements).
    pub output_bound: Interval,
    /// The divisor applied after it (`None`: no division).
    pub divisor: Option<u64>,
    /// Ciphertexts of one division gadget (0 without division).
    pub divisor_cost: u64,
    /// Scale of the values the layer hands on (after any division).
    pub output_scale: f64,
}

/// The result of [`quantize`]: the integer network, its proof, and the
/// choices made.
#[derive(Clone, Debug)]
pub struct Quantized {
    /// The integer network (its `eval_plain` is the quantised reference).
    pub network: IntNetwork,
    /// Declared integer input range.
    pub input_range: Interval,
    /// Proven interval of every element of every activation of `network`
    /// (`[input, after layer 0, …]`), from [`interval_bounds`].
    pub bounds: Vec<Vec<Interval>>,
    /// One entry per float dense or convolution layer.
    pub dense: Vec<DenseChoice>,
    /// Scale of the outputs (integer per real unit of the float logits).
    pub output_scale: f64,
}

impl Quantized {
    /// The CRT primes.
    pub fn primes(&self) -> Vec<u16> {
        self.network.base.moduli().iter().map(|m| m.value()).collect()
    }

    /// Largest proven magnitude of any value in the network, against `Q/2`.
    pub fn headroom(&self) -> (i128, i128) {
        let m = self.bounds.iter().flatten().map(|i| i.lo.abs().max(i.hi.abs())).max().unwrap_or(0);
        (m, self.network.base.max_value())
    }

    /// The quantised prediction for one input (arg-max of `eval_plain`).
    pub fn predict(&self, input: &[i64]) -> Result<usize> {
        Ok(crate::model::argmax(&self.network.eval_plain(input)?))
    }
}

/// Products of distinct primes of `base` (neither 1 nor all of them), ascending.
fn divisors(base: &CrtBase) -> Vec<u64> {
    let ps: Vec<u64> = base.moduli().iter().map(|m| m.value() as u64).collect();
    let k = ps.len();
    let mut out: Vec<u64> =
        (1u32..(1 << k) - 1).map(|mask| (0..k).filter(|i| mask >> i & 1 == 1).map(|i| ps[i]).product()).collect();
    out.sort_unstable();
    out
}

/// Integer weights and biases of a dense layer for weight factor `a`,
/// input scale `s` and extra bias `offset`.
fn quantize_dense(w: &[f64], b: &[f64], a: f64, s: f64, offset: i64) -> Result<(Vec<i64>, Vec<i64>)> {
    let q = |v: f64| -> Result<i64> {
        let r = v.round();
        ensure!(r.is_finite() && r.abs() < (1u64 << 60) as f64, "quantised value {r} does not fit");
        Ok(r as i64)
    };
    let wq = w.iter().map(|&v| q(v * a)).collect::<Result<Vec<_>>>()?;
    let bq = b.iter().map(|&v| Ok(q(v * a * s)? + offset)).collect::<Result<Vec<_>>>()?;
    Ok((wq, bq))
}

fn dense_bounds(inputs: usize, weights: &[i64], bias: &[i64], x: &[Interval]) -> Vec<Interval> {
    weights
        .chunks_exact(inputs)
        .zip(bias)
        .map(|(row, &b)| {
            row.iter().zip(x).fold(Interval::new(b as i128, b as i128), |acc, (&w, &xi)| acc.add(xi.scale(w as i128)))
        })
        .collect()
}

/// The geometry of a convolution, as the bounds below need it.
#[derive(Clone, Copy)]
struct ConvShape {
    input: [usize; 3],
    output: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
}

/// Proven outputs of a convolution (the sums of `network::conv_taps`, exactly):
/// for each output channel, each weight adds its contribution to a whole
/// row of outputs at once, output channels in parallel. The quantiser's
/// search calls this dozens of times per layer, so the tap-by-tap form was
/// most of the time of quantising MiniONN-CIFAR.
fn conv_bounds(shape: ConvShape, weights: &[i64], bias: &[i64], x: &[Interval]) -> Vec<Interval> {
    // Sums in i64 when no partial sum can reach 2^62 (almost always: the
    // search's weights keep outputs near Q), in i128 otherwise.
    let taps = (shape.input[0] * shape.kernel[0] * shape.kernel[1]) as i128;
    let wmax = weights.iter().map(|w| (*w as i128).abs()).max().unwrap_or(0);
    let bmax = bias.iter().map(|b| (*b as i128).abs()).max().unwrap_or(0);
    let xmax = x.iter().map(|v| v.lo.abs().max(v.hi.abs())).max().unwrap_or(0);
    let small = wmax.checked_mul(xmax).and_then(|m| m.checked_mul(taps)).is_some_and(|m| m + bmax < 1 << 62);
    if small {
        // Every |x| < 2^62 here, so the narrowing is exact.
        let lo: Vec<i64> = x.iter().map(|v| v.lo as i64).collect();
        let hi: Vec<i64> = x.iter().map(|v| v.hi as i64).collect();
        conv_bounds_in(shape, weights, bias, &lo, &hi)
    } else {
        let lo: Vec<i128> = x.iter().map(|v| v.lo).collect();
        let hi: Vec<i128> = x.iter().map(|v| v.hi).collect();
        conv_bounds_in(shape, weights, bias, &lo, &hi)
    }
}

/// [`conv_bounds`] with sums in `T`, on the inputs' lower and upper bounds
/// (the caller has ruled out overflow).
fn conv_bounds_in<T>(shape: ConvShape, weights: &[i64], bias: &[i64], xlo: &[T], xhi: &[T]) -> Vec<Interval>
where
    T: Copy
        + Send
        + Sync
        + Default
        + PartialOrd
        + From<i64>
        + Into<i128>
        + std::ops::AddAssign
        + std::ops::Mul<Output = T>,
{
    let ConvShape { input: [in_channels, h, w], output: [oh, ow], kernel: [kh, kw], stride: [sy, sx], padding } = shape;
    let per_channel: Vec<Vec<Interval>> = bias
        .par_iter()
        .enumerate()
        .map(|(oc, &b)| {
            let mut lo = vec![T::from(b); oh * ow];
            let mut hi = vec![T::from(b); oh * ow];
            for ic in 0..in_channels {
                for dy in 0..kh {
                    for dx in 0..kw {
                        let wv = T::from(weights[((oc * in_channels + ic) * kh + dy) * kw + dx]);
                        if wv == T::default() {
                            continue;
                        }
                        // w·[lo, hi] is [w·lo, w·hi] for w > 0, [w·hi, w·lo] for w < 0.
                        let (from_lo, from_hi) = if wv > T::default() { (xlo, xhi) } else { (xhi, xlo) };
                        // Output columns whose tap lands inside the input row.
                        let c_start = padding.left.saturating_sub(dx).div_ceil(sx);
                        let c_end = ow.min((w + padding.left).saturating_sub(dx).div_ceil(sx));
                        for r in 0..oh {
                            let Some(iy) = (r * sy + dy).checked_sub(padding.top).filter(|&iy| iy < h) else {
                                continue;
                            };
                            let row = (ic * h + iy) * w;
                            for c in c_start..c_end {
                                let xi = row + c * sx + dx - padding.left;
                                lo[r * ow + c] += wv * from_lo[xi];
                                hi[r * ow + c] += wv * from_hi[xi];
                            }
                        }
                    }
                }
            }
            lo.into_iter().zip(hi).map(|(l, h)| Interval::new(l.into(), h.into())).collect()
        })
        .collect();
    per_channel.concat()
}

fn fits(base: &CrtBase, iv: Interval) -> bool {
    iv.lo >= base.min_value() && iv.hi <= base.max_value()
}

/// Quantises `model` on the smallest base that passes (see the module
/// documentation), with the proof checked.
pub fn quantize(model: &FloatModel, options: &QuantizeOptions) -> Result<Quantized> {
    model.validate()?;
    ensure!(
        options.min_k >= 2 && options.min_k <= options.max_k,
        "bad range of k: {}..={}",
        options.min_k,
        options.max_k
    );
    ensure!((1..=40).contains(&options.activation_bits), "activation_bits must be 1..=40");
    let mut reasons = Vec::new();
    for k in options.min_k..=options.max_k {
        let base = CrtBase::first(k).map_err(|e| anyhow::anyhow!("no CRT base of {k} primes: {e:?}"))?;
        match quantize_on(model, options, &base) {
            Ok(q) => return Ok(q),
            Err(e) => reasons.push(format!("k={k}: {e:#}")),
        }
    }
    bail!("no CRT base with k in {}..={} works:\n  {}", options.min_k, options.max_k, reasons.join("\n  "))
}

/// What a linear layer's output must become, from the layers after it.
#[derive(Debug, PartialEq)]
struct LinearPlan {
    /// Divide after the layer (a hidden layer: another linear layer or a
    /// residual add follows before any sign or the end).
    divide: bool,
    /// Residual add reached before any other linear layer or sign: the float
    /// activation it adds, and the product of the average-pool sizes between
    /// this layer and the add (the summands must share one scale).
    residual: Option<(usize, f64)>,
    /// A ReLU comes before the next linear layer or add: only the upper
    /// bound of the outputs matters for the activations handed on.
    relu_follows: bool,
}

fn plan_linear(model: &FloatModel, i: usize) -> LinearPlan {
    let mut growth = 1.0;
    let mut relu_follows = false;
    for layer in &model.layers[i + 1..] {
        match layer {
            FloatLayer::Dense { .. } | FloatLayer::Conv2d { .. } => {
                return LinearPlan { divide: true, residual: None, relu_follows };
            }
            FloatLayer::Sign => return LinearPlan { divide: false, residual: None, relu_follows },
            FloatLayer::ResidualAdd { from } if *from <= i => {
                return LinearPlan { divide: true, residual: Some((*from, growth)), relu_follows };
            }
            // An add inside the segment sees the values before any ReLU.
            FloatLayer::ResidualAdd { .. } => relu_follows = false,
            FloatLayer::AvgPool { kernel, .. } => growth *= (kernel[0] * kernel[1]) as f64,
            FloatLayer::Relu => relu_follows = true,
            _ => {}
        }
    }
    LinearPlan { divide: false, residual: None, relu_follows }
}

/// The integer network being built, with the proven bounds, shape and scale
/// of every activation so far.
struct Builder<'a> {
    base: &'a CrtBase,
    layers: Vec<IntLayer>,
    acts: Vec<Vec<Interval>>,
    shapes: Vec<Vec<usize>>,
    scales: Vec<f64>,
}

impl Builder<'_> {
    fn push(&mut self, layer: IntLayer, shape: Vec<usize>, scale: f64) -> Result<()> {
        let n = self.acts.len() - 1;
        let y = layer_bounds(&layer, &self.shapes[n], &shape, &self.acts)?;
        self.layers.push(layer);
        self.acts.push(y);
        self.shapes.push(shape);
        self.scales.push(scale);
        Ok(())
    }

    fn last(&self) -> usize {
        self.acts.len() - 1
    }
}

/// The integer layer of a float dense or convolution layer for weight
/// factor `a`, input scale `s` and extra bias `offset`.
fn int_linear(layer: &FloatLayer, a: f64, s: f64, offset: i64) -> Result<IntLayer> {
    Ok(match layer {
        FloatLayer::Dense { inputs, outputs, weights, bias } => {
            let (weights, bias) = quantize_dense(weights, bias, a, s, offset)?;
            IntLayer::Dense { inputs: *inputs, outputs: *outputs, weights, bias }
        }
        FloatLayer::Conv2d { in_channels, out_channels, kernel, stride, weights, bias, .. } => {
            let (weights, bias) = quantize_dense(weights, bias, a, s, offset)?;
            IntLayer::Conv2d {
                in_channels: *in_channels,
                out_channels: *out_channels,
                kernel: *kernel,
                stride: *stride,
                padding: layer.padding(),
                weights,
                bias,
            }
        }
        other => bail!("internal: {} is not a linear layer", other.name()),
    })
}

fn int_weights(layer: &IntLayer) -> &[i64] {
    match layer {
        IntLayer::Dense { weights, .. } | IntLayer::Conv2d { weights, .. } => weights,
        _ => &[],
    }
}

/// Quantises `model` on the given base (see the module documentation), or
/// explains why the base is too small.
pub fn quantize_on(model: &FloatModel, options: &QuantizeOptions, base: &CrtBase) -> Result<Quantized> {
    let model = &model.fold_batch_norms()?;
    let float_shapes = model.shapes()?;
    let input_range = Interval::new(model.input.min as i128, model.input.max as i128);
    ensure!(fits(base, input_range), "the input range does not fit the base");
    let mut b = Builder {
        base,
        layers: Vec::new(),
        acts: vec![vec![input_range; model.input_len()]],
        shapes: vec![model.input.shape.clone()],
        scales: vec![1.0 / model.input.scale],
    };
    // Integer activation standing for each float activation.
    let mut float_to_int = vec![0usize];
    let mut dense = Vec::new();
    let all_divisors = divisors(base);
    for (i, layer) in model.layers.iter().enumerate() {
        let out_shape = float_shapes[i + 1].clone();
        let scale = b.scales[b.last()];
        match layer {
            FloatLayer::Flatten => b.push(IntLayer::Flatten, out_shape, scale)?,
            FloatLayer::Reshape { shape } => b.push(IntLayer::Reshape { shape: shape.clone() }, out_shape, scale)?,
            FloatLayer::Relu => b.push(IntLayer::Relu, out_shape, scale)?,
            FloatLayer::Sign => b.push(IntLayer::Sign, out_shape, 1.0)?,
            FloatLayer::MaxPool { kernel, stride } => {
                b.push(IntLayer::MaxPool { kernel: *kernel, stride: *stride }, out_shape, scale)?
            }
            // The sum stands for n times the mean: the 1/n goes into the scale.
            FloatLayer::AvgPool { kernel, stride } => b.push(
                IntLayer::SumPool { kernel: *kernel, stride: *stride },
                out_shape,
                scale * (kernel[0] * kernel[1]) as f64,
            )?,
            FloatLayer::ResidualAdd { from } => {
                let j = float_to_int[*from];
                let (sj, s) = (b.scales[j], scale);
                ensure!(
                    (sj - s).abs() <= 1e-9 * s.abs().max(sj.abs()),
                    "layer {i} (residual_add): the summands have scales {sj} and {s} (an unsupported graph between them)"
                );
                b.push(IntLayer::ResidualAdd { from: j }, out_shape, scale)?
            }
            FloatLayer::BatchNorm { .. } => bail!("internal: batch normalisation left after folding"),
            FloatLayer::Dense { .. } | FloatLayer::Conv2d { .. } => {
                let choice =
                    quantize_linear(&mut b, model, i, layer, out_shape, options, &all_divisors, &float_to_int)?;
                dense.push(choice);
            }
        }
        float_to_int.push(b.last());
    }
    let output_scale = b.scales[b.last()];
    let network = IntNetwork::new(model.input.shape.clone(), b.layers, base.clone())?;
    // The judge: bounds recomputed over the whole network, then checked.
    let bounds = interval_bounds(&network, input_range)?;
    check_ranges(&network, &bounds)?;
    Ok(Quantized { network, input_range, bounds, dense, output_scale })
}

/// Quantises one dense or convolution layer (and the division after it)
/// into the builder.
#[allow(clippy::too_many_arguments)]
fn quantize_linear(
    b: &mut Builder,
    model: &FloatModel,
    i: usize,
    layer: &FloatLayer,
    out_shape: Vec<usize>,
    options: &QuantizeOptions,
    all_divisors: &[u64],
    float_to_int: &[usize],
) -> Result<DenseChoice> {
    let base = b.base;
    let ctx = || format!("layer {i} ({})", layer.name());
    let scale = b.scales[b.last()];
    let in_shape = b.shapes[b.last()].clone();
    let plan = plan_linear(model, i);
    // Proven outputs of the integer layer for weight factor `a` and offset.
    let bounds_for = |a: f64, offset: i64| -> Result<(IntLayer, Vec<Interval>)> {
        let il = int_linear(layer, a, scale, offset)?;
        let y = layer_bounds(&il, &in_shape, &out_shape, &b.acts)?;
        Ok((il, y))
    };
    let fits_with = |a: f64, slack: i128| -> bool {
        match bounds_for(a, 0) {
            Ok((_, y)) => y.iter().all(|iv| fits(base, Interval::new(iv.lo - slack, iv.hi + slack))),
            Err(_) => false,
        }
    };
    let (il, out, a, divisor) = if let Some((from, growth)) = plan.residual {
        // The output after division must have the other summand's scale:
        // a = target·d/scale; the largest divisor that fits keeps the most
        // weight precision.
        let target = b.scales[float_to_int[from]] / growth;
        let mut best = None;
        // Outputs grow with d (a is proportional to it): stop at the first
        // divisor that no longer fits.
        for d in std::iter::once(1u64).chain(all_divisors.iter().copied()) {
            let a = target * d as f64 / scale;
            let slack = (d / 2) as i128;
            if !fits_with(a, slack) {
                break;
            }
            best = Some((d, a));
        }
        let (d, a) = best.with_context(|| format!("{}: no divisor fits the residual branch on this base", ctx()))?;
        let offset = (d / 2) as i64;
        let (il, out) = bounds_for(a, offset)?;
        let divisor = (d > 1).then(|| Ok::<_, anyhow::Error>((d, rescale_cost(base, d)?))).transpose()?;
        (il, out, a, divisor)
    } else {
        // 1. The largest weight factor whose outputs fit the base, leaving
        //    room for the rounding offset of a division. The bound is
        //    linear in `a` up to rounding, so one evaluation with weights
        //    of about 2^20 brackets it.
        let max_w = match layer {
            FloatLayer::Dense { weights, .. } | FloatLayer::Conv2d { weights, .. } => {
                weights.iter().fold(0.0f64, |m, w| m.max(w.abs()))
            }
            _ => 0.0,
        };
        let probe = if max_w > 0.0 { (1u64 << 20) as f64 / max_w } else { 1.0 };
        let estimate = bounds_for(probe, 0).ok().map(|(_, y)| {
            let top = y.iter().map(|iv| iv.lo.abs().max(iv.hi.abs())).max().unwrap_or(1).max(1);
            probe * base.max_value() as f64 / top as f64
        });
        let mut slack = 0i128;
        loop {
            let (mut lo, mut hi) = match estimate {
                Some(e) if fits_with(e / 2.0, slack) => (e / 2.0, e * 2.0),
                _ => (1e-12, base.product() as f64),
            };
            ensure!(fits_with(lo, slack), "{}: does not fit even with negligible weights", ctx());
            if fits_with(hi, slack) {
                lo = hi;
            }
            // The search ends at some a <= hi, and the largest integer weight
            // round(a·max|w|) grows with a: if even `hi` gives too few bits,
            // so will the search (and this base is out without it).
            let at_most = (hi * max_w).round();
            ensure!(
                at_most >= options.min_weight_magnitude as f64,
                "{}: largest integer weight at most {at_most} < {} (too little precision on this base)",
                ctx(),
                options.min_weight_magnitude
            );
            for _ in 0..48 {
                let mid = (lo * hi).sqrt();
                if fits_with(mid, slack) {
                    lo = mid
                } else {
                    hi = mid
                }
                // The largest a to float precision, as a full search finds it.
                if hi / lo < 1.0 + 1e-12 {
                    break;
                }
            }
            let a = lo;
            let (_, out) = bounds_for(a, 0)?;
            // 2. The division after a hidden layer.
            let divisor = if plan.divide {
                let reach = |iv: &Interval| if plan.relu_follows { iv.hi } else { iv.hi.max(-iv.lo) };
                let top = out.iter().map(reach).max().unwrap_or(0).max(1);
                choose_divisor(base, all_divisors, top, options.activation_bits).with_context(|| {
                    format!("{}: no divisor brings {top} below 2^{}", ctx(), options.activation_bits)
                })?
            } else {
                None
            };
            let need = divisor.map_or(0, |(d, _)| (d / 2) as i128);
            if need <= slack {
                let (il, out) = bounds_for(a, need as i64)?;
                break (il, out, a, divisor);
            }
            slack = need;
        }
    };
    let max_abs_weight = int_weights(&il).iter().map(|w| w.abs()).max().unwrap_or(0);
    ensure!(
        max_abs_weight >= options.min_weight_magnitude,
        "{}: largest integer weight {max_abs_weight} < {} (too little precision on this base)",
        ctx(),
        options.min_weight_magnitude
    );
    let output_bound = Interval::hull(out.iter().copied());
    let mut out_scale = scale * a;
    b.push(il, out_shape.clone(), out_scale)?;
    if let Some((d, _)) = divisor {
        out_scale /= d as f64;
        b.push(IntLayer::Rescale { divisor: d, rounding: Rounding::Floor }, out_shape, out_scale)?;
    }
    Ok(DenseChoice {
        float_layer: i,
        kind: layer.name(),
        weight_factor: a,
        max_abs_weight,
        output_bound,
        divisor: divisor.map(|(d, _)| d),
        divisor_cost: divisor.map_or(0, |(_, c)| c),
        output_scale: out_scale,
    })
}

fn rescale_cost(base: &CrtBase, d: u64) -> Result<u64> {
    Ok(Rescale::new(base, d, Rounding::Floor).map_err(|e| anyhow::anyhow!("rescale by {d}: {e:?}"))?.cost())
}

/// The divisor for a hidden layer whose proven outputs are at most `top`:
/// `None` if `top <= 2^bits` already, else the cheapest divisor `d` with
/// `top/d` in `(2^(bits-1), 2^bits]` (the smallest divisor with
/// `top/d <= 2^bits` if none lands in that window). Returns the divisor and
/// its gadget's cost.
fn choose_divisor(base: &CrtBase, divisors: &[u64], top: i128, bits: u32) -> Result<Option<(u64, u64)>> {
    let cap = 1i128 << bits;
    if top <= cap {
        return Ok(None);
    }
    let ok = |d: u64| (top + d as i128 - 1) / d as i128 <= cap;
    let cost = |d: u64| rescale_cost(base, d);
    let window: Vec<u64> = divisors.iter().copied().filter(|&d| ok(d) && 2 * top > cap * d as i128).collect();
    let mut best: Option<(u64, u64)> = None;
    for d in window {
        let c = cost(d)?;
        if best.is_none_or(|(bd, bc)| c < bc || (c == bc && d < bd)) {
            best = Some((d, c));
        }
    }
    if best.is_none()
        && let Some(d) = divisors.iter().copied().find(|&d| ok(d))
    {
        best = Some((d, cost(d)?));
    }
    best.map(Some).context("divisors too small")
}

/// Proven interval of every element of every activation of `net`
/// (`[input, after layer 0, …]`) when every input lies in `input`.
/// Arithmetic is exact (`i128`, checked); a bound that overflows `i128`
/// is an error.
pub fn interval_bounds(net: &IntNetwork, input: Interval) -> Result<Vec<Vec<Interval>>> {
    let shapes = net.shapes()?;
    let n_in: usize = net.input_shape.iter().product();
    let mut acts: Vec<Vec<Interval>> = vec![vec![input; n_in]];
    for (li, layer) in net.layers.iter().enumerate() {
        let y = layer_bounds(layer, &shapes[li], &shapes[li + 1], &acts)
            .with_context(|| format!("layer {li} ({})", layer.name()))?;
        acts.push(y);
    }
    Ok(acts)
}

/// Proven interval of every output element of one layer, from the proven
/// intervals of the activations before it (`acts`, the last one is the
/// layer's input). Shapes are the layer's input and output shapes.
fn layer_bounds(
    layer: &IntLayer,
    in_shape: &[usize],
    out_shape: &[usize],
    acts: &[Vec<Interval>],
) -> Result<Vec<Interval>> {
    let x = acts.last().context("no input activation")?;
    Ok(match layer {
        IntLayer::Dense { inputs, weights, bias, .. } => {
            ensure!(weights.iter().chain(bias).all(|w| w.abs() < 1 << 62), "weight too large");
            dense_bounds(*inputs, weights, bias, x)
        }
        IntLayer::Conv2d { in_channels, out_channels, kernel, stride, padding, weights, bias } => {
            let (&[_, h, w], &[_, oh, ow]) = (in_shape, out_shape) else {
                bail!("not a [C, H, W] tensor");
            };
            ensure!(weights.iter().chain(bias).all(|w| w.abs() < 1 << 62), "weight too large");
            ensure!(
                weights.len() == out_channels * in_channels * kernel[0] * kernel[1]
                    && bias.len() == *out_channels
                    && x.len() == in_channels * h * w,
                "convolution parameters do not match its shapes"
            );
            let shape = ConvShape {
                input: [*in_channels, h, w],
                output: [oh, ow],
                kernel: *kernel,
                stride: *stride,
                padding: *padding,
            };
            conv_bounds(shape, weights, bias, x)
        }
        IntLayer::SumPool { kernel, stride } | IntLayer::MaxPool { kernel, stride } => {
            let (&[ch, h, w], &[_, oh, ow]) = (in_shape, out_shape) else {
                bail!("not a [C, H, W] tensor");
            };
            let sum = matches!(layer, IntLayer::SumPool { .. });
            let mut y = Vec::with_capacity(ch * oh * ow);
            for c in 0..ch {
                for r in 0..oh {
                    for col in 0..ow {
                        let win = (0..kernel[0]).flat_map(|dy| {
                            (0..kernel[1]).map(move |dx| x[(c * h + r * stride[0] + dy) * w + col * stride[1] + dx])
                        });
                        y.push(if sum { win.fold(Interval::new(0, 0), Interval::add) } else { Interval::hull(win) });
                    }
                }
            }
            y
        }
        IntLayer::Relu => x.iter().map(|v| Interval::new(v.lo.max(0), v.hi.max(0))).collect(),
        IntLayer::Sign => x.iter().map(|_| Interval::new(-1, 1)).collect(),
        IntLayer::Rescale { divisor, rounding } => {
            x.iter().map(|v| Interval::new(rounding.divide(v.lo, *divisor), rounding.divide(v.hi, *divisor))).collect()
        }
        IntLayer::Flatten | IntLayer::Reshape { .. } => x.clone(),
        IntLayer::ResidualAdd { from } => {
            let other = acts.get(*from).with_context(|| format!("no activation {from}"))?;
            ensure!(other.len() == x.len(), "residual summands differ in length");
            x.iter().zip(other).map(|(a, b)| a.add(*b)).collect()
        }
    })
}

/// Fails unless every interval lies in the signed range of the base. For
/// max pooling, also the differences `a - b` its `max2` steps compute
/// (bounded by the window's hull minus itself).
pub fn check_ranges(net: &IntNetwork, bounds: &[Vec<Interval>]) -> Result<()> {
    let base = &net.base;
    ensure!(bounds.len() == net.layers.len() + 1, "bounds do not match the network");
    for (i, act) in bounds.iter().enumerate() {
        if let Some(bad) = act.iter().find(|iv| !fits(base, **iv)) {
            bail!(
                "activation {i} may reach [{}, {}], outside the base's range [{}, {}]",
                bad.lo,
                bad.hi,
                base.min_value(),
                base.max_value()
            );
        }
    }
    for (li, layer) in net.layers.iter().enumerate() {
        if let IntLayer::MaxPool { .. } = layer {
            let h = Interval::hull(bounds[li].iter().copied());
            let diff = Interval::new(h.lo - h.hi, h.hi - h.lo);
            ensure!(fits(base, diff), "layer {li} (maxpool): differences may reach ±{}, outside the base", h.hi - h.lo);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-at-a-time convolution bounds equal the tap-by-tap sums over
    /// `conv_taps` for many shapes, strides, paddings and signed weights.
    #[test]
    fn conv_bounds_equal_tap_by_tap_sums() {
        use crate::network::{conv_taps, sweep};
        use rand_core::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut r = |n: u64| rng.next_u64() % n;
        let mut checked = 0;
        for _ in 0..300 {
            let (ic, oc) = (1 + r(3) as usize, 1 + r(3) as usize);
            let (h, w) = (1 + r(7) as usize, 1 + r(7) as usize);
            let kernel = [1 + r(3) as usize, 1 + r(3) as usize];
            let stride = [1 + r(3) as usize, 1 + r(3) as usize];
            let padding =
                Padding { top: r(3) as usize, left: r(3) as usize, bottom: r(3) as usize, right: r(3) as usize };
            let (Some(oh), Some(ow)) = (
                sweep(h + padding.top + padding.bottom, kernel[0], stride[0]),
                sweep(w + padding.left + padding.right, kernel[1], stride[1]),
            ) else {
                continue;
            };
            let weights: Vec<i64> = (0..oc * ic * kernel[0] * kernel[1]).map(|_| r(41) as i64 - 20).collect();
            let bias: Vec<i64> = (0..oc).map(|_| r(201) as i64 - 100).collect();
            let x: Vec<Interval> = (0..ic * h * w)
                .map(|_| {
                    let lo = r(1000) as i128 - 500;
                    Interval::new(lo, lo + r(300) as i128)
                })
                .collect();
            let mut want = Vec::new();
            for (o, &b) in bias.iter().enumerate() {
                for row in 0..oh {
                    for col in 0..ow {
                        let mut acc = Interval::new(b as i128, b as i128);
                        for (wi, xi) in conv_taps([ic, h, w], kernel, stride, padding, o, [row, col]) {
                            acc = acc.add(x[xi].scale(weights[wi] as i128));
                        }
                        want.push(acc);
                    }
                }
            }
            let shape = ConvShape { input: [ic, h, w], output: [oh, ow], kernel, stride, padding };
            let got = conv_bounds(shape, &weights, &bias, &x);
            assert_eq!(got, want, "ic {ic} oc {oc} {h}x{w} kernel {kernel:?} stride {stride:?} {padding:?}");
            let (lo, hi): (Vec<i128>, Vec<i128>) = x.iter().map(|v| (v.lo, v.hi)).unzip();
            let wide = conv_bounds_in(shape, &weights, &bias, &lo, &hi);
            assert_eq!(wide, want, "i128 sums");
            checked += 1;
        }
        assert!(checked > 100, "only {checked} shapes were valid");
        // Inputs beyond i64 take the i128 sums, without narrowing.
        let shape = ConvShape {
            input: [1, 2, 2],
            output: [1, 1],
            kernel: [2, 2],
            stride: [1, 1],
            padding: Padding::uniform(0),
        };
        let big = 1i128 << 70;
        let x = [Interval::new(-big, big), Interval::new(0, big), Interval::new(-3, 5), Interval::new(big, big + 1)];
        let got = conv_bounds(shape, &[1, -2, 3, 1], &[7], &x);
        assert_eq!(got, vec![Interval::new(7 - big - 2 * big - 9 + big, 7 + big + 15 + big + 1)]);
    }

    fn tiny() -> FloatModel {
        FloatModel::from_json(
            r#"{"format":"dash-model","version":1,"name":"tiny",
            "input":{"shape":[3],"min":0,"max":255,"scale":0.00392156862745098},
            "layers":[{"type":"dense","inputs":3,"outputs":4,"weights":[0.5,-1.25,0.3,2,0.01,-0.7,-0.2,0.9,1.1,0.05,0.05,-0.05],"bias":[0.1,-0.2,0.3,0]},
                      {"type":"relu"},
                      {"type":"dense","inputs":4,"outputs":2,"weights":[1,-1,0.5,0.25,-0.3,0.8,0.1,-2],"bias":[0.01,-0.01]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn tiny_model_bounds_hold_exhaustively_on_a_grid() {
        let m = tiny();
        let q = quantize(&m, &QuantizeOptions { activation_bits: 6, min_weight_magnitude: 8, ..Default::default() })
            .unwrap();
        assert!(q.network.layers.iter().any(|l| matches!(l, IntLayer::Rescale { .. })));
        for a in (0..=255).step_by(15) {
            for b in (0..=255).step_by(15) {
                for c in [0, 1, 128, 254, 255] {
                    let trace = q.network.eval_plain_trace(&[a, b, c]).unwrap();
                    for (act, bound) in trace.iter().zip(&q.bounds) {
                        for (v, iv) in act.iter().zip(bound) {
                            assert!(iv.contains(*v as i128), "{v} outside {iv:?}");
                        }
                    }
                    // The quantised logits track the float ones.
                    let f = m.infer(&[a, b, c]).unwrap();
                    let i = q.network.eval_plain(&[a, b, c]).unwrap();
                    for (fv, iv) in f.iter().zip(&i) {
                        assert!((fv - *iv as f64 / q.output_scale).abs() < 0.1, "{fv} vs {iv}");
                    }
                }
            }
        }
    }

    #[test]
    fn ranges_are_checked() {
        let m = tiny();
        let q = quantize(&m, &QuantizeOptions { activation_bits: 6, min_weight_magnitude: 8, ..Default::default() })
            .unwrap();
        // Blow up one weight: the proof must fail.
        let mut net = q.network.clone();
        if let IntLayer::Dense { weights, .. } = &mut net.layers[0] {
            weights[0] = net.base.max_value() as i64;
        }
        let b = interval_bounds(&net, q.input_range).unwrap();
        assert!(check_ranges(&net, &b).is_err());
        // A base that is too small is refused with reasons.
        let e = quantize(&m, &QuantizeOptions { min_k: 2, max_k: 3, ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("k=3"));
    }

    /// Interval propagation through every layer kind bounds `eval_plain`
    /// on random inputs, including the box's corners.
    #[test]
    fn bounds_hold_for_every_layer_kind() {
        use crate::network::Padding;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |lo: i64, hi: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            lo + (seed % (hi - lo + 1) as u64) as i64
        };
        let mut ints = |n: usize, lo: i64, hi: i64| (0..n).map(|_| next(lo, hi)).collect::<Vec<_>>();
        let layers = vec![
            IntLayer::Conv2d {
                in_channels: 2,
                out_channels: 3,
                kernel: [3, 3],
                stride: [1, 2],
                padding: Padding::uniform(1),
                weights: ints(3 * 2 * 9, -7, 7),
                bias: ints(3, -20, 20),
            },
            IntLayer::Rescale { divisor: 15, rounding: Rounding::Nearest },
            IntLayer::Relu,
            IntLayer::MaxPool { kernel: [2, 2], stride: [1, 1] },
            IntLayer::SumPool { kernel: [2, 1], stride: [1, 1] },
            IntLayer::ResidualAdd { from: 5 },
            IntLayer::Flatten,
            IntLayer::Dense { inputs: 3 * 4 * 2, outputs: 5, weights: ints(5 * 24, -5, 5), bias: ints(5, -9, 9) },
            IntLayer::Sign,
            IntLayer::Reshape { shape: vec![5, 1] },
        ];
        let net = IntNetwork::new(vec![2, 6, 6], layers, CrtBase::first(7).unwrap()).unwrap();
        let input = Interval::new(-8, 9);
        let bounds = interval_bounds(&net, input).unwrap();
        check_ranges(&net, &bounds).unwrap();
        let mut inputs: Vec<Vec<i64>> = (0..300).map(|_| ints(72, -8, 9)).collect();
        inputs.push(vec![-8; 72]);
        inputs.push(vec![9; 72]);
        for x in inputs {
            let trace = net.eval_plain_trace(&x).unwrap();
            for (i, (act, b)) in trace.iter().zip(&bounds).enumerate() {
                assert_eq!(act.len(), b.len(), "activation {i}");
                for (v, iv) in act.iter().zip(b) {
                    assert!(iv.contains(*v as i128), "activation {i}: {v} outside {iv:?}");
                }
            }
        }
    }

    #[test]
    fn divisors_are_products_of_base_primes() {
        let base = CrtBase::first(4).unwrap();
        assert_eq!(divisors(&base), vec![2, 3, 5, 6, 7, 10, 14, 15, 21, 30, 35, 42, 70, 105]);
        let (d, c) = choose_divisor(&base, &divisors(&base), 1000, 5).unwrap().unwrap();
        assert!((1000 + d as i128 - 1) / d as i128 <= 32 && c > 0);
        assert_eq!(choose_divisor(&base, &divisors(&base), 30, 5).unwrap(), None);
    }
}
