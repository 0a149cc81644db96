//! The trained ONNX models shipped in `models/` (see `models/README.md`):
//! each imports, quantises on a proven-in-range base, and on the full
//! 10,000-image MNIST test set its float accuracy is the one recorded in
//! the file and its quantised accuracy is within 0.3 points of it. Models
//! that do not take MNIST images (MiniONN-CIFAR, untrained) are checked on
//! random inputs: the interval bounds hold (the full-size one is only
//! imported and validated: its quantisation takes minutes on two cores). Release builds only (CI runs
//! `cargo test --release`); print the figures with `-- --nocapture`.

use dash_host::inference::plain_accuracy;
use dash_host::mnist::bundled_test_set;
use dash_host::model::FloatLayer;
use dash_host::onnx::proto::ModelProto;
use dash_host::onnx::{ImportOptions, import_file};
use dash_host::quantize::{QuantizeOptions, quantize};
use prost::Message;
use std::path::{Path, PathBuf};

fn onnx_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "onnx")).collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Bounds of the quantised network hold on extreme and random inputs.
fn check_bounds_on_random_inputs(name: &str, q: &dash_host::quantize::Quantized, n: usize) {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for t in 0..4 {
        let x: Vec<i64> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if t == 0 { 255 } else { (s % 256) as i64 }
            })
            .collect();
        let trace = q.network.eval_plain_trace(&x).unwrap();
        for (act, b) in trace.iter().zip(&q.bounds) {
            assert!(act.iter().zip(b).all(|(v, iv)| iv.contains(*v as i128)), "{name}");
        }
    }
}

fn metadata(path: &Path, key: &str) -> Option<f64> {
    let m = ModelProto::decode(std::fs::read(path).ok()?.as_slice()).ok()?;
    m.metadata_props.iter().find(|p| p.key == key).and_then(|p| p.value.trim().parse().ok())
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release only: runs the full MNIST test set")]
fn shipped_models_import_quantise_and_keep_accuracy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let files = onnx_files(&root);
    let data = bundled_test_set().unwrap();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let tanh = name.contains("tanh");
        let options = ImportOptions { tanh_as_sign: tanh, ..Default::default() };
        let model = import_file(path, &options).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let kinds: Vec<&str> = model.layers.iter().map(|l| l.name()).collect();
        let weights: usize = model
            .layers
            .iter()
            .map(|l| match l {
                FloatLayer::Dense { weights, .. } | FloatLayer::Conv2d { weights, .. } => weights.len(),
                _ => 0,
            })
            .sum();
        if model.input_len() != 784 && weights > 100_000 {
            // The full MiniONN-CIFAR: its quantisation takes minutes on two
            // cores; the tiny variant has the same layers and is quantised.
            println!("{name}: {kinds:?}, {weights} weights (not MNIST: imported and validated)");
            continue;
        }
        let q = quantize(&model, &QuantizeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        if model.input_len() != 784 {
            check_bounds_on_random_inputs(&name, &q, model.input_len());
            println!(
                "{name}: {kinds:?} k={} primes={:?} (not MNIST: bounds checked)",
                q.network.base.len(),
                q.primes()
            );
            continue;
        }
        let acc = plain_accuracy(&model, &q, &data).unwrap();
        println!(
            "{name}: {kinds:?} k={} float {:.4} quantized {:.4} agreement {:.4}",
            q.network.base.len(),
            acc.float,
            acc.quantized,
            acc.agreement
        );
        let key = if tanh { "float_test_accuracy_tanh_as_sign" } else { "float_test_accuracy" };
        if let Some(recorded) = metadata(path, key) {
            assert!((acc.float - recorded).abs() <= 2e-4, "{name}: float {} vs recorded {recorded}", acc.float);
        }
        assert!((acc.float - acc.quantized).abs() <= 0.003, "{name}: float {} quantized {}", acc.float, acc.quantized);
    }
}

/// The exporter variants in `models/variants/` (other opsets, MatMul+Add,
/// Reshape and shape plumbing, unfolded batch norm, Tanh as sign, dynamo
/// export, …): each imports and quantises with its proof, and its float
/// predictions on the first 300 test images are those of the model it is a
/// variant of (at most one near-tie may differ, for variants whose weights
/// were transformed in floating point).
#[test]
#[cfg_attr(debug_assertions, ignore = "release only")]
fn exporter_variants_match_their_models() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut data = bundled_test_set().unwrap();
    data.truncate(300);
    for path in onnx_files(&root.join("variants")) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let options = ImportOptions { tanh_as_sign: name.contains("tanh"), ..Default::default() };
        let model = import_file(&path, &options).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let q = quantize(&model, &QuantizeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        check_bounds_on_random_inputs(&name, &q, model.input_len());
        let base = ["secureml_mlp", "deepsecure_cnn", "minionn_mnist", "fhe_dinn100"]
            .into_iter()
            .find(|b| name.starts_with(b) && model.input_len() == 784);
        let Some(base) = base else {
            println!("{name}: imports and quantises (k={}), bounds checked", q.network.base.len());
            continue;
        };
        let reference = import_file(root.join(format!("{base}.onnx")), &ImportOptions::default()).unwrap();
        let differ = (0..data.len())
            .filter(|&i| {
                let x: Vec<i64> = data.images.get(i).unwrap().iter().map(|&p| p as i64).collect();
                model.predict(&x).unwrap() != reference.predict(&x).unwrap()
            })
            .count();
        let acc = plain_accuracy(&model, &q, &data).unwrap();
        println!(
            "{name}: like {base}, {differ} of 300 float predictions differ; k={} float {:.4} quantized {:.4}",
            q.network.base.len(),
            acc.float,
            acc.quantized
        );
        assert!(differ <= 1, "{name}: {differ} predictions differ from {base}");
    }
}
