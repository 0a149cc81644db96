//! The circuit planner against the unplanned network: each rewrite on
//! random networks and inputs over the proven range, its edges included;
//! the garbled planned circuit against its plaintext twin; and the hash
//! that keeps planned and unplanned parties apart.

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::planner::{self, PlannedNetwork};
use dash_host::quantize::Interval;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn ints(r: &mut ChaCha20Rng, n: usize, lo: i64, hi: i64) -> Vec<i64> {
    (0..n).map(|_| lo + (r.next_u64() % (hi - lo + 1) as u64) as i64).collect()
}

/// Inputs over `[lo, hi]`: both edges everywhere, alternating edges, and
/// random values.
fn inputs(r: &mut ChaCha20Rng, n: usize, lo: i64, hi: i64, random: usize) -> Vec<Vec<i64>> {
    let mut xs = vec![vec![lo; n], vec![hi; n], (0..n).map(|i| if i % 2 == 0 { lo } else { hi }).collect()];
    xs.push((0..n).map(|i| if i % 3 == 0 { hi } else { lo }).collect());
    for _ in 0..random {
        // Half the draws only from the edges: intervals are reached there.
        if r.next_u64().is_multiple_of(2) {
            xs.push((0..n).map(|_| if r.next_u64().is_multiple_of(2) { lo } else { hi }).collect());
        } else {
            xs.push(ints(r, n, lo, hi));
        }
    }
    xs
}

fn conv(r: &mut ChaCha20Rng, ic: usize, oc: usize, w: i64) -> IntLayer {
    IntLayer::Conv2d {
        in_channels: ic,
        out_channels: oc,
        kernel: [3, 3],
        stride: [1, 1],
        padding: Padding::uniform(1),
        weights: ints(r, oc * ic * 9, -w, w),
        bias: ints(r, oc, -w, w),
    }
}

fn dense(r: &mut ChaCha20Rng, i: usize, o: usize, w: i64) -> IntLayer {
    IntLayer::Dense { inputs: i, outputs: o, weights: ints(r, i * o, -w, w), bias: ints(r, o, -w, w) }
}

/// A small CNN in the usual order (conv, rescale, ReLU, max-pool), the
/// order the planner rewrites.
fn cnn(r: &mut ChaCha20Rng, k: usize, rounding: Rounding, activation: IntLayer) -> IntNetwork {
    let layers = vec![
        conv(r, 1, 2, 3),
        IntLayer::Rescale { divisor: 5, rounding },
        activation,
        IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
        IntLayer::Flatten,
        dense(r, 2 * 2 * 2, 3, 3),
        IntLayer::Relu,
        dense(r, 3, 2, 3),
    ];
    IntNetwork::new(vec![1, 4, 4], layers, CrtBase::first(k).unwrap()).unwrap()
}

/// Garbles the planned circuit and checks it against the planned twin and
/// the unplanned network.
fn garbled_equals(planned: &PlannedNetwork, net: &IntNetwork, xs: &[Vec<i64>], seed: u64) {
    let plan = Plan::planned(planned).expect("plan");
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    for x in xs {
        let want = net.eval_plain(x).unwrap();
        assert_eq!(planned.eval_plain(x).unwrap(), want, "planned twin, input {x:?}");
        let mut material = Vec::new();
        let g = engine::garble(&plan, &mut r, &mut material).expect("garble");
        assert_eq!(g.rows, plan.total_rows());
        let (labels, awaiting) = g.encode_input(x).unwrap();
        let out = engine::evaluate(&plan, material.as_slice(), &labels).expect("evaluate");
        let got = awaiting.decode_output(&out.to_blocks()).expect("decode");
        assert_eq!(got, want, "garbled planned circuit, input {x:?}");
    }
}

