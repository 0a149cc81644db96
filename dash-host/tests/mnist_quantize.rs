//! The bundled SecureML MLP on the bundled MNIST test set: the quantiser's
//! interval bounds hold on every value of every one of the 10,000 images,
//! quantised accuracy stays within 0.3 points of float accuracy, and the
//! garbled protocol reproduces the plaintext integer network exactly.

use dash_host::inference::{RunOptions, plain_accuracy, run_mnist, write_report};
use dash_host::mnist::bundled_test_set;
use dash_host::model::FloatModel;
use dash_host::quantize::{QuantizeOptions, quantize};
use rayon::prelude::*;

#[test]
fn bounds_hold_and_accuracy_is_kept_on_all_10000_images() {
    let model = FloatModel::bundled_mlp().unwrap();
    let data = bundled_test_set().unwrap();
    let q = quantize(&model, &QuantizeOptions::default()).unwrap();

    // Every value of every activation, on every test image, lies inside
    // the proven interval of its element.
    let violations: usize = data
        .images
        .iter()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|im| {
            let x: Vec<i64> = im.iter().map(|&p| p as i64).collect();
            let trace = q.network.eval_plain_trace(&x).unwrap();
            trace
                .iter()
                .zip(&q.bounds)
                .map(|(act, b)| act.iter().zip(b).filter(|(v, iv)| !iv.contains(**v as i128)).count())
                .sum::<usize>()
        })
        .sum();
    assert_eq!(violations, 0);

    let acc = plain_accuracy(&model, &q, &data).unwrap();
    let (peak, half) = q.headroom();
    println!(
        "k={} primes={:?} divisors={:?} weight factors={:?} max|w|={:?} proven peak {peak} of {half}",
        q.network.base.len(),
        q.primes(),
        q.dense.iter().map(|d| d.divisor).collect::<Vec<_>>(),
        q.dense.iter().map(|d| d.weight_factor).collect::<Vec<_>>(),
        q.dense.iter().map(|d| d.max_abs_weight).collect::<Vec<_>>(),
    );
    println!(
        "images {} float {:.4} quantized {:.4} agreement {:.4}",
        acc.images, acc.float, acc.quantized, acc.agreement
    );
    assert_eq!(acc.images, 10_000);
    // The Rust float reference reproduces the accuracy the training script recorded.
    let recorded = model.metrics.float_test_accuracy.unwrap();
    assert!((acc.float - recorded).abs() <= 2e-4, "float {} vs recorded {recorded}", acc.float);
    assert!(acc.float >= 0.97);
    assert!((acc.float - acc.quantized).abs() <= 0.003, "float {} quantized {}", acc.float, acc.quantized);
}

/// The first 100 test images through the garbled protocol (10 in a debug
/// build), as CI runs them.
#[test]
fn garbled_equals_plaintext_on_first_images() {
    let n = if cfg!(debug_assertions) { 10 } else { 100 };
    let model = FloatModel::bundled_mlp().unwrap();
    let data = bundled_test_set().unwrap();
    let report = run_mnist(&model, &data, Some(n), &RunOptions::default()).unwrap();
    assert_eq!(report.images, n);
    assert!(report.garbled_equals_plaintext, "{report:?}");
    assert_eq!(report.accuracy_garbled, report.accuracy_quantized);
    assert!(report.garbled_bytes > 0 && report.online_bytes > 0);
    assert_eq!(report.crt_moduli.len(), 7);
    assert_eq!(report.plain.images, 10_000);
    assert!(report.tamper_rejected);
    let json = report.summary_json();
    for key in [
        "images",
        "accuracy_float",
        "accuracy_quantized",
        "accuracy_garbled",
        "garbled_equals_plaintext",
        "garble_seconds",
        "eval_seconds",
        "garbled_bytes",
        "online_bytes",
        "crt_moduli",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    let mut text = Vec::new();
    write_report(&report, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("image     0  label 7  garbled prediction 7"), "{text}");
    println!("{text}\n{json}");
}

/// All 10,000 test images through the garbled protocol (about a quarter of
/// an hour on two cores): `cargo test --release -p dash-host --test
/// mnist_quantize -- --ignored --nocapture`.
#[test]
#[ignore]
fn garbled_equals_plaintext_on_all_10000_images() {
    let model = FloatModel::bundled_mlp().unwrap();
    let data = bundled_test_set().unwrap();
    let report = run_mnist(&model, &data, None, &RunOptions::default()).unwrap();
    println!("{}", report.summary_json());
    assert_eq!(report.images, 10_000);
    assert!(report.garbled_equals_plaintext);
    assert_eq!(report.accuracy_garbled, report.accuracy_quantized);
}
