//! Export of an [`IntNetwork`] to the compact network image a device
//! garbler embeds (`dash_mcu::netfile`, `.dnet`, version 1).
//!
//! The weights are the integer network's, exactly (the quantiser's output,
//! not the float model): each dense layer's weights in the fewest bytes
//! (1, 2 or 4) that hold all of them, biases as `i32`. The image also
//! carries the model hash (the device writes it into the material header,
//! and the evaluator refuses material garbled for another model), the
//! plan's moduli in key order, and each non-linear layer's rows and gates
//! per element, which the device checks against its own gadgets.
//!
//! What the device garbler supports is checked here, so an image that
//! exports is one the device can garble: the first layer is dense, and the
//! others are dense, sign, ReLU or flatten.

use crate::engine::Plan;
use crate::network::{IntLayer, IntNetwork};
use anyhow::{Context, Result, bail, ensure};
use dash_mcu::netfile::{self, kind};

/// The image of `net` (see the module documentation).
pub fn export(net: &IntNetwork) -> Result<Vec<u8>> {
    let plan = Plan::new(net).context("planning the network")?;
    let k = net.base.len();
    ensure!(
        net.layers.len() <= netfile::MAX_LAYERS,
        "{} layers; a device image holds {}",
        net.layers.len(),
        netfile::MAX_LAYERS
    );
    ensure!(plan.moduli().len() <= netfile::MAX_MODULI, "too many moduli for a device image");
    ensure!(
        matches!(net.layers.first(), Some(IntLayer::Dense { .. })),
        "the device garbler needs a dense first layer (it draws the input labels into it)"
    );
    let input_len: usize = net.input_shape.iter().product();
    ensure!(input_len <= netfile::MAX_ELEMENTS, "input of {input_len} elements is too large for a device image");
    let mut b = Vec::new();
    b.extend_from_slice(&netfile::MAGIC);
    b.extend_from_slice(&netfile::VERSION.to_le_bytes());
    b.push(k as u8);
    b.push(net.layers.len() as u8);
    b.extend_from_slice(&plan.model_hash());
    for m in net.base.moduli() {
        b.extend_from_slice(&m.value().to_le_bytes());
    }
    b.extend_from_slice(&(input_len as u32).to_le_bytes());
    b.push(plan.moduli().len() as u8);
    for m in plan.moduli() {
        b.extend_from_slice(&m.value().to_le_bytes());
    }
    for (i, (layer, cost)) in net.layers.iter().zip(plan.costs()).enumerate() {
        let per_element = |b: &mut Vec<u8>| -> Result<()> {
            b.extend_from_slice(&u32::try_from(cost.rows_per_element)?.to_le_bytes());
            b.extend_from_slice(&u32::try_from(cost.gates_per_element)?.to_le_bytes());
            Ok(())
        };
        match layer {
            IntLayer::Dense { inputs, outputs, weights, bias } => {
                ensure!(
                    *outputs <= netfile::MAX_ELEMENTS,
                    "layer {i}: {outputs} outputs is too many for a device image"
                );
                b.push(kind::DENSE);
                b.extend_from_slice(&(*inputs as u32).to_le_bytes());
                b.extend_from_slice(&(*outputs as u32).to_le_bytes());
                let max = weights.iter().map(|w| w.unsigned_abs()).max().unwrap_or(0);
                let wbytes: usize = if max <= i8::MAX as u64 {
                    1
                } else if max <= i16::MAX as u64 {
                    2
                } else {
                    4
                };
                b.push(wbytes as u8);
                for &w in weights {
                    let w = i32::try_from(w).with_context(|| format!("layer {i}: weight {w} does not fit 32 bits"))?;
                    b.extend_from_slice(&w.to_le_bytes()[..wbytes]);
                }
                for &x in bias {
                    let x = i32::try_from(x).with_context(|| format!("layer {i}: bias {x} does not fit 32 bits"))?;
                    b.extend_from_slice(&x.to_le_bytes());
                }
            }
            IntLayer::Sign => {
                b.push(kind::SIGN);
                per_element(&mut b)?;
            }
            IntLayer::Relu => {
                b.push(kind::RELU);
                per_element(&mut b)?;
            }
            IntLayer::Flatten => b.push(kind::FLATTEN),
            IntLayer::Reshape { shape } if shape.len() == 1 => b.push(kind::FLATTEN),
            other => bail!("layer {i} ({}) is not supported by the device garbler", other.name()),
        }
    }
    let sum = netfile::fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dash_core::CrtBase;
    use dash_mcu::netfile::{Layer, NetFile};

    fn small() -> IntNetwork {
        IntNetwork::new(
            vec![6],
            vec![
                IntLayer::Dense {
                    inputs: 6,
                    outputs: 4,
                    weights: (0..24).map(|i| i * 37 % 300 - 150).collect(),
                    bias: vec![1, -2, 3, 400],
                },
                IntLayer::Sign,
                IntLayer::Dense {
                    inputs: 4,
                    outputs: 3,
                    weights: vec![1, -1, 2, 5, 0, 7, -9, 3, 4, -4, 1, 1],
                    bias: vec![0, 5, -5],
                },
            ],
            CrtBase::first(5).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_every_corruption_is_refused() {
        let net = small();
        let img = export(&net).unwrap();
        let f = NetFile::parse(&img).unwrap();
        assert_eq!(f.model_hash, net.hash());
        assert_eq!(f.base, net.base);
        assert_eq!(f.input_len, 6);
        assert_eq!(f.output_len(), 3);
        let plan = Plan::new(&net).unwrap();
        assert_eq!(f.moduli.as_slice(), plan.moduli());
        let Layer::Dense(d) = f.layers[0] else { panic!("dense first") };
        assert_eq!(d.weight_bytes(), 2, "weights up to 150 need two bytes");
        let IntLayer::Dense { weights, bias, .. } = &net.layers[0] else { unreachable!() };
        for o in 0..4 {
            assert_eq!(d.bias(o) as i64, bias[o]);
            for i in 0..6 {
                assert_eq!(d.weight(o, i) as i64, weights[o * 6 + i]);
            }
        }
        let Layer::Sign { rows, gates } = f.layers[1] else { panic!("sign second") };
        assert_eq!((rows as u64, gates as u64), (plan.costs()[1].rows_per_element, plan.costs()[1].gates_per_element));
        let Layer::Dense(d) = f.layers[2] else { panic!("dense third") };
        assert_eq!(d.weight_bytes(), 1);
        // Truncation, padding and every single flipped bit are refused.
        for cut in 0..img.len() {
            assert!(NetFile::parse(&img[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = img.clone();
        long.push(0);
        assert!(NetFile::parse(&long).is_err());
        for at in 0..img.len() {
            let mut bad = img.clone();
            bad[at] ^= 0x10;
            assert!(NetFile::parse(&bad).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn unsupported_layers_do_not_export() {
        let net = IntNetwork::new(
            vec![4],
            vec![IntLayer::Relu, IntLayer::Dense { inputs: 4, outputs: 1, weights: vec![1; 4], bias: vec![0] }],
            CrtBase::first(4).unwrap(),
        )
        .unwrap();
        assert!(export(&net).unwrap_err().to_string().contains("dense first layer"));
        let net = IntNetwork::new(
            vec![4],
            vec![
                IntLayer::Dense { inputs: 4, outputs: 2, weights: vec![1; 8], bias: vec![0; 2] },
                IntLayer::Rescale { divisor: 3, rounding: crate::network::Rounding::Floor },
            ],
            CrtBase::first(4).unwrap(),
        )
        .unwrap();
        assert!(export(&net).unwrap_err().to_string().contains("not supported"));
    }
}