#[test]
fn planned_cnn_is_cheaper_and_computes_the_same_integers() {
    let mut r = ChaCha20Rng::seed_from_u64(1);
    for (t, rounding) in [Rounding::Floor, Rounding::Nearest, Rounding::Ceil].into_iter().enumerate() {
        let net = cnn(&mut r, 7, rounding, IntLayer::Relu);
        let range = Interval::new(-20, 20);
        let p = planner::plan(&net, range).unwrap();
        let (before, after) = (Plan::new(&net).unwrap().total_rows(), Plan::planned(&p).unwrap().total_rows());
        assert!(after < before, "rounding {rounding:?}: {after} rows planned, {before} unplanned");
        // The max pool moved before the rescale and the ReLU.
        assert!(matches!(p.network.layers[1], IntLayer::MaxPool { .. }), "{:?}", p.rewrites);
        assert!(p.sub_bases.iter().any(Option::is_some), "no sub-base chosen: {:?}", p.rewrites);
        let xs = inputs(&mut r, 16, -20, 20, 6);
        garbled_equals(&p, &net, &xs, 10 + t as u64);
    }
}

#[test]
fn sign_activation_on_a_sub_base() {
    let mut r = ChaCha20Rng::seed_from_u64(2);
    let net = cnn(&mut r, 7, Rounding::Floor, IntLayer::Sign);
    let p = planner::plan(&net, Interval::new(-9, 9)).unwrap();
    assert!(Plan::planned(&p).unwrap().total_rows() < Plan::new(&net).unwrap().total_rows());
    let xs = inputs(&mut r, 16, -9, 9, 6);
    garbled_equals(&p, &net, &xs, 3);
}

/// Many random networks (random layer orders, bases, ranges): the planned
/// twin equals the unplanned network on the proven range, edges included,
/// and the plan is never more expensive.
#[test]
fn random_networks_plan_to_the_same_integers() {
    let mut r = ChaCha20Rng::seed_from_u64(3);
    let mut changed = 0;
    for case in 0..60 {
        let k = 5 + (r.next_u64() % 4) as usize;
        let w = 1 + (r.next_u64() % 4) as i64;
        let mut layers = vec![conv(&mut r, 1, 2, w)];
        let pool = IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] };
        let mut middle = vec![
            IntLayer::Relu,
            IntLayer::Rescale { divisor: [2, 3, 6][(r.next_u64() % 3) as usize], rounding: Rounding::Floor },
            pool,
        ];
        // A random order of the three: every swap the planner knows meets
        // every neighbour.
        for i in (1..middle.len()).rev() {
            middle.swap(i, (r.next_u64() % (i as u64 + 1)) as usize);
        }
        layers.extend(middle);
        layers.push(IntLayer::Flatten);
        layers.push(dense(&mut r, 8, 2, w));
        let Ok(net) = IntNetwork::new(vec![1, 4, 4], layers, CrtBase::first(k).unwrap()) else { continue };
        let lo = -((r.next_u64() % 30) as i64);
        let hi = (r.next_u64() % 30) as i64;
        let p = planner::plan(&net, Interval::new(lo as i128, hi as i128)).unwrap();
        let (before, after) = (Plan::new(&net).unwrap().total_rows(), Plan::planned(&p).unwrap().total_rows());
        assert!(after <= before, "case {case}: planned {after} > unplanned {before}");
        changed += usize::from(after < before);
        for x in inputs(&mut r, 16, lo, hi, 20) {
            assert_eq!(p.eval_plain(&x).unwrap(), net.eval_plain(&x).unwrap(), "case {case}: {:?}", p.rewrites);
        }
        if case % 15 == 0 {
            garbled_equals(&p, &net, &inputs(&mut r, 16, lo, hi, 1), case as u64);
        }
    }
    assert!(changed > 30, "only {changed} of 60 networks got cheaper");
}

