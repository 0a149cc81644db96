//! The board support alone, without dash-core: the same startup, stack
//! painting, instruction counter, semihosting file and defmt logging as the
//! evaluator and garbler images. Its flash and RAM are subtracted from
//! theirs to give dash-core's own footprint (`firmware/footprint.sh`).

#![no_std]
#![no_main]

use core::fmt::Write as _;

use cortex_m_rt::entry;
use dash_firmware::{Counter, Fail, HostFile};

#[entry]
fn main() -> ! {
    dash_firmware::paint_stack();
    let core = cortex_m::Peripherals::take().unwrap_or_else(|| dash_firmware::exit(Err(Fail::Io)));
    let counter = Counter::start(core.SYST);
    dash_firmware::exit(run(&counter))
}

#[inline(never)]
fn run(counter: &Counter) -> Result<(), Fail> {
    let peak = dash_firmware::stack_peak();
    defmt::info!("baseline: calibration {=u64} ticks, peak stack {=usize} B", counter.calibration_ticks, peak);
    let mut text: heapless::String<128> = heapless::String::new();
    let _ = write!(
        text,
        "role=baseline\ncalibration_ticks={}\nstatic_ram={}\npeak_stack={peak}\n",
        counter.calibration_ticks,
        dash_firmware::static_ram()
    );
    HostFile::create(c"baseline.stats")?.write_all(text.as_bytes())
}
