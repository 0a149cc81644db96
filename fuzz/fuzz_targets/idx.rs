//! The MNIST IDX reader on untrusted bytes, raw and gzipped: images and
//! labels parse to consistent sizes or fail with an error; a gzip bomb
//! stops at the reader's cap. The fuzzer's bytes are also fed through
//! gzip, so the header checks behind the inflater are reached too.
#![no_main]

use dash_host::mnist::{self, CLASSES, MAX_FILE_BYTES};
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fn check(bytes: &[u8]) {
    if let Ok(images) = mnist::parse_images(bytes) {
        assert_eq!(images.len() * images.pixels_per_image(), images.iter().map(<[u8]>::len).sum::<usize>());
        assert!(images.pixels_per_image() <= MAX_FILE_BYTES);
        assert_eq!(images.pixels_per_image(), images.rows() * images.cols());
        if !images.is_empty() {
            assert!(images.get(images.len() - 1).is_some());
        }
        assert!(images.get(images.len()).is_none());
    }
    if let Ok(labels) = mnist::parse_labels(bytes) {
        assert!(labels.iter().all(|&l| l < CLASSES));
        assert!(labels.len() <= MAX_FILE_BYTES);
    }
    if let Ok(inflated) = mnist::maybe_gunzip(bytes) {
        assert!(inflated.len() <= MAX_FILE_BYTES);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        check(rest);
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        check(&gz.finish().unwrap());
    }
});
