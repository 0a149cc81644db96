//! Host side of the firmware test (`firmware/run.sh`).
//!
//! * `gen-eval DIR` garbles an exact ReLU followed by a floor rescale over a
//!   vector of CRT values (k = 7) and writes `DIR/eval.in` for the
//!   evaluator firmware; `check-eval DIR` garbles again from the same seed
//!   (the keys are a deterministic function of it), decodes and verifies
//!   `DIR/eval.out` and compares with the plaintext reference.
//! * `gen-garble DIR` writes `DIR/garble.in` (the RNG seed and the inputs)
//!   for the garbler firmware; `check-garble DIR` evaluates the firmware's
//!   `DIR/garble.out` with dash-core, decodes it with the decoding
//!   information the firmware emitted, and compares with the reference.
//!
//! Every check exits non-zero on the first mismatch or malformed file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Block, Bundle, CrtBase, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Label, MaterialSink, Modulus, OneLabels,
    SliceSource, ZeroLabel,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The test's parameters: the first 7 primes (Q = 510510), divisor 35.
const K: usize = 7;
const DIVISOR: u64 = 35;
/// Fixed test seeds (a test: determinism is the point).
const EVAL_SEED: u64 = 0x00da_5eed_e7a1;
const GARBLE_SEED: [u8; 32] = *b"dash-firmware garbler test seed!";

/// Largest file the checks read (a guard against a runaway firmware).
const MAX_FILE: u64 = 64 << 20;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result =
        match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("gen-eval"), Some(dir)) => gen_eval(Path::new(dir)),
            (Some("check-eval"), Some(dir)) => check_eval(Path::new(dir)),
            (Some("gen-relu"), Some(dir)) => gen_relu(Path::new(dir)),
            (Some("check-relu"), Some(dir)) => check_relu(Path::new(dir)),
            (Some("gen-garble"), Some(dir)) => gen_garble(Path::new(dir)),
            (Some("check-garble"), Some(dir)) => check_garble(Path::new(dir)),
            _ => Err("usage: dash-firmware-host (gen-eval|check-eval|gen-relu|check-relu|gen-garble|check-garble) DIR"
                .into()),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn core_err(e: dash_core::Error) -> String {
    format!("dash-core: {e}")
}

/// Plaintext reference of the evaluator circuit: floor(max(x, 0) / d), or
/// max(x, 0) for the ReLU-only circuit.
fn eval_reference(x: i128, divisor: Option<u64>) -> i128 {
    x.max(0).div_euclid(divisor.unwrap_or(1) as i128)
}

/// The evaluator test's inputs: both ends of the signed range and values
/// around zero and around multiples of the divisor.
fn eval_inputs(base: &CrtBase) -> Vec<i128> {
    vec![base.min_value(), -1000, -1, 0, 1, 34, 35, 70_001, base.max_value()]
}

