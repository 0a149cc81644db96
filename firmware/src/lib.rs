//! Board support shared by the two firmware images (`evaluator`, `garbler`):
//! semihosting files that stream garbled material in and out, an
//! instruction counter, stack painting, and the exit path.
//!
//! Everything that touches hardware or the host lives here; the binaries
//! only call `dash-core`. The file formats are described in
//! `firmware/README.md` and implemented on the host side by
//! `firmware/host`.

#![no_std]

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_semihosting::{debug, nr};
use dash_core::{Block, Error, MaterialSink, MaterialSource};

// The global logger (defmt frames on semihosting stdout) and the
// critical-section implementation it needs.
use defmt_semihosting as _;

/// Bytes per garbled row / packed label.
pub const BLOCK_BYTES: usize = Block::BYTES;

/// Why a firmware run failed (logged, then QEMU exits non-zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Fail {
    /// A `dash-core` error.
    Core(Error),
    /// A semihosting file could not be opened, read or written.
    Io,
    /// An input file had the wrong magic, version or sizes.
    Format,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Core(e)
    }
}

/// Ends the QEMU run: exit status 0 on `Ok`, 1 on `Err`.
pub fn exit(result: Result<(), Fail>) -> ! {
    match result {
        Ok(()) => {
            defmt::info!("exit: success");
            debug::exit(debug::EXIT_SUCCESS);
        }
        Err(e) => {
            defmt::error!("exit: failure {}", e);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    // Not reached under QEMU; on a board without a debugger, stop here.
    loop {
        cortex_m::asm::wfi();
    }
}

/// A file on the host, opened through semihosting (relative names resolve
/// against QEMU's working directory).
pub struct HostFile {
    fd: usize,
}

impl HostFile {
    /// Opens `name` (NUL-terminated) for binary reading.
    pub fn open_read(name: &core::ffi::CStr) -> Result<HostFile, Fail> {
        HostFile::open(name, nr::open::R_BINARY)
    }

    /// Creates or truncates `name` (NUL-terminated) for binary writing.
    pub fn create(name: &core::ffi::CStr) -> Result<HostFile, Fail> {
        HostFile::open(name, nr::open::W_TRUNC_BINARY)
    }

    fn open(name: &core::ffi::CStr, mode: usize) -> Result<HostFile, Fail> {
        let bytes = name.to_bytes();
        // SAFETY: SYS_OPEN reads `len` bytes of the NUL-terminated name and
        // writes nothing; the pointer is valid for the call.
        let fd = unsafe { cortex_m_semihosting::syscall(nr::OPEN, &[bytes.as_ptr() as usize, mode, bytes.len()]) };
        if fd as isize == -1 { Err(Fail::Io) } else { Ok(HostFile { fd }) }
    }

    /// Fills `buf` completely, or fails (short file). A FIFO or a serial
    /// line may deliver fewer bytes per call than asked: the call is
    /// repeated until `buf` is full; a call that delivers nothing is the end
    /// of the file.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Fail> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            // SAFETY: SYS_READ writes at most `len` bytes into `rest`, which
            // is valid and exclusively borrowed for the call.
            let not_read =
                unsafe { cortex_m_semihosting::syscall(nr::READ, &[self.fd, rest.as_mut_ptr() as usize, rest.len()]) };
            let got = rest.len().checked_sub(not_read).ok_or(Fail::Io)?;
            if got == 0 {
                return Err(Fail::Io);
            }
            done += got;
        }
        Ok(())
    }

    /// Writes all of `buf` (repeating the call after a partial write).
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), Fail> {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: SYS_WRITE reads `len` bytes from `rest`, valid for the call.
            let not_written =
                unsafe { cortex_m_semihosting::syscall(nr::WRITE, &[self.fd, rest.as_ptr() as usize, rest.len()]) };
            let put = rest.len().checked_sub(not_written).ok_or(Fail::Io)?;
            if put == 0 {
                return Err(Fail::Io);
            }
            done += put;
        }
        Ok(())
    }

    /// Reads a little-endian `u32`.
    pub fn read_u32(&mut self) -> Result<u32, Fail> {
        let mut b = [0u8; 4];
        self.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads one 16-byte block (little-endian `u128`).
    pub fn read_block(&mut self) -> Result<Block, Fail> {
        let mut b = [0u8; BLOCK_BYTES];
        self.read_exact(&mut b)?;
        Ok(Block(u128::from_le_bytes(b)))
    }

    /// Writes a little-endian `u32`.
    pub fn write_u32(&mut self, v: u32) -> Result<(), Fail> {
        self.write_all(&v.to_le_bytes())
    }

    /// Writes one block (little-endian `u128`).
    pub fn write_block(&mut self, b: Block) -> Result<(), Fail> {
        self.write_all(&b.0.to_le_bytes())
    }
}

