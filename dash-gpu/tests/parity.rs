//! Bit-for-bit parity of the kernels' device code (built for the host by
//! `build.rs`, feature `host-emu`) with dash-core and with a plaintext
//! reference of the linear layers. No GPU needed: this is the device code
//! itself, run thread by thread on the CPU.

use dash_core::projection::{self, projection_rows};
use dash_core::{
    Block, CrtBase, Delta, Domain, FixedKeyHash, Label, Modulus, SliceSink, SliceSource, Tweak, ZeroLabel,
};
use dash_gpu::GpuError;
use dash_gpu::emu::HostEmu;
use dash_gpu::offload::{ConvGeometry, GarbleBatch, LinearResidue, Offload, ProjectionBatch};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn random_block(rng: &mut ChaCha20Rng) -> Block {
    Block((rng.next_u64() as u128) << 64 | rng.next_u64() as u128)
}

fn below(rng: &mut ChaCha20Rng, p: u16) -> u16 {
    (rng.next_u32() % p as u32) as u16
}

#[test]
fn aes_and_hash_match_dash_core() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let hash = FixedKeyHash::new();
    // 300 blocks: three grid blocks, the last one partial.
    let mut blocks: Vec<Block> = (0..300).map(|_| random_block(&mut rng)).collect();
    blocks[0] = Block::ZERO;
    blocks[1] = Block(u128::MAX);
    let mut want = blocks.clone();
    hash.permute(&mut want);
    let mut got = blocks.clone();
    HostEmu::new().permute(&mut got).unwrap();
    assert_eq!(got, want);

    let domains = [Domain::Projection, Domain::MulBit, Domain::Output, Domain::Derivation];
    let tweaks: Vec<Tweak> = (0..300)
        .map(|i| Tweak::new(domains[i % 4], rng.next_u64(), if i % 3 == 0 { 0 } else { rng.next_u32() }))
        .collect();
    let mut want = blocks.clone();
    hash.hash_batch(&tweaks, &mut want).unwrap();
    let mut got = blocks.clone();
    HostEmu::new().hash(&tweaks, &mut got).unwrap();
    assert_eq!(got, want);
    assert!(HostEmu::new().hash(&tweaks[1..], &mut got).is_err());
}

/// Garbles `gates` projection gates on dash-core, returns (tweaks, input
/// labels (digits), rows, expected output labels (digits), zero labels, deltas).
struct Garbled {
    tweaks: Vec<Tweak>,
    inputs: Vec<u16>,
    rows: Vec<Block>,
    want: Vec<u16>,
}

fn garble_on_core(rng: &mut ChaCha20Rng, p_in: u16, p_out: u16, gates: usize) -> Garbled {
    let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
    let (di, dout) = (Delta::random(mi, rng), Delta::random(mo, rng));
    let hash = FixedKeyHash::new();
    let table: Vec<u16> = (0..p_in).map(|_| below(rng, p_out)).collect();
    let mut rows = vec![Block::ZERO; gates * projection_rows(mi)];
    let mut sink = SliceSink::new(&mut rows);
    let (mut tweaks, mut inputs, mut want) = (Vec::new(), Vec::new(), Vec::new());
    for g in 0..gates {
        let tweak = Tweak::new(Domain::Projection, rng.next_u64(), g as u32);
        let zero = ZeroLabel::random(mi, rng);
        let out = projection::garble(&hash, tweak, &zero, &di, &dout, |x| table[x as usize], &mut sink).unwrap();
        // Every colour (hence every row, and row 0) shows up across gates.
        let x = if g < p_in as usize { g as u16 } else { below(rng, p_in) };
        tweaks.push(tweak);
        inputs.extend_from_slice(zero.encode(x, &di).unwrap().digits());
        want.extend_from_slice(out.encode(table[x as usize], &dout).unwrap().digits());
    }
    Garbled { tweaks, inputs, rows, want }
}