/// A ReLU on a value proven non-negative is removed, and a ReLU then a
/// rescale becomes the rescale then the ReLU.
#[test]
fn dead_relu_and_rescale_before_relu() {
    let mut r = ChaCha20Rng::seed_from_u64(4);
    let layers = vec![
        dense(&mut r, 4, 4, 3),
        IntLayer::Relu,
        IntLayer::Rescale { divisor: 7, rounding: Rounding::Nearest },
        IntLayer::Relu,
        dense(&mut r, 4, 2, 3),
    ];
    let net = IntNetwork::new(vec![4], layers, CrtBase::first(6).unwrap()).unwrap();
    let p = planner::plan(&net, Interval::new(-50, 50)).unwrap();
    let relus = p.network.layers.iter().filter(|l| matches!(l, IntLayer::Relu)).count();
    assert_eq!(relus, 1, "{:?}", p.network.layers);
    let xs = inputs(&mut r, 4, -50, 50, 30);
    garbled_equals(&p, &net, &xs, 5);
}

/// Planned and unplanned circuits of one model have different hashes, so
/// the evaluator refuses material of the other; the garbler refuses inputs
/// outside the proven range with a clear error.
#[test]
fn hash_separates_plans_and_range_is_enforced() {
    let mut r = ChaCha20Rng::seed_from_u64(5);
    let net = cnn(&mut r, 7, Rounding::Floor, IntLayer::Relu);
    let p = planner::plan(&net, Interval::new(-20, 20)).unwrap();
    let (planned, unplanned) = (Plan::planned(&p).unwrap(), Plan::new(&net).unwrap());
    assert_ne!(planned.model_hash(), unplanned.model_hash());
    let mut material = Vec::new();
    let g = engine::garble(&planned, &mut r, &mut material).unwrap();
    assert!(engine::EvaluatorSession::start(&unplanned, material.as_slice()).is_err());
    let err = g.encode_input(&[21; 16]).unwrap_err();
    assert!(err.to_string().contains("outside the range"), "{err}");
    // The identity plan and another range hash differently too.
    let other = planner::plan(&net, Interval::new(-20, 21)).unwrap();
    assert_ne!(other.hash(), p.hash());
    assert_ne!(PlannedNetwork::identity(&net, Interval::new(-20, 20)).hash(), p.hash());
}

/// A network whose values may wrap modulo Q is left as it is.
#[test]
fn unprovable_network_is_not_rewritten() {
    let layers = vec![IntLayer::Dense { inputs: 2, outputs: 1, weights: vec![3, 1], bias: vec![2] }, IntLayer::Relu];
    let net = IntNetwork::new(vec![2], layers, CrtBase::first(3).unwrap()).unwrap();
    let p = planner::plan(&net, Interval::new(-5, 5)).unwrap();
    assert_eq!(p, PlannedNetwork::identity(&net, Interval::new(-5, 5)));
    assert!(planner::plan(&net, Interval::new(5, -5)).is_err());
    assert!(planner::plan(&net, Interval::new(-100, 5)).is_err());
}

/// The bundled MNIST models on all 10,000 test images: the planned circuit's
/// plaintext twin gives exactly the unplanned quantised network's outputs
/// (so the same predictions and accuracy), and the plan is cheaper.
#[test]
fn bundled_models_planned_equal_unplanned_on_all_10000_images() {
    use dash_host::model::FloatModel;
    use dash_host::quantize::{QuantizeOptions, quantize};
    use rayon::prelude::*;
    let data = dash_host::mnist::bundled_test_set().unwrap();
    let images: Vec<Vec<i64>> = data.images.iter().map(|im| im.iter().map(|&p| p as i64).collect()).collect();
    assert_eq!(images.len(), 10_000);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for name in ["secureml_mlp.onnx", "deepsecure_cnn.onnx", "minionn_mnist.onnx", "fhe_dinn100.onnx"] {
        let model = FloatModel::load(root.join(name)).unwrap();
        let q = quantize(&model, &QuantizeOptions::default()).unwrap();
        let p = planner::plan(&q.network, q.input_range).unwrap();
        let (before, after) = (Plan::new(&q.network).unwrap().total_rows(), Plan::planned(&p).unwrap().total_rows());
        assert!(after <= before, "{name}: {after} > {before}");
        if name != "fhe_dinn100.onnx" {
            assert!(after * 10 < before * 6, "{name}: {after} rows planned, {before} unplanned");
        }
        let differ = images.par_iter().filter(|x| p.eval_plain(x).unwrap() != q.network.eval_plain(x).unwrap()).count();
        assert_eq!(differ, 0, "{name}: planned and unplanned differ on {differ} images");
    }
}

