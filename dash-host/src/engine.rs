//! Garbling and evaluation of a whole [`IntNetwork`], layer by layer,
//! streamed, on all cores.
//!
//! # How a layer runs
//!
//! * **Linear layers** (dense, convolution, sum pooling, residual add,
//!   bias) cost nothing: per residue `p`, the output label of an element is
//!   `Σ w·X + b·ONE` computed digit by digit mod `p` over the input labels'
//!   digits (`ONE` is the one-label `O_p + Δ_p` on the evaluator's side and
//!   the zero label `O_p` on the garbler's, so both sides run the same
//!   kernel). The kernels accumulate digit vectors in `u32` lanes and reduce
//!   once per output (or every few thousand terms for big primes).
//! * **Non-linear layers** (ReLU, sign, max pooling, rescale) run the
//!   `dash-core` gadget once per output element on the
//!   [`dash_core::Garbler`] / [`dash_core::Evaluator`]
//!   backends. A gadget's cost does not depend on data, so element `e` of a
//!   layer gets the gate identifiers `first_gate + e·g .. + g` and the rows
//!   `e·c .. e·c + c` of the layer's material (`g`, `c` measured once on the
//!   [`CostCounter`]). Elements are therefore independent: rayon spreads
//!   them over all cores and the result does not depend on the schedule.
//!
//! # Streaming
//!
//! The garbler writes a [`format`](mod@crate::format) header, then each layer's
//! rows as it produces them, in chunks of at most [`CHUNK_ROWS`] rows; the
//! evaluator reads them back the same way. Peak memory is the activations
//! of about one layer plus one chunk, never the circuit.
//!
//! # Keys and decoding
//!
//! One [`GarblerKeys`] per inference covers every modulus the plan uses
//! (CRT primes and every gadget modulus). The garbler keeps only the input
//! zero labels (to encode the input) and the output zero labels (to decode);
//! [`GarblerSession::decode_output`] verifies every returned label with
//! `GarblerKeys::decode_bundle` and fails closed.

use crate::format::{self, Header};
use crate::network::{IntLayer, IntNetwork};
use crate::offload::{LaneEvaluator, LaneWire, OffloadHandle};
use crate::tensor::{CrtTensor, LabelTensor};
use anyhow::{Context, Result, bail, ensure};
use dash_core::gadgets::compare::max_window;
use dash_core::gadgets::rescale::Rescale;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CostCounter, CountingSink, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys,
    GateCounter, Label, Modulus, OneLabels, SliceSink, SliceSource, ZeroLabel,
};
use rand_core::CryptoRng;
use rayon::prelude::*;
use std::io::{Read, Write};
use zeroize::Zeroize;

/// Capacity of the key set: distinct moduli one inference may use.
pub const MAX_MODULI: usize = 64;

/// The garbler's keys for one inference.
pub type EngineKeys = GarblerKeys<MAX_MODULI>;

/// The evaluator's one-labels for one inference.
pub type EngineOnes = OneLabels<MAX_MODULI>;

/// Most rows one chunk of a layer holds in memory (16 MiB).
pub const CHUNK_ROWS: usize = 1 << 20;

/// Most rows one chunk of a layer holds when the evaluator offloads to a
/// device (256 MiB on the host; the device takes it in pieces of
/// `Gpu::max_batch_rows`).
pub const OFFLOAD_CHUNK_ROWS: usize = 1 << 24;

/// The gadget a non-linear layer runs per element.
#[derive(Clone, Debug)]
enum Op {
    Linear,
    Relu,
    Sign,
    MaxPool { window: usize },
    Rescale(Box<Rescale>),
}

/// Cost and gate range of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// Output elements.
    pub elements: u64,
    /// Ciphertexts per element (0 for linear layers).
    pub rows_per_element: u64,
    /// Gate identifiers per element.
    pub gates_per_element: u64,
    /// First gate identifier of the layer.
    pub first_gate: u64,
    /// Rows of the whole layer.
    pub rows: u64,
}

/// Everything both parties derive from the network before garbling or
/// evaluating: shapes, gadgets, per-layer costs and gate ranges, the moduli
/// to key, and the weights reduced modulo each prime. Build it once per
/// model and reuse it for every inference.
pub struct Plan<'n> {
    net: &'n IntNetwork,
    shapes: Vec<Vec<usize>>,
    ops: Vec<Op>,
    sign: Option<SignGadget>,
    costs: Vec<LayerCost>,
    moduli: Vec<Modulus>,
    hash: [u8; 32],
    /// Per layer, per residue: weights and biases reduced mod the prime.
    reduced: Vec<Vec<(Vec<u16>, Vec<u16>)>>,
    /// Whether activation `i` is needed again by a residual add.
    keep: Vec<bool>,
    /// Where dense/conv layers and the evaluator's projection batches run
    /// (`None`: the CPU kernels below).
    offload: Option<OffloadHandle>,
    /// Rows per evaluator chunk when offloading.
    offload_chunk_rows: usize,
}

fn measure(op: &Op, sign: Option<&SignGadget>, base: &CrtBase) -> Result<(u64, u64, Vec<u16>)> {
    let mut cc = CostCounter::new();
    let window = if let Op::MaxPool { window } = op { *window } else { 1 };
    let xs: Vec<Bundle<Modulus>> = (0..window)
        .map(|_| Bundle::from_wires(base.moduli().iter().map(|&m| cc.input(m))))
        .collect::<Result<_, _>>()?;
    run_op(op, sign, &mut cc, &xs)?;
    Ok((cc.ciphertexts, cc.gates, cc.moduli()?.to_vec()))
}

fn run_op<B: Backend>(
    op: &Op,
    sign: Option<&SignGadget>,
    b: &mut B,
    xs: &[Bundle<B::Wire>],
) -> Result<Bundle<B::Wire>, Error> {
    let g = || sign.ok_or(Error::InvalidParameter);
    match op {
        Op::Linear => Err(Error::InvalidParameter),
        Op::Relu => g()?.relu(b, &xs[0]),
        Op::Sign => g()?.sign_activation(b, &xs[0]),
        Op::MaxPool { .. } => max_window(g()?, b, xs),
        Op::Rescale(r) => r.apply(b, &xs[0]),
    }
}

fn reduce_all(values: &[i64], p: u16) -> Vec<u16> {
    values.iter().map(|&v| v.rem_euclid(p as i64) as u16).collect()
}

