//! The circuit planner on small random integer networks (the same
//! generator as the `network` target): for an input range drawn from the
//! case, the planned network's plaintext twin must equal the unplanned
//! `eval_plain` on an input in that range, the garbled planned circuit must
//! equal both bit for bit, and the plan must never cost more rows.
#![no_main]

use arbitrary::Arbitrary;
use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::planner;
use dash_host::quantize::Interval;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

const PRIMES: [u16; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
/// Bounds that keep one case around a millisecond or two.
const MAX_LAYERS: usize = 6;
const MAX_SIDE: usize = 6;
const MAX_CHANNELS: usize = 3;
const MAX_ELEMENTS: usize = 48;
/// Non-linear elements (each a gadget of some hundred rows) per network.
const MAX_NONLINEAR: usize = 64;

#[derive(Arbitrary, Debug)]
enum LayerSpec {
    Dense {
        outputs: u8,
        weights: Vec<i8>,
        bias: Vec<i16>,
    },
    Conv {
        out_channels: u8,
        kernel: [u8; 2],
        stride: [u8; 2],
        pad: [u8; 4],
        weights: Vec<i8>,
        bias: Vec<i16>,
    },
    MaxPool {
        kernel: [u8; 2],
        stride: [u8; 2],
    },
    SumPool {
        kernel: [u8; 2],
        stride: [u8; 2],
    },
    Relu,
    Sign,
    Rescale {
        divisor_mask: u8,
        rounding: u8,
    },
    Flatten,
    /// To `[c, h, w]` with `c` from the fuzzer (when it divides the length)
    /// and the rest as square as it goes.
    Reshape {
        channels: u8,
    },
    Residual {
        back: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Case {
    base_mask: u16,
    input: [u8; 3],
    layers: Vec<LayerSpec>,
    values: Vec<i64>,
    seed: u64,
    flip: Option<(u32, u8)>,
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn cycle<T: Copy + Into<i64>>(v: &[T], n: usize, default: i64) -> Vec<i64> {
    (0..n).map(|i| if v.is_empty() { default } else { v[i % v.len()].into() }).collect()
}

fn small(x: u8, max: usize) -> usize {
    1 + x as usize % max
}

/// Turns the fuzzer's layer specs into layers valid for the running shape;
/// specs that cannot apply are skipped.
fn build(case: &Case, base: &CrtBase) -> Option<IntNetwork> {
    let input_shape =
        vec![small(case.input[0], MAX_CHANNELS), small(case.input[1], MAX_SIDE), small(case.input[2], MAX_SIDE)];
    let mut shapes = vec![input_shape.clone()];
    let mut layers = Vec::new();
    let mut nonlinear = 0usize;
    for spec in case.layers.iter().take(MAX_LAYERS) {
        let s = shapes.last().unwrap().clone();
        let n = numel(&s);
        let layer = match spec {
            LayerSpec::Dense { outputs, weights, bias } => {
                let outputs = small(*outputs, 8);
                IntLayer::Dense {
                    inputs: n,
                    outputs,
                    weights: cycle(weights, n * outputs, 1),
                    bias: cycle(bias, outputs, 0),
                }
            }
            LayerSpec::Conv { out_channels, kernel, stride, pad, weights, bias } => {
                let [c, _, _] = s[..] else { continue };
                let out_channels = small(*out_channels, MAX_CHANNELS);
                let kernel = [small(kernel[0], 3), small(kernel[1], 3)];
                let padding = Padding {
                    top: pad[0] as usize % 3,
                    left: pad[1] as usize % 3,
                    bottom: pad[2] as usize % 3,
                    right: pad[3] as usize % 3,
                };
                IntLayer::Conv2d {
                    in_channels: c,
                    out_channels,
                    kernel,
                    stride: [small(stride[0], 3), small(stride[1], 3)],
                    padding,
                    weights: cycle(weights, out_channels * c * kernel[0] * kernel[1], 1),
                    bias: cycle(bias, out_channels, 0),
                }
            }
            LayerSpec::MaxPool { kernel, stride } => IntLayer::MaxPool {
                kernel: [small(kernel[0], 3), small(kernel[1], 3)],
                stride: [small(stride[0], 3), small(stride[1], 3)],
            },
            LayerSpec::SumPool { kernel, stride } => IntLayer::SumPool {
                kernel: [small(kernel[0], 3), small(kernel[1], 3)],
                stride: [small(stride[0], 3), small(stride[1], 3)],
            },
            LayerSpec::Relu => IntLayer::Relu,
            LayerSpec::Sign => IntLayer::Sign,
            LayerSpec::Rescale { divisor_mask, rounding } => {
                let divisor = base
                    .moduli()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (*divisor_mask as u32) >> i & 1 == 1)
                    .map(|(_, m)| m.value() as u64)
                    .product();
                let rounding = [Rounding::Floor, Rounding::Nearest, Rounding::Ceil][*rounding as usize % 3];
                IntLayer::Rescale { divisor, rounding }
            }
            LayerSpec::Flatten => IntLayer::Flatten,
            LayerSpec::Reshape { channels } => {
                let c = small(*channels, MAX_CHANNELS);
                if !n.is_multiple_of(c) {
                    continue;
                }
                let hw = n / c;
                let h = (1..=hw).rev().find(|h| hw.is_multiple_of(*h) && h * h <= hw).unwrap_or(1);
                IntLayer::Reshape { shape: vec![c, h, hw / h] }
            }
            LayerSpec::Residual { back } => {
                // The most recent earlier activation of the same shape, `back` steps further.
                let candidates: Vec<usize> = (0..shapes.len() - 1).rev().filter(|&j| shapes[j] == s).collect();
                let Some(&from) = candidates.get(*back as usize % candidates.len().max(1)) else { continue };
                IntLayer::ResidualAdd { from }
            }
        };
        layers.push(layer);
        let net = IntNetwork { input_shape: input_shape.clone(), layers: layers.clone(), base: base.clone() };
        match net.shapes() {
            Ok(mut all) => {
                let out = all.pop().unwrap();
                if numel(&out) > MAX_ELEMENTS {
                    layers.pop();
                    continue;
                }
                if !layers.last().unwrap().is_linear() {
                    let window = match layers.last().unwrap() {
                        IntLayer::MaxPool { kernel, .. } => kernel[0] * kernel[1],
                        _ => 1,
                    };
                    nonlinear += numel(&out) * window;
                    if nonlinear > MAX_NONLINEAR {
                        layers.pop();
                        break;
                    }
                }
                shapes.push(out);
            }
            Err(_) => {
                layers.pop();
            }
        }
    }
    IntNetwork::new(input_shape, layers, base.clone()).ok()
}

fuzz_target!(|case: Case| {
    static POOL: std::sync::Once = std::sync::Once::new();
    POOL.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    });

    let primes: Vec<u16> =
        PRIMES.iter().enumerate().filter(|(i, _)| case.base_mask >> i & 1 == 1).map(|(_, &p)| p).collect();
    let Ok(base) = CrtBase::new(&primes) else { return };
    if base.is_empty() || base.product() >= 1 << dash_host::network::MAX_Q_BITS {
        return;
    }
    let Some(net) = build(&case, &base) else { return };
    let Ok(unplanned) = Plan::new(&net) else { return };
    // An input range inside the base's, from the seed.
    let lo = (-((case.seed & 0xff) as i128)).max(base.min_value());
    let hi = (((case.seed >> 8) & 0xff) as i128).min(base.max_value());
    let range = Interval::new(lo, hi);
    let planned = planner::plan(&net, range).expect("planning a valid network on a valid range failed");
    let plan = Plan::planned(&planned).expect("the planned network does not plan");
    assert!(plan.total_rows() <= unplanned.total_rows(), "the plan costs more than the unplanned circuit");
    let width = (hi - lo + 1) as i64;
    let input: Vec<i64> = (0..numel(&net.input_shape))
        .map(|i| (lo + case.values.get(i).copied().unwrap_or(i as i64).rem_euclid(width) as i128) as i64)
        .collect();
    let want = net.eval_plain(&input).expect("eval_plain failed on a valid network and input");
    assert_eq!(
        planned.eval_plain(&input).expect("planned twin failed"),
        want,
        "planned twin differs: {:?}",
        planned.rewrites
    );

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let mut material = Vec::new();
    let session = engine::garble(&plan, &mut rng, &mut material).expect("garbling a planned network failed");
    assert_eq!(session.rows, plan.total_rows(), "garbler wrote a different number of rows than planned");
    let (labels, awaiting) = session.encode_input(&input).expect("encoding an input in range failed");
    let out = engine::evaluate(&plan, material.as_slice(), &labels).expect("evaluating honest material failed");
    let got = awaiting.decode_output(&out.to_blocks()).expect("honest output failed its check");
    assert_eq!(got, want, "garbled planned circuit differs from eval_plain");

    // A flipped byte of planned material may fail, never pass a wrong value.
    if let Some((at, bit)) = case.flip {
        let at = at as usize % material.len();
        material[at] ^= 1 << (bit % 8);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
        let again = engine::garble(&plan, &mut rng, &mut std::io::sink()).expect("garbling again failed");
        let (_, awaiting) = again.encode_input(&input).expect("encoding an input in range failed");
        if let Ok(out) = engine::evaluate(&plan, material.as_slice(), &labels)
            && let Ok(got) = awaiting.decode_output(&out.to_blocks())
        {
            assert_eq!(got, want, "tampered planned material gave a wrong value that passed the output check");
        }
    }
});
