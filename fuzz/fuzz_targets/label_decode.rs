//! Untrusted blocks: decoding any 128 bits as a label of any modulus either
//! fails cleanly or round-trips; the garbler's verified decode never accepts
//! anything but the one valid label.
#![no_main]

use dash_core::{Block, Error, GarblerKeys, Label, Modulus};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

fuzz_target!(|input: (u16, u128, u64)| {
    let (p, bits, seed) = input;
    let Ok(m) = Modulus::new(p % (dash_core::MAX_MODULUS + 1)) else { return };
    match Label::from_block(m, Block(bits)) {
        Ok(label) => {
            assert!(label.digits().iter().all(|&d| d < m.value()));
            assert_eq!(label.to_block(), Block(bits));
        }
        Err(e) => assert_eq!(e, Error::InvalidLabelEncoding),
    }
    let hashed = Label::from_hash(m, Block(bits));
    assert!(hashed.digits().iter().all(|&d| d < m.value()));

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[m]).unwrap();
    let zero = keys.input(m, &mut rng).unwrap();
    match keys.decode(&zero, Block(bits)) {
        Ok(x) => assert_eq!(keys.encode(&zero, x).unwrap().to_block(), Block(bits)),
        Err(e) => assert_eq!(e, Error::AuthenticityCheckFailed),
    }
});
