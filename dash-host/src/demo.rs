//! The walk-through behind `dashgc demo`: a small CRT computation garbled,
//! streamed into memory, evaluated, decoded and **verified**, then a
//! tampered result rejected.
//!
//! The circuit, for a private input vector `x` and public weights `W`,
//! bias `b`:
//!
//! * `y = W·x + b`: free linear arithmetic on every residue (constant
//!   multiplications, additions, the bias through the one-wires);
//! * `s = y²`: one projection gate per residue (`v ↦ v² mod p`, `p - 1`
//!   ciphertexts each): squaring residue-wise squares the CRT value;
//! * `q = s · (y mod 2)`: the mod-2 residue of `y` is its parity bit, and
//!   every residue of `s` is multiplied by it (`Backend::mul_bit`, which
//!   moves the bit into each modulus with projections: `p + 1`
//!   ciphertexts). So `q = y²` for odd `y`, else 0;
//! * `r = ReLU(y)`: the exact prime-only ReLU of
//!   [`dash_core::gadgets::sign::SignGadget`].
//!
//! The same generic [`circuit`] runs on the plaintext backend (the
//! reference), the cost counter, the garbler and the evaluator.

use crate::material::VecSink;
use anyhow::{Context, Result, bail, ensure};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CostCounter, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Modulus,
    PlainWire, Plaintext, SliceSource, crt,
};
use rand_core::CryptoRng;
use std::io::Write;
use std::time::{Duration, Instant};

/// Number of primes of the demo's CRT base (2·3·…·19, Q = 9 699 690).
pub const PRIMES: usize = 8;

/// The public part of the demo: CRT base, weights and bias.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    /// The CRT base every value lives on.
    pub base: CrtBase,
    /// `outputs × inputs` public weights.
    pub weights: Vec<Vec<i64>>,
    /// One public bias per output.
    pub bias: Vec<i64>,
    /// The exact ReLU gadget for `base`.
    pub relu: SignGadget,
}

impl DemoSpec {
    /// A spec with `inputs` inputs and `outputs` outputs and fixed small
    /// weights in `-5..=5`.
    pub fn new(inputs: usize, outputs: usize) -> Result<DemoSpec> {
        ensure!((1..=256).contains(&inputs), "--inputs must be in 1..=256");
        ensure!((1..=64).contains(&outputs), "--outputs must be in 1..=64");
        let weights =
            (0..outputs).map(|j| (0..inputs).map(|i| ((7 * j + 3 * i + j * i) % 11) as i64 - 5).collect()).collect();
        let bias = (0..outputs).map(|j| 10 * j as i64 - 15).collect();
        DemoSpec::with_weights(CrtBase::first(PRIMES)?, weights, bias)
    }

    /// A spec with explicit weights and bias on `base`.
    pub fn with_weights(base: CrtBase, weights: Vec<Vec<i64>>, bias: Vec<i64>) -> Result<DemoSpec> {
        ensure!(weights.len() == bias.len(), "one bias per weight row");
        let relu = SignGadget::new(&base, Accuracy::Exact)?;
        Ok(DemoSpec { base, weights, bias, relu })
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.weights.first().map_or(0, Vec::len)
    }

    /// Number of outputs `y_j` (the circuit returns `y_j`, `q_j`, `r_j` for each).
    pub fn outputs(&self) -> usize {
        self.weights.len()
    }

    /// The expected outputs computed directly on integers, in the order
    /// [`circuit`] returns them: `y_0, q_0, r_0, y_1, q_1, r_1, …`.
    pub fn expected(&self, x: &[i64]) -> Vec<i128> {
        let mut out = Vec::new();
        for (w, b) in self.weights.iter().zip(&self.bias) {
            let y: i128 = w.iter().zip(x).map(|(&w, &x)| i128::from(w) * i128::from(x)).sum::<i128>() + i128::from(*b);
            out.push(y);
            out.push(if y.rem_euclid(2) == 1 { y * y } else { 0 });
            out.push(y.max(0));
        }
        out
    }
}

