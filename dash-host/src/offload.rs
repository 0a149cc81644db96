//! The engine's device offload: choosing a device (`--device cpu|cuda|auto`)
//! and running a non-linear layer's gadgets on a whole chunk of elements at
//! once, so that every projection gate of the layer goes to the device in
//! one batch.
//!
//! # Batched gadgets
//!
//! A gadget's gates do not depend on data, so the `e`-th element of a layer
//! runs the same sequence of operations as every other, on its own gate
//! identifiers (`first_gate + e·g + local`) and its own rows
//! (`e·c + local_row ..`). [`LaneEvaluator`] is a `dash-core` [`Backend`]
//! whose wire is the label of *every* element of the chunk (a lane per
//! element, a `LabelTensor` row layout): additions and constant products run
//! lane by lane on the host, and each projection (or multiply-by-bit half)
//! gathers its rows from the chunk's material and goes to the device as one
//! [`ProjectionBatch`]. The result equals the per-element
//! [`dash_core::Evaluator`] bit for bit (tested on the host build of the
//! kernels in `tests/offload.rs`).
//!
//! The garbler keeps the CPU path: its projections need the constant-time
//! garbling of `dash-core` (see `docs/GPU.md` on AES tables on a GPU).

use anyhow::Result;
use dash_core::{Backend, Block, Domain, Error, Modulus, OneLabels, Tweak};
use dash_gpu::{Offload, ProjectionBatch};
use rayon::prelude::*;
use std::sync::Arc;

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

/// One wire of a chunk: the label of every element (lane), `lanes × n`
/// digits in a `LabelTensor` row layout.
#[derive(Clone, Debug)]
pub struct LaneWire {
    modulus: Modulus,
    digits: Vec<u16>,
}

impl LaneWire {
    /// A wire from its lanes' digits (`lanes × modulus.digits()`, each
    /// below `p`).
    pub fn new(modulus: Modulus, digits: Vec<u16>) -> Result<LaneWire, Error> {
        if !digits.len().is_multiple_of(modulus.digits()) || digits.iter().any(|&d| d >= modulus.value()) {
            return Err(Error::InvalidDigits);
        }
        Ok(LaneWire { modulus, digits })
    }

    /// The digits, lane after lane.
    pub fn digits(&self) -> &[u16] {
        &self.digits
    }

    fn map2(&self, other: &LaneWire, f: impl Fn(u32, u32, u32) -> u32 + Sync) -> Result<LaneWire, Error> {
        if self.modulus != other.modulus {
            return Err(Error::ModulusMismatch { left: self.modulus.value(), right: other.modulus.value() });
        }
        let p = self.modulus.value() as u32;
        let digits =
            self.digits.par_iter().zip(&other.digits).map(|(&a, &b)| f(a as u32, b as u32, p) as u16).collect();
        Ok(LaneWire { modulus: self.modulus, digits })
    }

    fn map(&self, f: impl Fn(u32, u32) -> u32 + Sync) -> LaneWire {
        let p = self.modulus.value() as u32;
        LaneWire { modulus: self.modulus, digits: self.digits.par_iter().map(|&a| f(a as u32, p) as u16).collect() }
    }
}

/// The evaluating [`Backend`] over lanes: every element of a chunk at once,
/// projections on the device. Element `e`'s gate identifiers start at
/// `first_gate + e·gates_per_element`, and its rows are
/// `rows[e·rows_per_element ..]`, as the garbler wrote them.
pub struct LaneEvaluator<'a, const N: usize> {
    device: &'a dyn Offload,
    ones: &'a OneLabels<N>,
    lanes: usize,
    first_gate: u64,
    gates_per_element: u64,
    rows: &'a [Block],
    rows_per_element: usize,
    /// Gates used so far by each element.
    local_gate: u64,
    /// Rows consumed so far by each element.
    local_row: usize,
    /// The device failure behind an `Error::InvalidParameter` (the
    /// `Backend` error type cannot carry it).
    device_error: Option<dash_gpu::GpuError>,
}

impl<'a, const N: usize> LaneEvaluator<'a, N> {
    /// An evaluator for `lanes` elements whose rows are `rows` (`lanes ×
    /// rows_per_element`).
    pub fn new(
        device: &'a dyn Offload,
        ones: &'a OneLabels<N>,
        lanes: usize,
        first_gate: u64,
        gates_per_element: u64,
        rows: &'a [Block],
        rows_per_element: usize,
    ) -> Self {
        LaneEvaluator {
            device,
            ones,
            lanes,
            first_gate,
            gates_per_element,
            rows,
            rows_per_element,
            local_gate: 0,
            local_row: 0,
            device_error: None,
        }
    }

    /// The device failure, if a batch failed on the device (not on the
    /// material): what to report instead of the gadget's error.
    pub fn take_device_error(&mut self) -> Option<dash_gpu::GpuError> {
        self.device_error.take()
    }

    /// Gates and rows each element used (to check against the plan).
    pub fn used(&self) -> (u64, usize) {
        (self.local_gate, self.local_row)
    }

