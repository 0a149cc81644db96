//! Finding a usable GPU. Never panics: with no driver library, no device, no
//! NVRTC, or a driver that cudarc cannot use, [`probe`] says which.
//!
//! `cudarc` panics when asked for a driver library that does not exist
//! (`CudaContext::new` with no `libcuda.so`), so the libraries are looked
//! for first, and every call into the driver additionally runs under
//! `catch_unwind` (a driver too old for a symbol cudarc loads also panics).

/// The GPU the offload runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// The device's name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    /// Device memory in bytes.
    pub memory_bytes: usize,
}

impl core::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (ma, mi) = self.compute_capability;
        write!(f, "GPU {}: {} (sm_{ma}{mi}, {} MiB)", self.ordinal, self.name, self.memory_bytes >> 20)
    }
}

/// Whether the offload can run here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// A GPU, its driver and NVRTC are all there.
    Usable(DeviceInfo),
    /// Something is missing; the text says what, for the user.
    Unavailable(String),
}

impl Availability {
    /// The device, if usable.
    pub fn device(&self) -> Option<&DeviceInfo> {
        match self {
            Availability::Usable(d) => Some(d),
            Availability::Unavailable(_) => None,
        }
    }

    /// Why the GPU cannot be used (`None` when it can).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Availability::Usable(_) => None,
            Availability::Unavailable(r) => Some(r),
        }
    }
}

/// Looks for GPU 0 (or `$DASH_GPU_DEVICE`). Never panics.
pub fn probe() -> Availability {
    let ordinal = std::env::var("DASH_GPU_DEVICE").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    probe_ordinal(ordinal)
}

/// Looks for GPU `ordinal`. Never panics.
#[cfg(feature = "cuda")]
pub fn probe_ordinal(ordinal: usize) -> Availability {
    use cudarc::driver::{CudaContext, DriverError, sys::cudaError_enum};
    if !crate::cuda::driver_library_present() {
        return Availability::Unavailable("no CUDA driver library (libcuda.so) on this machine".into());
    }
    if !crate::cuda::nvrtc_library_present() {
        return Availability::Unavailable(
            "no NVRTC library (libnvrtc.so) found, so the kernels cannot be compiled \
             (install the CUDA toolkit or the nvidia-cuda-nvrtc-cu12 wheel and put its lib on LD_LIBRARY_PATH)"
                .into(),
        );
    }
    let found = std::panic::catch_unwind(|| -> Result<DeviceInfo, DriverError> {
        let count = CudaContext::device_count()?;
        if ordinal as i64 >= count as i64 {
            return Err(DriverError(cudaError_enum::CUDA_ERROR_NO_DEVICE));
        }
        let ctx = CudaContext::new(ordinal)?;
        Ok(DeviceInfo {
            ordinal,
            name: ctx.name()?,
            compute_capability: ctx.compute_capability()?,
            memory_bytes: ctx.total_mem()?,
        })
    });
    match found {
        Ok(Ok(info)) => Availability::Usable(info),
        Ok(Err(DriverError(cudaError_enum::CUDA_ERROR_NO_DEVICE))) => {
            Availability::Unavailable(format!("the CUDA driver is installed but finds no GPU {ordinal}"))
        }
        Ok(Err(e)) => Availability::Unavailable(format!("the CUDA driver failed: {e:?}")),
        Err(_) => Availability::Unavailable("the CUDA driver library could not be used (too old for cudarc?)".into()),
    }
}

/// Without the `cuda` feature there is never a GPU.
#[cfg(not(feature = "cuda"))]
pub fn probe_ordinal(_ordinal: usize) -> Availability {
    Availability::Unavailable("dash-gpu was built without its `cuda` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_never_panics_and_explains_itself() {
        match probe() {
            Availability::Usable(d) => {
                assert!(!d.name.is_empty());
                assert!(d.memory_bytes > 0);
                assert!(d.to_string().contains("sm_"));
            }
            Availability::Unavailable(why) => assert!(why.len() > 10, "reason too terse: {why}"),
        }
        // An ordinal that cannot exist is reported, not a panic.
        assert!(matches!(probe_ordinal(4096), Availability::Unavailable(_)));
    }
}