/// The demo circuit on any backend: for every output row `j`, returns
/// `y_j = W_j·x + b_j`, `q_j = y_j²·(y_j mod 2)` and `r_j = ReLU(y_j)`.
pub fn circuit<B: Backend>(b: &mut B, spec: &DemoSpec, x: &[Bundle<B::Wire>]) -> Result<Vec<Bundle<B::Wire>>, Error> {
    let two = spec.base.moduli().iter().position(|m| m.value() == 2).ok_or(Error::InvalidCrtBase)?;
    let mut outputs = Vec::new();
    for (w, bias) in spec.weights.iter().zip(&spec.bias) {
        // Free: y = Σ w_i·x_i + bias.
        let mut y = crt::constant(b, &spec.base, 0)?;
        for (xi, &wi) in x.iter().zip(w) {
            let t = crt::cmul(b, xi, wi)?;
            y = crt::add(b, &y, &t)?;
        }
        let y = crt::add_constant(b, &y, i128::from(*bias))?;
        // One projection per residue: v ↦ v² mod p.
        let mut s = Vec::new();
        for wire in y.wires() {
            let m = b.modulus_of(wire);
            let p = u32::from(m.value());
            s.push(b.project(wire, m, move |v| ((u32::from(v) * u32::from(v)) % p) as u16)?);
        }
        // Multiply every residue of y² by the parity bit y mod 2.
        let bit = y.wires()[two].clone();
        let mut q = Vec::new();
        for wire in &s {
            q.push(b.mul_bit(wire, &bit)?);
        }
        let r = spec.relu.relu(b, &y)?;
        outputs.push(y);
        outputs.push(Bundle::from_wires(q)?);
        outputs.push(r);
    }
    Ok(outputs)
}

/// What the demo found.
#[derive(Clone, Debug)]
pub struct DemoOutcome {
    /// Every output decoded, verified and equal to the plaintext result.
    pub verified: bool,
    /// The tampered label was rejected by the authenticity check.
    pub tamper_rejected: bool,
    /// Ciphertexts (16-byte rows) of garbled material.
    pub ciphertexts: usize,
}

