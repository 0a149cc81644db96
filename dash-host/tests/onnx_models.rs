//! The trained ONNX models shipped in `models/` (see `models/README.md`):
//! each imports, quantises on a proven-in-range base, and on the full
//! 10,000-image MNIST test set its float accuracy is the one recorded in
//! the file and its quantised accuracy is within 0.3 points of it. Models
//! that do not take MNIST images (MiniONN-CIFAR, untrained) are checked on
//! random inputs: the interval bounds hold. Release builds only (CI runs
//! `cargo test --release`); print the figures with `-- --nocapture`.

use dash_host::inference::plain_accuracy;
use dash_host::mnist::bundled_test_set;
use dash_host::onnx::proto::ModelProto;
use dash_host::onnx::{ImportOptions, import_file};
use dash_host::quantize::{QuantizeOptions, quantize};
use prost::Message;
use std::path::{Path, PathBuf};

fn onnx_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            onnx_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "onnx") {
            out.push(p);
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
    let mut files = Vec::new();
    onnx_files(&root, &mut files);
    files.sort();
    let data = bundled_test_set().unwrap();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let tanh = name.contains("tanh");
        let options = ImportOptions { tanh_as_sign: tanh, ..Default::default() };
        let model = import_file(path, &options).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let q = quantize(&model, &QuantizeOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let kinds: Vec<&str> = model.layers.iter().map(|l| l.name()).collect();
        if model.input_len() != 784 {
            // Not an MNIST model: the proof holds on random and extreme inputs.
            let n = model.input_len();
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
