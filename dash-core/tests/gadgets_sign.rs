//! Sign, ReLU, sign activation and max, garbled: garbler → evaluator →
//! verified decoding equals the plaintext backend and an `i128` reference;
//! the cost counter equals the rows actually written.
//!
//! The default tests use debug-friendly sizes. The full sweep (every value of
//! `Z_Q` for k <= 6, every value within ±1000 of 0 and of ±Q/2 and 20 000
//! random values for k = 7..=9, about 105 000 garbled evaluations) is
//! ignored by default:
//!
//! ```text
//! cargo test -p dash-core --release --test gadgets_sign -- --ignored
//! ```

mod common;
use common::VecSink;
use dash_core::gadgets::compare;
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CostCounter, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, PlainWire,
    Plaintext, SliceSource, ZeroLabel, crt,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Everything the sign gadget computes from one input.
struct Outputs<W> {
    sign: W,
    nonneg: W,
    relu: Bundle<W>,
    activation: Bundle<W>,
}

fn circuit<B: Backend>(g: &SignGadget, b: &mut B, x: &Bundle<B::Wire>) -> Result<Outputs<B::Wire>, Error> {
    Ok(Outputs {
        sign: g.sign_bit(b, x)?,
        nonneg: g.nonneg_bit(b, x)?,
        relu: g.relu(b, x)?,
        activation: g.sign_activation(b, x)?,
    })
}

/// The garbled circuit of one gadget, garbled once and evaluated on many
/// inputs (test only: a real garbler garbles afresh for every input).
struct Garbled {
    base: CrtBase,
    gadget: SignGadget,
    keys: GarblerKeys,
    x0: Bundle<ZeroLabel>,
    out0: Outputs<ZeroLabel>,
    rows: Vec<Block>,
    hash: FixedKeyHash,
}

impl Garbled {
    fn new(base: &CrtBase, accuracy: Accuracy, rng: &mut ChaCha20Rng) -> Garbled {
        let gadget = SignGadget::new(base, accuracy).unwrap();
        let keys: GarblerKeys = GarblerKeys::generate(rng, &gadget.moduli()).unwrap();
        let hash = FixedKeyHash::new();
        let x0 = keys.input_bundle(base, rng).unwrap();
        let mut garbler = Garbler::new(&hash, &keys, VecSink::new());
        let out0 = circuit(&gadget, &mut garbler, &x0).unwrap();
        let rows = garbler.into_sink().into_rows();
        // The counter's ciphertexts are the rows actually written, and every
        // modulus it saw is prime and declared by the gadget.
        let mut cc = CostCounter::new();
        let xc = Bundle::from_wires(base.moduli().iter().map(|m| cc.input(*m))).unwrap();
        circuit(&gadget, &mut cc, &xc).unwrap();
        assert_eq!(cc.ciphertexts as usize, rows.len());
        assert_eq!(
            cc.ciphertexts,
            2 * gadget.sign_ciphertexts() + gadget.relu_ciphertexts() + gadget.activation_ciphertexts()
        );
        for m in cc.moduli().unwrap() {
            assert!(gadget.moduli().iter().any(|g| g.value() == *m), "modulus {m} not declared");
        }
        Garbled { base: base.clone(), gadget, keys, x0, out0, rows, hash }
    }

    /// Evaluates on `v`, decodes and verifies, and checks against the
    /// plaintext backend (and, for an exact gadget, the `i128` reference).
    fn check(&self, v: i128) {
        let ones = self.keys.one_labels();
        let x = self.keys.encode_bundle(&self.base, &self.x0, v).unwrap();
        let mut ev = Evaluator::new(&self.hash, &ones, SliceSource::new(&self.rows));
        let out = circuit(&self.gadget, &mut ev, &x).unwrap();
        assert_eq!(ev.source().remaining(), 0);
        let blocks = |b: &Bundle<dash_core::Label>| b.wires().iter().map(|l| l.to_block()).collect::<Vec<_>>();
        let sign = self.keys.decode(&self.out0.sign, out.sign.to_block()).unwrap();
        let nonneg = self.keys.decode(&self.out0.nonneg, out.nonneg.to_block()).unwrap();
        let relu = self.keys.decode_bundle(&self.base, &self.out0.relu, &blocks(&out.relu)).unwrap();
        let act = self.keys.decode_bundle(&self.base, &self.out0.activation, &blocks(&out.activation)).unwrap();

        let px = plain(&self.base, v);
        let p = circuit(&self.gadget, &mut Plaintext, &px).unwrap();
        assert_eq!(sign, p.sign.value(), "x {v}");
        assert_eq!(nonneg, p.nonneg.value(), "x {v}");
        assert_eq!(relu, value(&self.base, &p.relu), "x {v}");
        assert_eq!(act, value(&self.base, &p.activation), "x {v}");
        if self.gadget.error_window() == 0 {
            let q = self.base.product() as i128;
            assert_eq!(sign, u16::from(v < 0), "x {v}");
            assert_eq!(nonneg, u16::from(v >= 0), "x {v}");
            assert_eq!(relu, v.max(0), "x {v}");
            assert_eq!((act - if v < 0 { -1 } else { 1 }).rem_euclid(q), 0, "x {v}");
        }
    }
}

fn plain(base: &CrtBase, v: i128) -> Bundle<PlainWire> {
    let r = base.encode(v).unwrap();
    Bundle::from_wires(base.moduli().iter().zip(r).map(|(m, r)| PlainWire::new(r, *m))).unwrap()
}

fn value(base: &CrtBase, x: &Bundle<PlainWire>) -> i128 {
    let r: Vec<u16> = x.wires().iter().map(|w| w.value()).collect();
    base.decode(&r).unwrap()
}

