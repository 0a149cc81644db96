//! `dashgc run` and `dashgc demo` on the bundled model and data, as a user
//! runs them.

use std::process::Command;

fn dashgc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dashgc"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run dashgc")
}

#[test]
fn run_json_last_line() {
    let out = dashgc(&[
        "run",
        "--model",
        "models/secureml_mlp.json",
        "--mnist",
        "data/mnist/t10k-images-idx3-ubyte.gz",
        "data/mnist/t10k-labels-idx1-ubyte.gz",
        "--limit",
        "2",
        "--garbled-only",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["images"], 2);
    assert_eq!(v["plain"]["images"], 2);
    assert_eq!(v["garbled_equals_plaintext"], true);
    assert_eq!(v["crt_moduli"], serde_json::json!([2, 3, 5, 7, 11, 13, 17]));
    for key in ["accuracy_float", "accuracy_quantized", "accuracy_garbled", "garble_seconds", "eval_seconds"] {
        assert!(v[key].as_f64().is_some_and(|x| x.is_finite() && x >= 0.0), "{key}: {v}");
    }
    for key in ["garbled_bytes", "online_bytes"] {
        assert!(v[key].as_u64().is_some_and(|x| x > 0), "{key}: {v}");
    }
}

#[test]
fn run_rejects_bad_inputs_with_messages() {
    let out = dashgc(&["run", "--model", "/nonexistent.json", "--mnist", "a", "b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
    let out = dashgc(&[
        "run",
        "--model",
        "models/secureml_mlp.json",
        "--mnist",
        "data/mnist/t10k-labels-idx1-ubyte.gz",
        "data/mnist/t10k-labels-idx1-ubyte.gz",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("magic"));
}

#[test]
fn demo_prints_predictions_and_figures() {
    let out = dashgc(&["demo", "--images", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for want in ["image     0  label 7", "accuracy on 3 images", "garble", "garbled material", "online"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}
