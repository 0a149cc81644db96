//! The integer network: what the quantiser produces, what the engine
//! garbles, and its plaintext twin.
//!
//! An [`IntNetwork`] is a chain of [`IntLayer`]s over integers held modulo
//! the product `Q` of a CRT base. Every value lives in the signed range
//! `[-floor(Q/2), ceil(Q/2))`; linear layers wrap into it exactly as the
//! garbled circuit does (the circuit computes modulo each prime, i.e.
//! modulo `Q`). [`IntNetwork::eval_plain`] is the reference the garbled
//! inference must equal bit for bit:
//!
//! | layer | plaintext semantics |
//! |---|---|
//! | `Dense`, `Conv2d`, `SumPool`, `ResidualAdd` | integer sums of products, wrapped mod `Q` into the signed range |
//! | `Relu` | `x` if `x >= 0`, else `0` (exact sign) |
//! | `Sign` | `+1` if `x >= 0`, else `-1` |
//! | `Rescale` | `x / d` rounded as [`Rounding`] says (the gadget's `reference`) |
//! | `MaxPool` | a balanced tree of `max2(a, b) = b + relu(a - b)` with every step wrapped, windows read row-major |
//! | `Flatten`, `Reshape` | the same values, another shape |
//!
//! Tensors are row-major; convolution and pooling take `[C, H, W]`.

use anyhow::{Context, Result, anyhow, bail, ensure};
use dash_core::CrtBase;
pub use dash_core::gadgets::rescale::Rounding;
use sha2::{Digest, Sha256};

/// Zero padding of a 2-D convolution, in rows and columns on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Padding {
    /// Rows above.
    pub top: usize,
    /// Columns on the left.
    pub left: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns on the right.
    pub right: usize,
}

impl Padding {
    /// No padding ("valid").
    pub const fn valid() -> Padding {
        Padding { top: 0, left: 0, bottom: 0, right: 0 }
    }

    /// "same" padding (TensorFlow/ONNX `SAME_UPPER`): the output has
    /// `ceil(in / stride)` rows and columns; an odd total goes to the
    /// bottom/right.
    pub fn same(input_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Padding {
        let total = |n: usize, k: usize, s: usize| {
            let s = s.max(1);
            let out = n.div_ceil(s);
            ((out.saturating_sub(1)) * s + k).saturating_sub(n)
        };
        let th = total(input_hw[0], kernel[0], stride[0]);
        let tw = total(input_hw[1], kernel[1], stride[1]);
        Padding { top: th / 2, left: tw / 2, bottom: th - th / 2, right: tw - tw / 2 }
    }

    /// The same padding on all four sides.
    pub const fn uniform(p: usize) -> Padding {
        Padding { top: p, left: p, bottom: p, right: p }
    }
}

/// One layer of an [`IntNetwork`]. Weights are public integers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntLayer {
    /// `y = W·x + b` on the flattened input (`W` row-major, `outputs × inputs`).
    Dense {
        /// Input length (the flattened input must have this many elements).
        inputs: usize,
        /// Output length.
        outputs: usize,
        /// `outputs × inputs` weights, row-major.
        weights: Vec<i64>,
        /// `outputs` biases.
        bias: Vec<i64>,
    },
    /// 2-D convolution (cross-correlation, dilation 1) on `[C, H, W]`.
    Conv2d {
        /// Input channels `C`.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]` (each at least 1).
        stride: [usize; 2],
        /// Zero padding.
        padding: Padding,
        /// `out_channels × in_channels × kh × kw` weights, row-major.
        weights: Vec<i64>,
        /// `out_channels` biases.
        bias: Vec<i64>,
    },
    /// Max pooling on `[C, H, W]` (no padding; windows that do not fit are dropped).
    MaxPool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
    },
    /// Sum pooling on `[C, H, W]` (no padding). Average pooling is this
    /// followed by a [`IntLayer::Rescale`].
    SumPool {
        /// Window `[kh, kw]`.
        kernel: [usize; 2],
        /// Stride `[sh, sw]`.
        stride: [usize; 2],
    },
    /// `max(x, 0)`, exact.
    Relu,
    /// `+1` for `x >= 0`, `-1` for `x < 0`.
    Sign,
    /// Division by a product of distinct primes of the base, rounded.
    Rescale {
        /// The divisor `d` (a product of distinct base primes, not all of them).
        divisor: u64,
        /// How the quotient is rounded.
        rounding: Rounding,
    },
    /// To one dimension.
    Flatten,
    /// To the given shape (same number of elements).
    Reshape {
        /// The new shape.
        shape: Vec<usize>,
    },
    /// Adds activation `from` (0 = the network input, `i + 1` = the output
    /// of layer `i`, which must come before this layer) to the input; the
    /// shapes must be equal.
    ResidualAdd {
        /// Activation index of the other summand.
        from: usize,
    },
}

