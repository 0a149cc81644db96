//! The garbler on the microcontroller: garbles an exact ReLU over a small
//! vector of CRT values (k = 7), streams the material out with the input
//! labels and the output decoding information, and times projection gates
//! (garbled and evaluated on the device, and checked there).
//!
//! Input `garble.in` (written by `dash-firmware-host gen-garble`),
//! little-endian: `"DASHGA01"`, `n`, `k` (u32), a 32-byte ChaCha20 seed,
//! `n` values (i32). The seed is a fixed *test* seed from the host: a real
//! device seeds from its hardware RNG instead.
//!
//! Output `garble.out`: `"DASHGO01"`, `n`, `k`, `ones`, `rows_per_element`
//! (u32), `ones` × (u32 prime, one-label), per element `k` input labels,
//! `rows_per_element` rows and `k` output zero labels, then `k` × (u32
//! prime, offset Δ). The zero labels and offsets are the garbler's secrets:
//! they are written out only because this is a test whose checker decodes
//! on the host; a deployed garbler keeps them and decodes itself.

#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, CrtBase, Evaluator, FixedKeyHash, Garbler, GarblerKeys, GateCounter, Modulus, SliceSink,
    SliceSource,
};
use dash_firmware::{Counter, Fail, HostFile, StreamSink};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Most moduli the circuit may use (offsets held in RAM).
const MAX_MODULI: usize = 16;
/// Largest vector accepted from the file.
const MAX_ELEMENTS: u32 = 64;
/// Projection gates timed, and their modulus (in and out).
const BENCH_GATES: usize = 8;
const BENCH_MODULUS: u16 = 17;

#[entry]
fn main() -> ! {
    dash_firmware::paint_stack();
    let core = cortex_m::Peripherals::take().unwrap_or_else(|| dash_firmware::exit(Err(Fail::Io)));
    let counter = Counter::start(core.SYST);
    dash_firmware::exit(run(&counter))
}

#[inline(never)]
fn run(counter: &Counter) -> Result<(), Fail> {
    let mut input = HostFile::open_read(c"garble.in")?;
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != b"DASHGA01" {
        return Err(Fail::Format);
    }
    let n = input.read_u32()?;
    let k = input.read_u32()? as usize;
    let mut seed = [0u8; 32];
    input.read_exact(&mut seed)?;
    if n == 0 || n > MAX_ELEMENTS {
        return Err(Fail::Format);
    }
    defmt::info!("garbler: n={=u32} k={=usize}", n, k);
    let mut rng = ChaCha20Rng::from_seed(seed);

    let base = CrtBase::first(k)?;
    let relu = SignGadget::new(&base, Accuracy::Exact)?;
    let bench_modulus = Modulus::new(BENCH_MODULUS)?;
    let mut moduli: heapless::Vec<Modulus, MAX_MODULI> = relu.moduli().iter().copied().collect();
    moduli.push(bench_modulus).map_err(|_| Fail::Format)?;
    let keys: GarblerKeys<MAX_MODULI> = GarblerKeys::generate(&mut rng, &moduli)?;
    let hash = FixedKeyHash::new();
    let rows_per_element = u32::try_from(relu.relu_ciphertexts()).map_err(|_| Fail::Format)?;

    let mut out = HostFile::create(c"garble.out")?;
    out.write_all(b"DASHGO01")?;
    let ones = keys.one_labels();
    for v in [n, k as u32, ones.labels().len() as u32, rows_per_element] {
        out.write_u32(v)?;
    }
    for l in ones.labels() {
        out.write_u32(l.modulus().value() as u32)?;
        out.write_block(l.to_block())?;
    }

    let mut garbler = Garbler::new(&hash, &keys, StreamSink::new(&mut out));
    let mut relu_ticks = 0u64;
    for _ in 0..n {
        let value = input.read_u32()? as i32;
        let zero = keys.input_bundle(&base, &mut rng)?;
        let x = keys.encode_bundle(&base, &zero, value as i128)?;
        for l in x.wires() {
            garbler.sink().file().write_block(l.to_block())?;
        }
        let rows_before = garbler.sink().rows;
        let t0 = counter.now();
        let y = relu.relu(&mut garbler, &zero)?;
        relu_ticks += counter.elapsed(t0);
        if garbler.sink().rows - rows_before != rows_per_element {
            return Err(Fail::Format);
        }
        for w in y.wires() {
            garbler.sink().file().write_block(w.as_label().to_block())?;
        }
    }
    let next_gate = garbler.gates().peek();
    let rows = garbler.sink().rows;
    for m in base.moduli() {
        out.write_u32(m.value() as u32)?;
        out.write_block(keys.delta(*m)?.as_label().to_block())?;
    }
    drop(out);

    let (garble_ticks, eval_ticks) = bench_projection(counter, &hash, &keys, bench_modulus, next_gate, &mut rng)?;
    let relu_insns = counter.instructions(relu_ticks) / n as u64;
    let garble_insns = counter.instructions(garble_ticks) / BENCH_GATES as u64;
    let eval_insns = counter.instructions(eval_ticks) / BENCH_GATES as u64;
    let peak = dash_firmware::stack_peak();
    defmt::info!(
        "garbled {=u32} ReLUs, {=u32} rows: {=u64} insns per ReLU ({=u32} rows); projection mod {=u16}: garble {=u64}, evaluate {=u64} insns per gate",
        n,
        rows,
        relu_insns,
        rows_per_element,
        BENCH_MODULUS,
        garble_insns,
        eval_insns
    );
    defmt::info!(
        "RAM: statics {=usize} B, peak stack {=usize} B of {=usize} B",
        dash_firmware::static_ram(),
        peak,
        dash_firmware::stack_capacity()
    );
    let mut text: heapless::String<512> = heapless::String::new();
    let _ = write!(
        text,
        "role=garbler\nelements={n}\nrows={rows}\nrelu_rows={rows_per_element}\nrelu_garble_insns={relu_insns}\n\
         proj_modulus={BENCH_MODULUS}\nproj_garble_insns={garble_insns}\nproj_eval_insns={eval_insns}\n\
         calibration_ticks={}\nstatic_ram={}\npeak_stack={peak}\n",
        counter.calibration_ticks,
        dash_firmware::static_ram(),
    );
    HostFile::create(c"garble.stats")?.write_all(text.as_bytes())
}

