//! Gadgets against plaintext: a CRT base, a gadget and its parameters and
//! the input values all come from the fuzzer. Each case is run three ways:
//! on the `Plaintext` backend (checked against the `i128` integer
//! reference), on the cost counter (whose row count must match what the
//! garbler writes), and garbled → evaluated → decoded, which must equal the
//! plaintext wires residue for residue and consume exactly the rows written.
#![no_main]

use arbitrary::Arbitrary;
use dash_core::compact::{CompactEvaluator, PackedOnes};
use dash_core::gadgets::basechange::{BaseExtension, wrap_signed};
use dash_core::gadgets::compare::{greater_equal, less_than, max_window, min_window};
use dash_core::gadgets::rescale::{Halving, Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CostCounter, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, PlainWire,
    Plaintext, SliceSource,
};
use dash_host::material::VecSink;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

/// Primes a fuzzed base draws from: small enough that every gadget's sum
/// moduli stay projectable, large enough to reach the multi-position cases.
const PRIMES: [u16; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];
/// At most this many primes per base keeps one case in the milliseconds.
const MAX_BASE_PRIMES: usize = 7;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Round {
    Floor,
    Nearest,
    Ceil,
}

#[derive(Arbitrary, Debug)]
enum Op {
    SignBit,
    NonnegBit,
    SignActivation,
    Relu,
    LessThan,
    GreaterEqual,
    MaxWindow,
    MinWindow,
    Rescale { divisor_mask: u16, rounding: Round },
    Halving,
    HalvingRepeated { j: u8 },
    BaseExtension { extra_mask: u16 },
}

#[derive(Arbitrary, Debug)]
struct Case {
    /// Bit `i` picks `PRIMES[i]`; the order of the base is rotated by `rotate`.
    base_mask: u16,
    rotate: u8,
    /// `None`: exact; `Some(d)`: approximate, dropping `d` positions.
    approximate: Option<u8>,
    op: Op,
    values: Vec<i64>,
    seed: u64,
}

fn pick_primes(mask: u16, rotate: u8) -> Vec<u16> {
    let mut ps: Vec<u16> = PRIMES.iter().enumerate().filter(|(i, _)| mask >> i & 1 == 1).map(|(_, &p)| p).collect();
    ps.truncate(MAX_BASE_PRIMES);
    if !ps.is_empty() {
        let r = rotate as usize % ps.len();
        ps.rotate_left(r);
    }
    ps
}

/// The gadget under test, built once from public parameters: both sides
/// construct it identically.
// One value per run: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Gadget {
    Sign { g: SignGadget, kind: SignKind },
    Rescale(Rescale),
    Halving(Halving),
    HalvingRepeated(Halving, u32),
    Extension(BaseExtension),
}

#[derive(Clone, Copy, PartialEq)]
enum SignKind {
    SignBit,
    NonnegBit,
    Activation,
    Relu,
    LessThan,
    GreaterEqual,
    MaxWindow,
    MinWindow,
}

impl Gadget {
    /// How many input bundles the gadget takes.
    fn arity(&self, values: usize) -> usize {
        match self {
            Gadget::Sign { kind: SignKind::LessThan | SignKind::GreaterEqual, .. } => 2,
            Gadget::Sign { kind: SignKind::MaxWindow | SignKind::MinWindow, .. } => values.clamp(1, 5),
            _ => 1,
        }
    }

    /// The circuit, one definition for every backend. Output wires are
    /// returned flat (a bit is one wire).
    fn run<B: Backend>(&self, b: &mut B, xs: &[Bundle<B::Wire>]) -> Result<Vec<B::Wire>, Error> {
        let bundle = |r: Bundle<B::Wire>| r.wires().to_vec();
        Ok(match self {
            Gadget::Sign { g, kind } => match kind {
                SignKind::SignBit => vec![g.sign_bit(b, &xs[0])?],
                SignKind::NonnegBit => vec![g.nonneg_bit(b, &xs[0])?],
                SignKind::Activation => bundle(g.sign_activation(b, &xs[0])?),
                SignKind::Relu => bundle(g.relu(b, &xs[0])?),
                SignKind::LessThan => vec![less_than(g, b, &xs[0], &xs[1])?],
                SignKind::GreaterEqual => vec![greater_equal(g, b, &xs[0], &xs[1])?],
                SignKind::MaxWindow => bundle(max_window(g, b, xs)?),
                SignKind::MinWindow => bundle(min_window(g, b, xs)?),
            },
            Gadget::Rescale(r) => bundle(r.apply(b, &xs[0])?),
            Gadget::Halving(h) => bundle(h.apply(b, &xs[0])?),
            Gadget::HalvingRepeated(h, j) => bundle(h.apply_repeated(b, &xs[0], *j)?),
            Gadget::Extension(e) => bundle(e.apply(b, &xs[0])?),
        })
    }

