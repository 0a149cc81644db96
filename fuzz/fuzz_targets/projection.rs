//! Projection gates with arbitrary tables, moduli and inputs: garbled,
//! evaluated and decoded, the result equals the table; a flipped bit in the
//! material never yields a wrong accepted value.
#![no_main]

use dash_core::{
    Backend, Block, CostCounter, Evaluator, FixedKeyHash, Garbler, GarblerKeys, MaterialSink, Modulus, PlainWire,
    Plaintext, SliceSource,
};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[derive(Debug, arbitrary::Arbitrary)]
struct Case {
    p_in: u8,
    p_out: u16,
    table: Vec<u16>,
    x: u16,
    seed: u64,
    flip: Option<(u16, u8)>,
}

struct VecSink(Vec<Block>);
impl MaterialSink for VecSink {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), dash_core::Error> {
        self.0.extend_from_slice(rows);
        Ok(())
    }
}

fuzz_target!(|case: Case| {
    let (Ok(mi), Ok(mo)) = (Modulus::new(case.p_in as u16), Modulus::new(case.p_out % 300)) else { return };
    let table = |x: u16| case.table.get(x as usize).copied().unwrap_or(x.wrapping_mul(7));
    let x = case.x % mi.value();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let hash = FixedKeyHash::new();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[mi, mo]).unwrap();
    let a0 = keys.input(mi, &mut rng).unwrap();
    let mut g = Garbler::new(&hash, &keys, VecSink(Vec::new()));
    let out0 = g.project(&a0, mo, table).unwrap();
    let mut rows = g.into_sink().0;
    let mut cost = CostCounter::new();
    cost.project(&mi, mo, table).unwrap();
    assert_eq!(cost.ciphertexts as usize, rows.len());
    let want = Plaintext.project(&PlainWire::new(x, mi), mo, table).unwrap().value();
    let ones = keys.one_labels();
    let mut tampered = false;
    if let Some((row, bit)) = case.flip {
        if !rows.is_empty() {
            let r = row as usize % rows.len();
            rows[r].0 ^= 1u128 << (bit % 128);
            tampered = true;
        }
    }
    let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
    match e.project(&keys.encode(&a0, x).unwrap(), mo, table) {
        Ok(label) => match keys.decode(&out0, label.to_block()) {
            Ok(v) => assert_eq!(v, want, "accepted a wrong value"),
            Err(_) => assert!(tampered, "untampered gate failed to decode"),
        },
        Err(_) => assert!(tampered, "untampered gate failed to evaluate"),
    }
});
