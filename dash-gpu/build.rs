//! Builds the kernels for the host (feature `host-emu`): the same CUDA C
//! sources as the GPU runs, compiled by the C++ compiler with the
//! `DASH_HOST_EMU` shims, so the parity tests check the device code itself.

fn main() {
    let kernels = ["../kernels/linear.cu", "../kernels/projection.cu"];
    for f in kernels.iter().chain(&["../kernels/common.cuh", "../kernels/aes.cuh"]) {
        println!("cargo:rerun-if-changed={f}");
    }
    if std::env::var_os("CARGO_FEATURE_HOST_EMU").is_none() {
        return;
    }
    let mut build = cc::Build::new();
    build.cpp(true).define("DASH_HOST_EMU", None).include("../kernels").flag("-x").flag("c++").opt_level(2);
    build.flag_if_supported("-std=c++17").warnings(true).extra_warnings(true).flag_if_supported("-Wno-unused-function");
    for f in kernels {
        build.file(f);
    }
    build.compile("dash_kernels_emu");
}