#[test]
fn projection_evaluation_matches_dash_core() {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let hash = FixedKeyHash::new();
    let pairs = [
        (2u16, 3u16),
        (3, 2),
        (5, 7),
        (7, 5),
        (11, 13),
        (13, 17),
        (17, 2),
        (19, 23),
        (23, 251),
        (31, 3181),
        (97, 11),
        (251, 2),
        (919, 5),
    ];
    for (p_in, p_out) in pairs {
        let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
        let gates = 150;
        let g = garble_on_core(&mut rng, p_in, p_out, gates);
        // dash-core's batch evaluator on the same inputs.
        let labels: Vec<Label> = g.inputs.chunks(mi.digits()).map(|d| Label::from_digits(mi, d).unwrap()).collect();
        let mut core_out = vec![Label::zero(mo); gates];
        projection::evaluate_batch(&hash, &g.tweaks, &labels, mo, &mut SliceSource::new(&g.rows), &mut core_out)
            .unwrap();
        let core_digits: Vec<u16> = core_out.iter().flat_map(|l| l.digits().to_vec()).collect();
        assert_eq!(core_digits, g.want, "dash-core itself, p_in {p_in} p_out {p_out}");

        for emu in piece_bounds(mi) {
            let mut out = vec![0u16; gates * mo.digits()];
            let mut batch = ProjectionBatch {
                input_modulus: mi,
                output_modulus: mo,
                inputs: &g.inputs,
                tweaks: &g.tweaks,
                rows: &g.rows,
                out: &mut out,
            };
            emu.projection_eval(&mut batch).unwrap();
            assert_eq!(out, g.want, "p_in {p_in} p_out {p_out}, {} rows per piece", emu.max_batch_rows());
        }
    }
}

/// The emulation whole, and cut into the device's pieces: 7 gates a piece
/// (the batches' last piece is shorter), one gate a piece, and a bound
/// below one gate's rows (still one gate a piece).
fn piece_bounds(input: Modulus) -> [HostEmu; 4] {
    let rows_per_gate = input.value() as usize - 1;
    [
        HostEmu::new(),
        HostEmu::with_max_batch_rows(7 * rows_per_gate),
        HostEmu::with_max_batch_rows(rows_per_gate),
        HostEmu::with_max_batch_rows(1),
    ]
}

#[test]
fn tampered_rows_fail_like_dash_core() {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let hash = FixedKeyHash::new();
    // p_out = 7: 7^45 < 2^126.4, so about two random blocks in three pack no label.
    let (p_in, p_out) = (7u16, 7u16);
    let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
    let g = garble_on_core(&mut rng, p_in, p_out, 100);
    let (mut emu_fails, mut core_fails) = (0, 0);
    for gate in 0..100 {
        let colour = g.inputs[gate * mi.digits()];
        if colour == 0 {
            continue; // row 0 is implicit: nothing to tamper with
        }
        let mut rows = g.rows.clone();
        rows[gate * 6 + colour as usize - 1] = random_block(&mut rng);
        let label = Label::from_digits(mi, &g.inputs[gate * mi.digits()..(gate + 1) * mi.digits()]).unwrap();
        let core = projection::evaluate(&hash, g.tweaks[gate], &label, mo, &mut SliceSource::new(&rows[gate * 6..]));
        let mut out = vec![0u16; 100 * mo.digits()];
        let mut batch = ProjectionBatch {
            input_modulus: mi,
            output_modulus: mo,
            inputs: &g.inputs,
            tweaks: &g.tweaks,
            rows: &rows,
            out: &mut out,
        };
        // Every other gate through pieces of 7 gates: the failing gate is
        // named by its index in the whole batch, not in its piece.
        let device = if gate % 2 == 0 { HostEmu::new() } else { HostEmu::with_max_batch_rows(7 * 6) };
        let emu = device.projection_eval(&mut batch);
        match (&core, &emu) {
            (Err(_), Err(GpuError::InvalidRow { gate: bad })) => {
                assert_eq!(*bad, gate);
                core_fails += 1;
                emu_fails += 1;
            }
            (Ok(l), Ok(())) => {
                assert_eq!(&out[gate * mo.digits()..(gate + 1) * mo.digits()], l.digits());
                assert_ne!(l.digits(), &g.want[gate * mo.digits()..(gate + 1) * mo.digits()]);
            }
            _ => panic!("gate {gate}: dash-core {core:?}, emulation {emu:?}"),
        }
    }
    assert!(emu_fails > 30 && emu_fails == core_fails, "{emu_fails} {core_fails}");
}

