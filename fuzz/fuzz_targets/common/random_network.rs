//! The random small integer networks of the `network` and `planner`
//! targets: the CRT base, the layer sequence, every shape, stride,
//! padding, weight and input come from the fuzzer (included by both with
//! `#[path]`; cargo-fuzz builds only the files its targets name).

use arbitrary::Arbitrary;
use dash_core::CrtBase;
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};

pub(crate) const PRIMES: [u16; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
/// Bounds that keep one case around a millisecond or two.
pub(crate) const MAX_LAYERS: usize = 6;
pub(crate) const MAX_SIDE: usize = 6;
pub(crate) const MAX_CHANNELS: usize = 3;
pub(crate) const MAX_ELEMENTS: usize = 48;
/// Non-linear elements (each a gadget of some hundred rows) per network.
pub(crate) const MAX_NONLINEAR: usize = 64;

#[derive(Arbitrary, Debug)]
pub(crate) enum LayerSpec {
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
pub(crate) struct Case {
    pub(crate) base_mask: u16,
    pub(crate) input: [u8; 3],
    pub(crate) layers: Vec<LayerSpec>,
    pub(crate) values: Vec<i64>,
    pub(crate) seed: u64,
    pub(crate) flip: Option<(u32, u8)>,
}

pub(crate) fn numel(s: &[usize]) -> usize {
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
pub(crate) fn build(case: &Case, base: &CrtBase) -> Option<IntNetwork> {
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
