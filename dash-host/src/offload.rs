//! The engine's device offload: choosing a device (`--device cpu|cuda|auto`)
//! and running a non-linear layer's gadgets on a whole chunk of elements at
//! once, so that every projection gate of the layer goes to the device in
//! one batch.
//!
//! # Batched gadgets
//!
//! A gadget's gates do not depend on data, so the `e`-th element of a layer
//! runs the same sequence of operations as every other, on its own gate
//! identifiers and rows (`engine::Layout`). The engine runs a gadget once
//! for a whole chunk on its lane backend (`engine::lanes`); with a device,
//! the chunk's gates go to [`DeviceRun`], which sends each projection (or
//! multiply-by-bit half) to the device as one [`ProjectionBatch`].
//!
//! The garbler keeps the CPU path: its projections need the constant-time
//! garbling of `dash-core` (see `docs/GPU.md` on AES tables on a GPU).

use crate::engine::lanes::{GateSite, LaneOps, LaneWire};
use dash_core::{Block, Domain, Error, Modulus, OneLabels, Tweak};
use dash_gpu::{Offload, ProjectionBatch};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// A device the engine offloads to (shared, cheap to clone).
#[derive(Clone)]
pub struct OffloadHandle(pub Arc<dyn Offload>);

impl core::fmt::Debug for OffloadHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "OffloadHandle({})", self.0.name())
    }
}

impl OffloadHandle {
    /// Wraps a device.
    pub fn new(device: impl Offload + 'static) -> OffloadHandle {
        OffloadHandle(Arc::new(device))
    }

    /// The device's name.
    pub fn name(&self) -> String {
        self.0.name()
    }
}

/// `--device`: where linear layers and projection batches run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU (all cores).
    Cpu,
    /// The GPU; if none is usable, a message and the CPU.
    Cuda,
    /// The GPU when one is usable, else the CPU; says which it chose.
    #[default]
    Auto,
}

/// What [`select_device`] chose, and a line saying so for the user.
#[derive(Clone, Debug)]
pub struct SelectedDevice {
    /// The device to offload to (`None`: the CPU path).
    pub offload: Option<OffloadHandle>,
    /// "device: …", for standard error.
    pub message: String,
}

/// Resolves `--device`. Never fails and never panics: without a driver, a
/// device, NVRTC or the `cuda` feature, the message says why and the CPU
/// path is chosen.
pub fn select_device(choice: DeviceChoice) -> SelectedDevice {
    if choice == DeviceChoice::Cpu {
        return SelectedDevice { offload: None, message: "device: cpu (as requested)".into() };
    }
    let what = if choice == DeviceChoice::Cuda { "--device cuda" } else { "--device auto" };
    match open_gpu() {
        Ok(gpu) => {
            let message = format!("device: {} ({what})", gpu.name());
            SelectedDevice { offload: Some(gpu), message }
        }
        Err(why) => {
            SelectedDevice { offload: None, message: format!("device: cpu ({what}: {why}; running on the CPU)") }
        }
    }
}

#[cfg(feature = "cuda")]
fn open_gpu() -> Result<OffloadHandle, String> {
    let ordinal = match dash_gpu::probe() {
        dash_gpu::Availability::Usable(d) => d.ordinal,
        dash_gpu::Availability::Unavailable(why) => return Err(why),
    };
    let cache = dash_gpu::kernels::PtxCache::default_location();
    dash_gpu::cuda::Gpu::open(ordinal, &cache).map(OffloadHandle::new).map_err(|e| e.to_string())
}

#[cfg(not(feature = "cuda"))]
fn open_gpu() -> Result<OffloadHandle, String> {
    Err("this dashgc was built without GPU support (build with `--features cuda`)".into())
}

