//! The whole-network garbler for small RAM.
//!
//! # What it holds
//!
//! * the key set ([`GarblerKeys`], one per inference, zeroised on drop);
//! * one activation: the **zero labels** of the current layer's elements,
//!   packed (16 bytes per element and residue), in a buffer the caller lends
//!   ([`garble`]'s `acts`), cleared when the [`Inference`] is dropped;
//! * during a dense layer, one residue's accumulators (digit lanes, in the
//!   layer's own stack frame); during a non-linear layer, one element's
//!   gadget (unpacked labels, in its own frame).
//!
//! It never holds the material: every row goes to the [`Link`] as the
//! gadget produces it. Nor does it hold the input labels: the first layer
//! is dense, and its input zero labels are drawn from the generator one at
//! a time and folded into the dense layer's accumulators, residue by residue
//! — exactly the order in which the host garbler draws them. To encode the
//! input after the material, the device keeps a copy of the generator taken
//! just before the input labels were drawn and draws them again.
//!
//! # The same circuit as the host
//!
//! `dash-host`'s engine draws the key set for the plan's moduli, then the
//! input zero labels residue by residue; garbles linear layers as digit-wise
//! sums modulo each prime (`Σ w·X + b·O_p`, a unique result whatever the
//! order of summation), and gadget `e` of a non-linear layer with the gate
//! identifiers `first_gate + e·g ..` into rows `e·c ..` of the layer. This
//! module does the same, and writes the same stream (`dash-host`'s
//! `format` module, version 2): header with the one-labels, a tag and the
//! rows of every layer with rows, the trailer.

use crate::McuError;
use crate::netfile::{Dense, Layer, MAX_LAYERS, NetFile};
use dash_core::compact_garbler::{CompactGarbler, CtPacked};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CostCounter, CountingSink, CrtBase, Error, FixedKeyHash, Garbler, GarblerKeys, GateCounter,
    Label, MaterialSink, Modulus, ZeroLabel,
};
use rand_core::CryptoRng;
use zeroize::Zeroize;

/// First 8 bytes of a material stream (`dash-host` `format::MAGIC`).
pub const MATERIAL_MAGIC: [u8; 8] = *b"DASHGCM\0";
/// Material format version (`dash-host` `format::VERSION`).
pub const MATERIAL_VERSION: u32 = 2;
/// Tag in front of each layer's rows.
pub const LAYER_TAG: [u8; 4] = *b"LAYR";
/// Last 8 bytes of a material stream.
pub const TRAILER: [u8; 8] = *b"DASHEND\0";

/// Rows staged per call to the link.
const STAGE_ROWS: usize = 16;

/// Where the device's bytes go: a UART, USB, a radio, a semihosting file.
/// `send` must take all of `bytes` or fail.
pub trait Link {
    /// Sends `bytes`, in order.
    fn send(&mut self, bytes: &[u8]) -> Result<(), McuError>;
}

/// What a [`Probe`] is told the work since its previous mark was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Phase {
    /// Key generation.
    Keys,
    /// The material header (one-labels).
    Header,
    /// One residue of a dense layer (input labels drawn here for the first).
    Dense,
    /// One element's gadget, its rows streamed.
    Gadget,
    /// The trailer.
    Trailer,
    /// Drawing the input labels again and sending them.
    Encode,
    /// Decoding and verifying the answer.
    Decode,
}

/// Observes the garbler's phases (the firmware counts instructions). The
/// unit type observes nothing.
pub trait Probe {
    /// The work since the previous mark was `phase`.
    fn mark(&mut self, phase: Phase);
}

impl Probe for () {
    fn mark(&mut self, _phase: Phase) {}
}

/// The gadget of a non-linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Linear,
    Sign,
    Relu,
}