impl<'n> Plan<'n> {
    /// Plans `net` (validates it, builds the gadgets, measures costs).
    pub fn new(net: &'n IntNetwork) -> Result<Plan<'n>> {
        let shapes = net.shapes()?;
        let base = &net.base;
        let needs_sign =
            net.layers.iter().any(|l| matches!(l, IntLayer::Relu | IntLayer::Sign | IntLayer::MaxPool { .. }));
        let sign = if needs_sign {
            Some(SignGadget::new(base, Accuracy::Exact).context("building the exact sign gadget for this base")?)
        } else {
            None
        };
        let mut moduli: Vec<Modulus> = base.moduli().to_vec();
        let mut ops = Vec::new();
        let mut costs = Vec::new();
        let mut reduced = Vec::new();
        let mut keep = vec![false; shapes.len()];
        let mut gate = 0u64;
        for (i, layer) in net.layers.iter().enumerate() {
            let op = match layer {
                IntLayer::Relu => Op::Relu,
                IntLayer::Sign => Op::Sign,
                IntLayer::MaxPool { kernel, .. } => Op::MaxPool { window: kernel[0] * kernel[1] },
                IntLayer::Rescale { divisor, rounding } => Op::Rescale(Box::new(
                    Rescale::new(base, *divisor, *rounding)
                        .with_context(|| format!("layer {i}: rescale by {divisor} on this base"))?,
                )),
                _ => Op::Linear,
            };
            if let IntLayer::ResidualAdd { from } = layer {
                keep[*from] = true;
            }
            let elements = shapes[i + 1].iter().product::<usize>() as u64;
            let (rows_per_element, gates_per_element) = if matches!(op, Op::Linear) {
                (0, 0)
            } else {
                let (c, g, ms) = measure(&op, sign.as_ref(), base).with_context(|| format!("layer {i}: costing"))?;
                for m in ms {
                    let m = Modulus::new(m)?;
                    if !moduli.contains(&m) {
                        moduli.push(m);
                    }
                }
                (c, g)
            };
            let rows = elements.checked_mul(rows_per_element).context("layer too large")?;
            costs.push(LayerCost { elements, rows_per_element, gates_per_element, first_gate: gate, rows });
            gate = elements
                .checked_mul(gates_per_element)
                .and_then(|g| gate.checked_add(g))
                .context("gate identifiers exhausted")?;
            let red = match layer {
                IntLayer::Dense { weights, bias, .. } | IntLayer::Conv2d { weights, bias, .. } => base
                    .moduli()
                    .iter()
                    .map(|m| (reduce_all(weights, m.value()), reduce_all(bias, m.value())))
                    .collect(),
                _ => Vec::new(),
            };
            reduced.push(red);
            ops.push(op);
        }
        ensure!(
            moduli.len() <= MAX_MODULI,
            "the network needs {} moduli, at most {MAX_MODULI} supported",
            moduli.len()
        );
        Ok(Plan {
            net,
            shapes,
            ops,
            sign,
            costs,
            moduli,
            hash: net.hash(),
            reduced,
            keep,
            offload: None,
            offload_chunk_rows: OFFLOAD_CHUNK_ROWS,
        })
    }

    /// Runs the evaluator's dense and convolution layers and non-linear
    /// layers (as layer-wide projection batches) on `device`; `None`
    /// restores the CPU path. Results are bit-identical either way. The
    /// garbler always runs on the CPU: its labels are secret, and device
    /// memory and the GPU's AES tables are not constant-time or scrubbed
    /// (`docs/GPU.md`).
    pub fn set_offload(&mut self, device: Option<OffloadHandle>) {
        self.offload = device;
    }

    /// Rows per chunk of a non-linear layer when the evaluator offloads
    /// (default [`OFFLOAD_CHUNK_ROWS`]; at least one element's rows are
    /// always taken). Smaller values bound host memory more tightly.
    pub fn set_offload_chunk_rows(&mut self, rows: usize) {
        self.offload_chunk_rows = rows;
    }

    /// The device offloaded to, if any.
    pub fn offload(&self) -> Option<&OffloadHandle> {
        self.offload.as_ref()
    }

    /// The network.
    pub fn network(&self) -> &IntNetwork {
        self.net
    }

    /// Every modulus the inference keys (CRT primes first).
    pub fn moduli(&self) -> &[Modulus] {
        &self.moduli
    }

    /// Per-layer costs.
    pub fn costs(&self) -> &[LayerCost] {
        &self.costs
    }

    /// Rows (ciphertexts) of the whole network.
    pub fn total_rows(&self) -> u64 {
        self.costs.iter().map(|c| c.rows).sum()
    }

    /// Bytes of garbled rows (16 per row; the header and tags add a little).
    pub fn material_bytes(&self) -> u64 {
        self.total_rows() * 16
    }

    /// The model hash written into and checked against the header.
    pub fn model_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The input shape.
    pub fn input_shape(&self) -> &[usize] {
        &self.shapes[0]
    }

    /// The output shape.
    pub fn output_shape(&self) -> &[usize] {
        &self.shapes[self.shapes.len() - 1]
    }

    fn header(&self, ones: Vec<(u16, Block)>) -> Header {
        Header {
            model_hash: self.hash,
            primes: self.net.base.moduli().iter().map(|m| m.value()).collect(),
            ones,
            layer_rows: self.costs.iter().map(|c| c.rows).collect(),
        }
    }
}

// ---------------------------------------------------------------------------
// Linear kernels on digit buffers (shared by both parties).

/// Terms a `u32` digit accumulator takes before it must be reduced.
fn accumulate_limit(p: u16) -> usize {
    let m = (p as u64 - 1).max(1);
    ((u32::MAX as u64 - m) / (m * m)).clamp(1, 1 << 30) as usize
}

#[inline]
fn mac(acc: &mut [u32], x: &[u16], w: u16) {
    let w = w as u32;
    for (a, &d) in acc.iter_mut().zip(x) {
        *a += w * d as u32;
    }
}

#[inline]
fn reduce_acc(acc: &mut [u32], p: u16) {
    let p = p as u32;
    for a in acc.iter_mut() {
        *a %= p;
    }
}

#[inline]
fn store(acc: &[u32], y: &mut [u16], p: u16) {
    let p = p as u32;
    for (o, &a) in y.iter_mut().zip(acc) {
        *o = (a % p) as u16;
    }
}

/// A running `Σ w·x` over digit vectors with lazy reduction. For small
/// primes the products accumulate in wrapping `u16` lanes (exact for
/// `seg16` terms, then folded into `u32`), which the vector units handle
/// eight or sixteen at a time; larger primes accumulate in `u32`.
struct Acc {
    buf: [u32; dash_core::MAX_DIGITS],
    small: [u16; dash_core::MAX_DIGITS],
    n: usize,
    p: u16,
    count: usize,
    limit: usize,
    seg16: usize,
    count16: usize,
}

impl Acc {
    fn new(n: usize, p: u16) -> Acc {
        Acc {
            buf: [0; dash_core::MAX_DIGITS],
            small: [0; dash_core::MAX_DIGITS],
            n,
            p,
            count: 0,
            limit: accumulate_limit(p),
            seg16: u16_segment(p),
            count16: 0,
        }
    }