impl Drop for HostFile {
    fn drop(&mut self) {
        // SAFETY: SYS_CLOSE takes only the handle.
        unsafe { cortex_m_semihosting::syscall(nr::CLOSE, &[self.fd]) };
    }
}

/// Rows staged per semihosting call when streaming material.
const STAGE_ROWS: usize = 16;

/// Garbled material streamed from a host file, `CAP` rows at a time at
/// most: the evaluator's RAM holds one gate batch, never the whole circuit.
/// At most `limit` rows are read (the count the file's header declares), so
/// a short or oversized file is an error, not a hang.
pub struct StreamSource<'f, const CAP: usize> {
    file: &'f mut HostFile,
    rows: [Block; CAP],
    remaining: u32,
    /// Largest single request seen (sizes `CAP`; reported by the firmware).
    pub max_request: usize,
}

impl<'f, const CAP: usize> StreamSource<'f, CAP> {
    /// A source that will read at most `limit` rows from `file`.
    pub fn new(file: &'f mut HostFile, limit: u32) -> Self {
        StreamSource { file, rows: [Block::ZERO; CAP], remaining: limit, max_request: 0 }
    }

    /// Rows declared but not read yet.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

impl<const CAP: usize> MaterialSource for StreamSource<'_, CAP> {
    fn next_rows(&mut self, count: usize) -> Result<&[Block], Error> {
        self.max_request = self.max_request.max(count);
        if count > CAP {
            defmt::error!("material request of {=usize} rows exceeds the stream buffer ({=usize})", count, CAP);
            return Err(Error::SourceExhausted);
        }
        let wanted = u32::try_from(count).map_err(|_| Error::SourceExhausted)?;
        self.remaining = self.remaining.checked_sub(wanted).ok_or(Error::SourceExhausted)?;
        let mut stage = [0u8; STAGE_ROWS * BLOCK_BYTES];
        for chunk in self.rows[..count].chunks_mut(STAGE_ROWS) {
            let bytes = &mut stage[..chunk.len() * BLOCK_BYTES];
            self.file.read_exact(bytes).map_err(|_| Error::SourceExhausted)?;
            for (row, b) in chunk.iter_mut().zip(bytes.chunks_exact(BLOCK_BYTES)) {
                let mut a = [0u8; BLOCK_BYTES];
                a.copy_from_slice(b);
                *row = Block(u128::from_le_bytes(a));
            }
        }
        Ok(&self.rows[..count])
    }
}

/// Garbled material streamed to a host file as it is produced.
pub struct StreamSink<'f> {
    file: &'f mut HostFile,
    /// Rows written.
    pub rows: u32,
}

impl<'f> StreamSink<'f> {
    /// A sink appending to `file`.
    pub fn new(file: &'f mut HostFile) -> Self {
        StreamSink { file, rows: 0 }
    }

    /// The file, for writing what goes between gadgets (input labels,
    /// decoding information).
    pub fn file(&mut self) -> &mut HostFile {
        self.file
    }
}

impl MaterialSink for StreamSink<'_> {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        let mut stage = [0u8; STAGE_ROWS * BLOCK_BYTES];
        for chunk in rows.chunks(STAGE_ROWS) {
            for (row, b) in chunk.iter().zip(stage.chunks_exact_mut(BLOCK_BYTES)) {
                b.copy_from_slice(&row.0.to_le_bytes());
            }
            self.file.write_all(&stage[..chunk.len() * BLOCK_BYTES]).map_err(|_| Error::SinkFull)?;
        }
        self.rows = self.rows.saturating_add(rows.len() as u32);
        Ok(())
    }
}