/// Cost and gate range of one layer, as the host's plan computes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerCost {
    /// Output elements.
    pub elements: u32,
    /// Rows per element (0 for linear layers).
    pub rows_per_element: u32,
    /// Gate identifiers per element.
    pub gates_per_element: u32,
    /// First gate identifier of the layer.
    pub first_gate: u64,
}

impl LayerCost {
    /// Rows of the whole layer.
    pub fn rows(&self) -> u64 {
        self.elements as u64 * self.rows_per_element as u64
    }
}

/// The public circuit: the sign gadget (if any layer needs one) and each
/// layer's cost and gate range, computed on the device from its own gadgets
/// and checked against the image (moduli, rows and gates per element).
/// Build it once; reuse it for every inference.
pub struct DevicePlan {
    sign: Option<SignGadget>,
    ops: heapless::Vec<Op, MAX_LAYERS>,
    costs: heapless::Vec<LayerCost, MAX_LAYERS>,
}

/// The digit order search in a frame of its own (its scratch is gone before
/// the gadget is built).
#[inline(never)]
fn search_radices(base: &CrtBase) -> Result<heapless::Vec<u128, { dash_core::gadgets::sign::MAX_POSITIONS }>, Error> {
    SignGadget::search_radices(base)
}

#[inline(never)]
fn build_sign(base: &CrtBase) -> Result<SignGadget, Error> {
    let radices = search_radices(base)?;
    SignGadget::with_radices(base, Accuracy::Exact, &radices)
}

fn run_op<B: Backend>(
    op: Op,
    sign: Option<&SignGadget>,
    b: &mut B,
    x: &Bundle<B::Wire>,
) -> Result<Bundle<B::Wire>, Error> {
    let g = sign.ok_or(Error::InvalidParameter)?;
    match op {
        Op::Sign => g.sign_activation(b, x),
        Op::Relu => g.relu(b, x),
        Op::Linear => Err(Error::InvalidParameter),
    }
}

impl DevicePlan {
    /// Plans `net`: builds the gadgets, measures every non-linear layer on
    /// the cost counter, and checks moduli and costs against the image.
    pub fn new(net: &NetFile<'_>) -> Result<DevicePlan, McuError> {
        let base = &net.base;
        if !matches!(net.layers.first(), Some(Layer::Dense(_))) {
            return Err(McuError::Unsupported);
        }
        let needs_sign = net.layers.iter().any(|l| matches!(l, Layer::Sign { .. } | Layer::Relu { .. }));
        let sign = if needs_sign { Some(build_sign(base)?) } else { None };
        let mut moduli: heapless::Vec<Modulus, { crate::netfile::MAX_MODULI }> = heapless::Vec::new();
        for &m in base.moduli() {
            moduli.push(m).map_err(|_| McuError::Capacity)?;
        }
        let mut ops = heapless::Vec::new();
        let mut costs = heapless::Vec::new();
        let (mut len, mut gate) = (net.input_len as u32, 0u64);
        for layer in &net.layers {
            let (op, declared) = match layer {
                Layer::Dense(d) => {
                    len = d.outputs as u32;
                    (Op::Linear, None)
                }
                Layer::Sign { rows, gates } => (Op::Sign, Some((*rows, *gates))),
                Layer::Relu { rows, gates } => (Op::Relu, Some((*rows, *gates))),
                Layer::Flatten => (Op::Linear, None),
            };
            let (rpe, gpe) = match declared {
                None => (0, 0),
                Some(want) => {
                    let mut cc = CostCounter::new();
                    let x = Bundle::from_wires(base.moduli().iter().map(|&m| cc.input(m)))?;
                    run_op(op, sign.as_ref(), &mut cc, &x)?;
                    for &m in cc.moduli()? {
                        let m = Modulus::new(m)?;
                        if !moduli.contains(&m) {
                            moduli.push(m).map_err(|_| McuError::Capacity)?;
                        }
                    }
                    let got = (
                        u32::try_from(cc.ciphertexts).map_err(|_| McuError::Capacity)?,
                        u32::try_from(cc.gates).map_err(|_| McuError::Capacity)?,
                    );
                    if got != want {
                        return Err(McuError::PlanMismatch);
                    }
                    got
                }
            };
            costs
                .push(LayerCost { elements: len, rows_per_element: rpe, gates_per_element: gpe, first_gate: gate })
                .map_err(|_| McuError::Capacity)?;
            ops.push(op).map_err(|_| McuError::Capacity)?;
            gate = gate.checked_add(len as u64 * gpe as u64).ok_or(McuError::Capacity)?;
        }
        if moduli[..] != net.moduli[..] {
            return Err(McuError::PlanMismatch);
        }
        Ok(DevicePlan { sign, ops, costs })
    }

