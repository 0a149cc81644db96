//! `dashgc bench --networks`: whole layers through the engine, each beside
//! the same work without the engine's driver, measured in the same run.
//!
//! - A non-linear layer (ReLU, rescale, 2×2 max-pool) of
//!   [`NetworkScale::elements`] elements is garbled by
//!   [`engine::garble`](crate::engine::garble()) and evaluated by
//!   [`engine::evaluate`](crate::engine::evaluate()) on one thread. Beside
//!   it, the layer's gadget runs on one lane backend of
//!   [`LANES`](crate::engine::LANES) elements with nothing around it: the
//!   batched microbenchmark. `efficiency` is the microbenchmark's time per
//!   element over the layer's: 1 means the driver costs nothing.
//! - A linear layer (a 3×3 convolution and a dense layer) runs through the
//!   engine's kernel, reported in nanoseconds per multiply-add per residue
//!   digit (each multiply-add is done on every digit of every residue's
//!   label).
//!
//! Every figure is paired with the AES reference, as in [`super`].

use super::{Paired, Timer};
use crate::engine::layer_bench::{GadgetRun, LinearRun};
use crate::engine::{self, Plan};
use crate::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_core::CrtBase;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::hint::black_box;

/// Primes of the layers' CRT base (the first 7, as the gadget figures).
pub const BASE_PRIMES: usize = 7;

/// How big the layers are and how often each is measured.
#[derive(Clone, Copy, Debug)]
pub struct NetworkScale {
    /// Output elements of each non-linear layer.
    pub elements: usize,
    /// Paired rounds per figure.
    pub rounds: usize,
}

impl NetworkScale {
    /// 65,536 elements per layer, 5 rounds.
    pub fn full() -> NetworkScale {
        NetworkScale { elements: 1 << 16, rounds: 5 }
    }

    /// 8,192 elements per layer, 3 rounds.
    pub fn quick() -> NetworkScale {
        NetworkScale { elements: 1 << 13, rounds: 3 }
    }
}

/// One non-linear layer through the engine and its gadget's
/// microbenchmark. Times are nanoseconds per output element.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GadgetLayerFigures {
    /// `relu`, `rescale` or `maxpool2x2`.
    pub layer: String,
    /// Output elements of the layer.
    pub elements: u64,
    /// Garbled rows per element.
    pub rows_per_element: u64,
    /// The layer garbled by `engine::garble` (material to a sink).
    pub layer_garble_ns: f64,
    /// `layer_garble_ns` / AES block.
    pub layer_garble_aes_ratio: f64,
    /// The gadget garbled on one lane backend, no driver.
    pub lanes_garble_ns: f64,
    /// `lanes_garble_ns` / AES block.
    pub lanes_garble_aes_ratio: f64,
    /// `lanes_garble_ns / layer_garble_ns`.
    pub garble_efficiency: f64,
    /// The layer evaluated by `engine::evaluate` (material from memory).
    pub layer_eval_ns: f64,
    /// `layer_eval_ns` / AES block.
    pub layer_eval_aes_ratio: f64,
    /// The gadget evaluated on one lane backend, no driver.
    pub lanes_eval_ns: f64,
    /// `lanes_eval_ns` / AES block.
    pub lanes_eval_aes_ratio: f64,
    /// `lanes_eval_ns / layer_eval_ns`.
    pub eval_efficiency: f64,
}

/// One linear layer through the engine's kernel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinearLayerFigures {
    /// `conv3x3_16x16x32x32` or `dense_784x128`.
    pub layer: String,
    /// Multiply-adds of the layer (per residue digit).
    pub multiply_adds: u64,
    /// Digits of one label across every residue.
    pub digits_per_element: u64,
    /// Nanoseconds per multiply-add per residue digit.
    pub ns_per_mac_digit: f64,
    /// `ns_per_mac_digit` / AES block.
    pub aes_ratio: f64,
}

/// Every `--networks` figure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkFigures {
    /// Primes of the layers' base.
    pub base_primes: u32,
    /// Elements per lane run of the engine.
    pub lanes: u32,
    /// The non-linear layers.
    pub gadget_layers: Vec<GadgetLayerFigures>,
    /// The linear layers.
    pub linear_layers: Vec<LinearLayerFigures>,
}

fn one_thread() -> anyhow::Result<rayon::ThreadPool> {
    Ok(rayon::ThreadPoolBuilder::new().num_threads(1).build()?)
}

