// One projection fixture, included once per dash-core (see main.rs).

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use std::hint::black_box;
use dc::projection;
use dc::{Block, Delta, Domain, FixedKeyHash, Label, Modulus, SliceSink, SliceSource, Tweak, ZeroLabel};

pub const GATES: usize = 1024;
fn table(x: u16) -> u16 { x * x + 1 }

pub struct Fixture {
    m: Modulus, delta: Delta, hash: FixedKeyHash, inputs: Vec<ZeroLabel>, labels: Vec<Label>,
    tweaks: Vec<Tweak>, rows: Vec<Block>, scratch: Vec<Block>, outputs: Vec<Label>, zero_outputs: Vec<ZeroLabel>,
}

impl Fixture {
    pub fn new(p: u16) -> Fixture {
        let mut rng = ChaCha20Rng::seed_from_u64(p as u64);
        let m = Modulus::new(p).unwrap();
        let delta = Delta::random(m, &mut rng);
        let hash = FixedKeyHash::new();
        let inputs: Vec<ZeroLabel> = (0..GATES).map(|_| ZeroLabel::random(m, &mut rng)).collect();
        let labels = inputs.iter().map(|z| z.encode((rng.next_u32() % p as u32) as u16, &delta).unwrap()).collect();
        let tweaks = (0..GATES as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        let rows = vec![Block::ZERO; GATES * (p as usize - 1)];
        let scratch = rows.clone();
        let outputs = vec![Label::zero(m); GATES];
        let zero_outputs = (0..GATES).map(|_| ZeroLabel::new(Label::zero(m))).collect();
        let mut f = Fixture { m, delta, hash, inputs, labels, tweaks, rows, scratch, outputs, zero_outputs };
        let mut sink = SliceSink::new(&mut f.rows);
        for (z, t) in f.inputs.iter().zip(&f.tweaks) {
            projection::garble(&f.hash, *t, z, &f.delta, &f.delta, table, &mut sink).unwrap();
        }
        f
    }
    pub fn rows(&self) -> Vec<u128> { self.rows.iter().map(|b| b.0).collect() }
    pub fn garble_one(&mut self) {
        let n = self.m.value() as usize - 1;
        let mut sink = SliceSink::new(&mut self.scratch[..n]);
        black_box(projection::garble(&self.hash, self.tweaks[0], &self.inputs[0], &self.delta, &self.delta, table, &mut sink).unwrap());
    }
    pub fn eval_one(&self) {
        let n = self.m.value() as usize - 1;
        let mut src = SliceSource::new(&self.rows[..n]);
        black_box(projection::evaluate(&self.hash, self.tweaks[0], black_box(&self.labels[0]), self.m, &mut src).unwrap());
    }
    pub fn garble_batch(&mut self) {
        let mut sink = SliceSink::new(&mut self.scratch);
        let (h, d) = (&self.hash, &self.delta);
        projection::garble_batch(h, &self.tweaks, &self.inputs, d, d, table, &mut sink, &mut self.zero_outputs).unwrap();
        black_box(&self.zero_outputs);
    }
    pub fn eval_batch(&mut self) {
        let mut src = SliceSource::new(&self.rows);
        projection::evaluate_batch(&self.hash, &self.tweaks, &self.labels, self.m, &mut src, &mut self.outputs).unwrap();
        black_box(&self.outputs);
    }
}