    /// Per-layer costs.
    pub fn costs(&self) -> &[LayerCost] {
        &self.costs
    }

    /// Rows of the whole inference.
    pub fn total_rows(&self) -> u64 {
        self.costs.iter().map(LayerCost::rows).sum()
    }
}

/// Rows to the link, staged [`STAGE_ROWS`] at a time; counts them.
struct RowSink<'l, L: Link> {
    link: &'l mut L,
    rows: u64,
    failed: Option<McuError>,
}

impl<L: Link> MaterialSink for RowSink<'_, L> {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        let mut stage = [0u8; STAGE_ROWS * 16];
        for chunk in rows.chunks(STAGE_ROWS) {
            for (row, b) in chunk.iter().zip(stage.chunks_exact_mut(16)) {
                b.copy_from_slice(&row.0.to_le_bytes());
            }
            if let Err(e) = self.link.send(&stage[..chunk.len() * 16]) {
                self.failed = Some(e);
                return Err(Error::SinkFull);
            }
        }
        self.rows += rows.len() as u64;
        Ok(())
    }
}

/// Where [`garble`] draws each inference's key set: lent by the caller, so
/// that the keys (a few KiB) live in one place, not in every frame that
/// moves an [`Inference`]. Every call of [`garble`] replaces its content
/// with a fresh key set (the old one is zeroised), and dropping the
/// [`Inference`] erases it: keys cannot be reused across inferences.
pub struct KeySlot<const N: usize>(Option<GarblerKeys<N>>);

impl<const N: usize> KeySlot<N> {
    /// An empty slot.
    pub const fn new() -> Self {
        KeySlot(None)
    }
}

impl<const N: usize> Default for KeySlot<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// One inference after its material was streamed: the keys and the output
/// zero labels (both in storage the caller lent). Secret: cleared on drop.
pub struct Inference<'a, const N: usize> {
    slot: &'a mut KeySlot<N>,
    acts: &'a mut [CtPacked],
    base: CrtBase,
    outputs: usize,
    /// Rows streamed.
    pub rows: u64,
}

impl<const N: usize> Drop for Inference<'_, N> {
    fn drop(&mut self) {
        for b in self.acts.iter_mut() {
            *b = CtPacked::EMPTY; // the old packing clears itself on drop
        }
        self.slot.0 = None; // GarblerKeys zeroise themselves on drop
    }
}

/// Slots (packed zero labels, one per element and residue) the activation
/// buffer needs for `net`.
pub fn act_slots(net: &NetFile<'_>) -> usize {
    net.max_elements() * net.base.len()
}

