//! The data owner on the microcontroller: garbles whole inferences of the
//! network it carries in flash (FHE-DiNN-100, 784-100-10 with sign
//! activation, exported by `dashgc device export`) on the inputs its sensor
//! gives it, streams the material to an untrusted evaluator, and accepts
//! only a verified answer.
//!
//! Per inference: a fresh key set from the device's generator, the material
//! streamed as it is produced (header with one-labels, layer tags, rows,
//! trailer: `dash-host`'s format) with the input labels between the header
//! and the layers (sent as they are drawn), then the evaluator's output
//! labels are read back, decoded and **verified**; the prediction (arg-max)
//! is printed, or the answer is rejected.
//!
//! Semihosting files (QEMU's working directory), all binary little-endian:
//!
//! * `entropy.bin` (read once at boot): 32 bytes that seed the device's
//!   generator, a ChaCha12 DRBG. This models the board's hardware entropy
//!   source (a real part seeds from its TRNG; `docs/EMBEDDED.md`).
//! * `images.bin` (the sensor): `"DASHIMG\0"`, u32 count, u32 length (the
//!   network's input size), then `count` inputs of `length` pixels (u8).
//! * `link.tx` (to the evaluator) and `link.rx` (from it): the link, FIFOs
//!   under `firmware/run.sh`; the framing is in `dash-host/src/device_eval.rs`
//!   (`"INFR"` index, material header, input labels, layers and trailer;
//!   answer; `"DONE"` count).
//! * `results.txt` (written): one line per inference, the verified
//!   prediction or `rejected`; `netgarbler.stats`: figures for
//!   `footprint.sh`.
//!
//! The same lines go to the semihosting console (QEMU's standard error).

#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use dash_core::Block;
use dash_core::compact_garbler::CtPacked;
use dash_firmware::{Counter, Fail, HostFile, Instant};
use dash_mcu::McuError;
use dash_mcu::garble::{self, DevicePlan, KeySlot, Link, Phase, Probe};
use dash_mcu::netfile::NetFile;
use rand_chacha::ChaCha12Rng;
use rand_core::SeedableRng;

/// The network image in flash.
static NET: &[u8] = include_bytes!("../../net/fhe_dinn100.dnet");

/// Key-set capacity (moduli): FHE-DiNN-100 on k = 7 keys 10.
const MODULI: usize = 10;
/// Dense accumulators, 32-bit words: 100 outputs × 20 words (p = 3: 80
/// digits in 8-bit lanes).
const ACC_WORDS: usize = 100 * 20;
/// The activation buffer, packed zero labels: 100 elements × 7 residues.
const ACT_SLOTS: usize = 100 * 7;
/// Largest input and output the image accepts.
const MAX_INPUT: usize = 784;
const MAX_OUTPUT: usize = 10;
/// Output labels read back per inference (outputs × k, k = 7).
const MAX_ANSWER: usize = MAX_OUTPUT * 7;

#[entry]
fn main() -> ! {
    dash_firmware::paint_stack();
    let core = cortex_m::Peripherals::take().unwrap_or_else(|| dash_firmware::exit(Err(Fail::Io)));
    let counter = Counter::start(core.SYST);
    dash_firmware::exit(run(&counter))
}

/// The link: a semihosting file (a FIFO under `run.sh`).
struct FileLink<'f>(&'f mut HostFile);

impl Link for FileLink<'_> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), McuError> {
        self.0.write_all(bytes).map_err(|_| McuError::Link)
    }
}

/// Instructions per phase (QEMU `-icount`, SysTick).
struct Meter<'c> {
    counter: &'c Counter,
    last: Instant,
    ticks: [u64; 7],
}

impl Meter<'_> {
    fn restart(&mut self) {
        self.last = self.counter.now();
    }

    fn insns(&self, phase: Phase) -> u64 {
        self.counter.instructions(self.ticks[phase as usize])
    }

    fn total(&self) -> u64 {
        self.counter.instructions(self.ticks.iter().sum())
    }
}

