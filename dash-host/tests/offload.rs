//! The engine's offload path equals its CPU path bit for bit: networks with
//! dense, strided and padded convolutions, ReLU, sign, max pooling and
//! rescaling, garbled once and evaluated both ways, on CRT bases k = 5..9.
//! The offload device here is the host build of the CUDA kernels
//! (`dash_gpu::emu::HostEmu`), i.e. the device code itself; on a machine
//! with a GPU, `scripts/gpu-check.sh` runs the same networks on it.

use dash_core::CrtBase;
use dash_gpu::emu::HostEmu;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::offload::{DeviceChoice, OffloadHandle, select_device};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn weights(r: &mut ChaCha20Rng, n: usize, b: i64) -> Vec<i64> {
    (0..n).map(|_| (r.next_u64() % (2 * b as u64 + 1)) as i64 - b).collect()
}

fn cnn(k: usize, seed: u64) -> IntNetwork {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let layers = vec![
        IntLayer::Conv2d {
            in_channels: 2,
            out_channels: 3,
            kernel: [3, 3],
            stride: [1, 1],
            padding: Padding { top: 1, left: 1, bottom: 1, right: 1 },
            weights: weights(&mut r, 54, 3),
            bias: weights(&mut r, 3, 5),
        },
        IntLayer::Relu,
        IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
        IntLayer::Conv2d {
            in_channels: 3,
            out_channels: 2,
            kernel: [2, 2],
            stride: [2, 1],
            padding: Padding::valid(),
            weights: weights(&mut r, 24, 2),
            bias: weights(&mut r, 2, 3),
        },
        IntLayer::Rescale { divisor: 5, rounding: Rounding::Nearest },
        IntLayer::Flatten,
        IntLayer::Dense { inputs: 4, outputs: 3, weights: weights(&mut r, 12, 4), bias: weights(&mut r, 3, 4) },
        IntLayer::Sign,
    ];
    IntNetwork::new(vec![2, 8, 4], layers, CrtBase::first(k).unwrap()).unwrap()
}

fn mlp(k: usize, seed: u64) -> IntNetwork {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let layers = vec![
        IntLayer::Dense { inputs: 20, outputs: 9, weights: weights(&mut r, 180, 3), bias: weights(&mut r, 9, 9) },
        IntLayer::Relu,
        IntLayer::Dense { inputs: 9, outputs: 4, weights: weights(&mut r, 36, 3), bias: weights(&mut r, 4, 9) },
    ];
    IntNetwork::new(vec![20], layers, CrtBase::first(k).unwrap()).unwrap()
}