    /// Moves the `u16` partial sums into the `u32` ones.
    fn fold(&mut self) {
        for (a, s) in self.buf[..self.n].iter_mut().zip(self.small[..self.n].iter_mut()) {
            *a += *s as u32;
            *s = 0;
        }
        self.count16 = 0;
        // Each fold adds below 2^16: reduce long before u32 overflows.
        self.count += 1;
        if self.count == 1 << 15 {
            reduce_acc(&mut self.buf[..self.n], self.p);
            self.count = 1;
        }
    }

    #[inline]
    fn add(&mut self, x: &[u16], w: u16) {
        if w == 0 {
            return; // weights are public: skipping zeros leaks nothing
        }
        if self.seg16 >= 2 {
            for (a, &d) in self.small[..self.n].iter_mut().zip(x) {
                *a = a.wrapping_add(w.wrapping_mul(d));
            }
            self.count16 += 1;
            if self.count16 == self.seg16 {
                self.fold();
            }
            return;
        }
        mac(&mut self.buf[..self.n], x, w);
        self.count += 1;
        if self.count == self.limit {
            reduce_acc(&mut self.buf[..self.n], self.p);
            self.count = 1;
        }
    }

    fn finish(&mut self, y: &mut [u16]) {
        if self.count16 > 0 {
            self.fold();
        }
        store(&self.buf[..self.n], y, self.p);
        self.buf.zeroize();
        self.small.zeroize();
    }
}

/// Terms of a dot product of residues mod `p` that a `u16` sum holds
/// exactly (`0` when even one product does not fit).
fn u16_segment(p: u16) -> usize {
    let m = (p as u32 - 1).max(1);
    (u16::MAX as u32 / (m * m)) as usize
}

/// Terms of a dot product of residues mod `p` that an `i32` sum holds.
fn i32_segment(p: u16) -> usize {
    let m = (p as u64 - 1).max(1);
    ((i32::MAX as u64 / (m * m)) as usize).max(1)
}

/// `(Σ w·x0, Σ w·x1)` over residues (all below `p`). With `seg16 > 0`
/// the products and partial sums run in wrapping `u16` lanes (exact: a
/// segment of `seg16` terms cannot exceed `u16::MAX`), which the vector
/// units multiply eight or sixteen at a time; otherwise in `u32`.
#[inline(always)]
fn dot2(w: &[u16], x0: &[u16], x1: &[u16], seg16: usize, seg32: usize) -> (u64, u64) {
    let (mut t0, mut t1) = (0u64, 0u64);
    if seg16 >= 16 {
        for ((wc, a), b) in w.chunks(seg16).zip(x0.chunks(seg16)).zip(x1.chunks(seg16)) {
            let (mut s0, mut s1) = (0u16, 0u16);
            for ((&wv, &av), &bv) in wc.iter().zip(a).zip(b) {
                s0 = s0.wrapping_add(wv.wrapping_mul(av));
                s1 = s1.wrapping_add(wv.wrapping_mul(bv));
            }
            t0 += s0 as u64;
            t1 += s1 as u64;
        }
    } else {
        for ((wc, a), b) in w.chunks(seg32).zip(x0.chunks(seg32)).zip(x1.chunks(seg32)) {
            let (mut s0, mut s1) = (0u32, 0u32);
            for ((&wv, &av), &bv) in wc.iter().zip(a).zip(b) {
                s0 += wv as u32 * av as u32;
                s1 += wv as u32 * bv as u32;
            }
            t0 += s0 as u64;
            t1 += s1 as u64;
        }
    }
    (t0, t1)
}

/// Dense layer on one residue. The input digits are first transposed to
/// digit-major order (`xt[d][i]` = digit `d` of input `i`), so every output
/// digit is one long dot product with a weight row, reduced once.
fn dense(x: &LabelTensor, w: &[u16], b: &[u16], one: &[u16], out: &mut LabelTensor, inputs: usize) {
    let (n, p) = (x.label_len(), x.modulus().value());
    // One zero row so that an odd digit count still runs in pairs.
    let mut xt = vec![0u16; (n + 1) * inputs];
    for (i, lab) in x.digits().chunks_exact(n).enumerate() {
        for (d, &v) in lab.iter().enumerate() {
            xt[d * inputs + i] = v;
        }
    }
    let (seg16, seg32) = (u16_segment(p), i32_segment(p));
    let dots = DigitDots { m: x.modulus(), one, seg16, seg32 };
    let arch = pulp::Arch::new();
    out.digits_mut().par_chunks_mut(n).enumerate().for_each(|(o, y)| {
        arch.dispatch(DenseOutput { w: &w[o * inputs..(o + 1) * inputs], bias: b[o] as u64, xt: &xt, inputs, dots, y })
    });
    xt.zeroize();
}

/// What every linear layer's output label needs: per digit `d`, the dot
/// product of a weight row with digit row `d` of the inputs (digit-major,
/// `stride` apart, with one spare zero row after the last), plus the bias
/// times the one-label's digit, reduced mod `p` by multiply-shift.
#[derive(Clone, Copy)]
struct DigitDots<'a> {
    m: dash_core::Modulus,
    one: &'a [u16],
    seg16: usize,
    seg32: usize,
}

impl DigitDots<'_> {
    #[inline(always)]
    fn label(&self, w: &[u16], bias: u64, rows: &[u16], stride: usize, y: &mut [u16]) {
        let n = y.len();
        let row = |d: usize| &rows[d * stride..(d + 1) * stride];
        for d in (0..n).step_by(2) {
            let (s0, s1) = dot2(w, row(d), row(d + 1), self.seg16, self.seg32);
            y[d] = self.m.div_rem_u64(s0 + bias * self.one[d] as u64).1;
            if d + 1 < n {
                y[d + 1] = self.m.div_rem_u64(s1 + bias * self.one[d + 1] as u64).1;
            }
        }
    }
}

