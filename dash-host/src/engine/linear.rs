//! Linear layers on digit buffers, shared by both parties: dense,
//! convolution, sum pooling, residual add, reshape.
//!
//! Per residue `p`, the output label of an element is `Σ w·X + b·ONE`
//! computed digit by digit mod `p` over the input labels' digits (`ONE` is
//! the one-label `O_p + Δ_p` on the evaluator's side and the zero label
//! `O_p` on the garbler's, so both sides run the same kernel). The kernels
//! accumulate digit vectors in `u16`/`u32` lanes and reduce once per output
//! (or every few thousand terms for big primes).
//!
//! # Constant time
//!
//! On the garbler's side every digit here is secret (zero labels). Weights,
//! shapes and moduli are public. So: no branch and no memory index depends
//! on a digit, and every reduction mod `p` is the modulus' multiply-shift
//! code ([`Modulus::div_rem_u64`], [`Modulus::add`]), never `%` by a
//! run-time modulus (a division's latency depends on its operands on many
//! CPUs). Skipping a zero *weight* is fine: weights are public.
//! `examples/ct_kernels.rs` runs these kernels on secret digits under
//! valgrind memcheck (CI), with a planted leak it must report.
//!
//! # Vector units
//!
//! Dense and convolution layers run their dot products under the best
//! vector instruction set the CPU has, chosen at run time by `pulp`
//! (AVX-512 where present, else AVX2, else portable code); the code is the
//! same plain loops, compiled once per instruction set.

use super::error::{EngineError, EngineResult};
use super::plan::PlanData;
use crate::network::IntLayer;
use crate::offload::OffloadHandle;
use crate::tensor::{CrtTensor, LabelTensor};
use dash_core::Modulus;
use rayon::prelude::*;
use zeroize::Zeroize;

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
fn reduce_acc(acc: &mut [u32], m: Modulus) {
    for a in acc.iter_mut() {
        *a = m.div_rem_u64(*a as u64).1 as u32;
    }
}

#[inline]
fn store(acc: &[u32], y: &mut [u16], m: Modulus) {
    for (o, &a) in y.iter_mut().zip(acc) {
        *o = m.div_rem_u64(a as u64).1;
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
    m: Modulus,
    count: usize,
    limit: usize,
    seg16: usize,
    count16: usize,
}

impl Acc {
    fn new(n: usize, m: Modulus) -> Acc {
        Acc {
            buf: [0; dash_core::MAX_DIGITS],
            small: [0; dash_core::MAX_DIGITS],
            n,
            m,
            count: 0,
            limit: accumulate_limit(m.value()),
            seg16: u16_segment(m.value()),
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
            reduce_acc(&mut self.buf[..self.n], self.m);
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
            reduce_acc(&mut self.buf[..self.n], self.m);
            self.count = 1;
        }
    }

    fn finish(&mut self, y: &mut [u16]) {
        if self.count16 > 0 {
            self.fold();
        }
        store(&self.buf[..self.n], y, self.m);
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
    let (n, m) = (x.label_len(), x.modulus());
    let xd = x.digits();
    out.digits_mut().par_chunks_mut(n).enumerate().for_each(|(o, y)| {
        let ch = o / (g.oh * g.ow);
        let r = (o / g.ow) % g.oh;
        let col = o % g.ow;
        let mut acc = Acc::new(n, m);
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
    let m = x.modulus();
    for (a, &b) in x.digits_mut().iter_mut().zip(other.digits()) {
        *a = m.add(*a, b);
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
pub(crate) fn linear_layer(
    plan: &PlanData,
    i: usize,
    x: CrtTensor,
    acts: &[Option<CrtTensor>],
    ones: &[Vec<u16>],
    device: Option<&OffloadHandle>,
) -> EngineResult<CrtTensor> {
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
            x.reshape(out_shape).map_err(|e| EngineError::Model(format!("layer {i}: {e:#}")))?;
            x
        }
        IntLayer::ResidualAdd { from } => {
            let other = acts
                .get(*from)
                .and_then(|a| a.as_ref())
                .ok_or_else(|| EngineError::Model(format!("layer {i}: residual source {from} was not kept")))?;
            let mut x = x;
            for (a, b) in x.residues_mut().iter_mut().zip(other.residues()) {
                add_into(a, b);
            }
            x
        }
        IntLayer::MaxPool { .. } | IntLayer::Relu | IntLayer::Sign | IntLayer::Rescale { .. } => {
            return Err(EngineError::Model(format!("layer {i} is not linear")));
        }
    })
}

/// A dense or convolution layer on the offload device, every residue at once.
fn offload_linear(
    device: &OffloadHandle,
    plan: &PlanData,
    i: usize,
    x: &CrtTensor,
    ones: &[Vec<u16>],
    g: &dash_gpu::ConvGeometry,
    out_shape: &[usize],
) -> EngineResult<CrtTensor> {
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
    device.0.linear(g, &mut jobs).map_err(|e| EngineError::Device(format!("layer {i} on {}: {e}", device.name())))?;
    drop(jobs);
    Ok(out)
}