    /// The base the output bundle lives on (`None`: a single bit).
    fn output_base<'a>(&'a self, base: &'a CrtBase) -> Option<&'a CrtBase> {
        match self {
            Gadget::Sign { kind: SignKind::SignBit | SignKind::NonnegBit, .. } => None,
            Gadget::Sign { kind: SignKind::LessThan | SignKind::GreaterEqual, .. } => None,
            Gadget::Extension(e) => Some(e.to_base()),
            _ => Some(base),
        }
    }

    /// The integer reference for inputs `xs`, or `None` where the gadget is
    /// approximate and `xs` falls inside its error window.
    fn reference(&self, base: &CrtBase, xs: &[i128]) -> Option<i128> {
        let x = xs[0];
        match self {
            Gadget::Sign { g, kind } => {
                let w = g.error_window() as i128;
                let risky = |v: i128| (0..w).contains(&v) || (base.min_value()..base.min_value() + w).contains(&v);
                let diff = if xs.len() >= 2 { xs[0] - xs[1] } else { x };
                match kind {
                    SignKind::SignBit => (!risky(x)).then_some((x < 0) as i128),
                    SignKind::NonnegBit => (!risky(x)).then_some((x >= 0) as i128),
                    SignKind::Activation => (!risky(x)).then_some(if x >= 0 { 1 } else { -1 }),
                    SignKind::Relu => (!risky(x)).then_some(x.max(0)),
                    SignKind::LessThan => (!risky(diff)).then_some((xs[0] < xs[1]) as i128),
                    SignKind::GreaterEqual => (!risky(diff)).then_some((xs[0] >= xs[1]) as i128),
                    // Each max2/min2 inside the tree may err by less than W.
                    SignKind::MaxWindow => (w == 0).then(|| *xs.iter().max().unwrap()),
                    SignKind::MinWindow => (w == 0).then(|| *xs.iter().min().unwrap()),
                }
            }
            Gadget::Rescale(r) => Some(r.reference(x)),
            Gadget::Halving(h) => Some(h.reference(x)),
            Gadget::HalvingRepeated(h, j) => Some(h.reference_repeated(x, *j)),
            Gadget::Extension(e) => Some(e.reference(x)),
        }
    }
}

fn build(case: &Case, base: &CrtBase) -> Option<Gadget> {
    let accuracy = match case.approximate {
        None => Accuracy::Exact,
        Some(d) => Accuracy::Approximate { dropped: d % 8 },
    };
    let sign = |kind| SignGadget::new(base, accuracy).ok().map(|g| Gadget::Sign { g, kind });
    match case.op {
        Op::SignBit => sign(SignKind::SignBit),
        Op::NonnegBit => sign(SignKind::NonnegBit),
        Op::SignActivation => sign(SignKind::Activation),
        Op::Relu => sign(SignKind::Relu),
        Op::LessThan => sign(SignKind::LessThan),
        Op::GreaterEqual => sign(SignKind::GreaterEqual),
        Op::MaxWindow => sign(SignKind::MaxWindow),
        Op::MinWindow => sign(SignKind::MinWindow),
        Op::Rescale { divisor_mask, rounding } => {
            let d = base
                .moduli()
                .iter()
                .enumerate()
                .filter(|(i, _)| divisor_mask >> i & 1 == 1)
                .try_fold(1u64, |acc, (_, m)| acc.checked_mul(m.value() as u64))?;
            let rounding = match rounding {
                Round::Floor => Rounding::Floor,
                Round::Nearest => Rounding::Nearest,
                Round::Ceil => Rounding::Ceil,
            };
            Rescale::new(base, d, rounding).ok().map(Gadget::Rescale)
        }
        Op::Halving => Halving::new(base).ok().map(Gadget::Halving),
        Op::HalvingRepeated { j } => Halving::new(base).ok().map(|h| Gadget::HalvingRepeated(h, (j % 5) as u32)),
        Op::BaseExtension { extra_mask } => {
            let mut to: Vec<u16> = base.moduli().iter().map(|m| m.value()).collect();
            for p in pick_primes(extra_mask, 0) {
                if !to.contains(&p) {
                    to.push(p);
                }
            }
            to.truncate(MAX_BASE_PRIMES + 3);
            let to = CrtBase::new(&to).ok()?;
            BaseExtension::new(base, &to).ok().map(Gadget::Extension)
        }
    }
}

fn plain_bundle(base: &CrtBase, v: i128) -> Bundle<PlainWire> {
    let r = base.encode(v).unwrap();
    Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap()
}

fn decode_plain(out_base: Option<&CrtBase>, wires: &[PlainWire]) -> i128 {
    let residues: Vec<u16> = wires.iter().map(|w| w.value()).collect();
    match out_base {
        Some(b) => b.decode(&residues).unwrap(),
        None => residues[0] as i128,
    }
}

