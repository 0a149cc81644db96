//! Errors of the offload layer.

/// Why an offloaded operation did not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// Buffers whose lengths do not match the layer or batch they describe.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A size beyond what the kernels index (32-bit grid arithmetic).
    #[error("too large for the device kernels: {0}")]
    TooLarge(String),
    /// A modulus or table the device kernels do not take.
    #[error("unsupported on the device: {0}")]
    Unsupported(String),
    /// A selected row decrypted to no label: tampered or misaligned material.
    #[error("gate {gate}: the selected row decrypts to no label (tampered material)")]
    InvalidRow {
        /// Index of the first failing gate in the batch.
        gate: usize,
    },
    /// No usable GPU (the reason says which part is missing).
    #[error("no usable GPU: {0}")]
    Unavailable(String),
    /// The CUDA driver or NVRTC reported an error.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// The kernel cache on disk could not be read or written.
    #[error("kernel cache: {0}")]
    Cache(#[from] std::io::Error),
}

impl GpuError {
    /// The error of a piece that starts at gate `first` of its batch, with
    /// gate indices counted in the whole batch.
    pub(crate) fn shifted(self, first: usize) -> GpuError {
        match self {
            GpuError::InvalidRow { gate } => GpuError::InvalidRow { gate: first + gate },
            e => e,
        }
    }
}