/// Instruction counting with QEMU's `-icount shift=0`: every instruction
/// advances virtual time by 1 ns, and SysTick runs on the 25 MHz CPU clock
/// of virtual time, so it ticks once per 40 instructions. The ratio is not
/// assumed: [`Counter::start`] times a block of exactly
/// [`CALIBRATION_NOPS`] instructions and scales by it.
///
/// SysTick is a 24-bit down-counter; it is read without its wrap interrupt
/// (under `-icount` an interrupt is taken only at the end of a translation
/// block, so a wrap count would race the counter). Intervals must therefore
/// stay below 2^24 ticks (about 670 million instructions): time one gadget,
/// not a whole run.
pub struct Counter {
    /// Ticks measured for [`CALIBRATION_NOPS`] instructions.
    pub calibration_ticks: u64,
}

/// Length of the calibration block (instructions).
pub const CALIBRATION_NOPS: u64 = 100_000;

/// A SysTick reading (see [`Counter::elapsed`]).
#[derive(Clone, Copy)]
pub struct Instant(u32);

impl Counter {
    /// Starts SysTick free-running on the core clock and calibrates it.
    pub fn start(mut syst: SYST) -> Counter {
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(0x00FF_FFFF);
        syst.clear_current();
        syst.disable_interrupt();
        syst.enable_counter();
        let mut c = Counter { calibration_ticks: 0 };
        // The loop and call overhead is timed separately and taken off.
        let t0 = c.now();
        for _ in 0..CALIBRATION_NOPS / 1_000 {
            nops_1k();
        }
        let with_nops = c.elapsed(t0);
        let t1 = c.now();
        for _ in 0..CALIBRATION_NOPS / 1_000 {
            no_nops();
        }
        c.calibration_ticks = with_nops.saturating_sub(c.elapsed(t1));
        c
    }

    /// The counter now.
    pub fn now(&self) -> Instant {
        Instant(SYST::get_current())
    }

    /// Ticks from `from` to `to` (modulo 2^24).
    pub fn between(&self, from: Instant, to: Instant) -> u64 {
        (from.0.wrapping_sub(to.0) & 0x00FF_FFFF) as u64
    }

    /// Ticks since `from` (modulo 2^24: see the type's documentation).
    pub fn elapsed(&self, from: Instant) -> u64 {
        (from.0.wrapping_sub(SYST::get_current()) & 0x00FF_FFFF) as u64
    }

    /// Ticks converted to instructions (the calibration block is exact).
    pub fn instructions(&self, ticks: u64) -> u64 {
        if self.calibration_ticks == 0 {
            return 0;
        }
        ticks * CALIBRATION_NOPS / self.calibration_ticks
    }
}

/// 1,000 `nop`s (2 KB of code).
#[inline(never)]
fn nops_1k() {
    // SAFETY: only `nop`s; no memory or register effects.
    unsafe {
        core::arch::asm!(".rept 1000", "nop", ".endr", options(nomem, nostack, preserves_flags));
    }
}

/// The same call without the `nop`s (the calibration loop's overhead).
#[inline(never)]
fn no_nops() {
    // SAFETY: an empty block; it only keeps the call from being removed.
    unsafe {
        core::arch::asm!("", options(nomem, nostack, preserves_flags));
    }
}

/// The word painted over free stack before the run.
const PAINT: u32 = 0xC0DE_57AC;

unsafe extern "C" {
    static mut _stack_end: u32;
    static mut _stack_start: u32;
}