#[test]
fn projection_garbling_matches_dash_core() {
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let hash = FixedKeyHash::new();
    for (p_in, p_out) in [(2u16, 3u16), (3, 2), (5, 5), (7, 11), (13, 17), (17, 251), (31, 2), (131, 7), (251, 3181)] {
        let (mi, mo) = (Modulus::new(p_in).unwrap(), Modulus::new(p_out).unwrap());
        let (di, dout) = (Delta::random(mi, &mut rng), Delta::random(mo, &mut rng));
        let table: Vec<u16> = (0..p_in).map(|_| below(&mut rng, p_out)).collect();
        let gates = 140;
        let zeros: Vec<ZeroLabel> = (0..gates).map(|_| ZeroLabel::random(mi, &mut rng)).collect();
        let tweaks: Vec<Tweak> = (0..gates).map(|i| Tweak::new(Domain::Projection, 1000 + i as u64, 0)).collect();
        let rpg = projection_rows(mi);
        let mut want_rows = vec![Block::ZERO; gates * rpg];
        let mut sink = SliceSink::new(&mut want_rows);
        let mut want_zero = Vec::new();
        for (z, t) in zeros.iter().zip(&tweaks) {
            let out = projection::garble(&hash, *t, z, &di, &dout, |x| table[x as usize], &mut sink).unwrap();
            want_zero.extend_from_slice(out.as_label().digits());
        }
        let zero_in: Vec<u16> = zeros.iter().flat_map(|z| z.as_label().digits().to_vec()).collect();
        for emu in piece_bounds(mi) {
            let mut rows = vec![Block::ZERO; gates * rpg];
            let mut zero_out = vec![0u16; gates * mo.digits()];
            let mut batch = GarbleBatch {
                zero_in: &zero_in,
                input_modulus: mi,
                output_modulus: mo,
                delta_in: di.as_label().digits(),
                delta_out: dout.as_label().digits(),
                table: &table,
                tweaks: &tweaks,
                rows: &mut rows,
                zero_out: &mut zero_out,
            };
            emu.projection_garble(&mut batch).unwrap();
            let bound = emu.max_batch_rows();
            assert_eq!(rows, want_rows, "rows, p_in {p_in} p_out {p_out}, {bound} rows per piece");
            assert_eq!(zero_out, want_zero, "zero labels, p_in {p_in} p_out {p_out}, {bound} rows per piece");
        }
    }
}

/// The linear layer by its definition, element by element.
fn reference_conv(r: &LinearResidue<'_>, g: &ConvGeometry) -> Vec<u16> {
    let (n, p) = (r.modulus.digits(), r.modulus.value() as u64);
    let mut y = vec![0u16; g.output_len() * n];
    for oc in 0..g.out_channels {
        for oy in 0..g.out_height {
            for ox in 0..g.out_width {
                let e = (oc * g.out_height + oy) * g.out_width + ox;
                for d in 0..n {
                    let mut acc = r.bias[oc] as u64 * r.one[d] as u64;
                    for ic in 0..g.in_channels {
                        for ky in 0..g.kernel[0] {
                            for kx in 0..g.kernel[1] {
                                let iy = (oy * g.stride[0] + ky) as isize - g.pad_top as isize;
                                let ix = (ox * g.stride[1] + kx) as isize - g.pad_left as isize;
                                if iy < 0 || ix < 0 || iy >= g.height as isize || ix >= g.width as isize {
                                    continue;
                                }
                                let xi = (ic * g.height + iy as usize) * g.width + ix as usize;
                                let wi = ((oc * g.in_channels + ic) * g.kernel[0] + ky) * g.kernel[1] + kx;
                                acc += r.weights[wi] as u64 * r.x[xi * n + d] as u64;
                            }
                        }
                    }
                    y[e * n + d] = (acc % p) as u16;
                }
            }
        }
    }
    y
}