impl DemoOutcome {
    /// Whether the demo succeeded end to end.
    pub fn ok(&self) -> bool {
        self.verified && self.tamper_rejected
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn name(j: usize) -> String {
    let kind = ["y", "q", "relu"][j % 3];
    format!("{kind}[{}]", j / 3)
}

/// Runs the demo on the private input `x`, with keys from `rng`, writing a
/// report to `out`. An `Err` is an unexpected failure; a mismatch or an
/// accepted forgery is reported in the outcome.
pub fn run<R: CryptoRng + ?Sized>(spec: &DemoSpec, x: &[i64], rng: &mut R, out: &mut dyn Write) -> Result<DemoOutcome> {
    ensure!(x.len() == spec.inputs(), "expected {} inputs, got {}", spec.inputs(), x.len());
    let base = &spec.base;
    let expected = spec.expected(x);
    for v in &expected {
        ensure!(
            (base.min_value()..=base.max_value()).contains(v),
            "an output ({v}) is outside the CRT range; use smaller inputs"
        );
    }
    let primes: Vec<String> = base.moduli().iter().map(|m| m.value().to_string()).collect();
    writeln!(
        out,
        "dashgc demo: y = W·x + b over {} private inputs, {} outputs; then q = y² if y is odd, else 0, and relu = max(y, 0)",
        spec.inputs(),
        spec.outputs()
    )?;
    writeln!(
        out,
        "CRT base {} (Q = {}), signed range [{}, {}]",
        primes.join("·"),
        base.product(),
        base.min_value(),
        base.max_value()
    )?;
    writeln!(out, "private input x = {x:?}")?;
    for (j, (w, b)) in spec.weights.iter().zip(&spec.bias).enumerate() {
        writeln!(out, "public W[{j}] = {w:?}, b[{j}] = {b}")?;
    }
    writeln!(out)?;

    // Plaintext reference: the same circuit code on plain residues.
    let plain_inputs: Vec<Bundle<PlainWire>> = x
        .iter()
        .map(|&v| {
            let r = base.encode(i128::from(v))?;
            Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m)))
        })
        .collect::<Result<_, _>>()?;
    let plain: Vec<i128> = circuit(&mut Plaintext, spec, &plain_inputs)?
        .iter()
        .map(|bundle| {
            let r: Vec<u16> = bundle.wires().iter().map(PlainWire::value).collect();
            base.decode(&r)
        })
        .collect::<Result<_, _>>()?;
    ensure!(plain == expected, "plaintext backend disagrees with integer arithmetic: {plain:?} vs {expected:?}");

    // Cost, counted before garbling.
    let mut cc = CostCounter::new();
    let cc_inputs: Vec<Bundle<Modulus>> = (0..x.len())
        .map(|_| Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))))
        .collect::<Result<_, _>>()?;
    circuit(&mut cc, spec, &cc_inputs)?;

    // 1. Keys.
    let t = Instant::now();
    let moduli = spec.relu.moduli();
    let keys: GarblerKeys = GarblerKeys::generate(rng, &moduli)?;
    let hash = FixedKeyHash::new();
    let zero_inputs: Vec<_> = x.iter().map(|_| keys.input_bundle(base, rng)).collect::<Result<_, _>>()?;
    writeln!(
        out,
        "[1/6] keys      {:>10}  fresh Δ_p and one-wire for {} prime moduli, {} input zero labels (ChaCha20 seeded by the OS)",
        ms(t.elapsed()),
        moduli.len(),
        x.len() * base.len()
    )?;

    // 2. Garble, streaming rows into memory.
    let t = Instant::now();
    let mut garbler = Garbler::new(&hash, &keys, VecSink::with_capacity(cc.ciphertexts as usize));
    let zero_outputs = circuit(&mut garbler, spec, &zero_inputs)?;
    let gates = garbler.gates().peek();
    let material = garbler.into_sink();
    let garble_time = t.elapsed();
    writeln!(
        out,
        "[2/6] garble    {:>10}  {} gates, {} ciphertexts = {} bytes streamed into memory (cost counter predicted {})",
        ms(garble_time),
        gates,
        material.len(),
        material.bytes(),
        cc.ciphertexts
    )?;
    ensure!(material.len() as u64 == cc.ciphertexts, "garbled material differs from the counted cost");

    // 3. Encode: one label per input wire, and the one-labels.
    let t = Instant::now();
    let labels: Vec<_> = x
        .iter()
        .zip(&zero_inputs)
        .map(|(&v, z)| keys.encode_bundle(base, z, i128::from(v)))
        .collect::<Result<_, _>>()?;
    let ones = keys.one_labels();
    writeln!(
        out,
        "[3/6] encode    {:>10}  {} input labels ({} bytes) and {} one-labels sent to the evaluator",
        ms(t.elapsed()),
        x.len() * base.len(),
        x.len() * base.len() * 16,
        ones.labels().len()
    )?;

    // 4. Evaluate, reading the rows back in order.
    let t = Instant::now();
    let mut evaluator = Evaluator::new(&hash, &ones, SliceSource::new(material.rows()));
    let label_outputs = circuit(&mut evaluator, spec, &labels)?;
    let left = evaluator.source().remaining();
    let eval_time = t.elapsed();
    let returned: Vec<Vec<Block>> =
        label_outputs.iter().map(|b| b.wires().iter().map(|l| l.to_block()).collect()).collect();
    writeln!(
        out,
        "[4/6] evaluate  {:>10}  {} rows read, {} left; {} output labels ({} bytes) returned",
        ms(eval_time),
        material.len() - left,
        left,
        returned.len() * base.len(),
        returned.len() * base.len() * 16
    )?;
    ensure!(left == 0, "the evaluator left {left} rows unread");

    // 5. Decode and verify.
    let t = Instant::now();
    let decoded: Vec<Result<i128, Error>> =
        zero_outputs.iter().zip(&returned).map(|(z, r)| keys.decode_bundle(base, z, r)).collect();
    let decode_time = t.elapsed();
    writeln!(
        out,
        "[5/6] verify    {:>10}  every residue of every output checked against its expected label",
        ms(decode_time)
    )?;
    writeln!(out, "      {:<6} {:>12} {:>12}  verified", "output", "plaintext", "garbled")?;
    let mut verified = true;
    for (j, (d, p)) in decoded.iter().zip(&plain).enumerate() {
        let (shown, ok) = match d {
            Ok(v) => (v.to_string(), v == p),
            Err(e) => (format!("error: {e}"), false),
        };
        verified &= ok;
        writeln!(out, "      {:<6} {:>12} {:>12}  {}", name(j), p, shown, if ok { "yes" } else { "NO" })?;
    }

    // 6. Tamper with one bit of one returned label.
    let j = (rng.next_u32() as usize) % returned.len();
    let residue = (rng.next_u32() as usize) % base.len();
    let bit = rng.next_u32() % 128;
    let mut forged = returned[j].clone();
    forged[residue].0 ^= 1u128 << bit;
    let tamper = keys.decode_bundle(base, &zero_outputs[j], &forged);
    let tamper_rejected = matches!(tamper, Err(Error::AuthenticityCheckFailed));
    match &tamper {
        Err(e) => writeln!(
            out,
            "[6/6] tamper    flipped bit {bit} of {} (residue mod {}): rejected, \"{e}\"",
            name(j),
            base.moduli()[residue].value()
        )?,
        Ok(v) => writeln!(
            out,
            "[6/6] tamper    flipped bit {bit} of {} (residue mod {}): ACCEPTED as {v}",
            name(j),
            base.moduli()[residue].value()
        )?,
    }
    writeln!(out)?;
    let outcome = DemoOutcome { verified, tamper_rejected, ciphertexts: material.len() };
    if outcome.ok() {
        writeln!(
            out,
            "result: all {} outputs verified and equal to the plaintext result; the tampered label was rejected",
            returned.len()
        )?;
    } else {
        writeln!(out, "result: FAILED (verified: {verified}, tampering rejected: {tamper_rejected})")?;
    }
    Ok(outcome)
}