/// Garbles one inference of `net` on `input` with a fresh key set drawn
/// from `rng`, streaming to `link`: the material header, the evaluator's
/// input labels (`k × n` blocks, residue by residue: residue `t`, element
/// `e` at `t·n + e`), then the layers and the trailer. The material bytes
/// (header, layers, trailer) are exactly the host engine's stream.
///
/// The input labels go out as their zero labels are drawn, during the first
/// dense layer: the device holds its input when it garbles, and neither the
/// input zero labels (`n·k` labels) nor a copy of the generator that could
/// draw them again need to be kept.
///
/// `acts` holds the current activation's zero labels (at least
/// [`act_slots`] slots); `ACC` bounds the dense layers' accumulators (in
/// 32-bit words: outputs × ⌈digits/2⌉ for the widest odd prime, 4 words per
/// output for p = 2). `N` bounds the key set's moduli. Then decode the
/// evaluator's answer with [`Inference::decode`].
#[allow(clippy::too_many_arguments)]
pub fn garble<'a, T, R, L, P, const N: usize, const ACC: usize>(
    net: &NetFile<'_>,
    plan: &DevicePlan,
    rng: &mut R,
    input: &[T],
    link: &mut L,
    keys: &'a mut KeySlot<N>,
    acts: &'a mut [CtPacked],
    probe: &mut P,
) -> Result<Inference<'a, N>, McuError>
where
    T: Copy + Into<i64>,
    R: CryptoRng,
    L: Link,
    P: Probe,
{
    let base = &net.base;
    if acts.len() < act_slots(net) {
        return Err(McuError::Capacity);
    }
    if input.len() != net.input_len {
        return Err(McuError::Input);
    }
    let (lo, hi) = (base.min_value(), base.max_value());
    if input.iter().any(|&x| !(lo..=hi).contains(&(Into::<i64>::into(x) as i128))) {
        return Err(McuError::Input);
    }
    keys.0 = None;
    keys.0 = Some(GarblerKeys::generate(rng, &net.moduli)?);
    let mut inf = Inference { slot: keys, acts, base: base.clone(), outputs: net.output_len(), rows: 0 };
    probe.mark(Phase::Keys);
    let keys = inf.slot.0.as_ref().ok_or(McuError::Capacity)?;
    write_header(net, plan, keys, link)?;
    probe.mark(Phase::Header);
    let hash = FixedKeyHash::new();
    let mut fresh = Some((rng, input));
    for (i, layer) in net.layers.iter().enumerate() {
        match layer {
            Layer::Dense(d) => {
                dense_layer::<T, R, L, P, N, ACC>(d, base, keys, &hash, fresh.take(), link, inf.acts, probe)?
            }
            Layer::Flatten => {}
            Layer::Sign { .. } | Layer::Relu { .. } => {
                inf.rows += nonlinear_layer(i, plan, base, keys, &hash, link, inf.acts, probe)?;
            }
        }
    }
    link.send(&TRAILER)?;
    probe.mark(Phase::Trailer);
    Ok(inf)
}

/// The material header (`dash-host` `format::Header`), one-labels included.
#[inline(never)]
fn write_header<L: Link, const N: usize>(
    net: &NetFile<'_>,
    plan: &DevicePlan,
    keys: &GarblerKeys<N>,
    link: &mut L,
) -> Result<(), McuError> {
    link.send(&MATERIAL_MAGIC)?;
    link.send(&MATERIAL_VERSION.to_le_bytes())?;
    link.send(&net.model_hash)?;
    link.send(&[net.base.len() as u8])?;
    for m in net.base.moduli() {
        link.send(&m.value().to_le_bytes())?;
    }
    let ones = keys.one_labels();
    link.send(&(ones.labels().len() as u16).to_le_bytes())?;
    let mut entry = [0u8; 18];
    for l in ones.labels() {
        entry[..2].copy_from_slice(&l.modulus().value().to_le_bytes());
        entry[2..].copy_from_slice(&l.to_block().0.to_le_bytes());
        link.send(&entry)?;
    }
    link.send(&(plan.costs.len() as u32).to_le_bytes())?;
    for c in &plan.costs {
        link.send(&c.rows().to_le_bytes())?;
    }
    Ok(())
}