fn read_file(path: &Path) -> Res<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    if len > MAX_FILE {
        return Err(format!("{}: {len} bytes is more than the {MAX_FILE} allowed", path.display()));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_file(path: PathBuf, bytes: &[u8]) -> Res<()> {
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

struct VecSink(Vec<Block>);

impl MaterialSink for VecSink {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), dash_core::Error> {
        self.0.extend_from_slice(rows);
        Ok(())
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_block(out: &mut Vec<u8>, b: Block) {
    out.extend_from_slice(&b.0.to_le_bytes());
}

/// A bounds-checked little-endian reader over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(format!("{}: truncated", self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn block(&mut self) -> Res<Block> {
        Ok(Block(u128::from_le_bytes(self.take(16)?.try_into().expect("16 bytes"))))
    }
    fn finish(&self) -> Res<()> {
        if self.bytes.is_empty() { Ok(()) } else { Err(format!("{}: {} trailing bytes", self.what, self.bytes.len())) }
    }
}

/// Everything the garbler of the evaluator test holds: the file for the
/// firmware and the secrets that decode its answer.
struct EvalGarbling {
    file: Vec<u8>,
    keys: GarblerKeys,
    outputs: Vec<Bundle<ZeroLabel>>,
    inputs: Vec<i128>,
    base: CrtBase,
}

/// Garbles the evaluator test circuit: ReLU then rescale by `divisor`, or
/// the ReLU alone for `None`. Deterministic in [`EVAL_SEED`], so `check-*`
/// recomputes the very keys `gen-*` used.
fn garble_eval(divisor: Option<u64>) -> Res<EvalGarbling> {
    let mut rng = ChaCha20Rng::seed_from_u64(EVAL_SEED);
    let base = CrtBase::first(K).map_err(core_err)?;
    let relu = SignGadget::new(&base, Accuracy::Exact).map_err(core_err)?;
    let rescale = divisor.map(|d| Rescale::new(&base, d, Rounding::Floor)).transpose().map_err(core_err)?;
    let mut moduli: Vec<Modulus> = relu.moduli().iter().copied().collect();
    if let Some(r) = &rescale {
        moduli.extend_from_slice(r.moduli());
    }
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &moduli).map_err(core_err)?;
    let hash = FixedKeyHash::new();
    let inputs = eval_inputs(&base);
    let rows_per_element = relu.relu_ciphertexts() + rescale.as_ref().map_or(0, Rescale::cost);

    let ones = keys.one_labels();
    let mut file = b"DASHEV01".to_vec();
    for v in [inputs.len() as u64, K as u64, divisor.unwrap_or(0), ones.labels().len() as u64, rows_per_element] {
        put_u32(&mut file, u32::try_from(v).map_err(|_| "parameter does not fit u32")?);
    }
    for l in ones.labels() {
        put_u32(&mut file, l.modulus().value() as u32);
        put_block(&mut file, l.to_block());
    }
    let mut garbler = Garbler::new(&hash, &keys, VecSink(Vec::new()));
    let mut outputs = Vec::new();
    for &x in &inputs {
        let zero = keys.input_bundle(&base, &mut rng).map_err(core_err)?;
        let y = relu.relu(&mut garbler, &zero).map_err(core_err)?;
        let z = match &rescale {
            Some(r) => r.apply(&mut garbler, &y).map_err(core_err)?,
            None => y,
        };
        let material = std::mem::take(&mut garbler.sink().0);
        if material.len() as u64 != rows_per_element {
            return Err(format!("garbled {} rows per element, expected {rows_per_element}", material.len()));
        }
        for l in keys.encode_bundle(&base, &zero, x).map_err(core_err)?.wires() {
            put_block(&mut file, l.to_block());
        }
        for row in material {
            put_block(&mut file, row);
        }
        outputs.push(z);
    }
    Ok(EvalGarbling { file, keys, outputs, inputs, base })
}

fn gen_eval(dir: &Path) -> Res<()> {
    write_eval(dir, "eval.in", Some(DIVISOR))
}

fn gen_relu(dir: &Path) -> Res<()> {
    write_eval(dir, "relu.in", None)
}

fn check_eval(dir: &Path) -> Res<()> {
    verify_eval(dir, "eval.out", Some(DIVISOR))
}

fn check_relu(dir: &Path) -> Res<()> {
    verify_eval(dir, "relu.out", None)
}

fn write_eval(dir: &Path, name: &str, divisor: Option<u64>) -> Res<()> {
    let g = garble_eval(divisor)?;
    write_file(dir.join(name), &g.file)?;
    println!("{name}: {} elements, {} bytes", g.inputs.len(), g.file.len());
    Ok(())
}

fn verify_eval(dir: &Path, name: &str, divisor: Option<u64>) -> Res<()> {
    let g = garble_eval(divisor)?;
    let bytes = read_file(&dir.join(name))?;
    let mut r = Reader { bytes: &bytes, what: name };
    for (i, (&x, zero)) in g.inputs.iter().zip(&g.outputs).enumerate() {
        let returned: Vec<Block> = (0..K).map(|_| r.block()).collect::<Res<_>>()?;
        let got = g.keys.decode_bundle(&g.base, zero, &returned).map_err(|e| format!("element {i}: {e}"))?;
        let want = eval_reference(x, divisor);
        let d = divisor.unwrap_or(1);
        if got != want {
            return Err(format!("element {i}: floor(relu({x})/{d}) decoded to {got}, reference {want}"));
        }
        println!("  element {i}: floor(relu({x})/{d}) = {got}  (verified, matches reference)");
    }
    r.finish()?;
    println!("evaluator on the Cortex-M: {} outputs decoded, authentic and equal to the reference", g.inputs.len());
    Ok(())
}

/// The garbler test's inputs.
fn garble_inputs() -> Vec<i32> {
    vec![-255_255, -12_345, -1, 0, 1, 12_345, 255_254]
}