impl Probe for Meter<'_> {
    fn mark(&mut self, phase: Phase) {
        let now = self.counter.now();
        self.ticks[phase as usize] += self.counter.between(self.last, now);
        self.last = now;
    }
}

fn mcu(e: McuError) -> Fail {
    match e {
        McuError::Core(c) => Fail::Core(c),
        McuError::Link => Fail::Io,
        _ => Fail::Format,
    }
}

/// The plan in a frame of its own (the sign gadget's digit-order search
/// needs scratch that is gone before the first inference).
#[inline(never)]
fn plan(net: &NetFile<'_>) -> Result<DevicePlan, Fail> {
    DevicePlan::new(net).map_err(|e| {
        defmt::error!("the embedded network does not plan: {}", e);
        mcu(e)
    })
}

/// The device's generator: a ChaCha12 DRBG (as `rand`'s `StdRng`) seeded with
/// 256 bits from the entropy source; one key set per inference is drawn from
/// it. ChaCha20 costs about 20 M more instructions per inference here.
#[inline(never)]
fn generator() -> Result<ChaCha12Rng, Fail> {
    let mut seed = [0u8; 32];
    HostFile::open_read(c"entropy.bin")?.read_exact(&mut seed)?;
    let rng = ChaCha12Rng::from_seed(seed);
    seed.fill(0);
    core::hint::black_box(&mut seed);
    Ok(rng)
}

/// Writes a line to the console (semihosting standard error) and to
/// `results.txt`.
fn say(results: &mut HostFile, text: &str) -> Result<(), Fail> {
    if let Ok(mut err) = cortex_m_semihosting::hio::hstderr() {
        let _ = err.write_all(text.as_bytes());
    }
    results.write_all(text.as_bytes())
}

#[inline(never)]
fn run(counter: &Counter) -> Result<(), Fail> {
    let net = NetFile::parse(NET).map_err(mcu)?;
    let plan = plan(&net)?;
    let (k, n, outputs) = (net.base.len(), net.input_len, net.output_len());
    if n > MAX_INPUT || outputs > MAX_OUTPUT || garble::act_slots(&net) > ACT_SLOTS {
        return Err(Fail::Format);
    }
    defmt::info!(
        "netgarbler: network of {=usize} layers, {=usize} inputs, {=usize} outputs, k={=usize}, {=u64} rows per inference",
        net.layers.len(),
        n,
        outputs,
        k,
        plan.total_rows()
    );
    let mut rng = generator()?;

    let mut images = HostFile::open_read(c"images.bin")?;
    let mut magic = [0u8; 8];
    images.read_exact(&mut magic)?;
    let count = images.read_u32()?;
    if &magic != b"DASHIMG\0" || images.read_u32()? as usize != n || count == 0 {
        return Err(Fail::Format);
    }
    // The link: to the evaluator first, then back (the host opens them in
    // the same order).
    let mut tx = HostFile::create(c"link.tx")?;
    let mut rx = HostFile::open_read(c"link.rx")?;
    let mut results = HostFile::create(c"results.txt")?;

    let mut acts = [const { CtPacked::EMPTY }; ACT_SLOTS];
    let mut keys = KeySlot::new();
    let mut meter = Meter { counter, last: counter.now(), ticks: [0; 7] };
    let (mut accepted, mut rejected, mut rows) = (0u32, 0u32, 0u64);
    let mut pixels = [0u8; MAX_INPUT];
    for i in 0..count {
        images.read_exact(&mut pixels[..n])?;
        let mut frame = [0u8; 8];
        frame[..4].copy_from_slice(b"INFR");
        frame[4..].copy_from_slice(&i.to_le_bytes());
        tx.write_all(&frame)?;
        let (verdict, r) =
            inference(&net, &plan, &mut rng, &mut tx, &mut rx, &pixels[..n], &mut keys, &mut acts, &mut meter)?;
        rows = r;
        let mut line: heapless::String<96> = heapless::String::new();
        match verdict {
            Ok(prediction) => {
                accepted += 1;
                let _ = writeln!(line, "inference {i}: prediction {prediction} (answer verified)");
            }
            Err(()) => {
                rejected += 1;
                let _ = writeln!(line, "inference {i}: rejected (authenticity check failed)");
            }
        }
        say(&mut results, &line)?;
    }
    let mut done = [0u8; 8];
    done[..4].copy_from_slice(b"DONE");
    done[4..].copy_from_slice(&count.to_le_bytes());
    tx.write_all(&done)?;
    drop(tx);
    drop(rx);

    report(counter, &meter, count, accepted, rejected, rows)
}

