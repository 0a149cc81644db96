//! The CUDA backend on a real GPU: every kernel equals the host build of
//! the same kernels (which `tests/parity.rs` pins to dash-core) bit for bit,
//! transfers are counted, and batches are cut to the memory bound. Without a
//! usable GPU each test reports itself skipped with the reason
//! (`dash-gpu: SKIP ...`, counted by `.ci/gpu.sh`).
#![cfg(feature = "cuda")]

use dash_core::projection::{self, projection_rows};
use dash_core::{Block, CrtBase, Delta, Domain, FixedKeyHash, Modulus, SliceSink, Tweak, ZeroLabel};
use dash_gpu::cuda::Gpu;
use dash_gpu::emu::HostEmu;
use dash_gpu::kernels::PtxCache;
use dash_gpu::offload::{ConvGeometry, GarbleBatch, LinearResidue, Offload, ProjectionBatch};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::sync::OnceLock;

fn gpu(test: &str) -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| Gpu::open(0, &PtxCache::default_location()).map_err(|e| e.to_string()));
    match g {
        Ok(g) => Some(g),
        Err(why) => {
            if std::env::var_os("DASH_REQUIRE_GPU").is_some() {
                panic!("DASH_REQUIRE_GPU is set but: {why}");
            }
            eprintln!("dash-gpu: SKIP {test}: {why}");
            None
        }
    }
}

fn below(rng: &mut ChaCha20Rng, p: u16) -> u16 {
    (rng.next_u32() % p as u32) as u16
}

#[test]
fn aes_and_hash_equal_dash_core() {
    let Some(gpu) = gpu("aes_and_hash_equal_dash_core") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let blocks: Vec<Block> =
        (0..100_000).map(|_| Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128)).collect();
    let hash = FixedKeyHash::new();
    let (mut want, mut got) = (blocks.clone(), blocks.clone());
    hash.permute(&mut want);
    gpu.permute(&mut got).unwrap();
    assert_eq!(got, want);
    let tweaks: Vec<Tweak> =
        (0..blocks.len()).map(|i| Tweak::new(Domain::Projection, i as u64 * 7, i as u32)).collect();
    let (mut want, mut got) = (blocks.clone(), blocks);
    hash.hash_batch(&tweaks, &mut want).unwrap();
    gpu.hash(&tweaks, &mut got).unwrap();
    assert_eq!(got, want);
}

fn linear_jobs(rng: &mut ChaCha20Rng, base: &CrtBase, g: &ConvGeometry) -> Vec<(Modulus, [Vec<u16>; 5])> {
    base.moduli()
        .iter()
        .map(|&m| {
            let (p, n) = (m.value(), m.digits());
            let mut v = |len: usize| (0..len).map(|_| below(rng, p)).collect::<Vec<u16>>();
            (m, [v(g.input_len() * n), v(g.weight_len()), v(g.out_channels), v(n), vec![0; g.output_len() * n]])
        })
        .collect()
}

fn run_linear(dev: &dyn Offload, g: &ConvGeometry, data: &mut [(Modulus, [Vec<u16>; 5])]) -> Vec<Vec<u16>> {
    let mut jobs: Vec<LinearResidue<'_>> = data
        .iter_mut()
        .map(|(m, [x, w, b, one, out])| LinearResidue { modulus: *m, x, weights: w, bias: b, one, out })
        .collect();
    dev.linear(g, &mut jobs).unwrap();
    jobs.iter().map(|j| j.out.to_vec()).collect()
}

#[test]
fn linear_layers_equal_the_host_kernels_and_count_transfers() {
    let Some(gpu) = gpu("linear_layers_equal_the_host_kernels_and_count_transfers") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    for k in 5..=9 {
        let base = CrtBase::first(k).unwrap();
        let conv = ConvGeometry {
            in_channels: 16,
            height: 14,
            width: 14,
            out_channels: 32,
            out_height: 7,
            out_width: 7,
            kernel: [5, 5],
            stride: [2, 2],
            pad_top: 2,
            pad_left: 2,
        };
        for g in [ConvGeometry::dense(400, 100), conv] {
            let mut data = linear_jobs(&mut rng, &base, &g);
            let before = gpu.transfers();
            let on_gpu = run_linear(gpu, &g, &mut data);
            let after = gpu.transfers();
            // Per residue: input, weights, bias and one-label up; output down.
            assert_eq!(after.uploads - before.uploads, 4 * k as u64);
            assert_eq!(after.downloads - before.downloads, k as u64);
            let on_host = run_linear(&HostEmu::new(), &g, &mut data);
            assert_eq!(on_gpu, on_host, "k = {k}, {g:?}");
        }
    }
}