fn conv_case(rng: &mut ChaCha20Rng, base: &CrtBase, g: &ConvGeometry) {
    let data: Vec<_> = base
        .moduli()
        .iter()
        .map(|&m| {
            let p = m.value();
            let n = m.digits();
            let x: Vec<u16> = (0..g.input_len() * n).map(|_| below(rng, p)).collect();
            let w: Vec<u16> = (0..g.weight_len()).map(|_| below(rng, p)).collect();
            let b: Vec<u16> = (0..g.out_channels).map(|_| below(rng, p)).collect();
            let one: Vec<u16> = (0..n).map(|_| below(rng, p)).collect();
            (m, x, w, b, one, vec![0u16; g.output_len() * n])
        })
        .collect();
    let mut data = data;
    let mut jobs: Vec<LinearResidue<'_>> = data
        .iter_mut()
        .map(|(m, x, w, b, one, out)| LinearResidue { modulus: *m, x, weights: w, bias: b, one, out })
        .collect();
    HostEmu::new().linear(g, &mut jobs).unwrap();
    for r in &jobs {
        assert_eq!(r.out.to_vec(), reference_conv(r, g), "p = {} {g:?}", r.modulus.value());
    }
}

#[test]
fn dense_and_conv_match_the_reference_for_k_5_to_9() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    for k in 5..=9 {
        let base = CrtBase::first(k).unwrap();
        // Dense: inputs not a multiple of the k tile, outputs not of 16.
        conv_case(&mut rng, &base, &ConvGeometry::dense(45 + k, 17 + k));
        // 3×3, stride 1, padding 1 (same-size), several channels.
        let conv = |c, h, w, oc, kk: [usize; 2], s: [usize; 2], pad: [usize; 2]| {
            // Output size with symmetric padding.
            let oh = (h + 2 * pad[0] - kk[0]) / s[0] + 1;
            let ow = (w + 2 * pad[1] - kk[1]) / s[1] + 1;
            ConvGeometry {
                in_channels: c,
                height: h,
                width: w,
                out_channels: oc,
                out_height: oh,
                out_width: ow,
                kernel: kk,
                stride: s,
                pad_top: pad[0],
                pad_left: pad[1],
            }
        };
        conv_case(&mut rng, &base, &conv(3, 7, 6, 5, [3, 3], [1, 1], [1, 1]));
        // Strided, rectangular, no padding.
        conv_case(&mut rng, &base, &conv(2, 9, 8, 3, [3, 2], [2, 3], [0, 0]));
        // 5×5 stride 2 with padding 2, the LeNet/MiniONN shape family.
        conv_case(&mut rng, &base, &conv(4, 10, 10, 6, [5, 5], [2, 2], [2, 2]));
    }
    // Big primes (products near 2^24) and a long reduction (C·kh·kw = 1800).
    let base = CrtBase::new(&[3181, 2, 3]).unwrap();
    conv_case(&mut rng, &base, &ConvGeometry::dense(1800, 3));
}