fn check(net: &IntNetwork, seed: u64, device: &OffloadHandle) {
    let cpu = Plan::new(net).unwrap();
    let mut gpu = Plan::new(net).unwrap();
    gpu.set_offload(Some(device.clone()));
    assert!(gpu.offload().is_some());

    // The garbler keeps the CPU path (its labels are secret): the same
    // material, byte for byte, whether or not the plan has a device.
    let (mut m_cpu, mut m_gpu) = (Vec::new(), Vec::new());
    let s_cpu = engine::garble(&cpu, &mut ChaCha20Rng::seed_from_u64(seed), &mut m_cpu).unwrap();
    engine::garble(&gpu, &mut ChaCha20Rng::seed_from_u64(seed), &mut m_gpu).unwrap();
    assert!(m_cpu == m_gpu, "garbled material differs with the offload");

    let mut r = ChaCha20Rng::seed_from_u64(seed + 1);
    let n: usize = net.input_shape.iter().product();
    let x: Vec<i64> = (0..n).map(|_| (r.next_u64() % 31) as i64 - 15).collect();
    let (labels, awaiting) = s_cpu.encode_input(&x).unwrap();
    let out_cpu = engine::evaluate(&cpu, m_cpu.as_slice(), &labels).unwrap().to_blocks();
    let out_gpu = engine::evaluate(&gpu, m_cpu.as_slice(), &labels).unwrap().to_blocks();
    assert_eq!(out_gpu, out_cpu, "output labels differ with the offload");
    // Layers cut into many chunks (a few elements each, one element per
    // chunk at the extreme): the same labels.
    for rows in [1, 2000] {
        let mut chunked = Plan::new(net).unwrap();
        chunked.set_offload(Some(device.clone()));
        chunked.set_offload_chunk_rows(rows);
        let out = engine::evaluate(&chunked, m_cpu.as_slice(), &labels).unwrap().to_blocks();
        assert_eq!(out, out_cpu, "output labels differ with chunks of {rows} rows");
    }
    assert_eq!(awaiting.decode_output(&out_gpu).unwrap(), net.eval_plain(&x).unwrap());

    // Tampered material: the offload path behaves exactly as the CPU path
    // (the same error, or the same output labels when the flipped byte sits
    // in a row this input never opens, or in a tag).
    for at in [m_cpu.len() / 2, m_cpu.len() * 3 / 4, m_cpu.len() - 40] {
        let mut bad = m_cpu.clone();
        bad[at] ^= 0x5a;
        let on_cpu = engine::evaluate(&cpu, bad.as_slice(), &labels).map(|t| t.to_blocks());
        let on_gpu = engine::evaluate(&gpu, bad.as_slice(), &labels).map(|t| t.to_blocks());
        match (on_cpu, on_gpu) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "byte {at}"),
            // The same kind of error: tampered material, never a device failure.
            (Err(a), Err(b)) => {
                assert!(matches!(a, engine::EngineError::Material { .. }), "byte {at}: cpu {a}");
                assert!(matches!(b, engine::EngineError::Material { .. }), "byte {at}: offload {b}");
            }
            (a, b) => panic!("byte {at}: cpu {:?}, offload {:?}", a.is_ok(), b.is_ok()),
        }
    }
}

fn all_networks(device: &OffloadHandle) {
    for k in 5..=9 {
        check(&mlp(k, 10 + k as u64), 100 + k as u64, device);
    }
    for k in [5, 6, 7] {
        check(&cnn(k, 20 + k as u64), 200 + k as u64, device);
    }
}

#[test]
fn offloaded_networks_equal_the_cpu_bit_for_bit() {
    all_networks(&OffloadHandle::new(HostEmu::new()));
}

/// The engine's projection batches cut into the device's small pieces (a
/// few gates each, uneven last pieces), as a GPU with little memory runs
/// them: the same material and outputs.
#[test]
fn offloaded_networks_in_small_pieces_equal_the_cpu() {
    let device = OffloadHandle::new(HostEmu::with_max_batch_rows(97));
    check(&mlp(5, 15), 105, &device);
    check(&cnn(5, 25), 205, &device);
}

/// The same on a real GPU (skipped, with the reason, where there is none).
#[cfg(feature = "cuda")]
#[test]
fn networks_on_the_gpu_equal_the_cpu_bit_for_bit() {
    let opened = dash_gpu::cuda::Gpu::open(0, &dash_gpu::kernels::PtxCache::default_location());
    match opened {
        Ok(gpu) => all_networks(&OffloadHandle::new(gpu)),
        Err(e) if std::env::var_os("DASH_REQUIRE_GPU").is_none() => {
            eprintln!("dash-gpu: SKIP networks_on_the_gpu_equal_the_cpu_bit_for_bit: {e}")
        }
        Err(e) => panic!("DASH_REQUIRE_GPU is set but: {e}"),
    }
}

#[test]
fn device_selection_never_fails() {
    let cpu = select_device(DeviceChoice::Cpu);
    assert!(cpu.offload.is_none());
    assert!(cpu.message.contains("cpu"));
    for choice in [DeviceChoice::Auto, DeviceChoice::Cuda] {
        let s = select_device(choice);
        match &s.offload {
            Some(d) => assert!(s.message.contains(&d.name())),
            None => assert!(s.message.starts_with("device: cpu (") && s.message.contains("running on the CPU")),
        }
    }
}