/// The layers measured: name, input shape, layer.
fn gadget_layers(elements: usize) -> Vec<(&'static str, Vec<usize>, IntLayer)> {
    // The max-pool's output is `[16, h, w]` with `h·w = elements / 16`.
    let hw = (elements / 16).max(1);
    let h = (1..=hw).rev().find(|h| hw.is_multiple_of(*h) && h * h <= hw).unwrap_or(1);
    vec![
        ("relu", vec![elements], IntLayer::Relu),
        ("rescale", vec![elements], IntLayer::Rescale { divisor: super::RESCALE_DIVISOR, rounding: Rounding::Floor }),
        ("maxpool2x2", vec![16, 2 * h, 2 * (hw / h)], IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] }),
    ]
}

fn gadget_layer(
    timer: &mut Timer,
    scale: NetworkScale,
    name: &str,
    shape: Vec<usize>,
    layer: IntLayer,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<GadgetLayerFigures> {
    let base = CrtBase::first(BASE_PRIMES)?;
    let net = IntNetwork::new(shape, vec![layer], base.clone())?;
    let plan = Plan::new(&net)?;
    let elements = plan.costs()[0].elements;
    let pool = one_thread()?;

    // The engine: one garbling kept for evaluation, checked against the
    // plaintext network, then the timed garblings to a sink.
    let n_in: usize = net.input_shape.iter().product();
    let x: Vec<i64> = (0..n_in).map(|_| (rng.next_u64() % 20_001) as i64 - 10_000).collect();
    let mut material = Vec::with_capacity(plan.material_bytes() as usize + 4096);
    let session = pool.install(|| engine::garble(&plan, rng, &mut material))?;
    let (labels, awaiting) = session.encode_input(&x).map_err(|e| e.error)?;
    let out = pool.install(|| engine::evaluate(&plan, material.as_slice(), &labels))?;
    anyhow::ensure!(
        awaiting.decode_output(&out.to_blocks())? == net.eval_plain(&x)?,
        "{name}: the engine's output differs from the plaintext layer"
    );
    let mut garble_rng = ChaCha20Rng::from_rng(rng);
    let layer_garble = timer.paired_rounds(elements, scale.rounds, || {
        pool.install(|| engine::garble(&plan, &mut garble_rng, &mut std::io::sink()))
            .expect("garbling a planned layer");
    });
    let layer_eval = timer.paired_rounds(elements, scale.rounds, || {
        black_box(pool.install(|| engine::evaluate(&plan, material.as_slice(), &labels)).expect("honest material"));
    });
    drop(material);

    // The same gadget on one lane run: enough repetitions per round to
    // match the layer's element count.
    let mut run = GadgetRun::new(&plan, rng)?;
    let reps = (elements as usize).div_ceil(run.elements()).max(1);
    let units = (reps * run.elements()) as u64;
    let lanes_garble = timer.paired_rounds(units, scale.rounds, || {
        for _ in 0..reps {
            black_box(run.garble().expect("keys cover the gadget"));
        }
    });
    let lanes_eval = timer.paired_rounds(units, scale.rounds, || {
        for _ in 0..reps {
            black_box(run.evaluate().expect("rows garbled for this gadget"));
        }
    });

    let pair = |p: Paired| (p.ns, p.ratio);
    let ((lg, lgr), (lag, lagr), (le, ler), (lae, laer)) =
        (pair(layer_garble), pair(lanes_garble), pair(layer_eval), pair(lanes_eval));
    Ok(GadgetLayerFigures {
        layer: name.into(),
        elements,
        rows_per_element: plan.costs()[0].rows_per_element,
        layer_garble_ns: lg,
        layer_garble_aes_ratio: lgr,
        lanes_garble_ns: lag,
        lanes_garble_aes_ratio: lagr,
        garble_efficiency: lag / lg,
        layer_eval_ns: le,
        layer_eval_aes_ratio: ler,
        lanes_eval_ns: lae,
        lanes_eval_aes_ratio: laer,
        eval_efficiency: lae / le,
    })
}

fn linear_layer(
    timer: &mut Timer,
    scale: NetworkScale,
    name: &str,
    shape: Vec<usize>,
    layer: IntLayer,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<LinearLayerFigures> {
    let net = IntNetwork::new(shape, vec![layer], CrtBase::first(BASE_PRIMES)?)?;
    let plan = Plan::new(&net)?;
    let run = LinearRun::new(&plan, rng)?;
    let pool = one_thread()?;
    let (macs, digits) = (run.macs(), run.digits_per_element());
    let p = timer.paired_rounds(macs * digits, scale.rounds.max(5), || {
        black_box(pool.install(|| run.run()).expect("a planned linear layer"));
    });
    Ok(LinearLayerFigures {
        layer: name.into(),
        multiply_adds: macs,
        digits_per_element: digits,
        ns_per_mac_digit: p.ns,
        aes_ratio: p.ratio,
    })
}

fn weights(rng: &mut ChaCha20Rng, n: usize) -> Vec<i64> {
    (0..n).map(|_| (rng.next_u64() % 255) as i64 - 127).collect()
}

/// Measures every `--networks` figure on one thread.
pub fn run(timer: &mut Timer, scale: NetworkScale) -> anyhow::Result<NetworkFigures> {
    let mut rng = ChaCha20Rng::seed_from_u64(65_536);
    let mut gadget_figures = Vec::new();
    for (name, shape, layer) in gadget_layers(scale.elements) {
        gadget_figures.push(gadget_layer(timer, scale, name, shape, layer, &mut rng)?);
    }
    let conv = IntLayer::Conv2d {
        in_channels: 16,
        out_channels: 16,
        kernel: [3, 3],
        stride: [1, 1],
        padding: Padding::uniform(1),
        weights: weights(&mut rng, 16 * 16 * 9),
        bias: weights(&mut rng, 16),
    };
    let dense = IntLayer::Dense {
        inputs: 784,
        outputs: 128,
        weights: weights(&mut rng, 784 * 128),
        bias: weights(&mut rng, 128),
    };
    let linear_figures = vec![
        linear_layer(timer, scale, "conv3x3_16x16x32x32", vec![16, 32, 32], conv, &mut rng)?,
        linear_layer(timer, scale, "dense_784x128", vec![784], dense, &mut rng)?,
    ];
    Ok(NetworkFigures {
        base_primes: BASE_PRIMES as u32,
        lanes: engine::LANES as u32,
        gadget_layers: gadget_figures,
        linear_layers: linear_figures,
    })
}

impl NetworkFigures {
    /// A readable table of the figures.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "\nlayers through the engine vs their gadget on one lane run ({} primes, {} lanes, 1 thread)\n\n",
            self.base_primes, self.lanes
        );
        out.push_str(&format!(
            "{:<12} {:>8} {:>6} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7}\n",
            "layer", "elements", "rows", "garble/el", "lanes/el", "eff.", "eval/el", "lanes/el", "eff."
        ));
        let us = |ns: f64| format!("{:.2} µs", ns / 1000.0);
        for g in &self.gadget_layers {
            out.push_str(&format!(
                "{:<12} {:>8} {:>6} {:>12} {:>12} {:>6.0}% {:>12} {:>12} {:>6.0}%\n",
                g.layer,
                g.elements,
                g.rows_per_element,
                us(g.layer_garble_ns),
                us(g.lanes_garble_ns),
                g.garble_efficiency * 100.0,
                us(g.layer_eval_ns),
                us(g.lanes_eval_ns),
                g.eval_efficiency * 100.0,
            ));
        }
        out.push_str(&format!(
            "\n{:<22} {:>12} {:>7} {:>16} {:>12}\n",
            "linear layer", "MACs", "digits", "ns/MAC/digit", "AES blocks"
        ));
        for l in &self.linear_layers {
            out.push_str(&format!(
                "{:<22} {:>12} {:>7} {:>16.4} {:>12.4}\n",
                l.layer, l.multiply_adds, l.digits_per_element, l.ns_per_mac_digit, l.aes_ratio
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::BenchConfig;
    use std::time::Duration;

    #[test]
    fn small_layers_fill_every_figure() {
        let mut timer =
            Timer::new(BenchConfig { rounds: 1, batch: Duration::from_micros(200), quick: true, networks: None });
        let figures = run(&mut timer, NetworkScale { elements: 256, rounds: 1 }).unwrap();
        assert_eq!(figures.gadget_layers.len(), 3);
        for g in &figures.gadget_layers {
            assert_eq!(g.elements, 256, "{}", g.layer);
            assert!(g.rows_per_element > 0);
            for v in [g.layer_garble_ns, g.lanes_garble_ns, g.layer_eval_ns, g.lanes_eval_ns, g.garble_efficiency] {
                assert!(v.is_finite() && v > 0.0, "{}: {v}", g.layer);
            }
        }
        assert_eq!(figures.linear_layers[0].multiply_adds, 16 * 16 * 9 * 32 * 32);
        assert_eq!(figures.linear_layers[1].multiply_adds, 784 * 128);
        assert!(figures.linear_layers.iter().all(|l| l.ns_per_mac_digit > 0.0));
        let table = figures.to_table();
        assert!(table.contains("maxpool2x2") && table.contains("dense_784x128"));
    }
}