/// One output label of [`dense`], compiled per instruction set by `pulp`
/// (see [`ConvPosition`]).
struct DenseOutput<'a> {
    w: &'a [u16],
    bias: u64,
    xt: &'a [u16],
    inputs: usize,
    dots: DigitDots<'a>,
    y: &'a mut [u16],
}

impl pulp::WithSimd for DenseOutput<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.dots.label(self.w, self.bias, self.xt, self.inputs, self.y);
    }
}

struct ConvGeom {
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    top: usize,
    left: usize,
}

/// Convolution on one residue as a dense layer per output position: the
/// position's patch (every tap's input label, zero where the tap falls in
/// the padding) is gathered digit-major, `patch[d][tap]`, and each output
/// channel's weight row is then one long dot product per digit, the same
/// `u16`-lane kernel as [`dense`]. (Accumulating one tap's digit vector at a
/// time kept the accumulator in memory and ran at about a quarter of the
/// dense rate.) Weights and geometry are public; no branch or index
/// depends on a digit.
fn conv(x: &LabelTensor, wts: &[u16], b: &[u16], one: &[u16], out: &mut LabelTensor, g: &ConvGeom) {
    let (n, p) = (x.label_len(), x.modulus().value());
    let taps = g.c * g.kh * g.kw;
    let positions = g.oh * g.ow;
    let (seg16, seg32) = (u16_segment(p), i32_segment(p));
    let dots = DigitDots { m: x.modulus(), one, seg16, seg32 };
    // The input once more, digit-major and zero-padded: `xp[d][ic][py][px]`
    // holds digit `d` of the input label at `(ic, py - top, px - left)`, zero
    // in the padding. A tap row of a patch is then `kw` contiguous digits.
    // Only the rows and columns some tap reads are kept. A copy of secret
    // digits on the garbler's side, so it is cleared on drop.
    let (ph, pw) = ((g.oh - 1) * g.sh + g.kh, (g.ow - 1) * g.sw + g.kw);
    let plane = ph * pw;
    let mut xp = zeroize::Zeroizing::new(vec![0u16; n * g.c * plane]);
    for (e, label) in x.digits().chunks_exact(n).enumerate() {
        let (ic, iy, ix) = (e / (g.h * g.w), (e / g.w) % g.h, e % g.w);
        let (py, px) = (iy + g.top, ix + g.left);
        if py < ph && px < pw {
            for (d, &v) in label.iter().enumerate() {
                xp[(d * g.c + ic) * plane + py * pw + px] = v;
            }
        }
    }
    let arch = pulp::Arch::new();
    let per_position: Vec<zeroize::Zeroizing<Vec<u16>>> = (0..positions)
        .into_par_iter()
        .map_init(
            // One zero row so that an odd digit count still runs in pairs;
            // rows 0..n are overwritten for every position.
            || zeroize::Zeroizing::new(vec![0u16; (n + 1) * taps]),
            |patch, pos| {
                let (r, col) = (pos / g.ow, pos % g.ow);
                // The gather and the dot products run under the best vector
                // instruction set this CPU has (AVX2 where present), chosen
                // at run time by `pulp`; the code is the same plain loops.
                let gather = Gather {
                    xp: &xp,
                    plane,
                    pw,
                    corner: r * g.sh * pw + col * g.sw,
                    channels: g.c,
                    kh: g.kh,
                    kw: g.kw,
                    n,
                    taps,
                };
                arch.dispatch(ConvPosition { patch, gather, wts, bias: b, dots })
            },
        )
        .collect();
    let outd = out.digits_mut();
    for (pos, y) in per_position.iter().enumerate() {
        for (oc, yo) in y.chunks_exact(n).enumerate() {
            let o = oc * positions + pos;
            outd[o * n..(o + 1) * n].copy_from_slice(yo);
        }
    }
}

/// One output position of [`conv`]: gather its patch, then one dot
/// product per output channel and digit. A `pulp::WithSimd` so that
/// `Arch::dispatch` compiles it once per instruction set (its body must be
/// inlined into the dispatcher, hence `inline(always)` down to [`dot2`]).
struct ConvPosition<'a> {
    patch: &'a mut [u16],
    gather: Gather<'a>,
    wts: &'a [u16],
    bias: &'a [u16],
    dots: DigitDots<'a>,
}

/// The patch gather of [`ConvPosition`]: the padded digit-major input of
/// [`conv`], its plane size and row length, where this position's window
/// starts in a plane, and the patch's shape.
struct Gather<'a> {
    xp: &'a [u16],
    plane: usize,
    pw: usize,
    corner: usize,
    channels: usize,
    kh: usize,
    kw: usize,
    n: usize,
    taps: usize,
}

impl Gather<'_> {
    /// Runs of `K` digits (`K == kw`), or of `kw` when `K` is 0.
    #[inline(always)]
    fn run<const K: usize>(&self, patch: &mut [u16]) {
        for (d, row) in patch.chunks_exact_mut(self.taps).take(self.n).enumerate() {
            for (ic, rows) in row.chunks_exact_mut(self.kh * self.kw).enumerate() {
                let start = (d * self.channels + ic) * self.plane + self.corner;
                for (dy, run) in rows.chunks_exact_mut(self.kw).enumerate() {
                    let src = &self.xp[start + dy * self.pw..];
                    if K == 0 {
                        run.copy_from_slice(&src[..self.kw]);
                    } else if let (Some(to), Some(from)) = (run.first_chunk_mut::<K>(), src.first_chunk::<K>()) {
                        *to = *from;
                    }
                }
            }
        }
    }
}

impl pulp::WithSimd for ConvPosition<'_> {
    type Output = zeroize::Zeroizing<Vec<u16>>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> Self::Output {
        let ConvPosition { patch, gather, wts, bias, dots } = self;
        // Gather digit-major: for each digit, `channels · kh` runs of `kw`
        // contiguous digits, in tap order `(ic·kh + dy)·kw + dx`. The
        // usual kernel widths copy fixed-size runs (plain moves, where a
        // run-time length would call `memcpy` for a few bytes).
        match gather.kw {
            1 => gather.run::<1>(patch),
            2 => gather.run::<2>(patch),
            3 => gather.run::<3>(patch),
            4 => gather.run::<4>(patch),
            5 => gather.run::<5>(patch),
            7 => gather.run::<7>(patch),
            _ => gather.run::<0>(patch),
        }
        let (n, taps) = (gather.n, gather.taps);
        let mut y = zeroize::Zeroizing::new(vec![0u16; bias.len() * n]);
        for (oc, yo) in y.chunks_exact_mut(n).enumerate() {
            dots.label(&wts[oc * taps..(oc + 1) * taps], bias[oc] as u64, patch, taps, yo);
        }
        y
    }
}