/// Dense layer `y = W·x + b` on zero labels, one residue at a time. For the
/// first layer (`fresh`), input zero label `e` of residue `t` is drawn from
/// the generator when it is needed (the host's order: residue-major); for
/// later layers it is read from `acts`, and residue `t` of the outputs
/// overwrites residue `t` of the inputs once every output has it.
///
/// Digits accumulate in 16-bit lanes, two per 32-bit word (one
/// multiply-accumulate for two digits), reduced before a lane could
/// overflow; for p = 2 a label is 128 bits and adding `w·X` is an XOR.
/// Reductions are the constant-time `Modulus::reduce` (digits are secret;
/// weights are public, so zero weights are skipped).
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn dense_layer<T, R, L, P, const N: usize, const ACC: usize>(
    d: &Dense<'_>,
    base: &CrtBase,
    keys: &GarblerKeys<N>,
    hash: &FixedKeyHash,
    mut fresh: Option<(&mut R, &[T])>,
    link: &mut L,
    acts: &mut [CtPacked],
    probe: &mut P,
) -> Result<(), McuError>
where
    T: Copy + Into<i64>,
    R: CryptoRng,
    L: Link,
    P: Probe,
{
    let k = base.len();
    let mut acc = [0u32; ACC];
    let mut words_of = [0u32; dash_core::MAX_DIGITS / 2];
    let mut digits = [0u16; dash_core::MAX_DIGITS];
    let mut stage = [0u8; STAGE_ROWS * 16];
    let result = (|| {
        for (t, &m) in base.moduli().iter().enumerate() {
            let p = m.value() as u32;
            let n = m.digits();
            let lanes = lanes_of(p);
            let words = n.div_ceil(lanes);
            if d.outputs * words > ACC || n > digits.len() {
                return Err(McuError::Capacity);
            }
            // The garbler's zero label of the constant-one wire, O_p.
            let one = Garbler::new(hash, keys, CountingSink::default()).constant(1, m)?;
            for o in 0..d.outputs {
                let b = (d.bias(o) as i64).rem_euclid(p as i64) as u16;
                for (x, &y) in digits.iter_mut().zip(one.as_label().digits()) {
                    *x = m.mul(b, y);
                }
                to_words(&digits[..n], lanes, &mut acc[o * words..(o + 1) * words]);
            }
            drop(one);
            // Terms a lane holds: (p-1)^2 each.
            let limit = if p == 2 { u32::MAX } else { lane_max(lanes) / ((p - 1) * (p - 1)) };
            // 8-bit lanes are folded rather than reduced: (shift, masks, and
            // the terms a folded lane counts as).
            let fold = match p {
                3 | 7 => Some((6, 0x3f3f_3f3f_u32, 0x0303_0303_u32, 66u32.div_ceil((p - 1) * (p - 1)))),
                5 => Some((4, 0x0f0f_0f0f, 0x0f0f_0f0f, 30u32.div_ceil(16))),
                _ => None,
            };
            let mut count = 1u32;
            for e in 0..d.inputs {
                match fresh.as_mut() {
                    Some((rng, input)) => {
                        // Drawn in the host's order; its input label goes
                        // out at once (staged), the zero label only into
                        // the accumulators.
                        let z = keys.input(m, *rng)?;
                        let x = residue_ct(m, Into::<i64>::into(input[e]));
                        let label = keys.encode(&z, x)?;
                        stage[(e % STAGE_ROWS) * 16..][..16].copy_from_slice(&label.to_block().0.to_le_bytes());
                        if e % STAGE_ROWS == STAGE_ROWS - 1 || e + 1 == d.inputs {
                            link.send(&stage[..(e % STAGE_ROWS + 1) * 16])?;
                        }
                        to_words(z.as_label().digits(), lanes, &mut words_of[..words]);
                    }
                    None => {
                        let src = acts.get(e * k + t).ok_or(McuError::Capacity)?;
                        let z = ZeroLabel::new(src.unpack(m)?);
                        to_words(z.as_label().digits(), lanes, &mut words_of[..words]);
                    }
                }
                let z = &words_of[..words];
                if p == 2 {
                    for o in 0..d.outputs {
                        if d.weight(o, e) & 1 != 0 {
                            for (a, &x) in acc[o * 4..o * 4 + 4].iter_mut().zip(z) {
                                *a ^= x;
                            }
                        }
                    }
                } else {
                    for o in 0..d.outputs {
                        let w = d.weight(o, e).rem_euclid(p as i32) as u32;
                        if w != 0 {
                            for (a, &x) in acc[o * words..(o + 1) * words].iter_mut().zip(z) {
                                *a = a.wrapping_add(w * x);
                            }
                        }
                    }
                    count += 1;
                    if count == limit {
                        match fold {
                            // 2^s ≡ 1 (mod p): 2^s·a + b ≡ a + b, lane-wise in
                            // four instructions for the whole word.
                            Some((s, lo, hi, terms)) => {
                                for a in acc[..d.outputs * words].iter_mut() {
                                    *a = (*a & lo) + ((*a >> s) & hi);
                                }
                                count = terms;
                            }
                            None => {
                                for a in acc[..d.outputs * words].iter_mut() {
                                    *a = reduce_lanes(m, lanes, *a);
                                }
                                count = 1;
                            }
                        }
                    }
                }
            }
            for o in 0..d.outputs {
                from_words(&acc[o * words..(o + 1) * words], m, lanes, &mut digits[..n]);
                let y = ZeroLabel::new(Label::from_digits(m, &digits[..n])?);
                *acts.get_mut(o * k + t).ok_or(McuError::Capacity)? = CtPacked::pack(y.as_label())?;
            }
            probe.mark(Phase::Dense);
        }
        Ok(())
    })();
    acc.zeroize();
    words_of.zeroize();
    digits.zeroize();
    stage.zeroize();
    result
}

