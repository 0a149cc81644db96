//! The model-file parser (`FloatModel::from_json`) on untrusted text: an
//! error or a model that validates, whose shapes chain and whose float
//! inference runs on a zero input with the declared output length.
#![no_main]

use dash_host::model::FloatModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(model) = FloatModel::from_json(text) else { return };
    model.validate().expect("a parsed model must validate");
    let shapes = model.shapes().expect("a parsed model must have shapes");
    let len = |shape: &Vec<usize>| shape.iter().product::<usize>();
    assert_eq!(shapes.first().map(len), Some(model.input_len()));
    assert_eq!(shapes.last().map(len), Some(model.output_len()));
    let out = model.infer(&vec![0; model.input_len()]).expect("inference on a valid input failed");
    assert_eq!(out.len(), model.output_len());
    assert!(model.infer(&vec![0; model.input_len() + 1]).is_err());
});
