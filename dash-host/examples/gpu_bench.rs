//! GPU benchmarks (feature `cuda`; run by `scripts/gpu-check.sh`):
//!
//! * fixed-key AES blocks per second, GPU vs one CPU core;
//! * evaluated projection gates per second, GPU vs one CPU core (dash-core's
//!   batch evaluator), transfers included;
//! * online (evaluation) time of whole networks on the CPU (all cores) and
//!   on the GPU, with the output labels checked equal bit for bit:
//!   the SecureML MLP (k = 8) and DeepSecure CNN (k = 9) shapes of the CPU
//!   figures and, with `--minionn`, a network of MiniONN-CIFAR's shape
//!   (random weights: timing, not accuracy).
//!
//! Prints a table, then one JSON object as the last line.
//!
//! ```text
//! cargo run --release -p dash-host --features cuda --example gpu_bench [-- --minionn]
//! ```
//!
//! `-- --emu` runs the network part on the host build of the kernels
//! instead (a check of this program without a GPU; its times mean nothing).

use anyhow::{Context, Result};
use dash_core::projection::{self, projection_rows};
use dash_core::{
    Block, CrtBase, Delta, Domain, FixedKeyHash, Label, Modulus, SliceSink, SliceSource, Tweak, ZeroLabel,
};
use dash_gpu::cuda::Gpu;
use dash_gpu::kernels::PtxCache;
use dash_gpu::{Offload, ProjectionBatch};
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding};
use dash_host::offload::OffloadHandle;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::Instant;