fuzz_target!(|case: Case| {
    let primes = pick_primes(case.base_mask, case.rotate);
    let Ok(base) = CrtBase::new(&primes) else { return };
    if base.is_empty() {
        return;
    }
    let Some(gadget) = build(&case, &base) else { return };
    let arity = gadget.arity(case.values.len());
    let window = matches!(
        gadget,
        Gadget::Sign {
            kind: SignKind::LessThan | SignKind::GreaterEqual | SignKind::MaxWindow | SignKind::MinWindow,
            ..
        }
    );
    // Comparisons are specified for values in [-Q/4, Q/4] (their difference
    // must not wrap); everything else takes the whole signed range.
    let (lo, span) = if window {
        let q4 = (base.product() / 4) as i128;
        (-q4, 2 * q4 + 1)
    } else {
        (base.min_value(), base.product() as i128)
    };
    let xs: Vec<i128> =
        (0..arity).map(|i| lo + (case.values.get(i).copied().unwrap_or(0) as i128).rem_euclid(span)).collect();

    // Plaintext against the integer reference.
    let inputs: Vec<Bundle<PlainWire>> = xs.iter().map(|&x| plain_bundle(&base, x)).collect();
    let plain = gadget.run(&mut Plaintext, &inputs).expect("plaintext gadget failed");
    let out_base = gadget.output_base(&base);
    if let Some(want) = gadget.reference(&base, &xs) {
        // Results live modulo Q: on tiny bases (Q = 2) even the sign
        // activation's +1 is only representable as -1.
        let want = out_base.map_or(want, |b| wrap_signed(b, want));
        let got = decode_plain(out_base, &plain);
        assert_eq!(got, want, "plaintext gadget differs from the integer reference on {xs:?}");
    }

    // Costs, and the moduli the garbler needs keys for.
    let mut cc = CostCounter::new();
    let cinputs: Vec<Bundle<_>> =
        (0..arity).map(|_| Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap()).collect();
    gadget.run(&mut cc, &cinputs).expect("cost counter failed");
    let mut moduli: Vec<dash_core::Modulus> =
        cc.moduli().expect("too many moduli to count").iter().map(|&p| dash_core::Modulus::new(p).unwrap()).collect();
    moduli.extend_from_slice(base.moduli());

    // Garbled, evaluated, decoded: equal to plaintext wire by wire.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let hash = FixedKeyHash::new();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &moduli).unwrap();
    let zeros: Vec<_> = (0..arity).map(|_| keys.input_bundle(&base, &mut rng).unwrap()).collect();
    let mut g = Garbler::new(&hash, &keys, VecSink::new());
    let out0 = gadget.run(&mut g, &zeros).expect("garbling failed");
    let rows = g.into_sink().into_rows();
    assert_eq!(rows.len() as u64, cc.ciphertexts, "garbler wrote a different number of rows than counted");

    let encoded: Vec<_> = zeros.iter().zip(&xs).map(|(z, &x)| keys.encode_bundle(&base, z, x).unwrap()).collect();
    let ones = keys.one_labels();
    let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
    let out = gadget.run(&mut e, &encoded).expect("evaluation failed");
    assert_eq!(e.source().remaining(), 0, "evaluator left rows unread");
    assert_eq!(out.len(), plain.len());
    for ((z, l), p) in out0.iter().zip(&out).zip(&plain) {
        let v = keys.decode(z, l.to_block()).expect("an honest evaluation failed its output check");
        assert_eq!(v, p.value(), "garbled result differs from plaintext on {xs:?}");
    }
    if let Some(ob) = out_base {
        let zero = Bundle::from_wires(out0.iter().cloned()).unwrap();
        let blocks: Vec<Block> = out.iter().map(|l| l.to_block()).collect();
        let v = keys.decode_bundle(ob, &zero, &blocks).expect("bundle decode failed");
        assert_eq!(v, decode_plain(out_base, &plain));
    }

    // The compact (packed-wire) evaluator returns exactly the same labels.
    let packed: PackedOnes<{ dash_core::garbler::DEFAULT_MAX_MODULI }> = PackedOnes::from_labels(&ones).unwrap();
    let mut ce = CompactEvaluator::new(&hash, &packed, SliceSource::new(&rows));
    let cin: Vec<_> = encoded.iter().map(|b| ce.input_bundle(b).unwrap()).collect();
    let cout = gadget.run(&mut ce, &cin).expect("compact evaluation failed");
    assert_eq!(ce.source().remaining(), 0, "compact evaluator left rows unread");
    let compact: Vec<Block> = cout.iter().map(|w| w.block()).collect();
    let unpacked: Vec<Block> = out.iter().map(|l| l.to_block()).collect();
    assert_eq!(compact, unpacked, "compact evaluator differs from the unpacked one on {xs:?}");
});
