//! Untrusted blocks: decoding any 128 bits as a label of any modulus either
//! fails cleanly or round-trips; the garbler's verified output decode
//! (`decode`, `decode_ct`, `decode_bundle` on a CRT base from the fuzzer)
//! never accepts anything but the one valid label of the value, and the
//! constant-time and branching decoders agree.
#![no_main]

use arbitrary::Arbitrary;
use dash_core::{Block, CrtBase, Error, GarblerKeys, Label, Modulus};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[derive(Arbitrary, Debug)]
struct Case {
    p: u16,
    bits: u128,
    seed: u64,
    /// Primes of a CRT base (reduced into the supported range), the value
    /// the evaluator claims, and the blocks it returns: honest ones with
    /// some replaced by fuzzer blocks.
    primes: Vec<u16>,
    value: i64,
    returned: Vec<(u8, u128)>,
    extra: bool,
}

fuzz_target!(|case: Case| {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    if let Ok(m) = Modulus::new(case.p % (dash_core::MAX_MODULUS + 1)) {
        let bits = case.bits;
        match Label::from_block(m, Block(bits)) {
            Ok(label) => {
                assert!(label.digits().iter().all(|&d| d < m.value()));
                assert_eq!(label.to_block(), Block(bits));
                assert_eq!(Label::from_digits(m, label.digits()).unwrap().to_block(), Block(bits));
            }
            Err(e) => assert_eq!(e, Error::InvalidLabelEncoding),
        }
        let hashed = Label::from_hash(m, Block(bits));
        assert!(hashed.digits().iter().all(|&d| d < m.value()));

        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[m]).unwrap();
        let zero = keys.input(m, &mut rng).unwrap();
        let ct = keys.decode_ct(&zero, Block(bits)).unwrap();
        match keys.decode(&zero, Block(bits)) {
            Ok(x) => {
                assert_eq!(keys.encode(&zero, x).unwrap().to_block(), Block(bits));
                assert_eq!(Option::<u16>::from(ct), Some(x), "decode_ct disagrees with decode");
            }
            Err(e) => {
                assert_eq!(e, Error::AuthenticityCheckFailed);
                assert!(bool::from(ct.is_none()), "decode_ct accepted what decode rejected");
            }
        }
    }

    // Bundle decode: a base from the fuzzer, the honest labels of a value,
    // some replaced. Accepted only if every block is the honest one.
    let primes: Vec<u16> = case.primes.iter().take(8).map(|p| p % 1024).collect();
    let Ok(base) = CrtBase::new(&primes) else { return };
    if base.is_empty() {
        return;
    }
    let Ok(keys) = GarblerKeys::<32>::generate(&mut rng, base.moduli()) else { return };
    let zero = keys.input_bundle(&base, &mut rng).unwrap();
    let q = base.product() as i128;
    let value = base.min_value() + (case.value as i128).rem_euclid(q);
    let honest: Vec<Block> =
        keys.encode_bundle(&base, &zero, value).unwrap().wires().iter().map(Label::to_block).collect();
    let mut returned = honest.clone();
    for &(i, bits) in &case.returned {
        let i = i as usize % returned.len();
        returned[i] = Block(bits);
    }
    if case.extra {
        returned.push(Block(case.bits));
    }
    match keys.decode_bundle(&base, &zero, &returned) {
        Ok(v) => {
            assert_eq!(returned, honest, "decode_bundle accepted a block that is not the honest label");
            assert_eq!(v, value);
        }
        Err(e) => {
            assert!(matches!(e, Error::AuthenticityCheckFailed | Error::LengthMismatch), "{e:?}");
            assert_ne!(returned, honest, "decode_bundle rejected the honest labels");
        }
    }
});