fn sum_pool(x: &LabelTensor, out: &mut LabelTensor, g: &ConvGeom) {
    let (n, p) = (x.label_len(), x.modulus().value());
    let xd = x.digits();
    out.digits_mut().par_chunks_mut(n).enumerate().for_each(|(o, y)| {
        let ch = o / (g.oh * g.ow);
        let r = (o / g.ow) % g.oh;
        let col = o % g.ow;
        let mut acc = Acc::new(n, p);
        for dy in 0..g.kh {
            for dx in 0..g.kw {
                let e = (ch * g.h + r * g.sh + dy) * g.w + col * g.sw + dx;
                acc.add(&xd[e * n..(e + 1) * n], 1);
            }
        }
        acc.finish(y);
    });
}

fn add_into(x: &mut LabelTensor, other: &LabelTensor) {
    let p = x.modulus().value();
    for (a, &b) in x.digits_mut().iter_mut().zip(other.digits()) {
        let s = *a + b;
        *a = if s >= p { s - p } else { s };
    }
}

fn geometry(
    in_shape: &[usize],
    out_shape: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    top: usize,
    left: usize,
) -> ConvGeom {
    ConvGeom {
        c: in_shape[0],
        h: in_shape[1],
        w: in_shape[2],
        oh: out_shape[1],
        ow: out_shape[2],
        kh: kernel[0],
        kw: kernel[1],
        sh: stride[0],
        sw: stride[1],
        top,
        left,
    }
}

/// Runs linear layer `i` on `x` (either party; `ones[j]` is the digits of
/// the one-wire label of residue `j` on this party's side), dense and
/// convolution layers on `device` when one is given.
fn linear_layer(
    plan: &Plan,
    i: usize,
    x: CrtTensor,
    acts: &[Option<CrtTensor>],
    ones: &[Vec<u16>],
    device: Option<&OffloadHandle>,
) -> Result<CrtTensor> {
    let layer = &plan.net.layers[i];
    let (in_shape, out_shape) = (&plan.shapes[i], &plan.shapes[i + 1]);
    let base = &plan.net.base;
    if let Some(device) = device {
        let geometry = match layer {
            IntLayer::Dense { inputs, outputs, .. } => Some(dash_gpu::ConvGeometry::dense(*inputs, *outputs)),
            IntLayer::Conv2d { kernel, stride, padding, .. } => Some(dash_gpu::ConvGeometry {
                in_channels: in_shape[0],
                height: in_shape[1],
                width: in_shape[2],
                out_channels: out_shape[0],
                out_height: out_shape[1],
                out_width: out_shape[2],
                kernel: *kernel,
                stride: *stride,
                pad_top: padding.top,
                pad_left: padding.left,
            }),
            _ => None,
        };
        if let Some(g) = geometry {
            return offload_linear(device, plan, i, &x, ones, &g, out_shape);
        }
    }
    Ok(match layer {
        IntLayer::Dense { inputs, .. } => {
            let mut out = CrtTensor::zeros(base, out_shape);
            // Residues in parallel too (each is parallel inside): the small
            // primes' long labels and the large primes' short ones balance.
            out.residues_mut().par_iter_mut().enumerate().for_each(|(j, y)| {
                let (w, b) = &plan.reduced[i][j];
                dense(x.residue(j), w, b, &ones[j], y, *inputs);
            });
            out
        }
        IntLayer::Conv2d { kernel, stride, padding, .. } => {
            let g = geometry(in_shape, out_shape, *kernel, *stride, padding.top, padding.left);
            let mut out = CrtTensor::zeros(base, out_shape);
            out.residues_mut().par_iter_mut().enumerate().for_each(|(j, y)| {
                let (w, b) = &plan.reduced[i][j];
                conv(x.residue(j), w, b, &ones[j], y, &g);
            });
            out
        }
        IntLayer::SumPool { kernel, stride } => {
            let g = geometry(in_shape, out_shape, *kernel, *stride, 0, 0);
            let mut out = CrtTensor::zeros(base, out_shape);
            for (j, y) in out.residues_mut().iter_mut().enumerate() {
                sum_pool(x.residue(j), y, &g);
            }
            out
        }
        IntLayer::Flatten | IntLayer::Reshape { .. } => {
            let mut x = x;
            x.reshape(out_shape)?;
            x
        }
        IntLayer::ResidualAdd { from } => {
            let other = acts.get(*from).and_then(|a| a.as_ref()).context("residual source was not kept")?;
            let mut x = x;
            for (a, b) in x.residues_mut().iter_mut().zip(other.residues()) {
                add_into(a, b);
            }
            x
        }
        _ => bail!("layer {i} is not linear"),
    })
}

/// A dense or convolution layer on the offload device, every residue at once.
fn offload_linear(
    device: &OffloadHandle,
    plan: &Plan,
    i: usize,
    x: &CrtTensor,
    ones: &[Vec<u16>],
    g: &dash_gpu::ConvGeometry,
    out_shape: &[usize],
) -> Result<CrtTensor> {
    let mut out = CrtTensor::zeros(&plan.net.base, out_shape);
    let mut jobs: Vec<dash_gpu::LinearResidue<'_>> = out
        .residues_mut()
        .iter_mut()
        .enumerate()
        .map(|(j, y)| dash_gpu::LinearResidue {
            modulus: y.modulus(),
            x: x.residue(j).digits(),
            weights: &plan.reduced[i][j].0,
            bias: &plan.reduced[i][j].1,
            one: &ones[j],
            out: y.digits_mut(),
        })
        .collect();
    device.0.linear(g, &mut jobs).with_context(|| format!("layer {i} on {}", device.name()))?;
    drop(jobs);
    Ok(out)
}

