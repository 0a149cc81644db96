//! What a device does for the engine: the offload interface, its jobs, and
//! the argument checks every implementation runs before touching memory.

use crate::error::GpuError;
use dash_core::{Block, MAX_PROJECTION_INPUT, Modulus, Tweak};

/// Geometry of a 2-D convolution on `[C, H, W]` label tensors (cross-
/// correlation, dilation 1, zero padding). A dense layer is the 1×1 case
/// ([`ConvGeometry::dense`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input channels `C`.
    pub in_channels: usize,
    /// Input height `H`.
    pub height: usize,
    /// Input width `W`.
    pub width: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Output height.
    pub out_height: usize,
    /// Output width.
    pub out_width: usize,
    /// Kernel `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero rows above the input.
    pub pad_top: usize,
    /// Zero columns left of the input.
    pub pad_left: usize,
}

impl ConvGeometry {
    /// A dense layer `outputs × inputs` as a convolution of a `[inputs, 1, 1]`
    /// input with `outputs` 1×1 kernels.
    pub fn dense(inputs: usize, outputs: usize) -> ConvGeometry {
        ConvGeometry {
            in_channels: inputs,
            height: 1,
            width: 1,
            out_channels: outputs,
            out_height: 1,
            out_width: 1,
            kernel: [1, 1],
            stride: [1, 1],
            pad_top: 0,
            pad_left: 0,
        }
    }

    /// Input elements `C·H·W`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    /// Output elements `OC·OH·OW`.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.out_height * self.out_width
    }

    /// Weights `OC·C·kh·kw`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel[0] * self.kernel[1]
    }

    /// Checks that the layer is not empty and that every size fits the
    /// kernels' 32-bit index arithmetic for labels of `digits` digits. (The
    /// kernel bounds-checks every tap, so any consistent output shape is
    /// memory-safe; which shape a layer has is the network's business.)
    pub fn validate(&self, digits: usize) -> Result<(), GpuError> {
        let g = self;
        if g.kernel.contains(&0) || g.stride.contains(&0) {
            return Err(GpuError::Shape(format!("kernel {:?} and stride {:?} must be positive", g.kernel, g.stride)));
        }
        if g.in_channels == 0 || g.out_channels == 0 || g.out_height == 0 || g.out_width == 0 {
            return Err(GpuError::Shape("empty layer".into()));
        }
        let limit = u32::MAX as usize / 4;
        let big = [
            g.input_len().checked_mul(digits),
            g.output_len().checked_mul(digits),
            Some(g.weight_len()),
            (g.out_height * g.stride[0]).checked_add(g.kernel[0]),
            (g.out_width * g.stride[1]).checked_add(g.kernel[1]),
        ];
        if big.iter().any(|v| v.is_none_or(|v| v > limit)) {
            return Err(GpuError::TooLarge(format!("{g:?}")));
        }
        Ok(())
    }
}

/// One residue of a linear layer: the input label digits (element-major,
/// as in a `LabelTensor`), the weights and biases reduced mod `p`, this
/// party's one-wire label, and the output digits to fill.
#[derive(Debug)]
pub struct LinearResidue<'a> {
    /// The residue's prime.
    pub modulus: Modulus,
    /// Input digits, `input_len × n`.
    pub x: &'a [u16],
    /// Weights mod p, `OC × C × kh × kw` row-major.
    pub weights: &'a [u16],
    /// Biases mod p, one per output channel.
    pub bias: &'a [u16],
    /// The digits of this party's one-wire label (`n`).
    pub one: &'a [u16],
    /// Output digits, `output_len × n`.
    pub out: &'a mut [u16],
}

impl LinearResidue<'_> {
    /// Checks every buffer against the geometry and the modulus (every digit
    /// and weight reduced): what makes the raw kernels memory-safe.
    pub fn validate(&self, g: &ConvGeometry) -> Result<(), GpuError> {
        let n = self.modulus.digits();
        let p = self.modulus.value();
        g.validate(n)?;
        let lens = [
            ("input", self.x.len(), g.input_len() * n),
            ("weights", self.weights.len(), g.weight_len()),
            ("bias", self.bias.len(), g.out_channels),
            ("one-label", self.one.len(), n),
            ("output", self.out.len(), g.output_len() * n),
        ];
        for (what, got, want) in lens {
            if got != want {
                return Err(GpuError::Shape(format!("{what}: {got} values where {want} were expected")));
            }
        }
        let reduced = |s: &[u16]| s.iter().all(|&v| v < p);
        if !(reduced(self.x) && reduced(self.weights) && reduced(self.bias) && reduced(self.one)) {
            return Err(GpuError::Shape(format!("a value is not reduced mod {p}")));
        }
        Ok(())
    }
}