#[test]
fn resident_tensors_chain_layers_without_round_trips() {
    let Some(gpu) = gpu("resident_tensors_chain_layers_without_round_trips") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let m = Modulus::new(17).unwrap();
    let n = m.digits();
    let g1 = ConvGeometry::dense(64, 32);
    let g2 = ConvGeometry::dense(32, 10);
    let mut v = |len: usize| (0..len).map(|_| below(&mut rng, 17)).collect::<Vec<u16>>();
    let (x, w1, b1, w2, b2, one) = (v(64 * n), v(64 * 32), v(32), v(320), v(10), v(n));
    let before = gpu.transfers();
    let dx = gpu.upload_tensor(m, &[64, 1, 1], &x).unwrap();
    let h = gpu.conv2d_resident(0, &dx, &g1, &w1, &b1, &one).unwrap();
    let y = gpu.conv2d_resident(0, &h, &g2, &w2, &b2, &one).unwrap();
    let got = gpu.download_tensor(&y).unwrap();
    let after = gpu.transfers();
    assert_eq!(after.uploads - before.uploads, 1 + 3 + 3);
    assert_eq!(after.downloads - before.downloads, 1, "the hidden layer never left the device");
    let mut mid = vec![0u16; 32 * n];
    HostEmu::new()
        .linear(&g1, &mut [LinearResidue { modulus: m, x: &x, weights: &w1, bias: &b1, one: &one, out: &mut mid }])
        .unwrap();
    let mut want = vec![0u16; 10 * n];
    HostEmu::new()
        .linear(&g2, &mut [LinearResidue { modulus: m, x: &mid, weights: &w2, bias: &b2, one: &one, out: &mut want }])
        .unwrap();
    assert_eq!(got, want);
}

#[test]
fn projection_batches_equal_dash_core_within_the_memory_bound() {
    let Some(gpu) = gpu("projection_batches_equal_dash_core_within_the_memory_bound") else { return };
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let hash = FixedKeyHash::new();
    for (p_in, p_out) in [(2u16, 3u16), (7, 5), (13, 17), (251, 2), (919, 3181)] {
        let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
        let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
        let table: Vec<u16> = (0..p_in).map(|_| below(&mut rng, p_out)).collect();
        let gates = 3000;
        let rpg = projection_rows(mi);
        let zeros: Vec<ZeroLabel> = (0..gates).map(|_| ZeroLabel::random(mi, &mut rng)).collect();
        let tweaks: Vec<Tweak> = (0..gates).map(|i| Tweak::new(Domain::Projection, i as u64, 9)).collect();
        let mut rows = vec![Block::ZERO; gates * rpg];
        let mut sink = SliceSink::new(&mut rows);
        let (mut inputs, mut want, mut want_zero) = (Vec::new(), Vec::new(), Vec::new());
        for (z, t) in zeros.iter().zip(&tweaks) {
            let out = projection::garble(&hash, *t, z, &di, &dout, |x| table[x as usize], &mut sink).unwrap();
            let x = below(&mut rng, p_in);
            inputs.extend_from_slice(z.encode(x, &di).unwrap().digits());
            want.extend_from_slice(out.encode(table[x as usize], &dout).unwrap().digits());
            want_zero.extend_from_slice(out.as_label().digits());
        }
        // Once in one piece, once cut to at most 1000 rows on the device.
        for bound in [1usize << 22, 1000] {
            gpu.set_max_batch_rows(bound);
            let before = gpu.transfers();
            let mut out = vec![0u16; gates * mo.digits()];
            let mut batch = ProjectionBatch {
                input_modulus: mi,
                output_modulus: mo,
                inputs: &inputs,
                tweaks: &tweaks,
                rows: &rows,
                out: &mut out,
            };
            gpu.projection_eval(&mut batch).unwrap();
            assert_eq!(out, want, "evaluation, p_in {p_in} p_out {p_out}, bound {bound}");
            let pieces = gates.div_ceil((bound / rpg).max(1)) as u64;
            let t = gpu.transfers();
            assert_eq!(t.uploads - before.uploads, 3 * pieces, "inputs, tweaks, rows per piece");
            assert_eq!(t.downloads - before.downloads, 2 * pieces, "errors, outputs per piece");
            assert!((t.upload_bytes - before.upload_bytes) <= (gates * (rpg * 16 + 16 + 2 * mi.digits())) as u64);
        }
        gpu.set_max_batch_rows(1 << 22);
        if p_in <= dash_gpu::offload::MAX_DEVICE_GARBLE_INPUT {
            let zero_in: Vec<u16> = zeros.iter().flat_map(|z| z.as_label().digits().to_vec()).collect();
            let (mut grows, mut gzero) = (vec![Block::ZERO; gates * rpg], vec![0u16; gates * mo.digits()]);
            let mut gb = GarbleBatch {
                zero_in: &zero_in,
                input_modulus: mi,
                output_modulus: mo,
                delta_in: di.as_label().digits(),
                delta_out: dout.as_label().digits(),
                table: &table,
                tweaks: &tweaks,
                rows: &mut grows,
                zero_out: &mut gzero,
            };
            gpu.projection_garble(&mut gb).unwrap();
            assert_eq!(grows, rows, "garbled rows, p_in {p_in} p_out {p_out}");
            assert_eq!(gzero, want_zero, "output zero labels, p_in {p_in} p_out {p_out}");
        }
    }
}
