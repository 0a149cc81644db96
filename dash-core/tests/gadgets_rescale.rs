//! Rescaling and base-change gadgets, garbled: garbler -> evaluator ->
//! verified decoding equals the plaintext backend and the i128 reference;
//! `CostCounter` equals the rows the garbler wrote; every modulus is prime.
//!
//! Default (debug) runs take a few seconds per test. The large sweeps
//! (every value within ±1000 of 0 and of ±Q/2 for k up to 9) are ignored:
//! `cargo test -p dash-core --release --test gadgets_rescale -- --ignored`.

mod common;
use common::VecSink;
use dash_core::gadgets::basechange::{BaseExtension, BaseShrink};
use dash_core::gadgets::rescale::{Halving, Rescale, Rounding};
use dash_core::modulus::is_prime;
use dash_core::{
    Backend, Block, Bundle, CostCounter, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Modulus,
    PlainWire, Plaintext, SliceSource,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// What the tests need from a gadget, for every backend.
trait Gadget {
    fn input_base(&self) -> &CrtBase;
    fn output_base(&self) -> &CrtBase;
    fn moduli(&self) -> &[Modulus];
    fn cost(&self) -> u64;
    fn reference(&self, x: i128) -> i128;
    fn run<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error>;
}

impl Gadget for Rescale {
    fn input_base(&self) -> &CrtBase {
        self.base()
    }
    fn output_base(&self) -> &CrtBase {
        self.base()
    }
    fn moduli(&self) -> &[Modulus] {
        Rescale::moduli(self)
    }
    fn cost(&self) -> u64 {
        Rescale::cost(self)
    }
    fn reference(&self, x: i128) -> i128 {
        Rescale::reference(self, x)
    }
    fn run<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        self.apply(b, x)
    }
}

/// `j` Dash halvings in a row.
struct Halvings(Halving, u32);

impl Gadget for Halvings {
    fn input_base(&self) -> &CrtBase {
        self.0.base()
    }
    fn output_base(&self) -> &CrtBase {
        self.0.base()
    }
    fn moduli(&self) -> &[Modulus] {
        self.0.moduli()
    }
    fn cost(&self) -> u64 {
        self.0.cost() * self.1 as u64
    }
    fn reference(&self, x: i128) -> i128 {
        self.0.reference_repeated(x, self.1)
    }
    fn run<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        self.0.apply_repeated(b, x, self.1)
    }
}

impl Gadget for BaseExtension {
    fn input_base(&self) -> &CrtBase {
        self.from_base()
    }
    fn output_base(&self) -> &CrtBase {
        self.to_base()
    }
    fn moduli(&self) -> &[Modulus] {
        BaseExtension::moduli(self)
    }
    fn cost(&self) -> u64 {
        BaseExtension::cost(self)
    }
    fn reference(&self, x: i128) -> i128 {
        BaseExtension::reference(self, x)
    }
    fn run<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        self.apply(b, x)
    }
}

fn plain(base: &CrtBase, g: &impl Gadget, x: i128) -> i128 {
    let r = base.encode(x).unwrap();
    let bundle = Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap();
    let y = g.run(&mut Plaintext, &bundle).unwrap();
    let res: Vec<u16> = y.wires().iter().map(|w| w.value()).collect();
    g.output_base().decode(&res).unwrap()
}