impl IntLayer {
    /// Whether the layer is linear (free on labels).
    pub fn is_linear(&self) -> bool {
        // Exhaustive on purpose: a new layer must say which it is.
        match self {
            IntLayer::Dense { .. }
            | IntLayer::Conv2d { .. }
            | IntLayer::SumPool { .. }
            | IntLayer::Flatten
            | IntLayer::Reshape { .. }
            | IntLayer::ResidualAdd { .. } => true,
            IntLayer::MaxPool { .. } | IntLayer::Relu | IntLayer::Sign | IntLayer::Rescale { .. } => false,
        }
    }

    /// A short name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            IntLayer::Dense { .. } => "dense",
            IntLayer::Conv2d { .. } => "conv2d",
            IntLayer::MaxPool { .. } => "maxpool",
            IntLayer::SumPool { .. } => "sumpool",
            IntLayer::Relu => "relu",
            IntLayer::Sign => "sign",
            IntLayer::Rescale { .. } => "rescale",
            IntLayer::Flatten => "flatten",
            IntLayer::Reshape { .. } => "reshape",
            IntLayer::ResidualAdd { .. } => "residual_add",
        }
    }
}

/// An integer network on a CRT base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntNetwork {
    /// Shape of the input (`[C, H, W]` for images, `[n]` for vectors).
    pub input_shape: Vec<usize>,
    /// The layers, in order.
    pub layers: Vec<IntLayer>,
    /// The CRT base every value lives on.
    pub base: CrtBase,
}

