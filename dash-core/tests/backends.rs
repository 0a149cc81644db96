//! The primitives on every backend agree: garbled → evaluated → decoded equals
//! plaintext, cost counts equal the rows actually written, and tampering is
//! always caught.

mod common;
use common::VecSink;
use dash_core::{
    Backend, Block, CostCounter, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Modulus, PlainWire, Plaintext,
    SliceSource,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn m(p: u16) -> Modulus {
    Modulus::new(p).unwrap()
}

const SMALL: [u16; 11] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31];

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn mul_bit_exhaustive_small_primes() {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let hash = FixedKeyHash::new();
    for &p in &SMALL {
        let (mp, m2) = (m(p), m(2));
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[mp, m2]).unwrap();
        let x0 = keys.input(mp, &mut rng).unwrap();
        let b0 = keys.input(m2, &mut rng).unwrap();
        let mut g = Garbler::new(&hash, &keys, VecSink::new());
        let z0 = g.mul_bit(&x0, &b0).unwrap();
        let rows = g.into_sink().into_rows();
        let mut cost = CostCounter::new();
        cost.mul_bit(&mp, &m2).unwrap();
        assert_eq!(cost.ciphertexts as usize, rows.len(), "p = {p}");
        assert_eq!(rows.len(), p as usize + 1);
        assert_eq!(cost.gates, 1);
        let ones = keys.one_labels();
        for x in 0..p {
            for b in 0..2 {
                let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
                let z = e.mul_bit(&keys.encode(&x0, x).unwrap(), &keys.encode(&b0, b).unwrap()).unwrap();
                let want = Plaintext.mul_bit(&PlainWire::new(x, mp), &PlainWire::new(b, m2)).unwrap().value();
                assert_eq!(keys.decode(&z0, z.to_block()).unwrap(), want, "p {p} x {x} b {b}");
            }
        }
    }
}

#[test]
fn mul_bit_rejects_non_bits() {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let hash = FixedKeyHash::new();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[m(3), m(5)]).unwrap();
    let x0 = keys.input(m(5), &mut rng).unwrap();
    let b0 = keys.input(m(3), &mut rng).unwrap();
    let mut g = Garbler::new(&hash, &keys, VecSink::new());
    assert_eq!(g.mul_bit(&x0, &b0).unwrap_err(), Error::NotABit(3));
    assert_eq!(Plaintext.mul_bit(&PlainWire::new(1, m(5)), &PlainWire::new(1, m(3))).unwrap_err(), Error::NotABit(3));
}

#[test]
fn constants_come_from_the_one_label_only() {
    let mut rng = ChaCha20Rng::seed_from_u64(23);
    let hash = FixedKeyHash::new();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[m(7), m(11)]).unwrap();
    let ones = keys.one_labels();
    assert_eq!(ones.labels().len(), 2);
    let mut g = Garbler::new(&hash, &keys, VecSink::new());
    let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&[]));
    for c in 0..11 {
        let z = g.constant(c, m(11)).unwrap();
        let l = e.constant(c, m(11)).unwrap();
        assert_eq!(keys.decode(&z, l.to_block()).unwrap(), c);
    }
    // A modulus without keys is an error, not a default.
    assert_eq!(e.constant(1, m(13)).unwrap_err(), Error::MissingDelta(13));
    assert_eq!(g.constant(1, m(13)).unwrap_err(), Error::MissingDelta(13));
}

#[test]
fn output_tamper_any_bit_is_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(24);
    for p in [2u16, 3, 17, 251, 3181] {
        let mp = m(p);
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[mp]).unwrap();
        let z0 = keys.input(mp, &mut rng).unwrap();
        let other = keys.input(mp, &mut rng).unwrap();
        let x = (rng.next_u32() % p as u32) as u16;
        let good = keys.encode(&z0, x).unwrap().to_block();
        assert_eq!(keys.decode(&z0, good).unwrap(), x);
        for bit in 0..128 {
            let bad = Block(good.0 ^ (1u128 << bit));
            assert_eq!(keys.decode(&z0, bad), Err(Error::AuthenticityCheckFailed), "p {p} bit {bit}");
        }
        // A valid label of another wire, and garbage, are rejected too.
        let foreign = keys.encode(&other, x).unwrap().to_block();
        assert_eq!(keys.decode(&z0, foreign), Err(Error::AuthenticityCheckFailed));
        assert_eq!(keys.decode(&z0, Block(u128::MAX)), Err(Error::AuthenticityCheckFailed));
        assert_eq!(keys.decode(&z0, Block(0)), Err(Error::AuthenticityCheckFailed));
    }
}