/// The evaluator's non-linear layer `i` on the chunk of elements
/// `first .. first + count` as lanes: every projection of the gadget runs on
/// the device for the whole chunk at once. Writes element-major `scratch`
/// like the per-element path.
#[allow(clippy::too_many_arguments)]
fn nonlinear_lanes(
    plan: &Plan,
    i: usize,
    x: &CrtTensor,
    ones: &EngineOnes,
    first: usize,
    count: usize,
    rows: &[Block],
    scratch: &mut [u16],
) -> Result<()> {
    let device = plan.offload.as_ref().context("no offload device")?;
    let cost = &plan.costs[i];
    let mut idx = Vec::new();
    let mut windows: Vec<Vec<usize>> = Vec::new();
    for e in first..first + count {
        element_inputs(plan, i, e, &mut idx);
        if windows.is_empty() {
            windows = vec![Vec::with_capacity(count); idx.len()];
        }
        for (w, &q) in windows.iter_mut().zip(&idx) {
            w.push(q);
        }
    }
    let xs = windows
        .iter()
        .map(|w| {
            Bundle::from_wires(
                x.residues()
                    .iter()
                    .map(|t| {
                        LaneWire::new(t.modulus(), w.iter().flat_map(|&q| t.label_digits(q).iter().copied()).collect())
                    })
                    .collect::<Result<Vec<_>, Error>>()?,
            )
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let ct = cost.rows_per_element as usize;
    let mut ev = LaneEvaluator::new(
        &*device.0,
        ones,
        count,
        cost.first_gate + first as u64 * cost.gates_per_element,
        cost.gates_per_element,
        rows,
        ct,
    );
    let res = match run_op(&plan.ops[i], plan.sign.as_ref(), &mut ev, &xs) {
        Ok(res) => res,
        Err(e) => match ev.take_device_error() {
            Some(d) => bail!("on {}: {d}", device.name()),
            None => bail!(e),
        },
    };
    ensure!(ev.used() == (cost.gates_per_element, ct), "gadget used an unexpected number of gates or rows");
    let per = digits_per_element(&plan.net.base);
    let mut off = 0;
    for w in res.wires() {
        let n = w.digits().len() / count;
        for (e, lane) in w.digits().chunks_exact(n).enumerate() {
            scratch[e * per + off..e * per + off + n].copy_from_slice(lane);
        }
        off += n;
    }
    Ok(())
}

/// Flat input indices of output element `e` of non-linear layer `i`.
fn element_inputs(plan: &Plan, i: usize, e: usize, idx: &mut Vec<usize>) {
    idx.clear();
    match &plan.net.layers[i] {
        IntLayer::MaxPool { kernel, stride } => {
            let (s, o) = (&plan.shapes[i], &plan.shapes[i + 1]);
            let (h, w, oh, ow) = (s[1], s[2], o[1], o[2]);
            let ch = e / (oh * ow);
            let r = (e / ow) % oh;
            let col = e % ow;
            for dy in 0..kernel[0] {
                for dx in 0..kernel[1] {
                    idx.push((ch * h + r * stride[0] + dy) * w + col * stride[1] + dx);
                }
            }
        }
        _ => idx.push(e),
    }
}

/// Total digits of one element over all residues.
fn digits_per_element(base: &CrtBase) -> usize {
    base.moduli().iter().map(|m| m.digits()).sum()
}

/// Copies element-major scratch (chunk of `count` elements from `first`)
/// into the residue tensors.
fn scatter(out: &mut CrtTensor, scratch: &[u16], first: usize, count: usize) {
    let per: usize = out.residues().iter().map(|t| t.label_len()).sum();
    let mut off = 0;
    for t in out.residues_mut() {
        let n = t.label_len();
        let dst = &mut t.digits_mut()[first * n..(first + count) * n];
        for (e, d) in dst.chunks_mut(n).enumerate() {
            d.copy_from_slice(&scratch[e * per + off..e * per + off + n]);
        }
        off += n;
    }
}

fn elements_per_chunk(rows_per_element: u64) -> usize {
    (CHUNK_ROWS as u64 / rows_per_element.max(1)).max(1) as usize
}

// ---------------------------------------------------------------------------
// Garbler.

/// What the garbler keeps after garbling: the keys, the input zero labels
/// (to encode the input) and the output zero labels (to decode). Secret;
/// everything is zeroised on drop.
pub struct GarblerSession {
    keys: Box<EngineKeys>,
    base: CrtBase,
    input_zero: CrtTensor,
    output_zero: CrtTensor,
    /// Rows written.
    pub rows: u64,
}

impl core::fmt::Debug for GarblerSession {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GarblerSession(rows={}, <secrets redacted>)", self.rows)
    }
}

/// Garbles the planned network with fresh keys, streaming the material to
/// `out`. Returns what the garbler needs for the online phase.
pub fn garble<W: Write, R: CryptoRng + ?Sized>(plan: &Plan, rng: &mut R, out: &mut W) -> Result<GarblerSession> {
    let base = plan.net.base.clone();
    let keys: Box<EngineKeys> = Box::new(GarblerKeys::generate(rng, &plan.moduli)?);
    let hash = FixedKeyHash::new();
    let ones_packed: Vec<(u16, Block)> =
        keys.one_labels().labels().iter().map(|l| (l.modulus().value(), l.to_block())).collect();
    plan.header(ones_packed).write(out)?;

    // The garbler's one-wire zero labels O_p, per residue (secret: cleared
    // on drop, on the error paths too).
    let mut probe = Garbler::new(&hash, &*keys, CountingSink::default());
    let mut ones: zeroize::Zeroizing<Vec<Vec<u16>>> = zeroize::Zeroizing::new(Vec::new());
    for &m in base.moduli() {
        ones.push(probe.constant(1, m)?.as_label().digits().to_vec());
    }

    // Fresh input zero labels.
    let mut input_zero = CrtTensor::zeros(&base, plan.input_shape());
    for t in input_zero.residues_mut() {
        let m = t.modulus();
        for e in 0..t.len() {
            let z = keys.input(m, rng)?;
            t.label_digits_mut(e).copy_from_slice(z.as_label().digits());
        }
    }

    let mut acts: Vec<Option<CrtTensor>> = vec![None; plan.shapes.len()];
    let mut x = input_zero.clone();
    let mut rows = 0u64;
    for (i, op) in plan.ops.iter().enumerate() {
        if plan.keep[i] {
            acts[i] = Some(x.clone());
        }
        x = match op {
            // The garbler stays on the CPU: its labels are secret (docs/GPU.md).
            Op::Linear => {
                linear_layer(plan, i, x, &acts, &ones, None).with_context(|| format!("garbling layer {i}"))?
            }
            _ => {
                let y =
                    garble_nonlinear(plan, i, &x, &keys, &hash, out).with_context(|| format!("garbling layer {i}"))?;
                rows += plan.costs[i].rows;
                y
            }
        };
    }
    drop(ones);
    if plan.keep[plan.shapes.len() - 1] {
        acts[plan.shapes.len() - 1] = Some(x.clone());
    }
    drop(acts);
    format::write_trailer(out)?;
    Ok(GarblerSession { keys, base, input_zero, output_zero: x, rows })
}

fn garble_nonlinear<W: Write>(
    plan: &Plan,
    i: usize,
    x: &CrtTensor,
    keys: &EngineKeys,
    hash: &FixedKeyHash,
    out: &mut W,
) -> Result<CrtTensor> {
    let cost = &plan.costs[i];
    let base = &plan.net.base;
    let (ct, gpe) = (cost.rows_per_element as usize, cost.gates_per_element);
    if cost.rows > 0 {
        format::write_layer_tag(out, i as u32, cost.rows)?;
    }
    let per = digits_per_element(base);
    let elements = cost.elements as usize;
    let mut y = CrtTensor::zeros(base, &plan.shapes[i + 1]);
    let chunk = elements_per_chunk(cost.rows_per_element);
    let mut rows = vec![Block::ZERO; chunk.min(elements) * ct];
    let mut scratch = vec![0u16; chunk.min(elements) * per];
    let op = &plan.ops[i];
    let sign = plan.sign.as_ref();
    for first in (0..elements).step_by(chunk) {
        let count = chunk.min(elements - first);
        let (rows, scratch) = (&mut rows[..count * ct], &mut scratch[..count * per]);
        let work = |idx: &mut Vec<usize>, k: usize, r: &mut [Block], s: &mut [u16]| -> Result<()> {
            let e = first + k;
            element_inputs(plan, i, e, idx);
            let xs = idx
                .iter()
                .map(|&q| {
                    Bundle::from_wires(
                        x.residues()
                            .iter()
                            .map(|t| Label::from_digits(t.modulus(), t.label_digits(q)).map(ZeroLabel::new))
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                })
                .collect::<Result<Vec<_>, Error>>()?;
            let start = cost.first_gate + e as u64 * gpe;
            let mut g = Garbler::with_gates(hash, keys, GateCounter::starting_at(start), SliceSink::new(r));
            let res = run_op(op, sign, &mut g, &xs)?;
            ensure!(g.gates().peek() == start + gpe, "gadget used an unexpected number of gates");
            ensure!(g.sink().len() == ct, "gadget wrote an unexpected number of rows");
            let mut off = 0;
            for w in res.wires() {
                let d = w.as_label().digits();
                s[off..off + d.len()].copy_from_slice(d);
                off += d.len();
            }
            Ok(())
        };
        if ct == 0 {
            scratch
                .par_chunks_mut(per)
                .enumerate()
                .try_for_each_init(Vec::new, |idx, (k, s)| work(idx, k, &mut [], s))?;
        } else {
            rows.par_chunks_mut(ct)
                .zip(scratch.par_chunks_mut(per))
                .enumerate()
                .try_for_each_init(Vec::new, |idx, (k, (r, s))| work(idx, k, r, s))?;
        }
        format::write_rows(out, rows)?;
        scatter(&mut y, scratch, first, count);
    }
    scratch.zeroize();
    Ok(y)
}

impl GarblerSession {
    /// The CRT base.
    pub fn base(&self) -> &CrtBase {
        &self.base
    }

    /// The evaluator's input labels for `input` (one label per residue of
    /// each element). Values must lie in the base's signed range.
    pub fn encode_input(&self, input: &[i64]) -> Result<CrtTensor> {
        ensure!(
            input.len() == self.input_zero.len(),
            "input has {} values, the network takes {}",
            input.len(),
            self.input_zero.len()
        );
        let mut out = CrtTensor::zeros(&self.base, self.input_zero.shape());
        for (e, &v) in input.iter().enumerate() {
            let residues =
                self.base.encode(v as i128).with_context(|| format!("input {e} = {v} is outside the base's range"))?;
            for ((zt, ot), r) in self.input_zero.residues().iter().zip(out.residues_mut()).zip(residues) {
                let z = ZeroLabel::new(Label::from_digits(zt.modulus(), zt.label_digits(e))?);
                let l = self.keys.encode(&z, r)?;
                ot.label_digits_mut(e).copy_from_slice(l.digits());
            }
        }
        Ok(out)
    }

    /// Decodes and verifies the evaluator's output labels (packed,
    /// element-major as [`CrtTensor::to_blocks`]). Any label that is not
    /// exactly a valid label of its wire fails the whole output.
    pub fn decode_output(&self, returned: &[Block]) -> Result<Vec<i64>> {
        let k = self.base.len();
        ensure!(
            returned.len() == self.output_zero.len() * k,
            "expected {} output labels, got {}",
            self.output_zero.len() * k,
            returned.len()
        );
        let mut out = Vec::with_capacity(self.output_zero.len());
        let mut failed = false;
        for (e, r) in returned.chunks(k).enumerate() {
            let zero = Bundle::from_wires(
                self.output_zero
                    .residues()
                    .iter()
                    .map(|t| Label::from_digits(t.modulus(), t.label_digits(e)).map(ZeroLabel::new))
                    .collect::<Result<Vec<_>, _>>()?,
            )?;
            match self.keys.decode_bundle(&self.base, &zero, r) {
                Ok(v) => out.push(v as i64),
                Err(_) => {
                    failed = true;
                    out.push(0);
                }
            }
        }
        if failed {
            bail!(Error::AuthenticityCheckFailed);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Evaluator.

/// The evaluator's side of one inference: the validated header (one-labels)
/// and the material stream, positioned at the first layer.
pub struct EvaluatorSession<'p, 'n, R: Read> {
    plan: &'p Plan<'n>,
    reader: R,
    ones: Box<EngineOnes>,
}

impl<'p, 'n, R: Read> EvaluatorSession<'p, 'n, R> {
    /// Reads the header from `reader` and checks it against the plan: model
    /// hash, CRT base, one-labels for exactly the planned moduli, and the
    /// size of every layer.
    pub fn start(plan: &'p Plan<'n>, mut reader: R) -> Result<Self> {
        let h = Header::read(&mut reader)?;
        ensure!(h.model_hash == plan.hash, "the material was garbled for another model (model hash differs)");
        let primes: Vec<u16> = plan.net.base.moduli().iter().map(|m| m.value()).collect();
        ensure!(h.primes == primes, "the material uses CRT base {:?}, the model {:?}", h.primes, primes);
        ensure!(
            h.layer_rows.len() == plan.costs.len(),
            "the material has {} layers, the model {}",
            h.layer_rows.len(),
            plan.costs.len()
        );
        for (i, (got, c)) in h.layer_rows.iter().zip(&plan.costs).enumerate() {
            ensure!(*got == c.rows, "layer {i}: the material has {got} rows, the model needs {}", c.rows);
        }
        ensure!(
            h.ones.len() == plan.moduli.len(),
            "the material has {} one-labels, the model needs {}",
            h.ones.len(),
            plan.moduli.len()
        );
        let mut ones = Box::new(EngineOnes::default());
        for (&(m, b), want) in h.ones.iter().zip(&plan.moduli) {
            ensure!(m == want.value(), "one-label for modulus {m} where {} was expected", want.value());
            let l = Label::from_block(*want, b).with_context(|| format!("one-label of modulus {m} is malformed"))?;
            ones.push(l)?;
        }
        Ok(EvaluatorSession { plan, reader, ones })
    }

    /// Evaluates the network on the input labels, reading each layer's
    /// material as it goes. Returns the output labels.
    pub fn evaluate(mut self, input: &CrtTensor) -> Result<CrtTensor> {
        let plan = self.plan;
        ensure!(input.base() == &plan.net.base, "input labels on another base");
        ensure!(
            input.shape() == plan.input_shape(),
            "input labels of shape {:?}, the model takes {:?}",
            input.shape(),
            plan.input_shape()
        );
        let ones: Vec<Vec<u16>> =
            plan.net.base.moduli().iter().map(|&m| Ok(self.ones.get(m)?.digits().to_vec())).collect::<Result<_>>()?;
        let hash = FixedKeyHash::new();
        let mut acts: Vec<Option<CrtTensor>> = vec![None; plan.shapes.len()];
        let mut x = input.clone();
        for (i, op) in plan.ops.iter().enumerate() {
            if plan.keep[i] {
                acts[i] = Some(x.clone());
            }
            x = match op {
                Op::Linear => linear_layer(plan, i, x, &acts, &ones, plan.offload.as_ref())
                    .with_context(|| format!("evaluating layer {i}"))?,
                _ => self.nonlinear(i, &x, &hash).with_context(|| format!("evaluating layer {i}"))?,
            };
        }
        format::read_trailer(&mut self.reader)?;
        Ok(x)
    }

    fn nonlinear(&mut self, i: usize, x: &CrtTensor, hash: &FixedKeyHash) -> Result<CrtTensor> {
        let plan = self.plan;
        let cost = &plan.costs[i];
        let base = &plan.net.base;
        let (ct, gpe) = (cost.rows_per_element as usize, cost.gates_per_element);
        if cost.rows > 0 {
            format::read_layer_tag(&mut self.reader, i as u32, cost.rows)?;
        }
        let per = digits_per_element(base);
        let elements = cost.elements as usize;
        let mut y = CrtTensor::zeros(base, &plan.shapes[i + 1]);
        // A device wants wide batches: each of the gadget's projections is one
        // launch over the chunk's elements.
        let chunk = if plan.offload.is_some() {
            (plan.offload_chunk_rows as u64 / cost.rows_per_element.max(1)).max(1) as usize
        } else {
            elements_per_chunk(cost.rows_per_element)
        };
        let mut rows = vec![Block::ZERO; chunk.min(elements) * ct];
        let mut scratch = vec![0u16; chunk.min(elements) * per];
        let op = &plan.ops[i];
        let sign = plan.sign.as_ref();
        let ones = &*self.ones;
        for first in (0..elements).step_by(chunk) {
            let count = chunk.min(elements - first);
            let (rows, scratch) = (&mut rows[..count * ct], &mut scratch[..count * per]);
            format::read_rows(&mut self.reader, rows)?;
            if plan.offload.is_some() {
                nonlinear_lanes(plan, i, x, ones, first, count, rows, scratch)?;
                scatter(&mut y, scratch, first, count);
                continue;
            }
            // Per worker: the element's input indices and input bundles,
            // reused from element to element (a bundle is a few KB).
            type Scratch = (Vec<usize>, Vec<Bundle<Label>>);
            let work = |(idx, xs): &mut Scratch, k: usize, r: &[Block], s: &mut [u16]| -> Result<()> {
                let e = first + k;
                element_inputs(plan, i, e, idx);
                xs.clear();
                for &q in idx.iter() {
                    let mut bad = None;
                    let bundle = Bundle::from_wires(x.residues().iter().map_while(|t| {
                        Label::from_digits(t.modulus(), t.label_digits(q)).map_err(|e| bad = Some(e)).ok()
                    }))?;
                    if let Some(e) = bad {
                        bail!(e);
                    }
                    xs.push(bundle);
                }
                let xs = &xs[..];
                let start = cost.first_gate + e as u64 * gpe;
                let mut ev = Evaluator::with_gates(hash, ones, GateCounter::starting_at(start), SliceSource::new(r));
                let res = run_op(op, sign, &mut ev, xs)?;
                ensure!(ev.source().remaining() == 0, "gadget read an unexpected number of rows");
                let mut off = 0;
                for w in res.wires() {
                    let d = w.digits();
                    s[off..off + d.len()].copy_from_slice(d);
                    off += d.len();
                }
                Ok(())
            };
            if ct == 0 {
                scratch
                    .par_chunks_mut(per)
                    .enumerate()
                    .try_for_each_init(Scratch::default, |scratch, (k, s)| work(scratch, k, &[], s))?;
            } else {
                rows.par_chunks(ct)
                    .zip(scratch.par_chunks_mut(per))
                    .enumerate()
                    .try_for_each_init(Scratch::default, |scratch, (k, (r, s))| work(scratch, k, r, s))?;
            }
            scatter(&mut y, scratch, first, count);
        }
        Ok(y)
    }
}

/// Reads the header from `material`, then evaluates on `input`.
pub fn evaluate<R: Read>(plan: &Plan, material: R, input: &CrtTensor) -> Result<CrtTensor> {
    EvaluatorSession::start(plan, material)?.evaluate(input)
}