/// Random demo inputs in `-9..=9`.
pub fn random_inputs<R: CryptoRng + ?Sized>(rng: &mut R, n: usize) -> Vec<i64> {
    (0..n).map(|_| i64::from(rng.next_u32() % 19) - 9).collect()
}

/// Parses and range-checks user inputs.
pub fn check_inputs(spec: &DemoSpec, x: &[i64]) -> Result<()> {
    if x.len() != spec.inputs() {
        bail!("--x has {} values but --inputs is {}", x.len(), spec.inputs());
    }
    let worst = spec.expected(x).into_iter().map(i128::abs).max().unwrap_or(0);
    ensure!(worst <= spec.base.max_value(), "inputs too large: an output would leave the CRT range");
    Ok(())
}

/// Runs the demo and reports whether it succeeded, writing to stdout.
pub fn run_to_stdout<R: CryptoRng + ?Sized>(spec: &DemoSpec, x: &[i64], rng: &mut R) -> Result<DemoOutcome> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    run(spec, x, rng, &mut lock).context("demo failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn demo_verifies_and_rejects_tampering() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let spec = DemoSpec::new(8, 3).unwrap();
        for _ in 0..4 {
            let x = random_inputs(&mut rng, 8);
            let mut out = Vec::new();
            let outcome = run(&spec, &x, &mut rng, &mut out).unwrap();
            assert!(outcome.ok(), "{}", String::from_utf8_lossy(&out));
            // Per output: Σ(p-1) for the squares, Σ(p+1) for mul_bit, and a ReLU.
            let per_output: u64 = spec.base.moduli().iter().map(|m| 2 * u64::from(m.value())).sum();
            assert_eq!(outcome.ciphertexts as u64, 3 * (per_output + spec.relu.relu_ciphertexts()));
        }
    }

    #[test]
    fn expected_matches_hand_computation() {
        let spec =
            DemoSpec::with_weights(CrtBase::first(8).unwrap(), vec![vec![2, -1], vec![1, 1]], vec![1, 0]).unwrap();
        assert_eq!(spec.expected(&[3, 4]), vec![3, 9, 3, 7, 49, 7]);
        assert_eq!(spec.expected(&[2, 4]), vec![1, 1, 1, 6, 0, 6]);
        assert_eq!(spec.expected(&[-3, 4]), vec![-9, 81, 0, 1, 1, 1]);
    }

    #[test]
    fn oversized_inputs_are_refused() {
        let spec = DemoSpec::new(2, 1).unwrap();
        assert!(check_inputs(&spec, &[100_000, 100_000]).is_err());
        assert!(check_inputs(&spec, &[1]).is_err());
        assert!(check_inputs(&spec, &[1, 2]).is_ok());
    }
}