/// A batch of projection gates to evaluate: gate `i` has the input label
/// `inputs[i·n_in ..]`, tweak `tweaks[i]` and the rows
/// `rows[i·(p_in − 1) ..]` (the layout the garbler writes).
#[derive(Debug)]
pub struct ProjectionBatch<'a> {
    /// Modulus of every input label.
    pub input_modulus: Modulus,
    /// Modulus of every output label.
    pub output_modulus: Modulus,
    /// Input label digits, gate after gate.
    pub inputs: &'a [u16],
    /// One tweak per gate.
    pub tweaks: &'a [Tweak],
    /// `p_in − 1` rows per gate.
    pub rows: &'a [Block],
    /// Output label digits, gate after gate.
    pub out: &'a mut [u16],
}

impl ProjectionBatch<'_> {
    /// Gates in the batch.
    pub fn gates(&self) -> usize {
        self.tweaks.len()
    }

    /// Gates `first .. first + count` as a batch of their own (the same
    /// buffers, narrowed). The caller keeps the range inside the batch,
    /// which [`ProjectionBatch::validate`] has checked.
    fn piece(&mut self, first: usize, count: usize) -> ProjectionBatch<'_> {
        let (n_in, n_out) = (self.input_modulus.digits(), self.output_modulus.digits());
        let rpg = self.input_modulus.value() as usize - 1;
        ProjectionBatch {
            input_modulus: self.input_modulus,
            output_modulus: self.output_modulus,
            inputs: &self.inputs[first * n_in..(first + count) * n_in],
            tweaks: &self.tweaks[first..first + count],
            rows: &self.rows[first * rpg..(first + count) * rpg],
            out: &mut self.out[first * n_out..(first + count) * n_out],
        }
    }

    /// Validates the batch, then runs `kernel` on pieces of whole gates of
    /// at most `max_rows` rows (at least one gate each), in order: how
    /// material streams through a device's memory a piece at a time. A
    /// failing gate is reported by its index in the whole batch.
    pub fn in_pieces(
        &mut self,
        max_rows: usize,
        mut kernel: impl FnMut(&mut ProjectionBatch<'_>) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        self.validate()?;
        let (gates, rows_per_gate) = (self.gates(), self.input_modulus.value() as usize - 1);
        for_each_piece(gates, rows_per_gate, max_rows, |first, count| kernel(&mut self.piece(first, count)))
    }

    /// Checks lengths, limits and that every input digit is reduced.
    pub fn validate(&self) -> Result<(), GpuError> {
        let (mi, mo) = (self.input_modulus, self.output_modulus);
        if mi.value() > MAX_PROJECTION_INPUT {
            return Err(GpuError::Unsupported(format!("projection input modulus {}", mi.value())));
        }
        let g = self.gates();
        let rows = g.checked_mul(mi.value() as usize - 1);
        if g > u32::MAX as usize / 2 || rows.is_none_or(|r| r > u32::MAX as usize) {
            return Err(GpuError::TooLarge(format!("{g} gates in one batch")));
        }
        let lens = [
            ("inputs", self.inputs.len(), g * mi.digits()),
            ("rows", self.rows.len(), rows.unwrap_or(0)),
            ("outputs", self.out.len(), g * mo.digits()),
        ];
        for (what, got, want) in lens {
            if got != want {
                return Err(GpuError::Shape(format!("{what}: {got} values where {want} were expected")));
            }
        }
        if self.inputs.iter().any(|&d| d >= mi.value()) {
            return Err(GpuError::Shape(format!("an input digit is not reduced mod {}", mi.value())));
        }
        Ok(())
    }
}

