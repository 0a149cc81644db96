//! The kernels built for the host (feature `host-emu`).
//!
//! `build.rs` compiles `kernels/*.cu` with the C++ compiler and the
//! `DASH_HOST_EMU` shims of `kernels/common.cuh`: every `__global__` kernel
//! becomes a C function that loops over the grid and runs each block's
//! phases thread by thread. [`HostEmu`] calls them with exactly the
//! arguments and grid the CUDA backend launches with, so a parity test
//! against `dash-core` here is a test of the device code. Single-threaded and
//! slow: for tests, not for inference.
#![allow(unsafe_code)]

use crate::error::GpuError;
use crate::offload::{
    ConvGeometry, DEFAULT_MAX_BATCH_ROWS, GATE_THREADS, GarbleBatch, LINEAR_TILE, LinearResidue, Offload,
    ProjectionBatch, block_words, blocks_for, tweak_words, words_to_blocks,
};
use dash_core::Block;

mod ffi {
    // Signatures of kernels/*.cu under DASH_HOST_EMU: the grid (x, y, z)
    // first, then the kernel's own parameters.
    unsafe extern "C" {
        pub fn dash_aes_permute(gx: u32, gy: u32, gz: u32, input: *const u64, out: *mut u64, count: u32);
        pub fn dash_tccr_hash(
            gx: u32,
            gy: u32,
            gz: u32,
            tweaks: *const u64,
            input: *const u64,
            out: *mut u64,
            count: u32,
        );
        pub fn dash_projection_eval(
            gx: u32,
            gy: u32,
            gz: u32,
            input: *const u16,
            count: u32,
            p_in: u32,
            n_in: u32,
            p_out: u32,
            n_out: u32,
            tweaks: *const u64,
            rows: *const u64,
            out: *mut u16,
            errors: *mut u32,
        );
        pub fn dash_projection_garble(
            gx: u32,
            gy: u32,
            gz: u32,
            zero_in: *const u16,
            count: u32,
            p_in: u32,
            n_in: u32,
            p_out: u32,
            n_out: u32,
            delta_in: *const u16,
            delta_out: *const u16,
            table: *const u16,
            tweaks: *const u64,
            rows: *mut u64,
            zero_out: *mut u16,
        );
        pub fn dash_conv2d_mod_p(
            gx: u32,
            gy: u32,
            gz: u32,
            x: *const u16,
            w: *const u16,
            bias: *const u16,
            one: *const u16,
            y: *mut u16,
            p: u32,
            n: u32,
            oc: u32,
            c: u32,
            h: u32,
            w_: u32,
            oh: u32,
            ow: u32,
            kh: u32,
            kw: u32,
            sh: u32,
            sw: u32,
            top: u32,
            left: u32,
        );
    }
}

/// The host build of the kernels, behind the same [`Offload`] interface as
/// the GPU, cutting projection batches into pieces the same way
/// ([`ProjectionBatch::in_pieces`]), so parity tests with a small bound run
/// the device's piece loop too.
#[derive(Clone, Copy, Debug)]
pub struct HostEmu {
    max_batch_rows: usize,
}

impl Default for HostEmu {
    fn default() -> HostEmu {
        HostEmu::new()
    }
}

impl HostEmu {
    /// The emulation with the GPU's default piece bound.
    pub fn new() -> HostEmu {
        HostEmu { max_batch_rows: DEFAULT_MAX_BATCH_ROWS }
    }

    /// The emulation with pieces of at most `rows` rows (at least one gate
    /// each), as `Gpu::set_max_batch_rows`.
    pub fn with_max_batch_rows(rows: usize) -> HostEmu {
        HostEmu { max_batch_rows: rows.max(1) }
    }

    /// The bound on rows per piece.
    pub fn max_batch_rows(&self) -> usize {
        self.max_batch_rows
    }

    /// AES-128 under the fixed key on every block (`dash_aes_permute`).
    pub fn permute(&self, blocks: &mut [Block]) -> Result<(), GpuError> {
        let count = u32::try_from(blocks.len()).map_err(|_| GpuError::TooLarge("blocks".into()))?;
        let input = block_words(blocks);
        let mut out = vec![0u64; input.len()];
        // SAFETY: `input` and `out` hold 2·count words each, which is all the
        // kernel reads or writes for `count` blocks.
        unsafe {
            ffi::dash_aes_permute(blocks_for(blocks.len(), GATE_THREADS), 1, 1, input.as_ptr(), out.as_mut_ptr(), count)
        };
        words_to_blocks(&out, blocks);
        Ok(())
    }

    /// `H(tweaks[i], blocks[i])` in place (`dash_tccr_hash`).
    pub fn hash(&self, tweaks: &[dash_core::Tweak], blocks: &mut [Block]) -> Result<(), GpuError> {
        if tweaks.len() != blocks.len() {
            return Err(GpuError::Shape("one tweak per block".into()));
        }
        let count = u32::try_from(blocks.len()).map_err(|_| GpuError::TooLarge("blocks".into()))?;
        let (tw, input) = (tweak_words(tweaks), block_words(blocks));
        let mut out = vec![0u64; input.len()];
        // SAFETY: all three buffers hold 2·count words.
        unsafe {
            ffi::dash_tccr_hash(
                blocks_for(blocks.len(), GATE_THREADS),
                1,
                1,
                tw.as_ptr(),
                input.as_ptr(),
                out.as_mut_ptr(),
                count,
            )
        };
        words_to_blocks(&out, blocks);
        Ok(())
    }
}