/// `x mod p` for a secret input value, without a division (the M4's
/// divider takes a data-dependent number of cycles): the residue of the
/// two's-complement `u64` by multiplication, corrected by `2^64 mod p` for a
/// negative `x` through a multiplication by the sign bit.
fn residue_ct(m: Modulus, x: i64) -> u16 {
    let r = m.div_rem_u64(x as u64).1;
    let wrap = m.add(m.div_rem_u64(u64::MAX).1, 1 % m.value());
    let negative = ((x as u64) >> 63) as u16;
    m.sub(r, m.mul(wrap, negative))
}

/// Digits per 32-bit word in the dense accumulators: 32 bits for p = 2
/// (adding is an XOR), 8-bit lanes for p <= 7 (at least 7 products of
/// two digits fit), else 16-bit lanes.
fn lanes_of(p: u32) -> usize {
    match p {
        2 => 32,
        3..=7 => 4,
        _ => 2,
    }
}

fn lane_max(lanes: usize) -> u32 {
    if lanes == 4 { 0xff } else { 0xffff }
}

/// Digits to words, `lanes` digits per word (lane `j` of word `i` is digit
/// `i·lanes + j`).
#[inline(always)]
fn to_words(digits: &[u16], lanes: usize, out: &mut [u32]) {
    out.fill(0);
    let (shift, width) = (lanes.trailing_zeros(), 32 / lanes);
    for (i, &x) in digits.iter().enumerate() {
        out[i >> shift] |= (x as u32) << (width * (i & (lanes - 1)));
    }
}

/// Every lane of `a` reduced mod p (constant-time).
#[inline(always)]
fn reduce_lanes(m: Modulus, lanes: usize, a: u32) -> u32 {
    let width = 32 / lanes;
    let mask = lane_max(lanes);
    let mut out = 0;
    for j in 0..lanes {
        out |= (m.reduce((a >> (width * j)) & mask) as u32) << (width * j);
    }
    out
}

