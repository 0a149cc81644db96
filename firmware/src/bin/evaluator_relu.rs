//! The smallest useful evaluator: one exact ReLU per CRT value (k = 7), no
//! rescale. It exists to measure the RAM and flash targets for
//! exactly that circuit (`firmware/footprint.sh`); `evaluator` is the full
//! ReLU + rescale layer. It runs on the compact evaluator (packed 24-byte
//! wires) and keeps search, construction and evaluation in separate call
//! frames, which brings it under 16 KiB of RAM (`docs/EMBEDDED.md`).
//!
//! Input `relu.in`: the `eval.in` format with divisor 0 (written by
//! `dash-firmware-host gen-relu`). Output `relu.out` (per element `k`
//! output labels) and `relu.stats`.

#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use dash_core::compact::{CompactEvaluator, PackedOnes};
use dash_core::gadgets::sign::{Accuracy, MAX_POSITIONS, SignGadget};
use dash_core::{CrtBase, FixedKeyHash};
use dash_firmware::{Counter, EvalHeader, Fail, HostFile, StreamSource};

/// Most moduli the circuit may use (one-labels held in RAM).
const MAX_MODULI: usize = 12;
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

/// Reads the header, then builds the gadget and evaluates, each step in a
/// frame of its own so that their stack peaks never add up: the digit-order
/// search (several KiB of scratch) runs while this frame is all that is
/// live, and the gadget's construction before the evaluation buffers exist.
#[inline(never)]
fn run(counter: &Counter) -> Result<(), Fail> {
    let mut input = HostFile::open_read(c"relu.in")?;
    let h = EvalHeader::read(&mut input, MAX_ELEMENTS, MAX_MODULI)?;
    defmt::info!("relu evaluator: {}", h);
    let radices = find_radices(h.k)?;
    with_gadget(counter, &h, &radices, &mut input)
}

/// The exact sign gadget's digit order for the first `k` primes (the same
/// deterministic search the garbler ran); only the radices leave this frame.
#[inline(never)]
fn find_radices(k: usize) -> Result<heapless::Vec<u128, MAX_POSITIONS>, Fail> {
    Ok(SignGadget::search_radices(&CrtBase::first(k)?)?)
}

#[inline(never)]
fn with_gadget(counter: &Counter, h: &EvalHeader, radices: &[u128], input: &mut HostFile) -> Result<(), Fail> {
    let relu = SignGadget::with_radices(&CrtBase::first(h.k)?, Accuracy::Exact, radices)?;
    if h.divisor != 0 || h.rows_per_element as u64 != relu.relu_ciphertexts() {
        return Err(Fail::Format);
    }
    evaluate(counter, h, &relu, input)
}

#[inline(never)]
fn evaluate(counter: &Counter, h: &EvalHeader, relu: &SignGadget, input: &mut HostFile) -> Result<(), Fail> {
    let base = relu.base();
    let ones: PackedOnes<MAX_MODULI> = h.read_ones(input)?;
    let rows = h.stream_rows()?;
    let hash = FixedKeyHash::new();
    let mut output = HostFile::create(c"relu.out")?;
    let source: StreamSource<'_, STREAM_ROWS> = StreamSource::new(input, rows);
    let mut ev = CompactEvaluator::new(&hash, &ones, source);
    let mut ticks = 0;
    for _ in 0..h.n {
        let x = dash_firmware::read_bundle(&mut ev, base)?;
        let t0 = counter.now();
        let y = relu.relu(&mut ev, &x)?;
        ticks += counter.elapsed(t0);
        for w in y.wires() {
            output.write_block(w.block())?;
        }
    }
    let gates = ev.gates().peek();
    if ev.into_source().remaining() != 0 {
        return Err(Fail::Format);
    }
    report(counter, h, gates, counter.instructions(ticks) / h.n as u64)
}

/// The statistics, formatted in a frame of their own (after evaluation).
#[inline(never)]
fn report(counter: &Counter, h: &EvalHeader, gates: u64, relu_insns: u64) -> Result<(), Fail> {
    let peak = dash_firmware::stack_peak();
    defmt::info!(
        "evaluated {=u32} ReLUs, {=u64} gates: {=u64} insns per ReLU; RAM: statics {=usize} B, peak stack {=usize} B",
        h.n,
        gates,
        relu_insns,
        dash_firmware::static_ram(),
        peak
    );
    let mut text: heapless::String<256> = heapless::String::new();
    let _ = write!(
        text,
        "role=evaluator_relu\nelements={}\ngates={gates}\nrelu_rows={}\nrelu_insns={relu_insns}\n\
         calibration_ticks={}\nstatic_ram={}\npeak_stack={peak}\nlabel_bytes={}\nbundle_bytes={}\n",
        h.n,
        h.rows_per_element,
        counter.calibration_ticks,
        dash_firmware::static_ram(),
        core::mem::size_of::<dash_core::compact::PackedLabel>(),
        core::mem::size_of::<dash_core::Bundle<dash_core::compact::PackedLabel>>(),
    );
    HostFile::create(c"relu.stats")?.write_all(text.as_bytes())
}
