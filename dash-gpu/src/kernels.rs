//! The CUDA C sources (`kernels/` at the repository root, embedded at build
//! time), assembled into NVRTC programs, and the PTX cache.
//!
//! NVRTC sees no file system: each program is the shared headers followed
//! by one kernel file, with `DASH_SINGLE_SOURCE` defined so that the files'
//! own `#include`s (there for the host build) drop out. Compiled PTX is
//! cached per (program hash, GPU architecture) in memory and, when a cache
//! folder is set, on disk, so a process or a restart compiles each program
//! once per device kind.

use crate::error::GpuError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

const COMMON: &str = include_str!("../../kernels/common.cuh");
const AES: &str = include_str!("../../kernels/aes.cuh");

/// One kernel source file and the kernels it defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelFile {
    /// File name under `kernels/`.
    pub name: &'static str,
    /// Its text.
    pub source: &'static str,
    /// The `extern "C"` kernels it defines.
    pub entries: &'static [&'static str],
}

/// The linear layers (`kernels/linear.cu`).
pub const LINEAR: KernelFile =
    KernelFile { name: "linear.cu", source: include_str!("../../kernels/linear.cu"), entries: &["dash_conv2d_mod_p"] };

/// Projection gates, AES and the hash (`kernels/projection.cu`).
pub const PROJECTION: KernelFile = KernelFile {
    name: "projection.cu",
    source: include_str!("../../kernels/projection.cu"),
    entries: &["dash_aes_permute", "dash_tccr_hash", "dash_projection_eval", "dash_projection_garble"],
};

/// Every kernel file.
pub const ALL: [KernelFile; 2] = [LINEAR, PROJECTION];

impl KernelFile {
    /// The complete NVRTC program: headers, then the file.
    pub fn program(&self) -> String {
        format!(
            "#define DASH_SINGLE_SOURCE 1\n// ---- common.cuh\n{COMMON}\n// ---- aes.cuh\n{AES}\n// ---- {}\n{}",
            self.name, self.source
        )
    }
}

/// SHA-256 of a program, hex: the cache key together with the architecture.
pub fn program_hash(program: &str) -> String {
    Sha256::digest(program.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Compiled PTX per (program hash, architecture), in memory and optionally
/// on disk.
#[derive(Debug, Default)]
pub struct PtxCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<(String, String), String>>,
}

impl PtxCache {
    /// A cache in memory only.
    pub fn in_memory() -> PtxCache {
        PtxCache::default()
    }

    /// A cache in memory backed by `dir` (created when first written).
    pub fn on_disk(dir: impl Into<PathBuf>) -> PtxCache {
        PtxCache { dir: Some(dir.into()), memory: Mutex::default() }
    }

    /// The default: `$DASH_GPU_CACHE`, else `$XDG_CACHE_HOME/dash-gpu`, else
    /// `$HOME/.cache/dash-gpu`, else memory only.
    pub fn default_location() -> PtxCache {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let dir = env("DASH_GPU_CACHE")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("dash-gpu")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("dash-gpu")));
        PtxCache { dir, memory: Mutex::default() }
    }

    fn file(&self, hash: &str, arch: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{hash}-{arch}.ptx")))
    }

    /// The PTX of `program` for `arch`, compiling it with `compile` only when
    /// neither the memory nor the disk cache has it. A disk entry that cannot
    /// be read is recompiled (and rewritten); a failed write only costs the
    /// next process a compile.
    pub fn get_or_compile(
        &self,
        program: &str,
        arch: &str,
        compile: impl FnOnce(&str) -> Result<String, GpuError>,
    ) -> Result<String, GpuError> {
        let key = (program_hash(program), arch.to_string());
        if let Some(ptx) = self.memory.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(ptx.clone());
        }
        let file = self.file(&key.0, arch);
        let cached = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).filter(|p| p.contains(".entry"));
        let ptx = match cached {
            Some(ptx) => ptx,
            None => {
                let ptx = compile(program)?;
                if let (Some(f), Some(dir)) = (&file, &self.dir) {
                    // Write then rename, so a concurrent reader never sees half a file.
                    let tmp = f.with_extension(format!("tmp{}", std::process::id()));
                    let written = std::fs::create_dir_all(dir)
                        .and_then(|_| std::fs::write(&tmp, &ptx))
                        .and_then(|_| std::fs::rename(&tmp, f));
                    if written.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                }
                ptx
            }
        };
        self.memory.lock().map_err(|_| poisoned())?.insert(key, ptx.clone());
        Ok(ptx)
    }
}

fn poisoned() -> GpuError {
    GpuError::Cuda("the PTX cache lock was poisoned by a panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn programs_are_self_contained_and_name_their_entries() {
        for f in ALL {
            let p = f.program();
            assert!(p.starts_with("#define DASH_SINGLE_SOURCE"));
            for e in f.entries {
                assert!(p.contains(&format!("KERNEL void {e}(")), "{} lacks {e}", f.name);
            }
        }
        assert_ne!(program_hash(&LINEAR.program()), program_hash(&PROJECTION.program()));
        assert_eq!(program_hash("x").len(), 64);
    }

    #[test]
    fn cache_compiles_once_per_program_and_arch_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("dash-gpu-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let compiles = Cell::new(0);
        let compile = |src: &str| {
            compiles.set(compiles.get() + 1);
            Ok(format!(".entry fake // {}", src.len()))
        };
        let cache = PtxCache::on_disk(&dir);
        let a = cache.get_or_compile("prog A", "compute_90", compile).unwrap();
        assert_eq!(cache.get_or_compile("prog A", "compute_90", compile).unwrap(), a);
        assert_eq!(compiles.get(), 1);
        cache.get_or_compile("prog A", "compute_80", compile).unwrap();
        cache.get_or_compile("prog B", "compute_90", compile).unwrap();
        assert_eq!(compiles.get(), 3);
        // A new process: served from disk.
        let again = PtxCache::on_disk(&dir);
        assert_eq!(again.get_or_compile("prog A", "compute_90", compile).unwrap(), a);
        assert_eq!(compiles.get(), 3);
        // A corrupt entry is recompiled, and a compile error is passed on.
        for f in std::fs::read_dir(&dir).unwrap() {
            std::fs::write(f.unwrap().path(), "garbage").unwrap();
        }
        let third = PtxCache::on_disk(&dir);
        third.get_or_compile("prog A", "compute_90", compile).unwrap();
        assert_eq!(compiles.get(), 4);
        let err = third.get_or_compile("prog C", "compute_90", |_| Err(GpuError::Cuda("boom".into())));
        assert!(matches!(err, Err(GpuError::Cuda(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