/// Garbles [`BENCH_GATES`] projection gates (`x -> x^2 mod p`) into RAM,
/// evaluates them on the same device, and checks every output decodes to
/// the table's value. Returns the ticks spent garbling and evaluating.
/// Gate identifiers continue after the circuit's, so no tweak repeats
/// under these keys.
#[inline(never)]
fn bench_projection(
    counter: &Counter,
    hash: &FixedKeyHash,
    keys: &GarblerKeys<MAX_MODULI>,
    m: Modulus,
    first_gate: u64,
    rng: &mut ChaCha20Rng,
) -> Result<(u64, u64), Fail> {
    let p = m.value();
    let table = move |x: u16| ((x as u32 * x as u32) % p as u32) as u16;
    let mut rows = [Block::ZERO; BENCH_GATES * (BENCH_MODULUS as usize - 1)];
    let mut inputs: heapless::Vec<_, BENCH_GATES> = heapless::Vec::new();
    let mut outputs: heapless::Vec<_, BENCH_GATES> = heapless::Vec::new();
    for _ in 0..BENCH_GATES {
        let _ = inputs.push(keys.input(m, rng)?);
    }
    let mut garbler = Garbler::with_gates(hash, keys, GateCounter::starting_at(first_gate), SliceSink::new(&mut rows));
    let t0 = counter.now();
    for zero in &inputs {
        let _ = outputs.push(garbler.project(zero, m, table)?);
    }
    let garble_ticks = counter.elapsed(t0);

    let ones = keys.one_labels();
    let mut ev = Evaluator::with_gates(hash, &ones, GateCounter::starting_at(first_gate), SliceSource::new(&rows));
    let mut labels: heapless::Vec<_, BENCH_GATES> = heapless::Vec::new();
    for (i, zero) in inputs.iter().enumerate() {
        let _ = labels.push(keys.encode(zero, (i as u16 * 5 + 3) % p)?);
    }
    let t1 = counter.now();
    let mut results: heapless::Vec<_, BENCH_GATES> = heapless::Vec::new();
    for l in &labels {
        let _ = results.push(ev.project(l, m, table)?);
    }
    let eval_ticks = counter.elapsed(t1);
    for (i, (out, zero)) in results.iter().zip(&outputs).enumerate() {
        let want = table((i as u16 * 5 + 3) % p);
        if keys.decode(zero, out.to_block())? != want {
            defmt::error!("projection gate {=usize} decoded wrongly", i);
            return Err(Fail::Format);
        }
    }
    Ok((garble_ticks, eval_ticks))
}