impl Offload for HostEmu {
    fn name(&self) -> String {
        "host emulation of the CUDA kernels".into()
    }

    fn linear(&self, g: &ConvGeometry, residues: &mut [LinearResidue<'_>]) -> Result<(), GpuError> {
        for r in residues.iter() {
            r.validate(g)?;
        }
        for r in residues.iter_mut() {
            let n = r.modulus.digits();
            let cols = g.out_height * g.out_width * n;
            let u = |v: usize| v as u32; // validate() bounded every size
            // SAFETY: validate() checked every buffer's length against the
            // geometry and that every size fits the kernel's 32-bit index
            // arithmetic; the kernel bounds-checks each tap against H and W
            // and writes only the OC·OH·OW·n output digits.
            unsafe {
                ffi::dash_conv2d_mod_p(
                    blocks_for(cols, LINEAR_TILE),
                    blocks_for(g.out_channels, LINEAR_TILE),
                    1,
                    r.x.as_ptr(),
                    r.weights.as_ptr(),
                    r.bias.as_ptr(),
                    r.one.as_ptr(),
                    r.out.as_mut_ptr(),
                    u(r.modulus.value() as usize),
                    u(n),
                    u(g.out_channels),
                    u(g.in_channels),
                    u(g.height),
                    u(g.width),
                    u(g.out_height),
                    u(g.out_width),
                    u(g.kernel[0]),
                    u(g.kernel[1]),
                    u(g.stride[0]),
                    u(g.stride[1]),
                    u(g.pad_top),
                    u(g.pad_left),
                )
            };
        }
        Ok(())
    }

    fn projection_eval(&self, b: &mut ProjectionBatch<'_>) -> Result<(), GpuError> {
        b.in_pieces(self.max_batch_rows, eval_piece)
    }

    fn projection_garble(&self, b: &mut GarbleBatch<'_>) -> Result<(), GpuError> {
        b.in_pieces(self.max_batch_rows, garble_piece)
    }
}

/// One validated piece of a projection batch through `dash_projection_eval`.
fn eval_piece(b: &mut ProjectionBatch<'_>) -> Result<(), GpuError> {
    let gates = b.gates();
    let (tw, rows) = (tweak_words(b.tweaks), block_words(b.rows));
    let mut errors = vec![0u32; gates];
    let (mi, mo) = (b.input_modulus, b.output_modulus);
    // SAFETY: `in_pieces` validated the whole batch, and a piece narrows
    // every per-gate buffer to the same gates: validate() checked inputs (gates·n_in digits, all below
    // p_in, so each colour selects one of the gate's p_in − 1 rows), rows
    // (gates·(p_in − 1) blocks), tweaks and outputs (gates·n_out digits);
    // `errors` has one slot per gate.
    unsafe {
        ffi::dash_projection_eval(
            blocks_for(gates, GATE_THREADS),
            1,
            1,
            b.inputs.as_ptr(),
            gates as u32,
            mi.value() as u32,
            mi.digits() as u32,
            mo.value() as u32,
            mo.digits() as u32,
            tw.as_ptr(),
            rows.as_ptr(),
            b.out.as_mut_ptr(),
            errors.as_mut_ptr(),
        )
    };
    match errors.iter().position(|&e| e != 0) {
        Some(gate) => Err(GpuError::InvalidRow { gate }),
        None => Ok(()),
    }
}

/// One validated piece of a garbling batch through `dash_projection_garble`.
fn garble_piece(b: &mut GarbleBatch<'_>) -> Result<(), GpuError> {
    let gates = b.tweaks.len();
    let tw = tweak_words(b.tweaks);
    let mut rows = vec![0u64; b.rows.len() * 2];
    let (mi, mo) = (b.input_modulus, b.output_modulus);
    // SAFETY: `in_pieces` validated the whole batch, and a piece narrows
    // every per-gate buffer to the same gates: validate() checked every length against the gate count and
    // moduli (p_in <= DASH_GARBLE_MAX_INPUT) and that every digit and
    // table entry is reduced; `rows` holds 2 words per row.
    unsafe {
        ffi::dash_projection_garble(
            blocks_for(gates, GATE_THREADS),
            1,
            1,
            b.zero_in.as_ptr(),
            gates as u32,
            mi.value() as u32,
            mi.digits() as u32,
            mo.value() as u32,
            mo.digits() as u32,
            b.delta_in.as_ptr(),
            b.delta_out.as_ptr(),
            b.table.as_ptr(),
            tw.as_ptr(),
            rows.as_mut_ptr(),
            b.zero_out.as_mut_ptr(),
        )
    };
    words_to_blocks(&rows, b.rows);
    Ok(())
}