/// A batch of projection gates to garble that share one table and one pair
/// of offsets (the elements of one layer running the same gadget step).
/// Secret inputs: implementations must not keep copies.
pub struct GarbleBatch<'a> {
    /// Input zero labels, gate after gate.
    pub zero_in: &'a [u16],
    /// Input modulus.
    pub input_modulus: Modulus,
    /// Output modulus.
    pub output_modulus: Modulus,
    /// The input offset `Δ_in` (digits).
    pub delta_in: &'a [u16],
    /// The output offset `Δ_out` (digits).
    pub delta_out: &'a [u16],
    /// `φ(0..p_in)`, each value reduced mod `p_out`.
    pub table: &'a [u16],
    /// One tweak per gate.
    pub tweaks: &'a [Tweak],
    /// Output: `p_in − 1` rows per gate.
    pub rows: &'a mut [Block],
    /// Output: the output zero labels, gate after gate.
    pub zero_out: &'a mut [u16],
}

impl core::fmt::Debug for GarbleBatch<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "GarbleBatch({} gates, <secrets redacted>)", self.tweaks.len())
    }
}

/// Largest input modulus the device garbler takes (`DASH_GARBLE_MAX_INPUT`
/// in `kernels/projection.cu`: the table is rotated in thread-local memory).
pub const MAX_DEVICE_GARBLE_INPUT: u16 = 256;

impl GarbleBatch<'_> {
    /// Gates in the batch.
    pub fn gates(&self) -> usize {
        self.tweaks.len()
    }

    /// Gates `first .. first + count` as a batch of their own (the same
    /// buffers, narrowed; the offsets and table are shared). The caller
    /// keeps the range inside the batch, which validation has checked.
    fn piece(&mut self, first: usize, count: usize) -> GarbleBatch<'_> {
        let (n_in, n_out) = (self.input_modulus.digits(), self.output_modulus.digits());
        let rpg = self.input_modulus.value() as usize - 1;
        GarbleBatch {
            zero_in: &self.zero_in[first * n_in..(first + count) * n_in],
            input_modulus: self.input_modulus,
            output_modulus: self.output_modulus,
            delta_in: self.delta_in,
            delta_out: self.delta_out,
            table: self.table,
            tweaks: &self.tweaks[first..first + count],
            rows: &mut self.rows[first * rpg..(first + count) * rpg],
            zero_out: &mut self.zero_out[first * n_out..(first + count) * n_out],
        }
    }

    /// Validates the batch, then runs `kernel` on pieces of whole gates of
    /// at most `max_rows` rows (at least one gate each), in order.
    pub fn in_pieces(
        &mut self,
        max_rows: usize,
        mut kernel: impl FnMut(&mut GarbleBatch<'_>) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        self.validate()?;
        let (gates, rows_per_gate) = (self.gates(), self.input_modulus.value() as usize - 1);
        for_each_piece(gates, rows_per_gate, max_rows, |first, count| kernel(&mut self.piece(first, count)))
    }

    /// Checks lengths, limits and reduction of every input.
    pub fn validate(&self) -> Result<(), GpuError> {
        let (mi, mo) = (self.input_modulus, self.output_modulus);
        if mi.value() > MAX_DEVICE_GARBLE_INPUT {
            return Err(GpuError::Unsupported(format!("device garbling of input modulus {}", mi.value())));
        }
        let g = self.tweaks.len();
        let rows = g.checked_mul(mi.value() as usize - 1);
        if g > u32::MAX as usize / 2 || rows.is_none_or(|r| r > u32::MAX as usize) {
            return Err(GpuError::TooLarge(format!("{g} gates in one batch")));
        }
        let lens = [
            ("zero labels", self.zero_in.len(), g * mi.digits()),
            ("input offset", self.delta_in.len(), mi.digits()),
            ("output offset", self.delta_out.len(), mo.digits()),
            ("table", self.table.len(), mi.value() as usize),
            ("rows", self.rows.len(), rows.unwrap_or(0)),
            ("output zero labels", self.zero_out.len(), g * mo.digits()),
        ];
        for (what, got, want) in lens {
            if got != want {
                return Err(GpuError::Shape(format!("{what}: {got} values where {want} were expected")));
            }
        }
        let ok_in = |s: &[u16]| s.iter().all(|&v| v < mi.value());
        let ok_out = |s: &[u16]| s.iter().all(|&v| v < mo.value());
        if !(ok_in(self.zero_in) && ok_in(self.delta_in) && ok_out(self.delta_out) && ok_out(self.table)) {
            return Err(GpuError::Shape("a value is not reduced".into()));
        }
        Ok(())
    }
}

