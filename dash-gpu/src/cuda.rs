//! The CUDA backend (feature `cuda`): device-resident label tensors,
//! counted host↔device transfers, NVRTC-compiled kernels, and the
//! [`Offload`] implementation the engine calls.
//!
//! Memory is bounded by design: a linear layer holds its input, weights and
//! output on the device (per residue, freed when the call returns); a batch
//! of projection gates is cut into pieces of at most
//! [`Gpu::max_batch_rows`] rows, so material streams through the device a
//! piece at a time and no circuit is ever uploaded whole.

use crate::device::{Availability, DeviceInfo, probe_ordinal};
use crate::error::GpuError;
use crate::kernels::{self, KernelFile, PtxCache};
use crate::offload::{
    ConvGeometry, DEFAULT_MAX_BATCH_ROWS, GATE_THREADS, GarbleBatch, LINEAR_THREADS, LINEAR_TILE, LinearResidue,
    Offload, ProjectionBatch, block_words, blocks_for, tweak_words, words_to_blocks,
};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};
use dash_core::{Block, Modulus};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Whether a CUDA driver library can be loaded (never panics).
pub fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries to dlopen the library names
    // cudarc would use and drops what it opened; loading the NVIDIA driver
    // library runs no initialiser with preconditions on our side.
    #[allow(unsafe_code)]
    let present = unsafe { cudarc::driver::sys::is_culib_present() };
    present
}

/// Whether an NVRTC library can be loaded (never panics).
pub fn nvrtc_library_present() -> bool {
    // SAFETY: as for the driver library: a trial dlopen of libnvrtc.
    #[allow(unsafe_code)]
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    present
}

/// The NVRTC virtual architecture for a compute capability (`None`: let
/// NVRTC choose its default).
pub fn arch_for(compute_capability: (i32, i32)) -> Option<&'static str> {
    Some(match compute_capability {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => return None,
    })
}

/// Compiles one kernel file to PTX with NVRTC (no GPU needed, only
/// libnvrtc). Fails cleanly when NVRTC is missing.
pub fn compile_ptx(file: &KernelFile, arch: Option<&'static str>) -> Result<String, GpuError> {
    compile_program(&file.program(), arch)
}

fn compile_program(program: &str, arch: Option<&'static str>) -> Result<String, GpuError> {
    if !nvrtc_library_present() {
        return Err(GpuError::Unavailable("no NVRTC library (libnvrtc.so) to compile the kernels".into()));
    }
    let opts = CompileOptions { arch, options: vec!["--std=c++17".into()], ..Default::default() };
    let compiled = std::panic::catch_unwind(|| compile_ptx_with_opts(program, opts));
    match compiled {
        Ok(Ok(ptx)) => Ok(ptx.to_src()),
        Ok(Err(e)) => Err(GpuError::Cuda(format!("NVRTC: {e:?}"))),
        Err(_) => Err(GpuError::Unavailable("the NVRTC library could not be used".into())),
    }
}

/// Host↔device copies so far (each direction: how many, how many bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfers {
    /// Host-to-device copies.
    pub uploads: u64,
    /// Bytes copied to the device.
    pub upload_bytes: u64,
    /// Device-to-host copies.
    pub downloads: u64,
    /// Bytes copied from the device.
    pub download_bytes: u64,
}

#[derive(Debug, Default)]
struct TransferCounter {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    downloads: AtomicU64,
    download_bytes: AtomicU64,
}

/// A label tensor in device memory, in the host's layout: one modulus, the
/// `n` digits of element `i` at `[i·n, (i+1)·n)`.
#[derive(Debug)]
pub struct DeviceLabelTensor {
    modulus: Modulus,
    shape: Vec<usize>,
    digits: CudaSlice<u16>,
}

impl DeviceLabelTensor {
    /// The modulus of every label.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Functions {
    conv2d: CudaFunction,
    permute: CudaFunction,
    hash: CudaFunction,
    eval: CudaFunction,
    garble: CudaFunction,
}

