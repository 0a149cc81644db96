//! The compact (packed-wire) evaluator against the unpacked one: the same
//! labels out, so the garbler's verified decoding accepts them, for an exact
//! ReLU, free arithmetic with public constants, and a rescale, on values
//! across the whole range; and tampered material still fails closed.

mod common;
use common::VecSink;
use dash_core::compact::{CompactEvaluator, PackedOnes};
use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CrtBase, Error, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Modulus, SliceSource, crt,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

struct Circuit {
    base: CrtBase,
    relu: SignGadget,
    rescale: Rescale,
}

impl Circuit {
    fn new(k: usize) -> Circuit {
        let base = CrtBase::first(k).unwrap();
        let relu = SignGadget::new(&base, Accuracy::Exact).unwrap();
        let rescale = Rescale::new(&base, 35, Rounding::Floor).unwrap();
        Circuit { base, relu, rescale }
    }

    fn moduli(&self) -> Vec<Modulus> {
        let mut all: Vec<Modulus> = self.relu.moduli().to_vec();
        for m in self.rescale.moduli() {
            if !all.contains(m) {
                all.push(*m);
            }
        }
        all
    }

    /// ReLU, then `(y + 12) · (-3) mod Q`, then `floor(/35)`.
    fn run<B: Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<Bundle<B::Wire>, Error> {
        let y = self.relu.relu(b, x)?;
        let y = crt::add_constant(b, &y, 12)?;
        let y = crt::cmul(b, &y, -3)?;
        self.rescale.apply(b, &y)
    }

    fn reference(&self, x: i128) -> i128 {
        // The free arithmetic is mod Q: wrap into [-Q/2, Q/2) first.
        let q = self.base.product() as i128;
        let v = ((x.max(0) + 12) * -3 + q / 2).rem_euclid(q) - q / 2;
        self.rescale.reference(v)
    }
}

fn check(c: &Circuit, rng: &mut ChaCha20Rng, xs: &[i128]) {
    let keys: GarblerKeys<16> = GarblerKeys::generate(rng, &c.moduli()).unwrap();
    let hash = FixedKeyHash::new();
    let ones = keys.one_labels();
    let packed_ones: PackedOnes<16> = PackedOnes::from_labels(&ones).unwrap();
    for &x in xs {
        let x0 = keys.input_bundle(&c.base, rng).unwrap();
        let mut garbler = Garbler::new(&hash, &keys, VecSink::new());
        let y0 = c.run(&mut garbler, &x0).unwrap();
        let rows = garbler.into_sink().into_rows();
        let labels = keys.encode_bundle(&c.base, &x0, x).unwrap();

        let mut full = Evaluator::new(&hash, &ones, SliceSource::new(&rows));
        let want: Vec<Block> = c.run(&mut full, &labels).unwrap().wires().iter().map(|l| l.to_block()).collect();

        let mut compact = CompactEvaluator::new(&hash, &packed_ones, SliceSource::new(&rows));
        let input = compact.input_bundle(&labels).unwrap();
        let got: Vec<Block> = c.run(&mut compact, &input).unwrap().wires().iter().map(|w| w.block()).collect();
        assert_eq!(compact.gates(), full.gates());
        assert_eq!(compact.into_source().remaining(), 0, "x = {x}");

        assert_eq!(got, want, "x = {x}");
        assert_eq!(keys.decode_bundle(&c.base, &y0, &got).unwrap(), c.reference(x), "x = {x}");

        // One flipped bit in one row: the compact evaluator fails or returns
        // labels the garbler rejects, never a wrong accepted value.
        let mut bad = rows.clone();
        let i = (rng.next_u64() % bad.len() as u64) as usize;
        bad[i].0 ^= 1 << (rng.next_u64() % 128);
        let mut compact = CompactEvaluator::new(&hash, &packed_ones, SliceSource::new(&bad));
        let input = compact.input_bundle(&labels).unwrap();
        if let Ok(out) = c.run(&mut compact, &input) {
            let returned: Vec<Block> = out.wires().iter().map(|w| w.block()).collect();
            match keys.decode_bundle(&c.base, &y0, &returned) {
                Ok(v) => assert_eq!(v, c.reference(x), "tampered row {i} accepted with a wrong value"),
                Err(e) => assert_eq!(e, Error::AuthenticityCheckFailed),
            }
        }
    }
}

#[cfg_attr(miri, ignore = "garbles whole gadgets: too slow under Miri")]
#[test]
fn compact_equals_unpacked_on_the_range_k5() {
    let c = Circuit::new(5);
    let q = c.base.product() as i128;
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let mut xs = vec![-q / 2, -q / 2 + 1, -1, 0, 1, q / 2 - 2, q / 2 - 1];
    xs.extend((0..20).map(|_| (rng.next_u64() as i128).rem_euclid(q) - q / 2));
    check(&c, &mut rng, &xs);
}

#[cfg_attr(miri, ignore = "garbles whole gadgets: too slow under Miri")]
#[test]
fn compact_equals_unpacked_k7() {
    let c = Circuit::new(7);
    let q = c.base.product() as i128;
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let mut xs = vec![-q / 2, -1000, -1, 0, 1, 999, q / 2 - 1];
    xs.extend((0..6).map(|_| (rng.next_u64() as i128).rem_euclid(q) - q / 2));
    check(&c, &mut rng, &xs);
}