fn secs(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

fn conv(r: &mut ChaCha20Rng, c: usize, oc: usize, k: usize, pad: usize) -> IntLayer {
    let mut w = |n: usize| (0..n).map(|_| (r.next_u64() % 7) as i64 - 3).collect::<Vec<_>>();
    IntLayer::Conv2d {
        in_channels: c,
        out_channels: oc,
        kernel: [k, k],
        stride: [1, 1],
        padding: Padding { top: pad, left: pad, bottom: pad, right: pad },
        weights: w(oc * c * k * k),
        bias: w(oc),
    }
}

fn dense(r: &mut ChaCha20Rng, i: usize, o: usize) -> IntLayer {
    let mut w = |n: usize| (0..n).map(|_| (r.next_u64() % 7) as i64 - 3).collect::<Vec<_>>();
    IntLayer::Dense { inputs: i, outputs: o, weights: w(i * o), bias: w(o) }
}

/// The SecureML MLP's shape (784-128-128-10, ReLU).
fn mlp(k: usize) -> Result<IntNetwork> {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    let layers =
        vec![dense(&mut r, 784, 128), IntLayer::Relu, dense(&mut r, 128, 128), IntLayer::Relu, dense(&mut r, 128, 10)];
    IntNetwork::new(vec![784], layers, CrtBase::first(k)?)
}

/// The DeepSecure CNN's shape (conv 4×4 stride 2, 5 channels, ReLU, FC
/// 845→100, ReLU, FC 10), as in `benches/layers.rs`.
fn deepsecure(k: usize) -> Result<IntNetwork> {
    let mut r = ChaCha20Rng::seed_from_u64(3);
    let mut c = conv(&mut r, 1, 5, 4, 0);
    if let IntLayer::Conv2d { stride, .. } = &mut c {
        *stride = [2, 2];
    }
    let layers =
        vec![c, IntLayer::Relu, IntLayer::Flatten, dense(&mut r, 845, 100), IntLayer::Relu, dense(&mut r, 100, 10)];
    IntNetwork::new(vec![1, 28, 28], layers, CrtBase::first(k)?)
}

/// MiniONN's CIFAR-10 network's shape (7 conv layers, 2 mean pools as sum
/// pools, ReLU, one dense layer).
fn minionn(k: usize) -> Result<IntNetwork> {
    let mut r = ChaCha20Rng::seed_from_u64(2);
    let pool = || IntLayer::SumPool { kernel: [2, 2], stride: [2, 2] };
    let layers = vec![
        conv(&mut r, 3, 64, 3, 1),
        IntLayer::Relu,
        conv(&mut r, 64, 64, 3, 1),
        IntLayer::Relu,
        pool(),
        conv(&mut r, 64, 64, 3, 1),
        IntLayer::Relu,
        conv(&mut r, 64, 64, 3, 1),
        IntLayer::Relu,
        pool(),
        conv(&mut r, 64, 64, 3, 1),
        IntLayer::Relu,
        conv(&mut r, 64, 64, 1, 0),
        IntLayer::Relu,
        conv(&mut r, 64, 16, 1, 0),
        IntLayer::Relu,
        IntLayer::Flatten,
        dense(&mut r, 1024, 10),
    ];
    IntNetwork::new(vec![3, 32, 32], layers, CrtBase::first(k)?)
}

fn network_online(
    name: &str,
    net: &IntNetwork,
    gpu: &OffloadHandle,
    json: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let cpu_plan = Plan::new(net)?;
    let mut gpu_plan = Plan::new(net)?;
    gpu_plan.set_offload(Some(gpu.clone()));
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut material = Vec::with_capacity(cpu_plan.material_bytes() as usize + 4096);
    let t = Instant::now();
    let session = engine::garble(&cpu_plan, &mut rng, &mut material)?;
    let garble = t.elapsed().as_secs_f64();
    let n: usize = net.input_shape.iter().product();
    let x: Vec<i64> = (0..n).map(|i| (i as i64 * 37 % 255) - 127).collect();
    let (labels, awaiting) = session.encode_input(&x)?;
    // One warm-up run each (thread pools, kernel cache, first-touch memory).
    engine::evaluate(&gpu_plan, material.as_slice(), &labels)?;
    let mut out_cpu = Vec::new();
    let cpu = secs(|| {
        out_cpu = engine::evaluate(&cpu_plan, material.as_slice(), &labels)?.to_blocks();
        Ok(())
    })?;
    let mut out_gpu = Vec::new();
    let on_gpu = secs(|| {
        out_gpu = engine::evaluate(&gpu_plan, material.as_slice(), &labels)?.to_blocks();
        Ok(())
    })?;
    anyhow::ensure!(out_cpu == out_gpu, "{name}: GPU output labels differ from the CPU's");
    anyhow::ensure!(awaiting.decode_output(&out_gpu)? == net.eval_plain(&x)?, "{name}: wrong result");
    println!(
        "{name:<12} k={} rows {:>11}  garble (CPU) {garble:8.3} s  online CPU {cpu:8.3} s  online {} {on_gpu:8.3} s  (x{:.1})",
        net.base.len(),
        cpu_plan.total_rows(),
        if gpu.name().starts_with("host emulation") { "emu" } else { "GPU" },
        cpu / on_gpu
    );
    json.insert(format!("{name}_online_cpu_s"), cpu.into());
    json.insert(format!("{name}_online_gpu_s"), on_gpu.into());
    json.insert(format!("{name}_garble_cpu_s"), garble.into());
    json.insert(format!("{name}_rows"), cpu_plan.total_rows().into());
    Ok(())
}

fn main() -> Result<()> {
    let minionn_too = std::env::args().any(|a| a == "--minionn");
    if std::env::args().any(|a| a == "--emu") {
        // A dry run of the network part on the host build of the kernels
        // (no GPU needed; timings meaningless, results checked).
        let emu = OffloadHandle::new(dash_gpu::emu::HostEmu::new());
        let mut json = serde_json::Map::new();
        network_online("mlp_k8", &mlp(8)?, &emu, &mut json)?;
        network_online("deepsecure_k9", &deepsecure(9)?, &emu, &mut json)?;
        println!("{}", serde_json::Value::Object(json));
        return Ok(());
    }
    let gpu = match Gpu::open(0, &PtxCache::default_location()) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            println!("gpu_bench: SKIP: {e}");
            return Ok(());
        }
    };
    println!("gpu_bench on {}", gpu.info());
    let mut json = serde_json::Map::new();
    json.insert("device".into(), gpu.info().to_string().into());
    let hash = FixedKeyHash::new();
    let mut rng = ChaCha20Rng::seed_from_u64(3);

    // AES.
    let n = 1 << 22;
    let mut blocks: Vec<Block> =
        (0..n).map(|_| Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128)).collect();
    let mut cpu_blocks = blocks[..1 << 20].to_vec();
    let cpu_aes = (1 << 20) as f64
        / secs(|| {
            hash.permute(&mut cpu_blocks);
            Ok(())
        })?;
    gpu.permute(&mut blocks[..1024]).context("warm-up")?;
    let gpu_aes = n as f64 / secs(|| Ok(gpu.permute(&mut blocks)?))?;
    println!(
        "AES blocks/s: CPU 1 core {cpu_aes:.3e}, GPU {gpu_aes:.3e} (x{:.1}, transfers included)",
        gpu_aes / cpu_aes
    );
    json.insert("aes_blocks_per_s_cpu_core".into(), cpu_aes.into());
    json.insert("aes_blocks_per_s_gpu".into(), gpu_aes.into());

    // Projection gates: p_in = 17 (a CRT residue) to p_out = 2 (a sign bit).
    let (mi, mo) = (Modulus::new(17)?, Modulus::new(2)?);
    let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
    let gates = 1 << 20;
    let rpg = projection_rows(mi);
    let mut rows = vec![Block::ZERO; gates * rpg];
    let mut sink = SliceSink::new(&mut rows);
    let mut inputs = Vec::with_capacity(gates * mi.digits());
    let mut labels = Vec::with_capacity(gates);
    let tweaks: Vec<Tweak> = (0..gates as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
    for t in &tweaks {
        let z = ZeroLabel::random(mi, &mut rng);
        projection::garble(&hash, *t, &z, &di, &dout, |x| (x > 8) as u16, &mut sink)?;
        let l = z.encode((rng.next_u32() % 17) as u16, &di)?;
        inputs.extend_from_slice(l.digits());
        labels.push(l);
    }
    let cpu_gates = 1 << 18;
    let mut outs = vec![Label::zero(mo); cpu_gates];
    let cpu_rate = cpu_gates as f64
        / secs(|| {
            projection::evaluate_batch(
                &hash,
                &tweaks[..cpu_gates],
                &labels[..cpu_gates],
                mo,
                &mut SliceSource::new(&rows),
                &mut outs,
            )?;
            Ok(())
        })?;
    let mut out = vec![0u16; gates * mo.digits()];
    let mut run = || -> Result<()> {
        let mut b = ProjectionBatch {
            input_modulus: mi,
            output_modulus: mo,
            inputs: &inputs,
            tweaks: &tweaks,
            rows: &rows,
            out: &mut out,
        };
        gpu.projection_eval(&mut b)?;
        Ok(())
    };
    run()?;
    let gpu_rate = gates as f64 / secs(&mut run)?;
    let same = outs.iter().enumerate().all(|(i, l)| l.digits() == &out[i * mo.digits()..(i + 1) * mo.digits()]);
    anyhow::ensure!(same, "GPU projection outputs differ from dash-core's");
    println!(
        "projection gates/s (17 -> 2): CPU 1 core {cpu_rate:.3e}, GPU {gpu_rate:.3e} (x{:.1}; target x50, transfers included)",
        gpu_rate / cpu_rate
    );
    json.insert("projection_gates_per_s_cpu_core".into(), cpu_rate.into());
    json.insert("projection_gates_per_s_gpu".into(), gpu_rate.into());
    drop(rows);

    let handle = OffloadHandle(gpu.clone() as Arc<dyn Offload>);
    // The networks of the CPU figures (BENCHMARKS.md "Whole networks").
    network_online("mlp_k8", &mlp(8)?, &handle, &mut json)?;
    network_online("deepsecure_k9", &deepsecure(9)?, &handle, &mut json)?;
    if minionn_too {
        network_online("minionn_k6", &minionn(6)?, &handle, &mut json)?;
    }
    let t = gpu.transfers();
    println!(
        "transfers: {} up ({} MiB), {} down ({} MiB)",
        t.uploads,
        t.upload_bytes >> 20,
        t.downloads,
        t.download_bytes >> 20
    );
    println!("{}", serde_json::Value::Object(json));
    Ok(())
}