/// Every value within `radius` of 0 and of both ends of the range, plus
/// `random` uniform values.
fn inputs(base: &CrtBase, radius: i128, random: usize, rng: &mut ChaCha20Rng) -> Vec<i128> {
    let (lo, hi) = (base.min_value(), base.max_value());
    let mut v: Vec<i128> = (-radius..=radius).collect();
    v.extend(lo..=(lo + radius).min(hi));
    v.extend((hi - radius).max(lo)..=hi);
    let q = base.product() as i128;
    v.extend((0..random).map(|_| (rng.next_u64() as i128).rem_euclid(q) + lo));
    v.retain(|x| (lo..=hi).contains(x));
    v
}

fn sweep(exhaustive_up_to: usize, radius: i128, random: usize, kmax: usize) -> usize {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5167);
    let mut count = 0;
    for k in 1..=kmax {
        let base = CrtBase::first(k).unwrap();
        let g = Garbled::new(&base, Accuracy::Exact, &mut rng);
        let xs: Vec<i128> = if k <= exhaustive_up_to {
            (base.min_value()..=base.max_value()).collect()
        } else {
            inputs(&base, radius, random, &mut rng)
        };
        for &x in &xs {
            g.check(x);
        }
        count += xs.len();
    }
    count
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn garbled_exact_small() {
    let n = sweep(4, 40, 100, 9);
    assert!(n > 1000);
}

#[test]
#[ignore = "full sweep (>= 10^5 garbled evaluations): run with --release -- --ignored"]
fn garbled_exact_full_sweep() {
    let n = sweep(6, 1000, 20_000, 9);
    assert!(n >= 100_000, "{n}");
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn garbled_other_bases_and_approximate() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5168);
    for primes in [&[3u16, 5, 7][..], &[5, 7, 11, 13], &[2, 31, 37], &[13, 2, 7, 3]] {
        let base = CrtBase::new(primes).unwrap();
        let g = Garbled::new(&base, Accuracy::Exact, &mut rng);
        for x in base.min_value()..=base.max_value() {
            g.check(x);
        }
    }
    // Approximate: garbled equals plaintext everywhere (checked against the
    // reference outside the error window by the unit tests).
    let base = CrtBase::first(7).unwrap();
    let g = Garbled::new(&base, Accuracy::Approximate { dropped: 2 }, &mut rng);
    assert!(g.gadget.error_window() > 0);
    for x in inputs(&base, 300, 300, &mut rng) {
        g.check(x);
    }
}

#[test]
#[cfg_attr(miri, ignore = "garbled sweep: too slow for the interpreter, run natively")]
fn garbled_max2_and_windows() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x5169);
    let hash = FixedKeyHash::new();
    for k in [5, 7, 8] {
        let base = CrtBase::first(k).unwrap();
        let gadget = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, &gadget.moduli()).unwrap();
        let z: Vec<Bundle<ZeroLabel>> = (0..4).map(|_| keys.input_bundle(&base, &mut rng).unwrap()).collect();
        let mut garbler = Garbler::new(&hash, &keys, VecSink::new());
        let m0 = compare::max2(&gadget, &mut garbler, &z[0], &z[1]).unwrap();
        let lt0 = compare::less_than(&gadget, &mut garbler, &z[0], &z[1]).unwrap();
        let w0 = compare::max_window(&gadget, &mut garbler, &z).unwrap();
        let rows = garbler.into_sink().into_rows();
        assert_eq!(rows.len() as u64, 4 * gadget.relu_ciphertexts() + gadget.sign_ciphertexts());
        let ones = keys.one_labels();
        let quarter = (base.product() / 4) as i128;
        for t in 0..300 {
            let mut vals = [0i128; 4];
            for v in vals.iter_mut() {
                *v = (rng.next_u64() as i128).rem_euclid(2 * quarter + 1) - quarter;
            }
            if t % 3 == 0 {
                // Near-ties.
                vals[1] = (vals[0] + (t as i128 % 5) - 2).clamp(-quarter, quarter);
            }
            let x: Vec<Bundle<_>> = z.iter().zip(vals).map(|(z, v)| keys.encode_bundle(&base, z, v).unwrap()).collect();
            let mut ev = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
            let m = compare::max2(&gadget, &mut ev, &x[0], &x[1]).unwrap();
            let lt = compare::less_than(&gadget, &mut ev, &x[0], &x[1]).unwrap();
            let w = compare::max_window(&gadget, &mut ev, &x).unwrap();
            let blocks = |b: &Bundle<dash_core::Label>| b.wires().iter().map(|l| l.to_block()).collect::<Vec<_>>();
            assert_eq!(keys.decode_bundle(&base, &m0, &blocks(&m)).unwrap(), vals[0].max(vals[1]));
            assert_eq!(keys.decode(&lt0, lt.to_block()).unwrap(), u16::from(vals[0] < vals[1]));
            assert_eq!(keys.decode_bundle(&base, &w0, &blocks(&w)).unwrap(), *vals.iter().max().unwrap());
        }
    }
}

#[test]
fn plaintext_max_window_matches_reference() {
    let base = CrtBase::first(6).unwrap();
    let g = SignGadget::new(&base, Accuracy::Exact).unwrap();
    let vals = [-3i128, 9, 9, -7000, 7000, 0, 1];
    let xs: Vec<_> = vals.iter().map(|&v| plain(&base, v)).collect();
    let m = compare::max_window(&g, &mut Plaintext, &xs).unwrap();
    assert_eq!(value(&base, &m), 7000);
    let c = crt::constant(&mut Plaintext, &base, 5).unwrap();
    assert_eq!(value(&base, &compare::min2(&g, &mut Plaintext, &c, &xs[0]).unwrap()), -3);
}