/// A device that runs the engine's offloaded work. Implemented by the CUDA
/// backend (`cuda::Gpu`, feature `cuda`) and by the host build of the same
/// kernels (`emu::HostEmu`, feature `host-emu`).
pub trait Offload: Send + Sync {
    /// What runs the kernels, for messages (e.g. "NVIDIA H100 (sm_90)").
    fn name(&self) -> String;

    /// A linear layer on every residue of a CRT tensor (the GPU backend runs
    /// each residue on its own stream).
    fn linear(&self, geometry: &ConvGeometry, residues: &mut [LinearResidue<'_>]) -> Result<(), GpuError>;

    /// Evaluates a batch of projection gates (bit-identical to
    /// `dash_core::projection::evaluate_batch`).
    fn projection_eval(&self, batch: &mut ProjectionBatch<'_>) -> Result<(), GpuError>;

    /// Garbles a batch of projection gates (bit-identical to
    /// `dash_core::projection::garble`, gate by gate).
    fn projection_garble(&self, batch: &mut GarbleBatch<'_>) -> Result<(), GpuError>;
}

/// Rows one device piece holds by default (64 MiB of material).
pub const DEFAULT_MAX_BATCH_ROWS: usize = 1 << 22;

/// The piece loop of both batch kinds: `piece(first, count)` for
/// consecutive ranges of whole gates, each at most `max_rows` rows (and at
/// least one gate), in order; a failing gate is renumbered from its piece
/// to the whole batch.
fn for_each_piece(
    gates: usize,
    rows_per_gate: usize,
    max_rows: usize,
    mut piece: impl FnMut(usize, usize) -> Result<(), GpuError>,
) -> Result<(), GpuError> {
    let per = gates_per_piece(max_rows, rows_per_gate);
    let mut first = 0;
    while first < gates {
        let count = per.min(gates - first);
        piece(first, count).map_err(|e| e.shifted(first))?;
        first += count;
    }
    Ok(())
}

/// Whole gates of `rows_per_gate` rows in a piece of at most `max_rows`
/// rows, and at least one.
pub fn gates_per_piece(max_rows: usize, rows_per_gate: usize) -> usize {
    (max_rows / rows_per_gate.max(1)).max(1)
}

/// The blocks of a batch of tweaks as `(lo, hi)` pairs, the kernels' layout.
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) fn tweak_words(tweaks: &[Tweak]) -> Vec<u64> {
    tweaks.iter().flat_map(|t| [t.0 as u64, (t.0 >> 64) as u64]).collect()
}

/// Blocks as `(lo, hi)` pairs.
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) fn block_words(blocks: &[Block]) -> Vec<u64> {
    blocks.iter().flat_map(|b| [b.0 as u64, (b.0 >> 64) as u64]).collect()
}

/// `(lo, hi)` pairs back to blocks.
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) fn words_to_blocks(words: &[u64], out: &mut [Block]) {
    for (b, w) in out.iter_mut().zip(words.chunks_exact(2)) {
        *b = Block(w[0] as u128 | (w[1] as u128) << 64);
    }
}

/// Blocks of `threads` threads covering `count` work items.
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) fn blocks_for(count: usize, threads: usize) -> u32 {
    count.div_ceil(threads) as u32
}

/// Threads per block of the projection kernels (`DASH_GATE_THREADS`).
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) const GATE_THREADS: usize = 128;
/// Threads per block of the linear kernel (`DASH_LINEAR_THREADS`).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) const LINEAR_THREADS: usize = 256;
/// Output tile of the linear kernel (`DASH_TILE_R`, `DASH_TILE_C`).
#[cfg_attr(not(any(feature = "cuda", feature = "host-emu")), allow(dead_code))]
pub(crate) const LINEAR_TILE: usize = 16;