    fn next_gate(&mut self) -> Result<u64, Error> {
        if self.local_gate >= self.gates_per_element {
            return Err(Error::GateIdsExhausted);
        }
        self.local_gate += 1;
        Ok(self.local_gate - 1)
    }

    /// One projection per lane, with tweaks `(domain, first_gate + e·g + gate, sub)`
    /// and the next `p_in − 1` rows of each element, on the device.
    fn project_batch(
        &mut self,
        input: &LaneWire,
        out: Modulus,
        domain: Domain,
        gate: u64,
        sub: u32,
    ) -> Result<LaneWire, Error> {
        let m = input.modulus.value() as usize - 1;
        let lanes_rows = self.lanes.checked_mul(self.rows_per_element);
        if self.local_row + m > self.rows_per_element || lanes_rows.is_none_or(|r| r > self.rows.len()) {
            return Err(Error::SourceExhausted);
        }
        let mut rows = Vec::with_capacity(self.lanes * m);
        let mut tweaks = Vec::with_capacity(self.lanes);
        for e in 0..self.lanes {
            let start = e * self.rows_per_element + self.local_row;
            rows.extend_from_slice(&self.rows[start..start + m]);
            let id = self.first_gate + e as u64 * self.gates_per_element + gate;
            tweaks.push(Tweak::new(domain, id, sub));
        }
        self.local_row += m;
        let mut digits = vec![0u16; self.lanes * out.digits()];
        let mut batch = ProjectionBatch {
            input_modulus: input.modulus,
            output_modulus: out,
            inputs: &input.digits,
            tweaks: &tweaks,
            rows: &rows,
            out: &mut digits,
        };
        match self.device.projection_eval(&mut batch) {
            Ok(()) => Ok(LaneWire { modulus: out, digits }),
            Err(dash_gpu::GpuError::InvalidRow { .. }) => Err(Error::InvalidLabelEncoding),
            Err(e) => {
                self.device_error = Some(e);
                Err(Error::InvalidParameter)
            }
        }
    }
}

impl<const N: usize> Backend for LaneEvaluator<'_, N> {
    type Wire = LaneWire;

    fn modulus_of(&self, wire: &LaneWire) -> Modulus {
        wire.modulus
    }

    fn constant(&mut self, value: u16, modulus: Modulus) -> Result<LaneWire, Error> {
        let one = self.ones.get(modulus)?.cmul(value);
        Ok(LaneWire { modulus, digits: one.digits().repeat(self.lanes) })
    }

    fn add(&mut self, a: &LaneWire, b: &LaneWire) -> Result<LaneWire, Error> {
        a.map2(b, |x, y, p| (x + y) % p)
    }

    fn sub(&mut self, a: &LaneWire, b: &LaneWire) -> Result<LaneWire, Error> {
        a.map2(b, |x, y, p| (x + p - y) % p)
    }

    fn neg(&mut self, a: &LaneWire) -> Result<LaneWire, Error> {
        Ok(a.map(|d, p| (p - d) % p))
    }

    fn cmul(&mut self, a: &LaneWire, c: u16) -> Result<LaneWire, Error> {
        Ok(a.map(|d, p| d * (c as u32 % p) % p))
    }

    fn project(&mut self, a: &LaneWire, out: Modulus, _table: impl Fn(u16) -> u16) -> Result<LaneWire, Error> {
        if a.modulus.value() > dash_core::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(a.modulus.value()));
        }
        let gate = self.next_gate()?;
        self.project_batch(a, out, Domain::Projection, gate, 0)
    }

    /// The evaluator half of dash-core's multiply-by-bit gate: three
    /// projections (the lifted bit, the correction, the rows keyed by `x`),
    /// then `z + colour(x)·b_lift + t` lane by lane.
    fn mul_bit(&mut self, x: &LaneWire, bit: &LaneWire) -> Result<LaneWire, Error> {
        let p = x.modulus;
        if bit.modulus.value() != 2 {
            return Err(Error::NotABit(bit.modulus.value()));
        }
        if p.value() > dash_core::MAX_PROJECTION_INPUT {
            return Err(Error::ProjectionInputTooLarge(p.value()));
        }
        let gate = self.next_gate()?;
        let b_lift = self.project_batch(bit, p, Domain::MulBit, gate, 0)?;
        let t = self.project_batch(bit, p, Domain::MulBit, gate, 1)?;
        let mut z = self.project_batch(x, p, Domain::MulBit, gate, 2)?;
        let (n, q) = (p.digits(), p.value() as u32);
        z.digits.par_chunks_mut(n).enumerate().for_each(|(e, lane)| {
            let colour = x.digits[e * n] as u32;
            let (bl, tl) = (&b_lift.digits[e * n..(e + 1) * n], &t.digits[e * n..(e + 1) * n]);
            for ((zd, &b), &tv) in lane.iter_mut().zip(bl).zip(tl) {
                *zd = ((*zd as u32 + b as u32 * colour + tv as u32) % q) as u16;
            }
        });
        Ok(z)
    }
}