/// Garbles `g` once, checks its cost and moduli, then evaluates and decodes
/// it on every input in `inputs`.
fn garbled_check(rng: &mut ChaCha20Rng, g: &impl Gadget, inputs: impl IntoIterator<Item = i128>) -> usize {
    let (base, out_base) = (g.input_base(), g.output_base());
    let hash = FixedKeyHash::new();
    let keys: GarblerKeys = GarblerKeys::generate(rng, g.moduli()).unwrap();
    let x0 = keys.input_bundle(base, rng).unwrap();
    let mut garbler = Garbler::new(&hash, &keys, VecSink::new());
    let out0 = g.run(&mut garbler, &x0).unwrap();
    let rows = garbler.into_sink().into_rows();

    // Cost counter == rows written == advertised cost; all moduli prime and
    // covered by the advertised list.
    let mut cc = CostCounter::new();
    let inputs_cc = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap();
    g.run(&mut cc, &inputs_cc).unwrap();
    assert_eq!(cc.ciphertexts as usize, rows.len());
    assert_eq!(g.cost() as usize, rows.len());
    for &p in cc.moduli().unwrap() {
        assert!(is_prime(p), "modulus {p}");
        assert!(g.moduli().iter().any(|m| m.value() == p), "modulus {p} not advertised");
    }

    let ones = keys.one_labels();
    let mut n = 0;
    for x in inputs {
        let labels = keys.encode_bundle(base, &x0, x).unwrap();
        let mut source = SliceSource::new(&rows);
        let mut evaluator = Evaluator::new(&hash, &ones, &mut source);
        let out = g.run(&mut evaluator, &labels).unwrap();
        assert_eq!(source.remaining(), 0);
        let returned: Vec<Block> = out.wires().iter().map(|l| l.to_block()).collect();
        let got = keys.decode_bundle(out_base, &out0, &returned).unwrap();
        assert_eq!(got, g.reference(x), "x {x}");
        assert_eq!(got, plain(base, g, x), "x {x}");
        n += 1;
    }
    n
}

