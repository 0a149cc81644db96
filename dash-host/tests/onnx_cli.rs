//! The bundled SecureML MLP written out as ONNX (Gemm, and MatMul + Add)
//! imports to the same float model (hence the same integer network), and
//! `dashgc run --model M.onnx` reports float, quantised and garbled
//! accuracy on it.

use dash_host::model::{FloatLayer, FloatModel};
use dash_host::onnx::proto::*;
use dash_host::onnx::{ImportOptions, import_bytes};
use prost::Message;
use std::process::Command;

fn ftensor(name: &str, dims: &[i64], data: &[f64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: data_type::DOUBLE,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim =
        dims.iter().map(|&d| Dimension { value: Some(DimensionValue::DimValue(d)), ..Default::default() }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: data_type::FLOAT, shape: Some(TensorShapeProto { dim }) }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The float model as ONNX: `Gemm` (transB = 1) per dense layer, or
/// `MatMul` + `Add`; the nodes listed last-first.
fn to_onnx(m: &FloatModel, matmul: bool) -> Vec<u8> {
    let mut nodes = Vec::new();
    let mut inits = Vec::new();
    let mut cur = "input".to_string();
    for (i, l) in m.layers.iter().enumerate() {
        let out = format!("t{i}");
        let node = |op: &str, ins: Vec<String>, out: &str, attribute| NodeProto {
            op_type: op.into(),
            name: format!("{op}_{i}"),
            input: ins,
            output: vec![out.to_string()],
            attribute,
            ..Default::default()
        };
        match l {
            FloatLayer::Dense { inputs, outputs, weights, bias } => {
                let (w, b) = (format!("w{i}"), format!("b{i}"));
                inits.push(ftensor(&b, &[*outputs as i64], bias));
                if matmul {
                    let wt: Vec<f64> =
                        (0..*inputs).flat_map(|k| (0..*outputs).map(move |o| weights[o * inputs + k])).collect();
                    inits.push(ftensor(&w, &[*inputs as i64, *outputs as i64], &wt));
                    let mm = format!("mm{i}");
                    nodes.push(node("MatMul", vec![cur.clone(), w], &mm, vec![]));
                    nodes.push(node("Add", vec![mm, b], &out, vec![]));
                } else {
                    inits.push(ftensor(&w, &[*outputs as i64, *inputs as i64], weights));
                    let t = AttributeProto {
                        name: "transB".into(),
                        r#type: attribute_type::INT,
                        i: 1,
                        ..Default::default()
                    };
                    nodes.push(node("Gemm", vec![cur.clone(), w, b], &out, vec![t]));
                }
            }
            FloatLayer::Relu => nodes.push(node("Relu", vec![cur.clone()], &out, vec![])),
            other => panic!("layer {} not expected in the MLP", other.name()),
        }
        cur = out;
    }
    nodes.reverse();
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            name: "secureml_mlp".into(),
            node: nodes,
            initializer: inits,
            input: vec![vi("input", &[1, 784])],
            output: vec![vi(&cur, &[1, 10])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn onnx_mlp_equals_json_mlp_and_runs_from_the_cli() {
    let json = FloatModel::bundled_mlp().unwrap();
    let dir = std::env::temp_dir().join(format!("dash-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for matmul in [false, true] {
        let bytes = to_onnx(&json, matmul);
        let m = import_bytes(&bytes, &ImportOptions::default()).unwrap();
        assert_eq!(m.layers, json.layers);
        // Quantisation is a function of the float model: the same network.
        assert_eq!(m.input, json.input);
        if matmul {
            continue;
        }
        let path = dir.join("mlp.onnx");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = FloatModel::load(&path).unwrap();
        assert_eq!(loaded.layers, json.layers);
        let out = Command::new(env!("CARGO_BIN_EXE_dashgc"))
            .args(["run", "--model", path.to_str().unwrap(), "--mnist"])
            .args(["data/mnist/t10k-images-idx3-ubyte.gz", "data/mnist/t10k-labels-idx1-ubyte.gz"])
            .args(["--limit", "2", "--garbled-only", "--json"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(v["images"], 2);
        assert_eq!(v["garbled_equals_plaintext"], true);
        assert_eq!(v["accuracy_garbled"], v["accuracy_quantized"]);
        assert!(v["accuracy_float"].as_f64().is_some());
    }
    // A model the importer refuses gives exit status 2 and names the operator.
    let mut p = ModelProto::decode(to_onnx(&json, false).as_slice()).unwrap();
    p.graph.as_mut().unwrap().node[0].op_type = "Softmax".into();
    let path = dir.join("bad.onnx");
    std::fs::write(&path, p.encode_to_vec()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dashgc"))
        .args(["run", "--model", path.to_str().unwrap(), "--mnist", "a", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Softmax"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// `dashgc run --random N` garbles a model without a data set (the tiny
/// MiniONN-CIFAR) on seeded random images, and rejects bad combinations.
#[test]
fn run_on_random_images() {
    let dashgc = env!("CARGO_BIN_EXE_dashgc");
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/minionn_cifar_tiny_untrained.onnx");
    let run = |args: &[&str]| Command::new(dashgc).args(["run", "--model", model]).args(args).output().unwrap();
    let out = run(&["--random", "3", "--seed", "5", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["images"], 3);
    assert_eq!(json["garbled_equals_plaintext"], true);
    assert_eq!(json["tamper_rejected"], true);
    // Labels are the float model's own predictions.
    assert_eq!(json["accuracy_float"], 1.0);
    for bad in [&["--random", "0"][..], &["--random", "2", "--mnist", "a", "b"], &["--seed", "3"]] {
        let out = run(bad);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{bad:?} panicked");
    }
}