/// The run's figures: defmt log and `netgarbler.stats` (a frame of its own,
/// so its text buffer is not on the stack during the inferences).
#[inline(never)]
fn report(
    counter: &Counter,
    meter: &Meter<'_>,
    count: u32,
    accepted: u32,
    rejected: u32,
    rows: u64,
) -> Result<(), Fail> {
    let per = |p: Phase| meter.insns(p) / count as u64;
    let total = meter.total() / count as u64;
    let peak = dash_firmware::stack_peak();
    defmt::info!(
        "{=u32} inferences ({=u32} verified, {=u32} rejected), {=u64} rows each: {=u64} insns per inference (keys {=u64}, dense {=u64}, gadgets {=u64}, inputs {=u64}, decode {=u64})",
        count,
        accepted,
        rejected,
        rows,
        total,
        per(Phase::Keys),
        per(Phase::Dense),
        per(Phase::Gadget),
        per(Phase::Encode),
        per(Phase::Decode)
    );
    defmt::info!(
        "RAM: statics {=usize} B, peak stack {=usize} B of {=usize} B",
        dash_firmware::static_ram(),
        peak,
        dash_firmware::stack_capacity()
    );
    let mut text: heapless::String<768> = heapless::String::new();
    let _ = write!(
        text,
        "role=netgarbler\ninferences={count}\naccepted={accepted}\nrejected={rejected}\nrows={rows}\n\
         insns_per_inference={total}\nkeys_insns={}\nheader_insns={}\ndense_insns={}\ngadget_insns={}\n\
         trailer_insns={}\nencode_insns={}\ndecode_insns={}\ncalibration_ticks={}\nstatic_ram={}\npeak_stack={peak}\n",
        per(Phase::Keys),
        per(Phase::Header),
        per(Phase::Dense),
        per(Phase::Gadget),
        per(Phase::Trailer),
        per(Phase::Encode),
        per(Phase::Decode),
        counter.calibration_ticks,
        dash_firmware::static_ram(),
    );
    HostFile::create(c"netgarbler.stats")?.write_all(text.as_bytes())
}

/// One inference: garble and stream, send the inputs, read the answer,
/// decode and verify. `Ok(Ok(class))` for a verified answer, `Ok(Err(()))`
/// for a rejected one; `Err` for anything else (the run stops).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn inference(
    net: &NetFile<'_>,
    plan: &DevicePlan,
    rng: &mut ChaCha12Rng,
    tx: &mut HostFile,
    rx: &mut HostFile,
    pixels: &[u8],
    keys: &mut KeySlot<MODULI>,
    acts: &mut [CtPacked],
    meter: &mut Meter<'_>,
) -> Result<(Result<usize, ()>, u64), Fail> {
    let mut link = FileLink(tx);
    meter.restart();
    let inf = garble::garble::<_, _, _, _, MODULI, ACC_WORDS>(net, plan, rng, pixels, &mut link, keys, acts, meter)
        .map_err(|e| {
            defmt::error!("garbling failed: {}", e);
            mcu(e)
        })?;
    let k = net.base.len();
    let mut answer = [Block::ZERO; MAX_ANSWER];
    let answer = &mut answer[..inf.outputs() * k];
    for b in answer.iter_mut() {
        *b = rx.read_block()?;
    }
    meter.restart();
    let mut values = [0i64; MAX_OUTPUT];
    let values = &mut values[..inf.outputs()];
    let verdict = match inf.decode(answer, values, meter) {
        Ok(()) => Ok(dash_mcu::argmax(values)),
        Err(e) if e.is_authenticity() => Err(()),
        Err(e) => return Err(mcu(e)),
    };
    Ok((verdict, inf.rows))
}