/// Words back to reduced digits.
fn from_words(words: &[u32], m: Modulus, lanes: usize, out: &mut [u16]) {
    let (shift, width) = (lanes.trailing_zeros(), 32 / lanes);
    let mask = if lanes == 32 { 1 } else { lane_max(lanes) };
    for (i, x) in out.iter_mut().enumerate() {
        *x = m.reduce((words[i >> shift] >> (width * (i & (lanes - 1)))) & mask);
    }
}

/// A non-linear layer: its tag, then one gadget per element, each in its
/// own frame, rows straight to the link.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn nonlinear_layer<L: Link, P: Probe, const N: usize>(
    i: usize,
    plan: &DevicePlan,
    base: &CrtBase,
    keys: &GarblerKeys<N>,
    hash: &FixedKeyHash,
    link: &mut L,
    acts: &mut [CtPacked],
    probe: &mut P,
) -> Result<u64, McuError> {
    let cost = *plan.costs.get(i).ok_or(McuError::PlanMismatch)?;
    let op = *plan.ops.get(i).ok_or(McuError::PlanMismatch)?;
    let mut tag = [0u8; 16];
    tag[..4].copy_from_slice(&LAYER_TAG);
    tag[4..8].copy_from_slice(&(i as u32).to_le_bytes());
    tag[8..].copy_from_slice(&cost.rows().to_le_bytes());
    if cost.rows() > 0 {
        link.send(&tag)?;
    }
    for e in 0..cost.elements as usize {
        gadget_element(e, op, &cost, plan.sign.as_ref(), base, keys, hash, link, acts)?;
        probe.mark(Phase::Gadget);
    }
    Ok(cost.rows())
}

/// One element's gadget on the compact garbler (wires of 28 bytes, so the
/// gadget's frames stay small), rows straight to the link; its output zero
/// labels replace its inputs in `acts`.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn gadget_element<L: Link, const N: usize>(
    e: usize,
    op: Op,
    cost: &LayerCost,
    sign: Option<&SignGadget>,
    base: &CrtBase,
    keys: &GarblerKeys<N>,
    hash: &FixedKeyHash,
    link: &mut L,
    acts: &mut [CtPacked],
) -> Result<(), McuError> {
    let k = base.len();
    let slots = acts.get_mut(e * k..(e + 1) * k).ok_or(McuError::Capacity)?;
    let x = Bundle::from_wires(slots.iter().cloned())?;
    let start = cost.first_gate + e as u64 * cost.gates_per_element as u64;
    let sink = RowSink { link, rows: 0, failed: None };
    let mut g = CompactGarbler::with_gates(hash, keys, GateCounter::starting_at(start), sink);
    let y = run_op(op, sign, &mut g, &x);
    let gates = g.gates().peek();
    let sink = g.into_sink();
    if let Some(err) = sink.failed {
        return Err(err);
    }
    let y = y?;
    if gates != start + cost.gates_per_element as u64 || sink.rows != cost.rows_per_element as u64 {
        return Err(McuError::PlanMismatch);
    }
    for (slot, w) in slots.iter_mut().zip(y.wires()) {
        *slot = w.clone();
    }
    Ok(())
}

/// The zero labels of one element, unpacked.
fn unpack_bundle(base: &CrtBase, slots: &[CtPacked]) -> Result<Bundle<ZeroLabel>, McuError> {
    let mut wires: heapless::Vec<ZeroLabel, { dash_core::crt::MAX_CRT_PRIMES }> = heapless::Vec::new();
    for (&m, c) in base.moduli().iter().zip(slots) {
        wires.push(ZeroLabel::new(c.unpack(m)?)).map_err(|_| McuError::Capacity)?;
    }
    Ok(Bundle::from_wires(wires)?)
}