/// Paints the unused stack (from the end of statics up to a little below
/// the current stack pointer) so that [`stack_peak`] can find the deepest
/// word ever written. Call first thing in `main`, before any big frame.
#[inline(never)]
pub fn paint_stack() {
    let bottom = &raw mut _stack_end as usize;
    let sp = cortex_m::register::msp::read() as usize;
    // Leave this function's own frame (and some margin) alone.
    let top = sp.saturating_sub(64) & !3;
    let mut p = bottom;
    while p < top {
        // SAFETY: [bottom, top) is RAM between the statics and the live
        // stack; nothing owns it yet.
        unsafe { core::ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Peak stack use in bytes since [`paint_stack`]: from the top of RAM down to
/// the lowest word that no longer holds the paint.
pub fn stack_peak() -> usize {
    let bottom = &raw mut _stack_end as usize;
    let top = &raw mut _stack_start as usize;
    let mut p = bottom;
    // SAFETY: reads of RAM words between the statics and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top - p
}

/// Bytes of RAM from the end of the statics to the stack top (the most the
/// stack can grow).
pub fn stack_capacity() -> usize {
    (&raw mut _stack_start as usize) - (&raw mut _stack_end as usize)
}

/// Bytes of statics (`.data` + `.bss` + `.uninit`): RAM start to the end of
/// the statics.
pub fn static_ram() -> usize {
    unsafe extern "C" {
        static mut __sdata: u32;
    }
    (&raw mut _stack_end as usize) - (&raw mut __sdata as usize)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // The message is not formatted: defmt only takes its own formats, and a
    // panic in dash-core would be a bug (it returns `Result` on data).
    defmt::error!("panic");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}

/// The header of an evaluator input file (`eval.in`, `relu.in`).
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct EvalHeader {
    /// CRT values in the vector.
    pub n: u32,
    /// Primes in the CRT base (the first `k`).
    pub k: usize,
    /// Rescale divisor; 0 for a ReLU-only circuit.
    pub divisor: u32,
    /// One-labels that follow the header.
    pub ones: u32,
    /// Garbled rows per element.
    pub rows_per_element: u32,
}

impl EvalHeader {
    /// Reads and bounds-checks the header: `"DASHEV01"` then five u32.
    pub fn read(file: &mut HostFile, max_elements: u32, max_moduli: usize) -> Result<EvalHeader, Fail> {
        let mut magic = [0u8; 8];
        file.read_exact(&mut magic)?;
        if &magic != b"DASHEV01" {
            return Err(Fail::Format);
        }
        let h = EvalHeader {
            n: file.read_u32()?,
            k: file.read_u32()? as usize,
            divisor: file.read_u32()?,
            ones: file.read_u32()?,
            rows_per_element: file.read_u32()?,
        };
        if h.n == 0 || h.n > max_elements || h.ones as usize > max_moduli {
            return Err(Fail::Format);
        }
        Ok(h)
    }

    /// Rows the rest of the file holds: per element `k` input labels and
    /// the material.
    pub fn stream_rows(&self) -> Result<u32, Fail> {
        let rows = (self.n as u64) * (self.k as u64 + self.rows_per_element as u64);
        u32::try_from(rows).map_err(|_| Fail::Format)
    }

    /// Reads the one-labels that follow the header (u32 prime, block each).
    pub fn read_ones<const N: usize>(&self, file: &mut HostFile) -> Result<dash_core::compact::PackedOnes<N>, Fail> {
        let mut ones = dash_core::compact::PackedOnes::new();
        for _ in 0..self.ones {
            let p = u16::try_from(file.read_u32()?).map_err(|_| Fail::Format)?;
            ones.push(dash_core::Modulus::new(p)?, file.read_block()?)?;
        }
        Ok(ones)
    }
}

/// One input bundle: `k` packed labels from the material stream, one per
/// prime of `base`, checked and kept packed. Never inlined: its staging
/// vector must not add to the caller's frame, which is live during the
/// gadgets.
#[inline(never)]
pub fn read_bundle<S: MaterialSource, const N: usize>(
    ev: &mut dash_core::compact::CompactEvaluator<'_, S, N>,
    base: &dash_core::CrtBase,
) -> Result<dash_core::Bundle<dash_core::compact::PackedLabel>, Fail> {
    let mut blocks = [dash_core::Block::ZERO; dash_core::crt::MAX_CRT_PRIMES];
    let blocks = blocks.get_mut(..base.len()).ok_or(Fail::Format)?;
    blocks.copy_from_slice(ev.source().next_rows(base.len())?);
    let mut labels: heapless::Vec<dash_core::compact::PackedLabel, { dash_core::crt::MAX_CRT_PRIMES }> =
        heapless::Vec::new();
    for (m, b) in base.moduli().iter().zip(blocks.iter()) {
        labels.push(ev.input(*m, *b)?).map_err(|_| Fail::Format)?;
    }
    Ok(dash_core::Bundle::from_wires(labels)?)
}
