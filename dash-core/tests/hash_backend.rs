//! The AES backend the hash runs on, against the CPU's features (needs
//! `std` for feature detection, so it lives outside the no_std crate).

/// The backend is the one the CPU's features select at run time (the
/// `aes` crate's order: VAES with AVX-512, VAES, AES-NI, software);
/// VAES is only ever used where detected.
#[cfg(all(target_arch = "x86_64", not(miri)))]
#[test]
fn backend_follows_the_cpu() {
    let width = dash_core::FixedKeyHash::new().par_blocks();
    let want = if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("vaes") {
        64
    } else if is_x86_feature_detected!("vaes") {
        30
    } else if is_x86_feature_detected!("aes") {
        8
    } else {
        4
    };
    assert_eq!(width, want);
}