impl<const N: usize> Inference<'_, N> {
    /// Elements of the output.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Decodes and **verifies** the evaluator's answer: `outputs × k`
    /// packed labels, element-major (element `o`, residue `t` at `o·k + t`).
    /// Every label must be exactly the label of its wire for some value;
    /// one that is not fails the whole answer with
    /// `Core(AuthenticityCheckFailed)` (every output is checked first).
    pub fn decode<P: Probe>(&self, returned: &[Block], out: &mut [i64], probe: &mut P) -> Result<(), McuError> {
        let k = self.base.len();
        if returned.len() != self.outputs * k || out.len() != self.outputs {
            return Err(McuError::Input);
        }
        let keys = self.slot.0.as_ref().ok_or(McuError::Capacity)?;
        let mut failed = false;
        for (o, v) in out.iter_mut().enumerate() {
            let zero = unpack_bundle(&self.base, &self.acts[o * k..(o + 1) * k])?;
            match keys.decode_bundle(&self.base, &zero, &returned[o * k..(o + 1) * k]) {
                Ok(x) => *v = x as i64,
                Err(Error::AuthenticityCheckFailed) => {
                    failed = true;
                    *v = 0;
                }
                Err(e) => return Err(e.into()),
            }
        }
        probe.mark(Phase::Decode);
        if failed {
            out.fill(0);
            return Err(Error::AuthenticityCheckFailed.into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residues_of_signed_inputs_are_exact() {
        for p in [2u16, 3, 5, 7, 11, 13, 17, 37, 59] {
            let m = Modulus::new(p).unwrap();
            for x in [0i64, 1, -1, 255, -255, 1 << 40, -(1 << 40), i64::MAX, i64::MIN + 1, 123_456_789, -987_654_321] {
                assert_eq!(residue_ct(m, x) as i64, x.rem_euclid(p as i64), "p = {p}, x = {x}");
            }
            for x in -300..300i64 {
                assert_eq!(residue_ct(m, x) as i64, x.rem_euclid(p as i64), "p = {p}, x = {x}");
            }
        }
    }

    /// Lanes pack and unpack every digit, and the 8-bit fold keeps every
    /// lane's residue and the bound the dense layer counts on.
    #[test]
    fn lanes_round_trip_and_fold_keeps_residues() {
        for p in [2u16, 3, 5, 7, 11, 13, 17, 37] {
            let m = Modulus::new(p).unwrap();
            let lanes = lanes_of(p as u32);
            let n = m.digits();
            let mut digits = [0u16; dash_core::MAX_DIGITS];
            for (i, d) in digits[..n].iter_mut().enumerate() {
                *d = (i as u16 * 7 + 3) % p;
            }
            let mut words = [0u32; 64];
            let w = n.div_ceil(lanes);
            to_words(&digits[..n], lanes, &mut words[..w]);
            let mut back = [0u16; dash_core::MAX_DIGITS];
            from_words(&words[..w], m, lanes, &mut back[..n]);
            assert_eq!(back[..n], digits[..n], "p = {p}");
        }
        for (p, s, lo, hi, bound) in [
            (3u32, 6, 0x3f3f_3f3f_u32, 0x0303_0303_u32, 66u32),
            (7, 6, 0x3f3f_3f3f, 0x0303_0303, 66),
            (5, 4, 0x0f0f_0f0f, 0x0f0f_0f0f, 30),
        ] {
            for v in 0..=255u32 {
                let word = v | (255 - v) << 8 | (v / 3) << 16 | (v ^ 0x55) << 24;
                let f = (word & lo) + ((word >> s) & hi);
                for j in 0..4 {
                    let (a, b) = ((word >> (8 * j)) & 0xff, (f >> (8 * j)) & 0xff);
                    assert_eq!(a % p, b % p, "p = {p}, v = {v}, lane {j}");
                    assert!(b <= bound, "p = {p}, v = {v}: folded lane {b} above {bound}");
                }
            }
            // The dense layer folds after `limit` terms of (p-1)^2 and then
            // counts the folded lane as this many terms: never past 255.
            let limit = 255 / ((p - 1) * (p - 1));
            assert!(bound.div_ceil((p - 1) * (p - 1)) < limit, "p = {p}");
        }
    }
}