/// Largest `Q` accepted (values and weights must fit `i64`, products `i128`).
pub const MAX_Q_BITS: u32 = 62;

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The taps of one convolution output `(oc, [r, c])` over an input of shape
/// `[in_channels, h, w]`: `(weight index, input index)` for every kernel
/// position that falls inside the input (padding contributes nothing). The
/// one definition of the convolution's indexing, shared by the plaintext
/// twin and the quantiser's interval bounds.
pub(crate) fn conv_taps(
    [in_channels, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    padding: Padding,
    oc: usize,
    [r, c]: [usize; 2],
) -> impl Iterator<Item = (usize, usize)> {
    (0..in_channels).flat_map(move |ic| {
        (0..kh).flat_map(move |dy| {
            (0..kw).filter_map(move |dx| {
                let iy = (r * stride[0] + dy).checked_sub(padding.top)?;
                let ix = (c * stride[1] + dx).checked_sub(padding.left)?;
                (iy < h && ix < w).then(|| (((oc * in_channels + ic) * kh + dy) * kw + dx, (ic * h + iy) * w + ix))
            })
        })
    })
}

fn chw(shape: &[usize], what: &str) -> Result<[usize; 3]> {
    match shape {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => bail!("{what} needs a [C, H, W] input, got shape {shape:?}"),
    }
}

/// Output size of a window sweep over `n` (padded) positions.
pub(crate) fn sweep(n: usize, k: usize, s: usize) -> Option<usize> {
    if k == 0 || s == 0 || n < k { None } else { Some((n - k) / s + 1) }
}

impl IntNetwork {
    /// A network, validated ([`IntNetwork::validate`]).
    pub fn new(input_shape: Vec<usize>, layers: Vec<IntLayer>, base: CrtBase) -> Result<IntNetwork> {
        let net = IntNetwork { input_shape, layers, base };
        net.validate()?;
        Ok(net)
    }

    /// Checks every layer's parameters against its input shape, and the
    /// base size; returns the shape of every activation
    /// (`[input, after layer 0, …]`).
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>> {
        ensure!(
            self.base.product() < 1u128 << MAX_Q_BITS,
            "CRT base product Q must be below 2^{MAX_Q_BITS}, got {}",
            self.base.product()
        );
        ensure!(
            !self.input_shape.is_empty() && numel(&self.input_shape) > 0,
            "input shape {:?} is empty",
            self.input_shape
        );
        let mut shapes = vec![self.input_shape.clone()];
        for (i, layer) in self.layers.iter().enumerate() {
            let s = &shapes[i];
            let out = layer_output_shape(layer, s, &shapes, &self.base)
                .with_context(|| format!("layer {i} ({})", layer.name()))?;
            shapes.push(out);
        }
        Ok(shapes)
    }

    /// Validates the network (see [`IntNetwork::shapes`]).
    pub fn validate(&self) -> Result<()> {
        self.shapes().map(|_| ())
    }

    /// The output shape.
    pub fn output_shape(&self) -> Result<Vec<usize>> {
        Ok(self.shapes()?.pop().unwrap_or_default())
    }

    /// Plaintext integer inference with exactly the garbled circuit's
    /// semantics (module documentation). Inputs must lie in the signed range
    /// of the base.
    pub fn eval_plain(&self, input: &[i64]) -> Result<Vec<i64>> {
        Ok(self.eval_plain_trace(input)?.pop().unwrap_or_default())
    }

    /// [`IntNetwork::eval_plain`], returning every activation
    /// (`[input, after layer 0, …]`), e.g. to check value ranges.
    pub fn eval_plain_trace(&self, input: &[i64]) -> Result<Vec<Vec<i64>>> {
        self.eval_trace_on(input, &[])
    }

    /// The plaintext twin of a circuit whose sign, ReLU and max-pool layers
    /// decide signs on sub-bases: `sub_bases[i]`, when given, lists the
    /// residues (indices into the base) layer `i` decides on, and the sign
    /// of a value `v` is then that of `v` wrapped into the sub-base's signed
    /// range, exactly as the garbled gadget computes it. Within the range
    /// the planner proves, this equals [`IntNetwork::eval_plain`]; outside
    /// it, it still equals the garbled circuit bit for bit. An empty slice
    /// is `eval_plain`.
    pub fn eval_plain_on_sub_bases(&self, input: &[i64], sub_bases: &[Option<Vec<usize>>]) -> Result<Vec<i64>> {
        Ok(self.eval_trace_on(input, sub_bases)?.pop().unwrap_or_default())
    }

    fn eval_trace_on(&self, input: &[i64], sub_bases: &[Option<Vec<usize>>]) -> Result<Vec<Vec<i64>>> {
        ensure!(
            sub_bases.is_empty() || sub_bases.len() == self.layers.len(),
            "{} sub-bases for {} layers",
            sub_bases.len(),
            self.layers.len()
        );
        let mut subs: Vec<Option<SubRing>> = Vec::with_capacity(sub_bases.len());
        for (i, sb) in sub_bases.iter().enumerate() {
            subs.push(match sb {
                None => None,
                Some(idx) => {
                    let primes = idx
                        .iter()
                        .map(|&j| self.base.moduli().get(j).map(|m| m.value()))
                        .collect::<Option<Vec<u16>>>()
                        .with_context(|| format!("layer {i}: sub-base index out of range"))?;
                    let b = CrtBase::new(&primes).map_err(|e| anyhow!("layer {i}: sub-base {primes:?}: {e}"))?;
                    Some(SubRing { q: b.product() as i128, min: b.min_value() })
                }
            });
        }
        let sub = |i: usize| subs.get(i).copied().flatten();
        let shapes = self.shapes()?;
        ensure!(
            input.len() == numel(&self.input_shape),
            "input has {} values, the network takes {}",
            input.len(),
            numel(&self.input_shape)
        );
        let ring = Ring::new(&self.base);
        for &x in input {
            ensure!(
                (self.base.min_value()..=self.base.max_value()).contains(&(x as i128)),
                "input value {x} is outside the base's signed range"
            );
        }
        let mut acts: Vec<Vec<i64>> = vec![input.to_vec()];
        for (i, layer) in self.layers.iter().enumerate() {
            let x = &acts[i];
            let in_shape = &shapes[i];
            let out_shape = &shapes[i + 1];
            let y: Vec<i64> = match layer {
                IntLayer::Dense { inputs, outputs, weights, bias } => (0..*outputs)
                    .map(|o| {
                        let row = &weights[o * inputs..(o + 1) * inputs];
                        ring.dot(row.iter().copied().zip(x.iter().copied()), bias[o])
                    })
                    .collect(),
                IntLayer::Conv2d { in_channels, out_channels, kernel, stride, padding, weights, bias } => {
                    let [_, h, w] = chw(in_shape, "conv2d")?;
                    let [_, oh, ow] = chw(out_shape, "conv2d")?;
                    let [kh, kw] = *kernel;
                    let mut y = Vec::with_capacity(out_channels * oh * ow);
                    for (oc, &b) in bias.iter().enumerate().take(*out_channels) {
                        for r in 0..oh {
                            for c in 0..ow {
                                let taps = conv_taps([*in_channels, h, w], [kh, kw], *stride, *padding, oc, [r, c]);
                                y.push(ring.dot(taps.map(|(wi, xi)| (weights[wi], x[xi])), b));
                            }
                        }
                    }
                    y
                }
                IntLayer::SumPool { kernel, stride } => {
                    pool(in_shape, out_shape, *kernel, *stride, x, |win| ring.dot(win.iter().map(|&v| (1, v)), 0))?
                }
                IntLayer::MaxPool { kernel, stride } => {
                    pool(in_shape, out_shape, *kernel, *stride, x, |win| ring.max_tree(win, sub(i)))?
                }
                IntLayer::Relu => x.iter().map(|&v| if nonneg(v, sub(i)) { v } else { 0 }).collect(),
                IntLayer::Sign => x.iter().map(|&v| if nonneg(v, sub(i)) { 1 } else { -1 }).collect(),
                IntLayer::Rescale { divisor, rounding } => {
                    x.iter().map(|&v| rounding.divide(v as i128, *divisor) as i64).collect()
                }
                IntLayer::Flatten | IntLayer::Reshape { .. } => x.clone(),
                IntLayer::ResidualAdd { from } => {
                    let other = &acts[*from];
                    x.iter().zip(other).map(|(&a, &b)| ring.wrap(a as i128 + b as i128)).collect()
                }
            };
            acts.push(y);
        }
        Ok(acts)
    }

    /// SHA-256 of the canonical encoding ([`IntNetwork::canonical_bytes`]):
    /// the model identity garbler and evaluator agree on.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }

    /// A canonical, unambiguous byte encoding of the network (all integers
    /// little-endian, every list preceded by its length).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        let u = |b: &mut Vec<u8>, v: u64| b.extend_from_slice(&v.to_le_bytes());
        let list = |b: &mut Vec<u8>, v: &[usize]| {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for &x in v {
                b.extend_from_slice(&(x as u64).to_le_bytes());
            }
        };
        let ints = |b: &mut Vec<u8>, v: &[i64]| {
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            for &x in v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
        b.extend_from_slice(b"dash-int-network/1");
        let primes: Vec<usize> = self.base.moduli().iter().map(|m| m.value() as usize).collect();
        list(&mut b, &primes);
        list(&mut b, &self.input_shape);
        u(&mut b, self.layers.len() as u64);
        for layer in &self.layers {
            match layer {
                IntLayer::Dense { inputs, outputs, weights, bias } => {
                    b.push(1);
                    list(&mut b, &[*inputs, *outputs]);
                    ints(&mut b, weights);
                    ints(&mut b, bias);
                }
                IntLayer::Conv2d { in_channels, out_channels, kernel, stride, padding, weights, bias } => {
                    b.push(2);
                    let p = padding;
                    list(&mut b, &[*in_channels, *out_channels, kernel[0], kernel[1], stride[0], stride[1]]);
                    list(&mut b, &[p.top, p.left, p.bottom, p.right]);
                    ints(&mut b, weights);
                    ints(&mut b, bias);
                }
                IntLayer::MaxPool { kernel, stride } => {
                    b.push(3);
                    list(&mut b, &[kernel[0], kernel[1], stride[0], stride[1]]);
                }
                IntLayer::SumPool { kernel, stride } => {
                    b.push(4);
                    list(&mut b, &[kernel[0], kernel[1], stride[0], stride[1]]);
                }
                IntLayer::Relu => b.push(5),
                IntLayer::Sign => b.push(6),
                IntLayer::Rescale { divisor, rounding } => {
                    b.push(7);
                    u(&mut b, *divisor);
                    b.push(match rounding {
                        Rounding::Floor => 0,
                        Rounding::Nearest => 1,
                        Rounding::Ceil => 2,
                    });
                }
                IntLayer::Flatten => b.push(8),
                IntLayer::Reshape { shape } => {
                    b.push(9);
                    list(&mut b, shape);
                }
                IntLayer::ResidualAdd { from } => {
                    b.push(10);
                    u(&mut b, *from as u64);
                }
            }
        }
        b
    }
}

fn layer_output_shape(layer: &IntLayer, s: &[usize], earlier: &[Vec<usize>], base: &CrtBase) -> Result<Vec<usize>> {
    Ok(match layer {
        IntLayer::Dense { inputs, outputs, weights, bias } => {
            ensure!(numel(s) == *inputs, "dense takes {inputs} inputs, got shape {s:?}");
            ensure!(*outputs > 0, "dense needs at least one output");
            ensure!(
                inputs.checked_mul(*outputs) == Some(weights.len()),
                "dense weights: expected {}×{} values, got {}",
                outputs,
                inputs,
                weights.len()
            );
            ensure!(bias.len() == *outputs, "dense bias: expected {outputs} values, got {}", bias.len());
            vec![*outputs]
        }
        IntLayer::Conv2d { in_channels, out_channels, kernel, stride, padding, weights, bias } => {
            let [c, h, w] = chw(s, "conv2d")?;
            ensure!(c == *in_channels, "conv2d expects {in_channels} channels, input has {c}");
            ensure!(*out_channels > 0, "conv2d needs at least one output channel");
            let want = out_channels * in_channels * kernel[0] * kernel[1];
            ensure!(weights.len() == want, "conv2d weights: expected {want} values, got {}", weights.len());
            ensure!(bias.len() == *out_channels, "conv2d bias: expected {out_channels} values, got {}", bias.len());
            let oh = sweep(h + padding.top + padding.bottom, kernel[0], stride[0]);
            let ow = sweep(w + padding.left + padding.right, kernel[1], stride[1]);
            match (oh, ow) {
                (Some(oh), Some(ow)) => vec![*out_channels, oh, ow],
                _ => bail!("conv2d kernel {kernel:?} stride {stride:?} does not fit input {s:?} with {padding:?}"),
            }
        }
        IntLayer::MaxPool { kernel, stride } | IntLayer::SumPool { kernel, stride } => {
            let [c, h, w] = chw(s, "pooling")?;
            match (sweep(h, kernel[0], stride[0]), sweep(w, kernel[1], stride[1])) {
                (Some(oh), Some(ow)) => vec![c, oh, ow],
                _ => bail!("pooling kernel {kernel:?} stride {stride:?} does not fit input {s:?}"),
            }
        }
        IntLayer::Relu => s.to_vec(),
        IntLayer::Sign => {
            // With Q = 2 the residues of +1 and -1 coincide: the garbled
            // circuit could not tell them apart, so the network is invalid.
            ensure!(
                base.product() >= 3,
                "sign needs a CRT base with Q >= 3 to represent -1 and +1, got Q = {}",
                base.product()
            );
            s.to_vec()
        }
        IntLayer::Rescale { divisor, .. } => {
            let mut rest = *divisor;
            let mut used = 0;
            for m in base.moduli() {
                let p = m.value() as u64;
                if rest % p == 0 {
                    rest /= p;
                    used += 1;
                }
            }
            ensure!(
                *divisor > 1 && rest == 1 && used < base.len(),
                "rescale divisor {divisor} must be a product of distinct primes of the base, not all of them"
            );
            s.to_vec()
        }
        IntLayer::Flatten => vec![numel(s)],
        IntLayer::Reshape { shape } => {
            ensure!(numel(shape) == numel(s) && !shape.is_empty(), "cannot reshape {s:?} to {shape:?}");
            shape.clone()
        }
        IntLayer::ResidualAdd { from } => {
            let other =
                earlier.get(*from).with_context(|| format!("residual source {from} is not an earlier activation"))?;
            ensure!(other.as_slice() == s, "residual add of shapes {other:?} and {s:?}");
            s.to_vec()
        }
    })
}

fn pool(
    in_shape: &[usize],
    out_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    x: &[i64],
    mut f: impl FnMut(&[i64]) -> i64,
) -> Result<Vec<i64>> {
    let [c, h, w] = chw(in_shape, "pooling")?;
    let [_, oh, ow] = chw(out_shape, "pooling")?;
    let mut y = Vec::with_capacity(c * oh * ow);
    let mut win = Vec::with_capacity(kernel[0] * kernel[1]);
    for ch in 0..c {
        for r in 0..oh {
            for col in 0..ow {
                win.clear();
                for dy in 0..kernel[0] {
                    for dx in 0..kernel[1] {
                        win.push(x[(ch * h + r * stride[0] + dy) * w + col * stride[1] + dx]);
                    }
                }
                y.push(f(&win));
            }
        }
    }
    Ok(y)
}

/// Arithmetic modulo `Q` in the signed range.
struct Ring {
    q: i128,
    min: i128,
    /// Products of two signed-range values that an `i128` sums safely.
    batch: usize,
}

impl Ring {
    fn new(base: &CrtBase) -> Ring {
        let q = base.product() as i128;
        let half = q / 2 + 1;
        // |w|, |x| <= Q/2 after wrapping, so a product is at most half².
        let prod = (half as u128) * (half as u128);
        let batch = ((1u128 << 125) / prod.max(1)).clamp(1, 1 << 30) as usize;
        Ring { q, min: base.min_value(), batch }
    }

    fn wrap(&self, v: i128) -> i64 {
        ((v - self.min).rem_euclid(self.q) + self.min) as i64
    }

    fn dot(&self, terms: impl Iterator<Item = (i64, i64)>, bias: i64) -> i64 {
        let mut acc = self.wrap(bias as i128) as i128;
        let mut n = 0usize;
        let max = self.min + self.q - 1;
        for (w, x) in terms {
            // Weights are nearly always already in range; wrap only if not.
            let w = w as i128;
            let w = if w >= self.min && w <= max { w } else { self.wrap(w) as i128 };
            acc += w * x as i128;
            n += 1;
            if n == self.batch {
                acc = self.wrap(acc) as i128;
                n = 0;
            }
        }
        self.wrap(acc)
    }

    fn max2(&self, a: i64, b: i64, sub: Option<SubRing>) -> i64 {
        let d = self.wrap(a as i128 - b as i128);
        let r = if nonneg(d, sub) { d } else { 0 };
        self.wrap(b as i128 + r as i128)
    }

    /// The gadget's balanced tree: split at `len / 2`, left then right.
    fn max_tree(&self, xs: &[i64], sub: Option<SubRing>) -> i64 {
        match xs {
            [] => 0,
            [x] => *x,
            _ => {
                let (lo, hi) = xs.split_at(xs.len() / 2);
                self.max2(self.max_tree(lo, sub), self.max_tree(hi, sub), sub)
            }
        }
    }
}

/// The signed range of a sub-base a sign is decided on: `Q'` and its least
/// value.
#[derive(Clone, Copy, Debug)]
struct SubRing {
    q: i128,
    min: i128,
}

/// `[v >= 0]` as a sign gadget computes it: on the whole base (`v` is
/// already in its signed range), or on a sub-base after wrapping `v` into
/// the sub-base's signed range (the residues it keeps determine only that).
fn nonneg(v: i64, sub: Option<SubRing>) -> bool {
    match sub {
        None => v >= 0,
        Some(r) => (v as i128 - r.min).rem_euclid(r.q) + r.min >= 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_and_shapes() {
        assert_eq!(Padding::same([28, 28], [5, 5], [1, 1]), Padding::uniform(2));
        assert_eq!(Padding::same([28, 28], [4, 4], [2, 2]), Padding { top: 1, left: 1, bottom: 1, right: 1 });
        assert_eq!(Padding::same([5, 5], [2, 2], [2, 2]), Padding { top: 0, left: 0, bottom: 1, right: 1 });
        let base = CrtBase::first(6).unwrap();
        let net = IntNetwork::new(
            vec![1, 6, 6],
            vec![
                IntLayer::Conv2d {
                    in_channels: 1,
                    out_channels: 2,
                    kernel: [3, 3],
                    stride: [2, 2],
                    padding: Padding::same([6, 6], [3, 3], [2, 2]),
                    weights: vec![1; 18],
                    bias: vec![0, 1],
                },
                IntLayer::Relu,
                IntLayer::Flatten,
                IntLayer::Dense { inputs: 18, outputs: 3, weights: vec![1; 54], bias: vec![0; 3] },
            ],
            base,
        )
        .unwrap();
        assert_eq!(net.shapes().unwrap()[1], vec![2, 3, 3]);
        assert_eq!(net.output_shape().unwrap(), vec![3]);
    }

    #[test]
    fn plain_wraps_mod_q_and_max_tree() {
        let base = CrtBase::first(3).unwrap(); // Q = 30: [-15, 15)
        let dense = IntLayer::Dense { inputs: 2, outputs: 1, weights: vec![3, 1], bias: vec![2] };
        let net = IntNetwork::new(vec![2], vec![dense, IntLayer::Relu], base.clone()).unwrap();
        // 3·4 + 5 + 2 = 19 -> -11 -> relu 0
        assert_eq!(net.eval_plain(&[4, 5]).unwrap(), vec![0]);
        let r = Ring::new(&base);
        assert_eq!(r.max_tree(&[-3, 7, 2], None), 7);
        // 14 - (-14) = 28 wraps to -2: the circuit then keeps -14.
        assert_eq!(r.max2(14, -14, None), -14);
    }

    #[test]
    fn sign_needs_q_of_at_least_three() {
        // Found by the `network` fuzz target: with Q = 2 the residues of +1
        // and -1 are equal, so a sign layer cannot be garbled faithfully.
        let two = CrtBase::new(&[2]).unwrap();
        let err = IntNetwork::new(vec![2], vec![IntLayer::Sign], two.clone()).unwrap_err();
        assert!(format!("{err:#}").contains("Q >= 3"), "{err:#}");
        assert!(IntNetwork::new(vec![2], vec![IntLayer::Relu], two).is_ok());
        let three = CrtBase::new(&[3]).unwrap();
        let net = IntNetwork::new(vec![2], vec![IntLayer::Sign], three).unwrap();
        assert_eq!(net.eval_plain(&[-1, 0]).unwrap(), vec![-1, 1]);
    }
}
