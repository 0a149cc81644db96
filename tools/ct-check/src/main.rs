//! Constant-time check of the garbler (the ctgrind technique).
//!
//! Run under valgrind memcheck: every secret (the offsets `Δ_p` and the
//! zero labels of the inputs) is marked *undefined*. Memcheck then reports
//! any conditional branch or memory address that depends on undefined data,
//! i.e. on a secret, anywhere in the garbling of projections, multiply-by-bit
//! gates, the exact ReLU, a rescale, and the verified decoding of outputs.
//! The only place a secret-derived bit may become public is the result of
//! the output check, which this program declassifies explicitly (it marks
//! the `Choice` defined) before looking at it.
//!
//! `valgrind --error-exitcode=1 target/release/ct-check` must exit 0;
//! `ct-check --plant` adds a deliberate secret-dependent branch and must be
//! reported (exit 1), which shows the check can fail.

use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{Backend, Block, Bundle, CountingSink, CrtBase, FixedKeyHash, Garbler, GarblerKeys, ZeroLabel};
use rand_core::SeedableRng;

const MAKE_MEM_UNDEFINED: u64 = 0x4D43_0001;
const MAKE_MEM_DEFINED: u64 = 0x4D43_0002;

/// A valgrind client request (the amd64 "magic sequence"); a no-op returning
/// `default` when not running under valgrind.
#[cfg(target_arch = "x86_64")]
fn client_request(request: u64, addr: u64, len: u64) -> u64 {
    let args: [u64; 6] = [request, addr, len, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: the rotations of rdi total 128 bits (rdi is unchanged) and
    // `xchg rbx, rbx` is a no-op; natively the sequence does nothing, under
    // valgrind it performs the request described by `args` and writes rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64, _addr: u64, _len: u64) -> u64 {
    0
}

fn mark<T: ?Sized>(value: &T, request: u64) {
    client_request(request, value as *const T as *const u8 as u64, core::mem::size_of_val(value) as u64);
}

/// Marks `value` defined and reads it back through memory, so that the
/// compiler cannot keep using a register copy made before the marking.
fn declassify<T: Copy>(value: T) -> T {
    let slot = value;
    mark(&slot, MAKE_MEM_DEFINED);
    // SAFETY: `slot` is a live, initialised local.
    unsafe { core::ptr::read_volatile(&slot) }
}

fn secret(digits: &[u16]) {
    mark(digits, MAKE_MEM_UNDEFINED);
}

fn main() {
    let plant = std::env::args().any(|a| a == "--plant");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let hash = FixedKeyHash::new();
    let base = CrtBase::first(7).expect("k = 7");
    let sign = SignGadget::new(&base, Accuracy::Exact).expect("sign gadget");
    let rescale = Rescale::new(&base, 35, Rounding::Nearest).expect("rescale gadget");
    let mut moduli = sign.moduli().to_vec();
    moduli.extend_from_slice(rescale.moduli());
    let keys: GarblerKeys<48> = GarblerKeys::generate(&mut rng, &moduli).expect("keys");
    for m in keys.moduli() {
        secret(keys.delta(m).expect("listed").as_label().digits());
    }
    let x: Bundle<ZeroLabel> = keys.input_bundle(&base, &mut rng).expect("input");
    for w in x.wires() {
        secret(w.as_label().digits());
    }

    if plant {
        // A deliberate secret-dependent branch: memcheck must flag it.
        let d = keys.delta(base.moduli()[3]).expect("listed").as_label().digits()[1];
        if d > 3 {
            println!("planted branch taken");
        }
    }

    let mut g = Garbler::new(&hash, &keys, CountingSink::default());
    let relu = sign.relu(&mut g, &x).expect("relu");
    let bit = sign.sign_bit(&mut g, &x).expect("sign");
    let scaled = rescale.apply(&mut g, &x).expect("rescale");
    let prod = g.mul_bit(&x.wires()[3], &bit).expect("mul_bit");
    let rows = g.sink().rows;

    // Verified decoding of a returned label: the evaluator's label is
    // public; the comparison with the secret expected label is declassified
    // only as its final yes/no.
    let wires = [&relu.wires()[2], &scaled.wires()[4], &prod];
    let mut accepted = 0;
    for zero in wires {
        // What the evaluator would send back is public to the garbler.
        let returned: Block = declassify(keys.encode(zero, 1).expect("encode").to_block());
        let check = keys.decode_ct(zero, returned).expect("moduli match");
        // The verdict, and only the verdict, becomes public.
        let ok: u8 = declassify(check.is_some().unwrap_u8());
        if ok == 1 {
            accepted += 1;
        }
    }
    println!("garbled {rows} rows; {accepted}/3 outputs verified");
}
