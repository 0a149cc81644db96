//! Every kernel compiles to PTX through NVRTC, for every architecture the
//! backend targets. Needs libnvrtc (not a GPU): CI installs the
//! `nvidia-cuda-nvrtc-cu12` wheel (`.ci/gpu.sh`). Without it the test
//! reports itself skipped with the reason.
#![cfg(feature = "cuda")]

use dash_gpu::cuda::{arch_for, compile_ptx, nvrtc_library_present};
use dash_gpu::kernels::ALL;

#[test]
fn every_kernel_compiles_to_ptx() {
    if !nvrtc_library_present() {
        if std::env::var_os("DASH_REQUIRE_NVRTC").is_some() {
            panic!("DASH_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)");
        }
        eprintln!("dash-gpu: SKIP every_kernel_compiles_to_ptx: no libnvrtc on this machine");
        return;
    }
    for arch in [None, arch_for((7, 5)), arch_for((8, 0)), arch_for((8, 9)), arch_for((9, 0))] {
        for file in ALL {
            let ptx = compile_ptx(&file, arch).unwrap_or_else(|e| panic!("{} for {arch:?}: {e}", file.name));
            for entry in file.entries {
                assert!(ptx.contains(&format!(".entry {entry}(")), "{} lacks .entry {entry} for {arch:?}", file.name);
            }
            if let Some(a) = arch {
                let sm = a.trim_start_matches("compute_");
                assert!(ptx.contains(&format!(".target sm_{sm}")), "{} not built for {a}", file.name);
            }
            eprintln!("dash-gpu: {} -> PTX for {} ({} bytes)", file.name, arch.unwrap_or("NVRTC default"), ptx.len());
        }
    }
    // A program that does not compile is an error, not a panic.
    let broken = dash_gpu::kernels::KernelFile { name: "broken.cu", source: "KERNEL void f( {", entries: &[] };
    assert!(compile_ptx(&broken, None).is_err());
}
