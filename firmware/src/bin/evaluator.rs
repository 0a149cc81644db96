//! The evaluator on the microcontroller: streams in the garbled material of
//! an exact ReLU followed by a rescale (floor division by a product of base
//! primes) over a vector of CRT values, evaluates it, and writes the output
//! labels back for the host to decode and verify. Wires are packed
//! (`dash_core::compact::CompactEvaluator`), 24 bytes each.
//!
//! Input `eval.in` (written by `dash-firmware-host gen-eval`), little-endian:
//! `"DASHEV01"`, `n`, `k`, `divisor`, `ones`, `rows_per_element` (u32 each),
//! then `ones` × (u32 prime, 16-byte one-label), then per element `k` input
//! labels and `rows_per_element` garbled rows. Output `eval.out`: per
//! element `k` output labels; `eval.stats`: the measured figures as text.

#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use dash_core::compact::{CompactEvaluator, PackedOnes};
use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{CrtBase, FixedKeyHash};
use dash_firmware::{Counter, EvalHeader, Fail, HostFile, StreamSource};

/// Most moduli the circuit may use (one-labels held in RAM).
const MAX_MODULI: usize = 16;
/// Largest material request (rows) the stream buffer serves at once.
const STREAM_ROWS: usize = 64;
/// Largest vector accepted from the file.
const MAX_ELEMENTS: u32 = 1024;

#[entry]
fn main() -> ! {
    dash_firmware::paint_stack();
    let core = cortex_m::Peripherals::take().unwrap_or_else(|| dash_firmware::exit(Err(Fail::Io)));
    let counter = Counter::start(core.SYST);
    dash_firmware::exit(run(&counter))
}

#[derive(Default)]
struct Stats {
    elements: u32,
    gates: u64,
    rows: u64,
    relu_ticks: u64,
    rescale_ticks: u64,
    max_request: usize,
}

#[inline(never)]
fn run(counter: &Counter) -> Result<(), Fail> {
    let mut input = HostFile::open_read(c"eval.in")?;
    let h = EvalHeader::read(&mut input, MAX_ELEMENTS, MAX_MODULI)?;
    let (n, k, divisor, rows_per_element) = (h.n, h.k, h.divisor, h.rows_per_element);
    defmt::info!("evaluator: n={=u32} k={=usize} divisor={=u32} moduli={=u32}", n, k, divisor, h.ones);

    // The public circuit, rebuilt here exactly as the garbler built it.
    let base = CrtBase::first(k)?;
    let relu = SignGadget::new(&base, Accuracy::Exact)?;
    let rescale = build_rescale(&base, divisor)?;
    if rows_per_element as u64 != relu.relu_ciphertexts() + rescale.cost() {
        defmt::error!("material per element {=u32} does not match the circuit", rows_per_element);
        return Err(Fail::Format);
    }

    let ones: PackedOnes<MAX_MODULI> = h.read_ones(&mut input)?;
    let rows = h.stream_rows()?;
    let hash = FixedKeyHash::new();
    let mut output = HostFile::create(c"eval.out")?;
    let source: StreamSource<'_, STREAM_ROWS> = StreamSource::new(&mut input, rows);
    let mut ev = CompactEvaluator::new(&hash, &ones, source);
    let mut stats = Stats::default();
    for _ in 0..n {
        let x = dash_firmware::read_bundle(&mut ev, &base)?;
        let t0 = counter.now();
        let y = relu.relu(&mut ev, &x)?;
        stats.relu_ticks += counter.elapsed(t0);
        let t1 = counter.now();
        let z = rescale.apply(&mut ev, &y)?;
        stats.rescale_ticks += counter.elapsed(t1);
        stats.elements += 1;
        for w in z.wires() {
            output.write_block(w.block())?;
        }
    }
    stats.gates = ev.gates().peek();
    let source = ev.into_source();
    if source.remaining() != 0 {
        defmt::error!("{=u32} rows of material left over", source.remaining());
        return Err(Fail::Format);
    }
    stats.max_request = source.max_request;
    stats.rows = n as u64 * rows_per_element as u64;
    report(counter, &stats, relu.relu_ciphertexts(), rescale.cost())
}

/// The rescale gadget's construction searches digit orders with large
/// scratch; in its own frame that scratch is gone before evaluation starts.
#[inline(never)]
fn build_rescale(base: &CrtBase, divisor: u32) -> Result<Rescale, Fail> {
    Ok(Rescale::new(base, divisor as u64, Rounding::Floor)?)
}

fn report(counter: &Counter, s: &Stats, relu_rows: u64, rescale_rows: u64) -> Result<(), Fail> {
    let n = s.elements as u64;
    let relu_insns = counter.instructions(s.relu_ticks) / n;
    let rescale_insns = counter.instructions(s.rescale_ticks) / n;
    let per_row = counter.instructions(s.relu_ticks + s.rescale_ticks) / s.rows.max(1);
    let peak = dash_firmware::stack_peak();
    defmt::info!(
        "evaluated {=u64} elements: {=u64} gates, {=u64} rows; per element: relu {=u64} insns ({=u64} rows), rescale {=u64} insns ({=u64} rows); {=u64} insns per row",
        n,
        s.gates,
        s.rows,
        relu_insns,
        relu_rows,
        rescale_insns,
        rescale_rows,
        per_row
    );
    defmt::info!(
        "RAM: statics {=usize} B, peak stack {=usize} B of {=usize} B; largest material request {=usize} rows",
        dash_firmware::static_ram(),
        peak,
        dash_firmware::stack_capacity(),
        s.max_request
    );
    let mut text: heapless::String<512> = heapless::String::new();
    let _ = write!(
        text,
        "role=evaluator\nelements={n}\ngates={}\nrows={}\nrelu_rows={relu_rows}\nrescale_rows={rescale_rows}\n\
         relu_insns={relu_insns}\nrescale_insns={rescale_insns}\ninsns_per_row={per_row}\n\
         calibration_ticks={}\nstatic_ram={}\npeak_stack={peak}\nmax_request_rows={}\n",
        s.gates,
        s.rows,
        counter.calibration_ticks,
        dash_firmware::static_ram(),
        s.max_request
    );
    HostFile::create(c"eval.stats")?.write_all(text.as_bytes())
}