/// The evaluator's gates across a chunk on the device: each projection
/// (and each of the three projections of a multiply-by-bit) gathers every
/// lane's rows from the chunk's material and goes to the device as one
/// [`ProjectionBatch`]. The result equals the CPU lanes bit for bit (tested
/// on the host build of the kernels in `tests/offload.rs`).
pub struct DeviceRun<'a, const N: usize> {
    device: &'a OffloadHandle,
    ones: &'a OneLabels<N>,
    rows: &'a [Block],
    /// Where a device failure (not a material error) is reported: the
    /// gadget only carries `dash_core::Error`.
    failure: &'a Mutex<Option<dash_gpu::GpuError>>,
}

impl<'a, const N: usize> DeviceRun<'a, N> {
    /// Gates of a chunk whose rows are `rows`, on `device`.
    pub fn new(
        device: &'a OffloadHandle,
        ones: &'a OneLabels<N>,
        rows: &'a [Block],
        failure: &'a Mutex<Option<dash_gpu::GpuError>>,
    ) -> Self {
        DeviceRun { device, ones, rows, failure }
    }

    /// One projection per lane with tweaks `(domain, site.gate(lane), sub)`
    /// and `p_in − 1` rows of each lane from `offset` within the gate's
    /// rows, on the device.
    fn batch(
        &self,
        site: GateSite,
        input: &LaneWire,
        out: Modulus,
        domain: Domain,
        sub: u32,
        offset: usize,
    ) -> Result<LaneWire, Error> {
        let m = input.modulus().value() as usize - 1;
        let lanes = input.lanes();
        let stride = site.rows.stride;
        let mut rows = Vec::with_capacity(lanes * m);
        let mut tweaks = Vec::with_capacity(lanes);
        for e in 0..lanes {
            let start = e * stride + site.rows.offset + offset;
            rows.extend_from_slice(self.rows.get(start..start + m).ok_or(Error::SourceExhausted)?);
            tweaks.push(Tweak::new(domain, site.gate(e), sub));
        }
        let mut digits = vec![0u16; lanes * out.digits()];
        let mut batch = ProjectionBatch {
            input_modulus: input.modulus(),
            output_modulus: out,
            inputs: input.digits(),
            tweaks: &tweaks,
            rows: &rows,
            out: &mut digits,
        };
        match self.device.0.projection_eval(&mut batch) {
            Ok(()) => Ok(LaneWire::from_trusted(out, digits)),
            Err(dash_gpu::GpuError::InvalidRow { .. }) => Err(Error::InvalidLabelEncoding),
            Err(e) => {
                if let Ok(mut slot) = self.failure.lock() {
                    *slot = Some(e);
                }
                Err(Error::InvalidParameter)
            }
        }
    }
}

impl<const N: usize> LaneOps for DeviceRun<'_, N> {
    fn one(&self, m: Modulus) -> Result<&[u16], Error> {
        Ok(self.ones.get(m)?.digits())
    }

    fn project(
        &mut self,
        site: GateSite,
        input: &LaneWire,
        out: Modulus,
        _table: impl Fn(u16) -> u16,
    ) -> Result<LaneWire, Error> {
        self.batch(site, input, out, Domain::Projection, 0, 0)
    }

    /// The evaluator half of dash-core's multiply-by-bit gate: three
    /// projections (the lifted bit, the correction, the rows keyed by `x`),
    /// then `z + colour(x)·b_lift + t` lane by lane.
    fn mul_bit(&mut self, site: GateSite, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error> {
        let p = x.modulus();
        let b_lift = self.batch(site, bit, p, Domain::MulBit, 0, 0)?;
        let t = self.batch(site, bit, p, Domain::MulBit, 1, 1)?;
        let z = self.batch(site, x, p, Domain::MulBit, 2, 2)?;
        let n = p.digits();
        let mut digits = z.digits().to_vec();
        digits.par_chunks_mut(n).enumerate().for_each(|(e, lane)| {
            let colour = x.digits()[e * n];
            let (bl, tl) = (&b_lift.digits()[e * n..(e + 1) * n], &t.digits()[e * n..(e + 1) * n]);
            for ((zd, &b), &tv) in lane.iter_mut().zip(bl).zip(tl) {
                *zd = p.add(p.mul_add(b, colour, *zd), tv);
            }
        });
        Ok(LaneWire::from_trusted(p, digits))
    }
}
