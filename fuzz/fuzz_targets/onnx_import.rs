//! Untrusted ONNX bytes: the importer returns a model or an error, never
//! panics, and a model it returns is valid and runs.
#![no_main]

use dash_host::onnx::{ImportOptions, import_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = ImportOptions { tanh_as_sign: data.len() % 2 == 1, ..Default::default() };
    if let Ok(model) = import_bytes(data, &options) {
        model.validate().expect("an imported model is valid");
        // Keep each run cheap: evaluate only small models.
        let work: usize = model.shapes().expect("valid").iter().map(|s| s.iter().product::<usize>()).sum();
        if work <= 1 << 16 && model.layers.len() <= 64 {
            let x = vec![0.5; model.input_len()];
            model.infer_float(&x).expect("a valid model runs");
        }
    }
});