/// Every value within `w` of 0, of the minimum and of the maximum, and
/// `random` uniform values.
fn probe(rng: &mut ChaCha20Rng, base: &CrtBase, w: i128, random: usize) -> Vec<i128> {
    let (lo, hi) = (base.min_value(), base.max_value());
    let mut v: Vec<i128> = Vec::new();
    for c in [lo, 0, hi] {
        v.extend((c - w..=c + w).filter(|x| (lo..=hi).contains(x)));
    }
    let q = base.product() as u64;
    v.extend((0..random).map(|_| (rng.next_u64() % q) as i128 + lo));
    v
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn rescale_garbled_all_inputs_small_bases() {
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let base = CrtBase::first(4).unwrap(); // Q = 210
    for (d, rounding) in [(2, Rounding::Floor), (35, Rounding::Floor), (15, Rounding::Nearest), (6, Rounding::Ceil)] {
        let g = Rescale::new(&base, d, rounding).unwrap();
        garbled_check(&mut rng, &g, base.min_value()..=base.max_value());
    }
    let base = CrtBase::first(5).unwrap(); // Q = 2310
    let g = Rescale::new(&base, 35, Rounding::Floor).unwrap();
    garbled_check(&mut rng, &g, base.min_value()..=base.max_value());
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn rescale_garbled_k7_to_k9() {
    let mut rng = ChaCha20Rng::seed_from_u64(102);
    for (k, d, rounding) in [
        (7, 35, Rounding::Floor),
        (7, 21, Rounding::Floor),
        (7, 30, Rounding::Nearest),
        (7, 33, Rounding::Ceil),
        (8, 17, Rounding::Floor),
        (9, 55, Rounding::Floor),
    ] {
        let base = CrtBase::first(k).unwrap();
        let g = Rescale::new(&base, d, rounding).unwrap();
        let inputs = probe(&mut rng, &base, 12, 40);
        garbled_check(&mut rng, &g, inputs);
    }
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn halving_garbled() {
    let mut rng = ChaCha20Rng::seed_from_u64(103);
    let base = CrtBase::first(4).unwrap();
    let h = Halving::new(&base).unwrap();
    garbled_check(&mut rng, &Halvings(h.clone(), 1), base.min_value()..=base.max_value());
    garbled_check(&mut rng, &Halvings(h, 3), base.min_value()..=base.max_value());
    let base = CrtBase::first(7).unwrap();
    let h = Halving::new(&base).unwrap();
    let inputs = probe(&mut rng, &base, 8, 30);
    garbled_check(&mut rng, &Halvings(h, 1), inputs);
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn base_change_garbled() {
    let mut rng = ChaCha20Rng::seed_from_u64(104);
    let from = CrtBase::first(4).unwrap();
    for to in [CrtBase::first(6).unwrap(), CrtBase::new(&[7, 13, 2, 17]).unwrap()] {
        let g = BaseExtension::new(&from, &to).unwrap();
        garbled_check(&mut rng, &g, from.min_value()..=from.max_value());
    }
    let (from, to) = (CrtBase::first(7).unwrap(), CrtBase::first(9).unwrap());
    let g = BaseExtension::new(&from, &to).unwrap();
    let inputs = probe(&mut rng, &from, 20, 50);
    garbled_check(&mut rng, &g, inputs);
    // Shrinking: free, and a tampered output is still caught.
    let small = CrtBase::first(5).unwrap();
    let s = BaseShrink::new(&to, &small).unwrap();
    let keys: GarblerKeys = GarblerKeys::generate(&mut rng, to.moduli()).unwrap();
    let hash = FixedKeyHash::new();
    let x0 = keys.input_bundle(&to, &mut rng).unwrap();
    let mut garbler = Garbler::new(&hash, &keys, VecSink::new());
    let out0 = s.apply(&mut garbler, &x0).unwrap();
    assert!(garbler.into_sink().into_rows().is_empty());
    let ones = keys.one_labels();
    for x in [-1155i128, -1, 0, 1154, 5000] {
        let mut e = Evaluator::new(&hash, &ones, SliceSource::new(&[]));
        let out = s.apply(&mut e, &keys.encode_bundle(&to, &x0, x).unwrap()).unwrap();
        let mut returned: Vec<Block> = out.wires().iter().map(|l| l.to_block()).collect();
        assert_eq!(keys.decode_bundle(&small, &out0, &returned).unwrap(), s.reference(x));
        returned[2].0 ^= 1 << 7;
        assert_eq!(keys.decode_bundle(&small, &out0, &returned), Err(Error::AuthenticityCheckFailed));
    }
}

#[test]
fn cost_targets() {
    let base = CrtBase::first(7).unwrap();
    // At least one divisor in 16..=64 within 250 ciphertexts at k = 7 (all
    // floor divisors are), and the pinned figures of docs/RESCALE.md.
    for (d, floor) in [(21u64, 176u64), (35, 178), (33, 180), (55, 182), (39, 184), (30, 224), (42, 222)] {
        let g = Rescale::new(&base, d, Rounding::Floor).unwrap();
        assert_eq!(g.cost(), floor, "d {d}");
        assert!(g.cost() <= 250);
    }
    assert_eq!(Rescale::new(&base, 2, Rounding::Ceil).unwrap().cost(), 132);
    let base8 = CrtBase::first(8).unwrap();
    assert_eq!(Rescale::new(&base8, 17, Rounding::Floor).unwrap().cost(), 247);
    assert_eq!(Rescale::new(&base8, 35, Rounding::Floor).unwrap().cost(), 265);
}

/// Every value within ±1000 of 0, of the minimum and of the maximum, plus
/// random values, for ÷2, 17 (13 at k = 6), 21, 30, 35, 55 in every rounding at k = 6..=9, and for
/// the halving and the base extension.
/// `cargo test -p dash-core --release --test gadgets_rescale -- --ignored`
#[test]
#[ignore]
fn garbled_big_sweep() {
    let mut rng = ChaCha20Rng::seed_from_u64(105);
    for k in 6..=9 {
        let base = CrtBase::first(k).unwrap();
        // 17 is a base prime from k = 7 on; 13 stands in at k = 6.
        for d in [2u64, if k >= 7 { 17 } else { 13 }, 21, 30, 35, 55] {
            for rounding in [Rounding::Floor, Rounding::Nearest, Rounding::Ceil] {
                let g = Rescale::new(&base, d, rounding).unwrap();
                let inputs = probe(&mut rng, &base, 1000, 2000);
                garbled_check(&mut rng, &g, inputs);
            }
        }
        let inputs = probe(&mut rng, &base, 1000, 2000);
        garbled_check(&mut rng, &Halvings(Halving::new(&base).unwrap(), 1), inputs);
        let inputs = probe(&mut rng, &base, 300, 500);
        garbled_check(&mut rng, &Halvings(Halving::new(&base).unwrap(), 5), inputs);
        let g = BaseExtension::new(&base, &CrtBase::first(k + 1).unwrap()).unwrap();
        let inputs = probe(&mut rng, &base, 1000, 2000);
        garbled_check(&mut rng, &g, inputs);
    }
}