/// The planned twin models a sub-base's decision exactly, even where the
/// sub-base is too small for the value (a plan the planner would never
/// choose): the garbled circuit then agrees with the twin, not with the
/// unplanned network, which shows both really decide on the sub-base.
#[test]
fn twin_models_a_too_small_sub_base_bit_for_bit() {
    let layers = vec![
        IntLayer::Dense { inputs: 2, outputs: 2, weights: vec![1, 0, 0, 1], bias: vec![0, 0] },
        IntLayer::Relu,
        IntLayer::Dense { inputs: 2, outputs: 2, weights: vec![1, 0, 1, 1], bias: vec![0, 0] },
        IntLayer::Reshape { shape: vec![1, 1, 2] },
        IntLayer::MaxPool { kernel: [1, 2], stride: [1, 1] },
    ];
    let net = IntNetwork::new(vec![2], layers, CrtBase::first(5).unwrap()).unwrap();
    // {2, 3}: Q' = 6, signed range [-3, 2].
    let sub = Some(vec![0, 1]);
    let planned = PlannedNetwork {
        network: net.clone(),
        input_range: Interval::new(-10, 10),
        sub_bases: vec![None, sub.clone(), None, None, sub],
        rewrites: Vec::new(),
    };
    // 4 wraps to -2 on the sub-base: the ReLU there gives 0.
    assert_eq!(net.eval_plain(&[4, 1]).unwrap(), vec![5]);
    assert_eq!(planned.eval_plain(&[4, 1]).unwrap(), vec![1]);
    let plan = Plan::planned(&planned).unwrap();
    let mut r = ChaCha20Rng::seed_from_u64(9);
    let mut differ = 0;
    for x in inputs(&mut r, 2, -10, 10, 40) {
        let want = planned.eval_plain(&x).unwrap();
        differ += usize::from(want != net.eval_plain(&x).unwrap());
        let mut material = Vec::new();
        let g = engine::garble(&plan, &mut r, &mut material).unwrap();
        let (labels, awaiting) = g.encode_input(&x).unwrap();
        let out = engine::evaluate(&plan, material.as_slice(), &labels).unwrap();
        assert_eq!(awaiting.decode_output(&out.to_blocks()).unwrap(), want, "input {x:?}");
    }
    assert!(differ > 0, "no input showed the sub-base's wrap");
}

/// `dashgc plan --json`: both tables, totals that are the sums of their
/// layers, the planned circuit cheaper, and a clear error for a bad model.
#[test]
fn dashgc_plan_prints_both_tables_with_totals() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dashgc"))
        .args(["plan", "--json", "--model"])
        .arg(root.join("deepsecure_cnn.onnx"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for side in ["before", "after"] {
        let layers = v[side]["layers"].as_array().unwrap();
        let sum: u64 = layers.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
        assert_eq!(sum, v[side]["bytes"].as_u64().unwrap(), "{side}");
        assert_eq!(layers.len(), 8, "{side}");
    }
    assert!(v["after"]["bytes"].as_u64().unwrap() < v["before"]["bytes"].as_u64().unwrap());
    assert_ne!(v["after"]["model_hash"], v["before"]["model_hash"]);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_dashgc"))
        .args(["plan", "--model", "/nonexistent/model.onnx"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cannot read model"));
}