#[test]
fn labels_from_another_circuit_are_rejected() {
    let mut rng = ChaCha20Rng::seed_from_u64(25);
    let mp = m(17);
    let keys_a: GarblerKeys = GarblerKeys::generate(&mut rng, &[mp]).unwrap();
    let keys_b: GarblerKeys = GarblerKeys::generate(&mut rng, &[mp]).unwrap();
    let za = keys_a.input(mp, &mut rng).unwrap();
    let zb = keys_b.input(mp, &mut rng).unwrap();
    for x in 0..17 {
        let replay = keys_b.encode(&zb, x).unwrap().to_block();
        assert_eq!(keys_a.decode(&za, replay), Err(Error::AuthenticityCheckFailed));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random primes up to 251, random tables, random inputs: garbled
    /// projection equals the table, and costs what the counter says.
    #[test]
    #[cfg_attr(miri, ignore = "64 random garbled tables: too slow for the interpreter, run natively")]
    fn projection_matches_plaintext(p_idx in 0usize..54, q_idx in 0usize..54, seed in any::<u64>(), table_seed in any::<u64>()) {
        let primes: Vec<u16> = (2..=251).filter(|&n| dash_core::modulus::is_prime(n)).collect();
        let (p, q) = (primes[p_idx], primes[q_idx]);
        let (mp, mq) = (m(p), m(q));
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let hash = FixedKeyHash::new();
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[mp, mq]).unwrap();
        let table: Vec<u16> = {
            let mut t = ChaCha20Rng::seed_from_u64(table_seed);
            (0..p).map(|_| (t.next_u32() % 65536) as u16).collect()
        };
        let phi = |x: u16| table[x as usize];
        let a0 = keys.input(mp, &mut rng).unwrap();
        let mut g = Garbler::new(&hash, &keys, VecSink::new());
        let out0 = g.project(&a0, mq, phi).unwrap();
        let rows = g.into_sink().into_rows();
        let mut cost = CostCounter::new();
        cost.project(&mp, mq, phi).unwrap();
        prop_assert_eq!(cost.ciphertexts as usize, rows.len());
        let ones = keys.one_labels();
        for _ in 0..4 {
            let x = (rng.next_u32() % p as u32) as u16;
            let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
            let got = e.project(&keys.encode(&a0, x).unwrap(), mq, phi).unwrap();
            let want = Plaintext.project(&PlainWire::new(x, mp), mq, phi).unwrap().value();
            prop_assert_eq!(keys.decode(&out0, got.to_block()).unwrap(), want);
        }
    }
}

#[test]
fn chained_gates_use_distinct_tweaks_and_stay_in_sync() {
    // Two projections of the same wire with the same table must produce
    // different rows (unique tweaks), and a chain of gates evaluates right.
    let mut rng = ChaCha20Rng::seed_from_u64(26);
    let hash = FixedKeyHash::new();
    let (m5, m7, m2) = (m(5), m(7), m(2));
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &[m5, m7, m2]).unwrap();
    let a0 = keys.input(m5, &mut rng).unwrap();
    let mut g = Garbler::new(&hash, &keys, VecSink::new());
    let p1 = g.project(&a0, m7, |x| x).unwrap();
    let p2 = g.project(&a0, m7, |x| x).unwrap();
    let bit = g.project(&p1, m2, |y| (y >= 3) as u16).unwrap();
    let s = g.add(&p1, &p2).unwrap();
    let prod = g.mul_bit(&s, &bit).unwrap();
    assert_eq!(g.gates().peek(), 4, "one gate id per project and per mul_bit");
    let rows = g.into_sink().into_rows();
    assert_ne!(rows[..4], rows[4..8], "same gate twice must not repeat rows");
    let ones = keys.one_labels();
    for x in 0..5u16 {
        let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
        let a = keys.encode(&a0, x).unwrap();
        let q1 = e.project(&a, m7, |x| x).unwrap();
        let q2 = e.project(&a, m7, |x| x).unwrap();
        let b = e.project(&q1, m2, |y| (y >= 3) as u16).unwrap();
        let s = e.add(&q1, &q2).unwrap();
        let z = e.mul_bit(&s, &b).unwrap();
        assert_eq!(e.source().remaining(), 0);
        let want = if x >= 3 { (2 * x) % 7 } else { 0 };
        assert_eq!(keys.decode(&prod, z.to_block()).unwrap(), want);
    }
}

/// `project_many` on the garbler and the evaluator (which share the wire's
/// hash halves between projections) equals `project` once per entry: the
/// same rows, byte for byte, the same output zero labels, and evaluated
/// labels that decode to the table values; for every input value of small
/// primes and for inputs above the sharing limit (73, 97).
#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn project_many_equals_project_one_by_one() {
    let mut rng = ChaCha20Rng::seed_from_u64(33);
    let hash = FixedKeyHash::new();
    let outs = [m(2), m(13), m(37), m(13), m(59)];
    let table = |j: usize, x: u16| (x as usize * (j + 3) + j) as u16;
    for p in [2u16, 3, 5, 7, 11, 13, 17, 37, 59, 61, 73, 97] {
        let mp = m(p);
        let mut moduli = vec![mp];
        moduli.extend(outs.iter().filter(|&&o| o != mp));
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &moduli).unwrap();
        let x0 = keys.input(mp, &mut rng).unwrap();

        let mut one_by_one = Garbler::new(&hash, &keys, VecSink::new());
        let mut want = Vec::new();
        for (j, &out) in outs.iter().enumerate() {
            want.push(one_by_one.project(&x0, out, |x| table(j, x)).unwrap());
        }
        let rows = one_by_one.into_sink().into_rows();

        let mut many = Garbler::new(&hash, &keys, VecSink::new());
        let mut got = Vec::new();
        many.project_many(&x0, &outs, table, |_, j, w| {
            assert_eq!(j, got.len());
            got.push(w.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(many.gates().peek(), outs.len() as u64);
        assert_eq!(many.into_sink().into_rows(), rows, "p = {p}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.as_label().to_block(), w.as_label().to_block(), "p = {p}");
        }

        let ones = keys.one_labels();
        for x in (0..p).step_by(1 + p as usize / 12) {
            let label = keys.encode(&x0, x).unwrap();
            let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
            let mut decoded = Vec::new();
            e.project_many(&label, &outs, table, |_, j, l| {
                decoded.push(keys.decode(&want[j], l.to_block()).unwrap());
                Ok(())
            })
            .unwrap();
            let expect: Vec<u16> = outs.iter().enumerate().map(|(j, o)| table(j, x) % o.value()).collect();
            assert_eq!(decoded, expect, "p {p} x {x}");
        }
    }
}
