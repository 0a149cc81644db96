//! Projection gates with arbitrary tables, moduli (input moduli up to
//! `MAX_PROJECTION_INPUT`, any output modulus) and inputs: a batch of gates
//! is garbled, evaluated one by one through the `Garbler`/`Evaluator`
//! backends and again with `projection::evaluate_batch`, and decoded; every
//! result equals the table (the `Plaintext` backend), the row count equals
//! `projection_rows` and the cost counter, and a flipped bit in the
//! material never yields a wrong accepted value. The gates that share the
//! first gate's input modulus are also garbled with the first gate's table
//! through `projection::garble_batch`: the same rows and output labels as
//! `projection::garble` gate by gate.
#![no_main]

use arbitrary::Arbitrary;
use dash_core::projection::{self, projection_rows};
use dash_core::{
    Backend, CostCounter, Domain, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Label, Modulus, PlainWire, Plaintext,
    SliceSource, Tweak, ZeroLabel,
};
use dash_host::material::VecSink;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[derive(Arbitrary, Debug)]
struct Gate {
    p_in: u16,
    table: Vec<u16>,
    /// Table entries past `table` are `x·mul + add` (wrapping).
    mul: u16,
    add: u16,
    x: u16,
}

#[derive(Arbitrary, Debug)]
struct Case {
    p_out: u16,
    gates: Vec<Gate>,
    seed: u64,
    flip: Option<(u16, u8)>,
}

fn table_of(g: &Gate) -> impl Fn(u16) -> u16 + '_ {
    move |x: u16| g.table.get(x as usize).copied().unwrap_or(x.wrapping_mul(g.mul).wrapping_add(g.add))
}

fuzz_target!(|case: Case| {
    let Ok(mo) = Modulus::new(case.p_out % (dash_core::MAX_MODULUS + 1)) else { return };
    let gates: Vec<(Modulus, &Gate)> = case
        .gates
        .iter()
        .take(12)
        .filter_map(|g| Modulus::new(g.p_in % (dash_core::MAX_PROJECTION_INPUT + 1)).ok().map(|m| (m, g)))
        .collect();
    if gates.is_empty() {
        return;
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let hash = FixedKeyHash::new();
    let mut moduli: Vec<Modulus> = gates.iter().map(|(m, _)| *m).collect();
    moduli.push(mo);
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &moduli).unwrap();

    // Garble every gate through the backend (gate identifiers 0, 1, ...).
    let zeros: Vec<_> = gates.iter().map(|(m, _)| keys.input(*m, &mut rng).unwrap()).collect();
    let mut g = Garbler::new(&hash, &keys, VecSink::new());
    let outs0: Vec<_> =
        gates.iter().zip(&zeros).map(|((_, gate), z)| g.project(z, mo, table_of(gate)).unwrap()).collect();
    let mut rows = g.into_sink().into_rows();
    let mut cost = CostCounter::new();
    for (m, gate) in &gates {
        cost.project(m, mo, table_of(gate)).unwrap();
    }
    assert_eq!(cost.ciphertexts as usize, rows.len());
    assert_eq!(gates.iter().map(|(m, _)| projection_rows(*m)).sum::<usize>(), rows.len());

    let xs: Vec<u16> = gates.iter().map(|(m, gate)| gate.x % m.value()).collect();
    let want: Vec<u16> = gates
        .iter()
        .zip(&xs)
        .map(|((m, gate), &x)| Plaintext.project(&PlainWire::new(x, *m), mo, table_of(gate)).unwrap().value())
        .collect();
    let inputs: Vec<Label> = zeros.iter().zip(&xs).map(|(z, &x)| keys.encode(z, x).unwrap()).collect();

    let mut tampered = false;
    if let Some((row, bit)) = case.flip
        && !rows.is_empty()
    {
        let r = row as usize % rows.len();
        rows[r].0 ^= 1u128 << (bit % 128);
        tampered = true;
    }

    // One by one, through the evaluator backend.
    let ones = keys.one_labels();
    let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
    let mut single = Vec::new();
    for ((_, gate), input) in gates.iter().zip(&inputs) {
        match e.project(input, mo, table_of(gate)) {
            Ok(label) => single.push(Some(label)),
            Err(_) => {
                assert!(tampered, "untampered gate failed to evaluate");
                single.push(None);
            }
        }
    }
    // All at once, batched (same tweaks as the backend's gate numbering).
    let tweaks: Vec<Tweak> = (0..gates.len() as u64).map(|i| Tweak::new(Domain::Projection, i, 0)).collect();
    let mut batch = vec![Label::zero(mo); gates.len()];
    let batched = projection::evaluate_batch(&hash, &tweaks, &inputs, mo, &mut SliceSource::new(&rows), &mut batch);
    if batched.is_err() {
        assert!(tampered, "untampered batch failed to evaluate");
    }

    // One table for a batch of gates: `garble_batch` equals `garble` per gate.
    let m0 = gates[0].0;
    let table0 = table_of(gates[0].1);
    let (d_in, d_out) = (keys.delta(m0).unwrap(), keys.delta(mo).unwrap());
    let batch_inputs: Vec<_> =
        zeros.iter().zip(&gates).filter(|(_, (m, _))| *m == m0).map(|(z, _)| z.clone()).collect();
    let batch_tweaks: Vec<Tweak> =
        (0..batch_inputs.len() as u64).map(|i| Tweak::new(Domain::Projection, 1000 + i, 0)).collect();
    let mut per_gate = VecSink::new();
    let expected: Vec<_> = batch_inputs
        .iter()
        .zip(&batch_tweaks)
        .map(|(z, t)| projection::garble(&hash, *t, z, d_in, d_out, &table0, &mut per_gate).unwrap())
        .collect();
    let mut batched_rows = VecSink::new();
    let mut batch_outputs: Vec<_> = batch_inputs.iter().map(|_| ZeroLabel::new(Label::zero(mo))).collect();
    projection::garble_batch(
        &hash,
        &batch_tweaks,
        &batch_inputs,
        d_in,
        d_out,
        &table0,
        &mut batched_rows,
        &mut batch_outputs,
    )
    .unwrap();
    assert_eq!(per_gate.rows(), batched_rows.rows(), "garble_batch rows differ from garble");
    for (a, b) in expected.iter().zip(&batch_outputs) {
        assert_eq!(a.as_label().to_block(), b.as_label().to_block(), "garble_batch output differs from garble");
    }

    for (i, (out0, want)) in outs0.iter().zip(&want).enumerate() {
        if let Some(label) = &single[i] {
            match keys.decode(out0, label.to_block()) {
                Ok(v) => assert_eq!(v, *want, "accepted a wrong value"),
                Err(_) => assert!(tampered, "untampered gate failed to decode"),
            }
            if batched.is_ok() {
                assert_eq!(batch[i].to_block(), label.to_block(), "batched evaluation differs from single");
            }
        }
    }
});