/// An open GPU: context, one stream per residue, compiled kernels, and the
/// transfer counter.
pub struct Gpu {
    info: DeviceInfo,
    ctx: Arc<CudaContext>,
    streams: Vec<Arc<CudaStream>>,
    functions: Functions,
    counter: TransferCounter,
    max_batch_rows: AtomicUsize,
}

impl core::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Gpu({})", self.info)
    }
}

fn cuda_err(e: impl core::fmt::Debug) -> GpuError {
    GpuError::Cuda(format!("{e:?}"))
}

/// Streams the GPU keeps: CRT bases use at most this many residues at once
/// (more residues share streams round-robin).
const STREAMS: usize = 16;

impl Gpu {
    /// Opens GPU `ordinal`, compiling (or loading from `cache`) the kernels
    /// for its architecture. Fails with [`GpuError::Unavailable`] and the
    /// reason when there is no usable GPU; never panics.
    pub fn open(ordinal: usize, cache: &PtxCache) -> Result<Gpu, GpuError> {
        let info = match probe_ordinal(ordinal) {
            Availability::Usable(info) => info,
            Availability::Unavailable(why) => return Err(GpuError::Unavailable(why)),
        };
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        let arch = arch_for(info.compute_capability);
        let arch_key = arch.map(str::to_string).unwrap_or_else(|| {
            let (ma, mi) = info.compute_capability;
            format!("default-sm{ma}{mi}")
        });
        let load = |file: &KernelFile| -> Result<Arc<cudarc::driver::CudaModule>, GpuError> {
            let ptx = cache.get_or_compile(&file.program(), &arch_key, |p| compile_program(p, arch))?;
            ctx.load_module(Ptx::from_src(ptx)).map_err(cuda_err)
        };
        let (linear, projection) = (load(&kernels::LINEAR)?, load(&kernels::PROJECTION)?);
        let f = |m: &Arc<cudarc::driver::CudaModule>, name: &str| m.load_function(name).map_err(cuda_err);
        let functions = Functions {
            conv2d: f(&linear, "dash_conv2d_mod_p")?,
            permute: f(&projection, "dash_aes_permute")?,
            hash: f(&projection, "dash_tccr_hash")?,
            eval: f(&projection, "dash_projection_eval")?,
            garble: f(&projection, "dash_projection_garble")?,
        };
        let streams = (0..STREAMS).map(|_| ctx.new_stream().map_err(cuda_err)).collect::<Result<Vec<_>, _>>()?;
        Ok(Gpu {
            info,
            ctx,
            streams,
            functions,
            counter: TransferCounter::default(),
            max_batch_rows: AtomicUsize::new(DEFAULT_MAX_BATCH_ROWS),
        })
    }

    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Most rows of garbled material on the device at once (per batch
    /// piece): 4 Mi rows, 64 MiB, by default.
    pub fn max_batch_rows(&self) -> usize {
        self.max_batch_rows.load(Ordering::Relaxed)
    }

    /// Sets the bound on rows per batch piece (at least one gate's worth is
    /// always allowed).
    pub fn set_max_batch_rows(&self, rows: usize) {
        self.max_batch_rows.store(rows.max(1), Ordering::Relaxed);
    }

    /// The transfers so far.
    pub fn transfers(&self) -> Transfers {
        let c = &self.counter;
        Transfers {
            uploads: c.uploads.load(Ordering::Relaxed),
            upload_bytes: c.upload_bytes.load(Ordering::Relaxed),
            downloads: c.downloads.load(Ordering::Relaxed),
            download_bytes: c.download_bytes.load(Ordering::Relaxed),
        }
    }

    fn stream(&self, i: usize) -> &Arc<CudaStream> {
        &self.streams[i % self.streams.len()]
    }

    /// Every host→device copy goes through here (and is counted).
    fn upload<T: DeviceRepr>(&self, stream: &Arc<CudaStream>, data: &[T]) -> Result<CudaSlice<T>, GpuError> {
        self.counter.uploads.fetch_add(1, Ordering::Relaxed);
        self.counter.upload_bytes.fetch_add(size_of_val(data) as u64, Ordering::Relaxed);
        stream.clone_htod(data).map_err(cuda_err)
    }

    /// Every device→host copy goes through here (and is counted).
    fn download<T: DeviceRepr + Default + Clone>(
        &self,
        stream: &Arc<CudaStream>,
        src: &CudaSlice<T>,
    ) -> Result<Vec<T>, GpuError> {
        self.counter.downloads.fetch_add(1, Ordering::Relaxed);
        self.counter.download_bytes.fetch_add((src.len() * size_of::<T>()) as u64, Ordering::Relaxed);
        stream.clone_dtoh(src).map_err(cuda_err)
    }

    /// Copies a label tensor to the device (one counted upload).
    pub fn upload_tensor(
        &self,
        modulus: Modulus,
        shape: &[usize],
        digits: &[u16],
    ) -> Result<DeviceLabelTensor, GpuError> {
        let len: usize = shape.iter().product();
        if digits.len() != len * modulus.digits() || digits.iter().any(|&d| d >= modulus.value()) {
            return Err(GpuError::Shape(format!(
                "digits do not form a tensor of shape {shape:?} mod {}",
                modulus.value()
            )));
        }
        let digits = self.upload(self.stream(0), digits)?;
        Ok(DeviceLabelTensor { modulus, shape: shape.to_vec(), digits })
    }

    /// Copies a device tensor's digits back (one counted download).
    pub fn download_tensor(&self, t: &DeviceLabelTensor) -> Result<Vec<u16>, GpuError> {
        let s = self.stream(0);
        s.synchronize().map_err(cuda_err)?;
        self.download(s, &t.digits)
    }

    /// A convolution (or dense layer) on a device-resident tensor; the
    /// result stays on the device. `weights`, `bias` and `one` are copied up
    /// (three counted uploads).
    pub fn conv2d_resident(
        &self,
        stream_index: usize,
        x: &DeviceLabelTensor,
        g: &ConvGeometry,
        weights: &[u16],
        bias: &[u16],
        one: &[u16],
    ) -> Result<DeviceLabelTensor, GpuError> {
        let m = x.modulus;
        let n = m.digits();
        if x.len() != g.input_len() {
            return Err(GpuError::Shape(format!("input of {} elements for a layer of {}", x.len(), g.input_len())));
        }
        // The device input was checked when it was uploaded; the host-side
        // buffers are checked here.
        if weights.len() != g.weight_len() || bias.len() != g.out_channels || one.len() != n {
            return Err(GpuError::Shape("weights, bias or one-label of the wrong length".into()));
        }
        if weights.iter().chain(bias).chain(one).any(|&v| v >= m.value()) {
            return Err(GpuError::Shape(format!("a weight is not reduced mod {}", m.value())));
        }
        g.validate(n)?;
        let s = self.stream(stream_index);
        let (w, b, o) = (self.upload(s, weights)?, self.upload(s, bias)?, self.upload(s, one)?);
        let mut y = s.alloc_zeros::<u16>(g.output_len() * n).map_err(cuda_err)?;
        self.launch_conv(s, &x.digits, &w, &b, &o, &mut y, m, g)?;
        Ok(DeviceLabelTensor { modulus: m, shape: vec![g.out_channels, g.out_height, g.out_width], digits: y })
    }

    #[allow(clippy::too_many_arguments)]
    fn launch_conv(
        &self,
        s: &Arc<CudaStream>,
        x: &CudaSlice<u16>,
        w: &CudaSlice<u16>,
        b: &CudaSlice<u16>,
        one: &CudaSlice<u16>,
        y: &mut CudaSlice<u16>,
        m: Modulus,
        g: &ConvGeometry,
    ) -> Result<(), GpuError> {
        let n = m.digits();
        let cols = g.out_height * g.out_width * n;
        let u = |v: usize| v as u32; // ConvGeometry::validate bounded every size
        let args = [
            u(m.value() as usize),
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
        ];
        let cfg = LaunchConfig {
            grid_dim: (blocks_for(cols, LINEAR_TILE), blocks_for(g.out_channels, LINEAR_TILE), 1),
            block_dim: (LINEAR_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut launch = s.launch_builder(&self.functions.conv2d);
        launch.arg(x).arg(w).arg(b).arg(one).arg(y);
        for a in &args {
            launch.arg(a);
        }
        // SAFETY: the argument list matches `dash_conv2d_mod_p`'s signature
        // (five pointers, fourteen u32); the callers checked every buffer's
        // length against the geometry, every size fits the kernel's 32-bit
        // index arithmetic, and the kernel bounds-checks each tap. The block
        // has DASH_LINEAR_THREADS threads as the kernel's phases assume.
        #[allow(unsafe_code)]
        unsafe { launch.launch(cfg) }.map_err(cuda_err)?;
        Ok(())
    }

    /// AES-128 under the fixed key on every block (the device's AES rate).
    pub fn permute(&self, blocks: &mut [Block]) -> Result<(), GpuError> {
        let count = u32::try_from(blocks.len()).map_err(|_| GpuError::TooLarge("blocks".into()))?;
        let s = self.stream(0);
        let input = self.upload(s, &block_words(blocks))?;
        let mut out = s.alloc_zeros::<u64>(blocks.len() * 2).map_err(cuda_err)?;
        let cfg = gate_config(blocks.len());
        let mut launch = s.launch_builder(&self.functions.permute);
        launch.arg(&input).arg(&mut out).arg(&count);
        // SAFETY: `input` and `out` hold 2·count words, all the kernel
        // touches; GATE_THREADS threads per block as the kernel assumes.
        #[allow(unsafe_code)]
        unsafe { launch.launch(cfg) }.map_err(cuda_err)?;
        words_to_blocks(&self.download(s, &out)?, blocks);
        Ok(())
    }

    /// `H(tweaks[i], blocks[i])` in place, on the device.
    pub fn hash(&self, tweaks: &[dash_core::Tweak], blocks: &mut [Block]) -> Result<(), GpuError> {
        if tweaks.len() != blocks.len() {
            return Err(GpuError::Shape("one tweak per block".into()));
        }
        let count = u32::try_from(blocks.len()).map_err(|_| GpuError::TooLarge("blocks".into()))?;
        let s = self.stream(0);
        let (tw, input) = (self.upload(s, &tweak_words(tweaks))?, self.upload(s, &block_words(blocks))?);
        let mut out = s.alloc_zeros::<u64>(blocks.len() * 2).map_err(cuda_err)?;
        let mut launch = s.launch_builder(&self.functions.hash);
        launch.arg(&tw).arg(&input).arg(&mut out).arg(&count);
        // SAFETY: three buffers of 2·count words; GATE_THREADS per block.
        #[allow(unsafe_code)]
        unsafe { launch.launch(gate_config(blocks.len())) }.map_err(cuda_err)?;
        words_to_blocks(&self.download(s, &out)?, blocks);
        Ok(())
    }

    /// One piece of a projection batch (validated, within the piece bound).
    fn eval_piece(&self, b: &mut ProjectionBatch<'_>) -> Result<(), GpuError> {
        let (mi, mo) = (b.input_modulus, b.output_modulus);
        let (n_in, n_out, count) = (mi.digits(), mo.digits(), b.gates());
        let s = self.stream(0);
        let inputs = self.upload(s, b.inputs)?;
        let tweaks = self.upload(s, &tweak_words(b.tweaks))?;
        let rows = self.upload(s, &block_words(b.rows))?;
        let mut out = s.alloc_zeros::<u16>(count * n_out).map_err(cuda_err)?;
        let mut errors = s.alloc_zeros::<u32>(count).map_err(cuda_err)?;
        let args = [count as u32, mi.value() as u32, n_in as u32, mo.value() as u32, n_out as u32];
        let mut launch = s.launch_builder(&self.functions.eval);
        launch.arg(&inputs);
        for a in &args {
            launch.arg(a);
        }
        launch.arg(&tweaks).arg(&rows).arg(&mut out).arg(&mut errors);
        // SAFETY: matches `dash_projection_eval`'s parameters; the batch was
        // validated (inputs count·n_in digits, all below p_in, so a colour
        // selects one of the gate's p_in − 1 rows; tweaks, rows and outputs
        // of the lengths the kernel indexes) and the piece narrows every
        // buffer to the same gates.
        #[allow(unsafe_code)]
        unsafe { launch.launch(gate_config(count)) }.map_err(cuda_err)?;
        let errs = self.download(s, &errors)?;
        if let Some(gate) = errs.iter().position(|&e| e != 0) {
            return Err(GpuError::InvalidRow { gate });
        }
        b.out.copy_from_slice(&self.download(s, &out)?);
        Ok(())
    }

    /// One piece of a garbling batch (validated, within the piece bound).
    fn garble_piece(&self, b: &mut GarbleBatch<'_>) -> Result<(), GpuError> {
        let (mi, mo) = (b.input_modulus, b.output_modulus);
        let (n_in, n_out, rpg, count) = (mi.digits(), mo.digits(), mi.value() as usize - 1, b.gates());
        let s = self.stream(0);
        let (din, dout, table) = (self.upload(s, b.delta_in)?, self.upload(s, b.delta_out)?, self.upload(s, b.table)?);
        let zero_in = self.upload(s, b.zero_in)?;
        let tweaks = self.upload(s, &tweak_words(b.tweaks))?;
        let mut rows = s.alloc_zeros::<u64>(count * rpg * 2).map_err(cuda_err)?;
        let mut zero_out = s.alloc_zeros::<u16>(count * n_out).map_err(cuda_err)?;
        let args = [count as u32, mi.value() as u32, n_in as u32, mo.value() as u32, n_out as u32];
        let mut launch = s.launch_builder(&self.functions.garble);
        launch.arg(&zero_in);
        for a in &args {
            launch.arg(a);
        }
        launch.arg(&din).arg(&dout).arg(&table).arg(&tweaks).arg(&mut rows).arg(&mut zero_out);
        // SAFETY: matches `dash_projection_garble`'s parameters; the batch was
        // validated (p_in <= DASH_GARBLE_MAX_INPUT, every length against the
        // gate count, all digits reduced) and the piece narrows every
        // per-gate buffer to the same gates.
        #[allow(unsafe_code)]
        unsafe { launch.launch(gate_config(count)) }.map_err(cuda_err)?;
        words_to_blocks(&self.download(s, &rows)?, b.rows);
        b.zero_out.copy_from_slice(&self.download(s, &zero_out)?);
        Ok(())
    }
}

fn gate_config(items: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks_for(items, GATE_THREADS), 1, 1),
        block_dim: (GATE_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl Offload for Gpu {
    fn name(&self) -> String {
        self.info.to_string()
    }

    fn linear(&self, g: &ConvGeometry, residues: &mut [LinearResidue<'_>]) -> Result<(), GpuError> {
        for r in residues.iter() {
            r.validate(g)?;
        }
        // Launch every residue on its own stream first, then collect: the
        // residues' copies and kernels overlap.
        let mut pending = Vec::with_capacity(residues.len());
        for (j, r) in residues.iter().enumerate() {
            let s = self.stream(j);
            let x = self.upload(s, r.x)?;
            let (w, b, o) = (self.upload(s, r.weights)?, self.upload(s, r.bias)?, self.upload(s, r.one)?);
            let mut y = s.alloc_zeros::<u16>(r.out.len()).map_err(cuda_err)?;
            self.launch_conv(s, &x, &w, &b, &o, &mut y, r.modulus, g)?;
            pending.push(y);
        }
        for (j, (r, y)) in residues.iter_mut().zip(&pending).enumerate() {
            let host = self.download(self.stream(j), y)?;
            r.out.copy_from_slice(&host);
        }
        self.ctx.synchronize().map_err(cuda_err)?;
        Ok(())
    }

    fn projection_eval(&self, b: &mut ProjectionBatch<'_>) -> Result<(), GpuError> {
        b.in_pieces(self.max_batch_rows(), |p| self.eval_piece(p))
    }

    fn projection_garble(&self, b: &mut GarbleBatch<'_>) -> Result<(), GpuError> {
        b.in_pieces(self.max_batch_rows(), |p| self.garble_piece(p))
    }
}