#[test]
fn bad_arguments_are_errors_not_memory_errors() {
    let m = Modulus::new(5).unwrap();
    let n = m.digits();
    let g = ConvGeometry::dense(4, 2);
    let (x, w, b, one) = (vec![0u16; 4 * n], vec![0u16; 8], vec![0u16; 2], vec![0u16; n]);
    let mut out = vec![0u16; 2 * n];
    let mut short = vec![0u16; n];
    let job = |x: &[u16], w: &[u16], out: &mut [u16]| {
        HostEmu::new().linear(&g, &mut [LinearResidue { modulus: m, x, weights: w, bias: &b, one: &one, out }])
    };
    assert!(job(&x, &w, &mut out).is_ok());
    assert!(matches!(job(&x[1..], &w, &mut out), Err(GpuError::Shape(_))));
    assert!(matches!(job(&x, &w[1..], &mut out), Err(GpuError::Shape(_))));
    assert!(matches!(job(&x, &w, &mut short), Err(GpuError::Shape(_))));
    let mut unreduced = w.clone();
    unreduced[3] = 5;
    assert!(matches!(job(&x, &unreduced, &mut out), Err(GpuError::Shape(_))));
    let huge = ConvGeometry::dense(1 << 30, 1 << 4);
    assert!(matches!(huge.validate(n), Err(GpuError::TooLarge(_))));
    let mut zero = ConvGeometry::dense(4, 2);
    zero.stride = [0, 1];
    assert!(zero.validate(n).is_err());

    // Projection batches: wrong lengths, unreduced colours.
    let mo = Modulus::new(3).unwrap();
    let tweaks = [Tweak::new(Domain::Projection, 0, 0); 2];
    let rows = vec![Block::ZERO; 8];
    let inputs = vec![4u16; 2 * n];
    let mut out = vec![0u16; 2 * mo.digits()];
    let mut bad = ProjectionBatch {
        input_modulus: m,
        output_modulus: mo,
        inputs: &inputs,
        tweaks: &tweaks,
        rows: &rows[..7],
        out: &mut out,
    };
    assert!(matches!(HostEmu::new().projection_eval(&mut bad), Err(GpuError::Shape(_))));
    let inputs5 = vec![5u16; 2 * n];
    let mut bad = ProjectionBatch {
        input_modulus: m,
        output_modulus: mo,
        inputs: &inputs5,
        tweaks: &tweaks,
        rows: &rows,
        out: &mut out,
    };
    assert!(matches!(HostEmu::new().projection_eval(&mut bad), Err(GpuError::Shape(_))));
}

#[test]
fn row_decoding_is_exact_at_the_edges_of_every_modulus() {
    // Rows chosen so that the decrypted block is exactly 0, 1, p^n − 1 (the
    // largest label), p^n (the smallest non-label) or 2^128 − 1, for many
    // output moduli: the device's unpacking must agree with
    // `Label::from_block` on validity and digits.
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let hash = FixedKeyHash::new();
    let mi = Modulus::new(3).unwrap();
    let primes = (2..=dash_core::MAX_MODULUS).filter_map(|p| Modulus::new(p).ok()).collect::<Vec<_>>();
    for mo in primes.iter().copied().step_by(7).chain([Modulus::new(2).unwrap(), Modulus::new(3181).unwrap()]) {
        let p = mo.value() as u128;
        let top = (0..mo.digits()).fold(1u128, |a, _| a.wrapping_mul(p)); // p^n (0 for p = 2)
        for target in [0u128, 1, top.wrapping_sub(1), top, u128::MAX, top.wrapping_sub(1) / 3] {
            let mut digits: Vec<u16> = (0..mi.digits()).map(|_| below(&mut rng, 3)).collect();
            digits[0] = 1 + below(&mut rng, 2);
            let input = Label::from_digits(mi, &digits).unwrap();
            let tweak = Tweak::new(Domain::Projection, rng.next_u64(), 0);
            let h = hash.hash(tweak, input.to_block());
            let mut rows = [Block::ZERO; 2];
            rows[digits[0] as usize - 1] = Block(target) ^ h;
            let want = Label::from_block(mo, Block(target));
            let mut out = vec![0u16; mo.digits()];
            let mut batch = ProjectionBatch {
                input_modulus: mi,
                output_modulus: mo,
                inputs: &digits,
                tweaks: &[tweak],
                rows: &rows,
                out: &mut out,
            };
            match (HostEmu::new().projection_eval(&mut batch), want) {
                (Ok(()), Ok(l)) => assert_eq!(out, l.digits(), "p {p} target {target:x}"),
                (Err(GpuError::InvalidRow { gate: 0 }), Err(_)) => {}
                (got, want) => panic!("p {p} target {target:x}: device {got:?}, dash-core {want:?}"),
            }
        }
    }
}