fn gen_garble(dir: &Path) -> Res<()> {
    let inputs = garble_inputs();
    let mut file = b"DASHGA01".to_vec();
    put_u32(&mut file, inputs.len() as u32);
    put_u32(&mut file, K as u32);
    file.extend_from_slice(&GARBLE_SEED);
    for v in &inputs {
        file.extend_from_slice(&v.to_le_bytes());
    }
    write_file(dir.join("garble.in"), &file)?;
    println!("garble.in: {} inputs, seed {:?}", inputs.len(), std::str::from_utf8(&GARBLE_SEED).unwrap_or("?"));
    Ok(())
}

/// Reads `count` (prime, block) pairs as labels.
fn read_labels(r: &mut Reader<'_>, count: u32) -> Res<Vec<Label>> {
    (0..count)
        .map(|_| {
            let p = u16::try_from(r.u32()?).map_err(|_| "modulus out of range")?;
            let m = Modulus::new(p).map_err(core_err)?;
            Label::from_block(m, r.block()?).map_err(core_err)
        })
        .collect()
}

fn check_garble(dir: &Path) -> Res<()> {
    let inputs = garble_inputs();
    let bytes = read_file(&dir.join("garble.out"))?;
    let mut r = Reader { bytes: &bytes, what: "garble.out" };
    if r.take(8)? != b"DASHGO01" {
        return Err("garble.out: bad magic".into());
    }
    let (n, k, one_count, rows_per_element) = (r.u32()?, r.u32()? as usize, r.u32()?, r.u32()?);
    if n as usize != inputs.len() || k != K || one_count > 64 || rows_per_element > 1 << 20 {
        return Err(format!("garble.out: unexpected header n={n} k={k} ones={one_count} rows={rows_per_element}"));
    }
    let base = CrtBase::first(k).map_err(core_err)?;
    let relu = SignGadget::new(&base, Accuracy::Exact).map_err(core_err)?;
    if rows_per_element as u64 != relu.relu_ciphertexts() {
        return Err(format!(
            "garble.out: {rows_per_element} rows per element, the ReLU has {}",
            relu.relu_ciphertexts()
        ));
    }
    let mut ones: OneLabels = OneLabels::default();
    for l in read_labels(&mut r, one_count)? {
        ones.push(l).map_err(core_err)?;
    }
    // The file holds, per element: input labels, material, output zero
    // labels. The evaluator sees the material as one stream.
    let mut input_labels = Vec::new();
    let mut material = Vec::new();
    let mut zeros = Vec::new();
    for _ in 0..n {
        let x: Vec<Label> =
            base.moduli().iter().map(|m| Label::from_block(*m, r.block()?).map_err(core_err)).collect::<Res<_>>()?;
        input_labels.push(Bundle::from_wires(x).map_err(core_err)?);
        for _ in 0..rows_per_element {
            material.push(r.block()?);
        }
        let z: Vec<Label> =
            base.moduli().iter().map(|m| Label::from_block(*m, r.block()?).map_err(core_err)).collect::<Res<_>>()?;
        zeros.push(z);
    }
    let deltas = read_labels(&mut r, k as u32)?;
    r.finish()?;

    let hash = FixedKeyHash::new();
    let mut ev = Evaluator::new(&hash, &ones, SliceSource::new(&material));
    for (i, ((x, value), zero)) in input_labels.iter().zip(&inputs).zip(&zeros).enumerate() {
        let y = relu.relu(&mut ev, x).map_err(core_err)?;
        let mut residues = Vec::new();
        for ((out, z), m) in y.wires().iter().zip(zero).zip(base.moduli()) {
            let delta = deltas.iter().find(|d| d.modulus() == *m).ok_or("no offset for an output modulus")?;
            // Decode by colour, then verify: the label must be exactly
            // zero + x·Δ (fail closed on anything else).
            let digit = m.sub(out.colour(), z.colour());
            let expected = z.add(&delta.cmul(digit)).map_err(core_err)?;
            if expected.to_block() != out.to_block() {
                return Err(format!("element {i}: output label of modulus {} is not authentic", m.value()));
            }
            residues.push(digit);
        }
        let got = base.decode(&residues).map_err(core_err)?;
        let want = (*value as i128).max(0);
        if got != want {
            return Err(format!("element {i}: relu({value}) decoded to {got}, reference {want}"));
        }
        println!("  element {i}: relu({value}) = {got}  (verified, matches reference)");
    }
    if ev.into_source().remaining() != 0 {
        return Err("garble.out: material left over after the circuit".into());
    }
    println!("garbler on the Cortex-M: {n} ReLUs evaluated on the host, authentic and equal to the reference");
    Ok(())
}
