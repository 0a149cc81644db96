//! Micro-benchmarks for `dashgc bench`: single-threaded, except the
//! whole-network figures (`mlp_*`: the SecureML MLP garbled and evaluated on
//! all cores, best of a few inferences, each checked against the plaintext
//! network).
//!
//! Every figure is measured *paired* with the AES reference
//! (`FixedKeyHash::permute` on 1024 blocks): each round times a short batch
//! of AES and a short batch of the operation back to back (alternating
//! which goes first), so both see the same machine load. A figure's time
//! is the median over the rounds of its batches; its ratio to the AES
//! block time is the median of the per-round ratios, which is robust to
//! load that changes between rounds. `aes_ns_per_block` is the median of
//! all AES batches of the run; `aes_best_ns_per_block` beside it is the
//! best rate of the same blocks measured in the run (see
//! [`Timer::best_aes`]), for reading the ratios against the CPU's AES rate.
//!
//! [`BenchReport`] holds the results. To add a figure, add an
//! `Option<f64>` field (and its `_aes_ratio` companion) and fill it in
//! [`run`]; the JSON output and the table pick it up without further code.

pub mod networks;

use crate::material::VecSink;
use dash_core::gadgets::rescale::{Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Block, Bundle, CountingSink, CrtBase, Delta, Domain, Evaluator, FixedKeyHash, Garbler, GarblerKeys, Label, Modulus,
    OneLabels, SliceSink, SliceSource, Tweak, ZeroLabel, crt, projection,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Version of the JSON layout; bump when a field changes meaning.
/// 2: `proj_garble_ns` and `proj97_garble_ns` time `projection::garble_batch`
/// (in 1, a loop of `projection::garble`, now `proj_garble_loop_ns`).
pub const SCHEMA: u32 = 2;
/// Blocks per AES reference batch.
pub const AES_BATCH: usize = 1024;
/// Independent gates per batched projection figure.
pub const GATES: usize = 1024;

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchConfig {
    /// Paired rounds per figure.
    pub rounds: usize,
    /// Target duration of one timed batch.
    pub batch: Duration,
    /// Whether this is the quick preset.
    pub quick: bool,
    /// Whole layers through the engine too (`--networks`), at this scale.
    pub networks: Option<networks::NetworkScale>,
}

impl BenchConfig {
    /// About 5 s in all: 41 rounds of 4 ms batches per figure.
    pub fn quick() -> BenchConfig {
        BenchConfig { rounds: 41, batch: Duration::from_millis(4), quick: true, networks: None }
    }

    /// About 40 s: 151 rounds of 10 ms batches per figure.
    pub fn full() -> BenchConfig {
        BenchConfig { rounds: 151, batch: Duration::from_millis(10), quick: false, networks: None }
    }
}

/// The results of one run. Times are nanoseconds; `*_aes_ratio` is the
/// figure divided by the AES block time of the same rounds. Optional
/// fields are left out of the JSON when not measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BenchReport {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// `"quick"` or `"full"`.
    pub mode: String,
    /// Threads used (always 1).
    pub threads: u32,
    /// Paired rounds per figure.
    pub rounds: u32,
    /// Fixed-key AES (`FixedKeyHash::permute`), per block, batches of 1024:
    /// the reference of every `*_aes_ratio`.
    pub aes_ns_per_block: f64,
    /// The best AES rate measured in the same run: the same 1024 blocks with
    /// 1, 2 or 4 backend passes in flight (`FixedKeyHash::permute_in_flight`),
    /// the fastest, per block, so ratios can be read against what this CPU
    /// reaches and not only against the reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aes_best_ns_per_block: Option<f64>,
    /// `aes_best_ns_per_block` / reference (paired, as for every figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aes_best_aes_ratio: Option<f64>,
    /// Blocks per pass of the AES backend the `aes` crate chose at run time
    /// (`FixedKeyHash::par_blocks`): 64 VAES with AVX-512, 30 VAES, 8 AES-NI,
    /// 4 or 2 software.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aes_par_blocks: Option<u64>,
    /// Projection p=17 → 17, garbling, per gate: 1024 independent gates of
    /// one table (each with its own input zero label and tweak, rows
    /// written in order to one buffer) through `projection::garble_batch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_garble_ns: Option<f64>,
    /// `proj_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_garble_aes_ratio: Option<f64>,
    /// As `proj_garble_ns`, but one `projection::garble` call per gate
    /// (each returning its output label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_garble_loop_ns: Option<f64>,
    /// `proj_garble_loop_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_garble_loop_aes_ratio: Option<f64>,
    /// Projection p=17 → 17, evaluation, per gate: 1024 independent gates
    /// (each with its own tweak, rows read in order from one buffer)
    /// through `projection::evaluate_batch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_ns: Option<f64>,
    /// `proj_eval_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_aes_ratio: Option<f64>,
    /// As `proj_eval_ns`, but one `projection::evaluate` call per gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_loop_ns: Option<f64>,
    /// `proj_eval_loop_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_loop_aes_ratio: Option<f64>,
    /// Projection p=17, evaluation of one gate on its own (repeated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_single_ns: Option<f64>,
    /// `proj_eval_single_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj_eval_single_aes_ratio: Option<f64>,
    /// Projection p=97 → 97, garbling, per gate (1024 gates, batched as
    /// `proj_garble_ns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj97_garble_ns: Option<f64>,
    /// `proj97_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj97_garble_aes_ratio: Option<f64>,
    /// Projection p=97 → 97, evaluation, per gate (1024 gates, batched as
    /// `proj_eval_ns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj97_eval_ns: Option<f64>,
    /// `proj97_eval_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proj97_eval_aes_ratio: Option<f64>,
    /// CRT addition of two 8-prime bundles on the evaluator's labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_add8_ns: Option<f64>,
    /// `crt_add8_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_add8_aes_ratio: Option<f64>,
    /// CRT addition of two 8-prime bundles on the garbler's zero labels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_add8_garble_ns: Option<f64>,
    /// `crt_add8_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crt_add8_garble_aes_ratio: Option<f64>,
    /// Exact ReLU on the first 8 primes (`SignGadget::relu`), garbling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu8_garble_ns: Option<f64>,
    /// `relu8_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu8_garble_aes_ratio: Option<f64>,
    /// Exact ReLU on the first 8 primes, evaluation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu8_eval_ns: Option<f64>,
    /// `relu8_eval_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu8_eval_aes_ratio: Option<f64>,
    /// Ciphertexts of one exact ReLU on the first 8 primes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu8_ciphertexts: Option<u64>,
    /// Exact ReLU on the first 7 primes, garbling, per element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_garble_ns: Option<f64>,
    /// `relu_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_garble_aes_ratio: Option<f64>,
    /// Exact ReLU on the first 7 primes, evaluation, per element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_eval_ns: Option<f64>,
    /// `relu_eval_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_eval_aes_ratio: Option<f64>,
    /// Ciphertexts of one exact ReLU on the first 7 primes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relu_ciphertexts: Option<u64>,
    /// Rescaling on the first 7 primes by [`RESCALE_DIVISOR`] (about 2^5,
    /// floor), garbling, per element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_garble_ns: Option<f64>,
    /// `rescale_garble_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_garble_aes_ratio: Option<f64>,
    /// The same rescaling, evaluation, per element.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_eval_ns: Option<f64>,
    /// `rescale_eval_ns` / AES block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_eval_aes_ratio: Option<f64>,
    /// The divisor of the rescale figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_divisor: Option<u64>,
    /// Ciphertexts of one such rescaling.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rescale_ciphertexts: Option<u64>,
    /// SecureML MLP (784-128-128-10, exact ReLU, first 8 primes, random
    /// integer weights), garbling on all cores, milliseconds (best run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_garble_ms: Option<f64>,
    /// The same MLP online: encode + evaluate + decode, all cores, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_online_ms: Option<f64>,
    /// Garbled material of the MLP, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_material_bytes: Option<u64>,
    /// Threads the MLP figures used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mlp_threads: Option<u32>,
    /// Whole layers through the engine beside their gadgets' lane
    /// microbenchmarks, and linear layers per multiply-add (`--networks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<networks::NetworkFigures>,
    /// Wall-clock time of the whole run, in seconds.
    pub wall_s: f64,
}

/// One paired measurement.
#[derive(Clone, Copy, Debug)]
pub struct Paired {
    /// Median nanoseconds per unit of the operation.
    pub ns: f64,
    /// Median of the per-round ratios to the AES block time.
    pub ratio: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn time_batch(f: &mut dyn FnMut(), iters: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed().as_secs_f64() * 1e9 / iters as f64
}

/// The AES reference and the paired timer.
pub struct Timer {
    config: BenchConfig,
    hash: FixedKeyHash,
    blocks: Vec<Block>,
    aes_samples: Vec<f64>,
}

impl Timer {
    /// A timer with the given settings.
    pub fn new(config: BenchConfig) -> Timer {
        Timer {
            config,
            hash: FixedKeyHash::new(),
            blocks: (0..AES_BATCH as u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect(),
            aes_samples: Vec::new(),
        }
    }

    /// Iterations of `f` that take about one batch.
    fn calibrate(&self, f: &mut dyn FnMut()) -> u64 {
        let mut iters = 1u64;
        loop {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let el = t.elapsed();
            if el >= self.config.batch / 4 || iters >= 1 << 30 {
                let per = el.as_secs_f64() / iters as f64;
                return ((self.config.batch.as_secs_f64() / per.max(1e-12)) as u64).max(1);
            }
            iters *= 4;
        }
    }

    /// Measures `op`, which does `units` units of work per call, paired
    /// with the AES reference.
    pub fn paired(&mut self, units: u64, op: impl FnMut()) -> Paired {
        self.paired_rounds(units, self.config.rounds, op)
    }

    /// [`Timer::paired`] with its own number of rounds (for operations of
    /// a second or so, where a batch is one call).
    pub fn paired_rounds(&mut self, units: u64, rounds: usize, mut op: impl FnMut()) -> Paired {
        let hash = self.hash.clone();
        let mut blocks = std::mem::take(&mut self.blocks);
        let mut aes = || hash.permute(black_box(&mut blocks[..]));
        let aes_iters = self.calibrate(&mut aes);
        let op_iters = self.calibrate(&mut op);
        let (mut ops, mut ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            let (a, o) = if round % 2 == 0 {
                let a = time_batch(&mut aes, aes_iters);
                (a, time_batch(&mut op, op_iters))
            } else {
                let o = time_batch(&mut op, op_iters);
                (time_batch(&mut aes, aes_iters), o)
            };
            let (a, o) = (a / AES_BATCH as f64, o / units as f64);
            self.aes_samples.push(a);
            ops.push(o);
            ratios.push(o / a);
        }
        self.blocks = blocks;
        Paired { ns: median(&mut ops), ratio: median(&mut ratios) }
    }

    /// The best AES rate this CPU gives the hash: the reference's blocks with
    /// 1, 2 or 4 backend passes in flight, the fastest of a short unpaired
    /// trial measured paired like any figure; and the backend's pass width.
    pub fn best_aes(&mut self) -> (Paired, usize) {
        let hash = self.hash.clone();
        let mut blocks = self.blocks.clone();
        let trial = |g: usize, blocks: &mut Vec<Block>| {
            let mut f = || hash.permute_in_flight(g, black_box(&mut blocks[..]));
            let iters = self.calibrate(&mut f);
            (0..5).map(|_| time_batch(&mut f, iters)).fold(f64::MAX, f64::min)
        };
        let trials = [1, 2, 4].map(|g| (trial(g, &mut blocks), g));
        let (_, g) = trials.into_iter().min_by(|a, b| a.0.total_cmp(&b.0)).expect("three candidates");
        let best = self.paired(AES_BATCH as u64, || hash.permute_in_flight(g, black_box(&mut blocks[..])));
        (best, hash.par_blocks())
    }

    /// The median of every AES batch timed so far, per block.
    pub fn aes_ns_per_block(&mut self) -> f64 {
        median(&mut self.aes_samples)
    }
}

/// `GATES` garbled projection gates `Z_p → Z_p` (`x ↦ x² + 1`) and the
/// evaluator's input labels.
struct ProjFixture {
    m: Modulus,
    delta: Delta,
    hash: FixedKeyHash,
    inputs: Vec<ZeroLabel>,
    labels: Vec<Label>,
    tweaks: Vec<Tweak>,
    rows: Vec<Block>,
    scratch: Vec<Block>,
    outputs: Vec<Label>,
    zero_outputs: Vec<ZeroLabel>,
}

fn square_plus_one(x: u16) -> u16 {
    x * x + 1
}

impl ProjFixture {
    fn new(p: u16) -> anyhow::Result<ProjFixture> {
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(p));
        let m = Modulus::new(p)?;
        let delta = Delta::random(m, &mut rng);
        let inputs: Vec<ZeroLabel> = (0..GATES).map(|_| ZeroLabel::random(m, &mut rng)).collect();
        let labels = inputs
            .iter()
            .map(|z| z.encode((rng.next_u32() % u32::from(p)) as u16, &delta))
            .collect::<Result<Vec<_>, _>>()?;
        let tweaks: Vec<Tweak> = (0..GATES as u64).map(|g| Tweak::new(Domain::Projection, g, 0)).collect();
        let hash = FixedKeyHash::new();
        let mut sink = VecSink::with_capacity(GATES * (p as usize - 1));
        for (z, t) in inputs.iter().zip(&tweaks) {
            projection::garble(&hash, *t, z, &delta, &delta, square_plus_one, &mut sink)?;
        }
        let rows = sink.into_rows();
        let scratch = rows.clone();
        let outputs = vec![Label::zero(m); GATES];
        let zero_outputs = (0..GATES).map(|_| ZeroLabel::new(Label::zero(m))).collect();
        Ok(ProjFixture { m, delta, hash, inputs, labels, tweaks, rows, scratch, outputs, zero_outputs })
    }

    fn garble_all(&mut self) {
        let mut sink = SliceSink::new(&mut self.scratch);
        for (z, t) in self.inputs.iter().zip(&self.tweaks) {
            let out = projection::garble(&self.hash, *t, z, &self.delta, &self.delta, square_plus_one, &mut sink);
            black_box(out.expect("sink sized for every gate"));
        }
    }

    fn garble_batch(&mut self) {
        let mut sink = SliceSink::new(&mut self.scratch);
        let (hash, d) = (&self.hash, &self.delta);
        let out = projection::garble_batch(
            hash,
            &self.tweaks,
            &self.inputs,
            d,
            d,
            square_plus_one,
            &mut sink,
            &mut self.zero_outputs,
        );
        out.expect("sink sized for every gate");
        black_box(&self.zero_outputs);
    }

    fn eval_batch(&mut self) {
        let mut src = SliceSource::new(&self.rows);
        let out =
            projection::evaluate_batch(&self.hash, &self.tweaks, &self.labels, self.m, &mut src, &mut self.outputs);
        out.expect("rows garbled for these labels");
        black_box(&self.outputs);
    }

    fn eval_all(&self) {
        let mut src = SliceSource::new(&self.rows);
        for (l, t) in self.labels.iter().zip(&self.tweaks) {
            let out = projection::evaluate(&self.hash, *t, black_box(l), self.m, &mut src);
            black_box(out.expect("rows garbled for these labels"));
        }
    }

    fn eval_one(&self) {
        let mut src = SliceSource::new(&self.rows[..self.m.value() as usize - 1]);
        let out = projection::evaluate(&self.hash, self.tweaks[0], black_box(&self.labels[0]), self.m, &mut src);
        black_box(out.expect("rows garbled for this label"));
    }
}

struct CrtFixture {
    hash: FixedKeyHash,
    keys: GarblerKeys,
    ones: OneLabels,
    zeros: (Bundle<ZeroLabel>, Bundle<ZeroLabel>),
    labels: (Bundle<Label>, Bundle<Label>),
}

impl CrtFixture {
    fn new() -> anyhow::Result<CrtFixture> {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let base = CrtBase::first(8)?;
        let keys: GarblerKeys = GarblerKeys::generate(&mut rng, base.moduli())?;
        let zeros = (keys.input_bundle(&base, &mut rng)?, keys.input_bundle(&base, &mut rng)?);
        let labels = (keys.encode_bundle(&base, &zeros.0, 123_456)?, keys.encode_bundle(&base, &zeros.1, -98_765)?);
        let ones = keys.one_labels();
        Ok(CrtFixture { hash: FixedKeyHash::new(), keys, ones, zeros, labels })
    }
}

/// The divisor of the rescale figures: 33 = 3·11, the product of base
/// primes closest to 2^5 on the first 7 primes.
pub const RESCALE_DIVISOR: u64 = 33;

/// Which gadget a [`GadgetFixture`] runs.
#[derive(Clone, Copy)]
enum GadgetOp {
    Relu,
    Rescale,
}

/// One gadget on the first `k` primes, garbled once for evaluation.
struct GadgetFixture {
    op: GadgetOp,
    hash: FixedKeyHash,
    sign: SignGadget,
    rescale: Rescale,
    keys: GarblerKeys<64>,
    ones: OneLabels<64>,
    zero: Bundle<ZeroLabel>,
    label: Bundle<Label>,
    rows: Vec<Block>,
    ciphertexts: u64,
}

impl GadgetFixture {
    fn new(k: usize, op: GadgetOp) -> anyhow::Result<GadgetFixture> {
        let mut rng = ChaCha20Rng::seed_from_u64(9 + k as u64);
        let base = CrtBase::first(k)?;
        let sign = SignGadget::new(&base, Accuracy::Exact)?;
        let rescale = Rescale::new(&base, RESCALE_DIVISOR, Rounding::Floor)?;
        let mut moduli = sign.moduli().to_vec();
        moduli.extend_from_slice(rescale.moduli());
        let keys: GarblerKeys<64> = GarblerKeys::generate(&mut rng, &moduli)?;
        let zero = keys.input_bundle(&base, &mut rng)?;
        let label = keys.encode_bundle(&base, &zero, -4321)?;
        let hash = FixedKeyHash::new();
        let ones = keys.one_labels();
        let mut f =
            GadgetFixture { op, hash, sign, rescale, keys, ones, zero, label, rows: Vec::new(), ciphertexts: 0 };
        let mut g = Garbler::new(&f.hash, &f.keys, VecSink::new());
        f.run(&mut g, &f.zero)?;
        f.rows = g.into_sink().into_rows();
        f.ciphertexts = f.rows.len() as u64;
        Ok(f)
    }

    fn run<B: dash_core::Backend>(&self, b: &mut B, x: &Bundle<B::Wire>) -> Result<(), dash_core::Error> {
        match self.op {
            GadgetOp::Relu => self.sign.relu(b, x).map(drop),
            GadgetOp::Rescale => self.rescale.apply(b, x).map(drop),
        }
    }

    fn garble(&self) {
        let mut g = Garbler::new(&self.hash, &self.keys, CountingSink::default());
        self.run(&mut g, black_box(&self.zero)).expect("keys cover the gadget");
    }

    fn eval(&self) {
        let mut e = Evaluator::new(&self.hash, &self.ones, SliceSource::new(&self.rows));
        self.run(&mut e, black_box(&self.label)).expect("rows garbled for this gadget");
    }
}

/// The SecureML MLP with random integer weights on the first 8 primes:
/// best garbling and online times over `reps` inferences (all cores), and
/// the material size. Checks every result against the plaintext network.
fn mlp_figures(reps: usize) -> anyhow::Result<(f64, f64, u64)> {
    use crate::engine::{self, Plan};
    use crate::network::{IntLayer, IntNetwork};
    let mut r = ChaCha20Rng::seed_from_u64(784);
    let mut ints =
        |n: usize, m: i64| -> Vec<i64> { (0..n).map(|_| (r.next_u64() % (2 * m as u64 + 1)) as i64 - m).collect() };
    let mut dense = |inputs: usize, outputs: usize| IntLayer::Dense {
        inputs,
        outputs,
        weights: ints(inputs * outputs, 20),
        bias: ints(outputs, 20),
    };
    let layers = vec![dense(784, 128), IntLayer::Relu, dense(128, 128), IntLayer::Relu, dense(128, 10)];
    let net = IntNetwork::new(vec![784], layers, CrtBase::first(8)?)?;
    let plan = Plan::new(&net)?;
    let mut rng = crate::rng::os_seeded()?;
    let x: Vec<i64> = (0..784).map(|i| (i as i64 * 37) % 101 - 50).collect();
    let want = net.eval_plain(&x)?;
    let (mut best_g, mut best_o) = (f64::MAX, f64::MAX);
    let mut material = Vec::with_capacity(plan.material_bytes() as usize + 4096);
    for _ in 0..reps {
        material.clear();
        let t = Instant::now();
        let session = engine::garble(&plan, &mut rng, &mut material)?;
        best_g = best_g.min(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let (labels, awaiting) = session.encode_input(&x)?;
        let out = engine::evaluate(&plan, material.as_slice(), &labels)?;
        let got = awaiting.decode_output(&out.to_blocks())?;
        best_o = best_o.min(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(got == want, "garbled MLP output differs from the plaintext network");
    }
    Ok((best_g, best_o, plan.material_bytes()))
}

/// Runs every figure on the current thread and returns the report.
pub fn run(config: BenchConfig) -> anyhow::Result<BenchReport> {
    let start = Instant::now();
    let mut timer = Timer::new(config);
    let mut report = BenchReport {
        schema: SCHEMA,
        mode: if config.quick { "quick" } else { "full" }.into(),
        threads: 1,
        rounds: config.rounds as u32,
        ..BenchReport::default()
    };
    let put = |ns: &mut Option<f64>, ratio: &mut Option<f64>, p: Paired| {
        *ns = Some(p.ns);
        *ratio = Some(p.ratio);
    };

    // First, while no figure's threads are about (the MLP's run on all cores).
    let (best, par_blocks) = timer.best_aes();
    put(&mut report.aes_best_ns_per_block, &mut report.aes_best_aes_ratio, best);
    report.aes_par_blocks = Some(par_blocks as u64);

    let mut p17 = ProjFixture::new(17)?;
    put(
        &mut report.proj_garble_ns,
        &mut report.proj_garble_aes_ratio,
        timer.paired(GATES as u64, || p17.garble_batch()),
    );
    put(
        &mut report.proj_garble_loop_ns,
        &mut report.proj_garble_loop_aes_ratio,
        timer.paired(GATES as u64, || p17.garble_all()),
    );
    put(&mut report.proj_eval_ns, &mut report.proj_eval_aes_ratio, timer.paired(GATES as u64, || p17.eval_batch()));
    put(
        &mut report.proj_eval_loop_ns,
        &mut report.proj_eval_loop_aes_ratio,
        timer.paired(GATES as u64, || p17.eval_all()),
    );
    put(&mut report.proj_eval_single_ns, &mut report.proj_eval_single_aes_ratio, timer.paired(1, || p17.eval_one()));
    drop(p17);

    let mut p97 = ProjFixture::new(97)?;
    put(
        &mut report.proj97_garble_ns,
        &mut report.proj97_garble_aes_ratio,
        timer.paired(GATES as u64, || p97.garble_batch()),
    );
    put(&mut report.proj97_eval_ns, &mut report.proj97_eval_aes_ratio, timer.paired(GATES as u64, || p97.eval_batch()));
    drop(p97);

    let f = CrtFixture::new()?;
    let mut e = Evaluator::new(&f.hash, &f.ones, SliceSource::new(&[]));
    let eval = timer.paired(1, || {
        black_box(crt::add(&mut e, black_box(&f.labels.0), black_box(&f.labels.1)).expect("same base"));
    });
    put(&mut report.crt_add8_ns, &mut report.crt_add8_aes_ratio, eval);
    let mut g = Garbler::new(&f.hash, &f.keys, SliceSink::new(&mut []));
    let garble = timer.paired(1, || {
        black_box(crt::add(&mut g, black_box(&f.zeros.0), black_box(&f.zeros.1)).expect("same base"));
    });
    put(&mut report.crt_add8_garble_ns, &mut report.crt_add8_garble_aes_ratio, garble);

    let relu = GadgetFixture::new(7, GadgetOp::Relu)?;
    report.relu_ciphertexts = Some(relu.ciphertexts);
    put(&mut report.relu_garble_ns, &mut report.relu_garble_aes_ratio, timer.paired(1, || relu.garble()));
    put(&mut report.relu_eval_ns, &mut report.relu_eval_aes_ratio, timer.paired(1, || relu.eval()));
    drop(relu);

    let relu8 = GadgetFixture::new(8, GadgetOp::Relu)?;
    report.relu8_ciphertexts = Some(relu8.ciphertexts);
    put(&mut report.relu8_garble_ns, &mut report.relu8_garble_aes_ratio, timer.paired(1, || relu8.garble()));
    put(&mut report.relu8_eval_ns, &mut report.relu8_eval_aes_ratio, timer.paired(1, || relu8.eval()));
    drop(relu8);

    let rescale = GadgetFixture::new(7, GadgetOp::Rescale)?;
    report.rescale_divisor = Some(RESCALE_DIVISOR);
    report.rescale_ciphertexts = Some(rescale.ciphertexts);
    put(&mut report.rescale_garble_ns, &mut report.rescale_garble_aes_ratio, timer.paired(1, || rescale.garble()));
    put(&mut report.rescale_eval_ns, &mut report.rescale_eval_aes_ratio, timer.paired(1, || rescale.eval()));

    let (g, o, bytes) = mlp_figures(if config.quick { 3 } else { 8 })?;
    report.mlp_garble_ms = Some(g);
    report.mlp_online_ms = Some(o);
    report.mlp_material_bytes = Some(bytes);
    report.mlp_threads = Some(rayon::current_num_threads() as u32);

    if let Some(scale) = config.networks {
        report.networks = Some(networks::run(&mut timer, scale)?);
    }

    report.aes_ns_per_block = timer.aes_ns_per_block();
    report.wall_s = start.elapsed().as_secs_f64();
    Ok(report)
}

impl BenchReport {
    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a BenchReport always serialises")
    }

    /// A readable table: one row per time figure, with its AES ratio.
    /// Built from the serialised fields, so new fields show up by
    /// themselves.
    pub fn to_table(&self) -> String {
        let value = serde_json::to_value(self).expect("a BenchReport always serialises");
        let map = value.as_object().expect("a struct serialises to an object");
        let mut out = format!(
            "dashgc bench ({} mode, {} thread, {} paired rounds per figure, {:.1} s)\n\n",
            self.mode, self.threads, self.rounds, self.wall_s
        );
        out.push_str(&format!("{:<28} {:>14} {:>16}\n", "figure", "time", "AES blocks"));
        out.push_str(&format!("{:-<28} {:->14} {:->16}\n", "", "", ""));
        for (key, v) in map {
            if key.ends_with("_ciphertexts") {
                out.push_str(&format!("{key:<28} {:>14} {:>16}\n", format!("{v} ct"), "-"));
                continue;
            }
            if let (Some(ms), Some(stem)) = (v.as_f64(), key.strip_suffix("_ms")) {
                out.push_str(&format!(
                    "{key:<28} {:>14} {:>16}\n",
                    format!("{ms:.2} ms"),
                    format!("({stem}, all cores)")
                ));
                continue;
            }
            let Some(stem) = key.strip_suffix("_ns").or_else(|| key.strip_suffix("_ns_per_block")) else {
                continue;
            };
            let Some(ns) = v.as_f64() else { continue };
            let ratio = map.get(&format!("{stem}_aes_ratio")).and_then(|r| r.as_f64());
            let time = if ns >= 1000.0 { format!("{:.2} µs", ns / 1000.0) } else { format!("{ns:.1} ns") };
            let ratio = ratio.map_or_else(|| "1 (reference)".to_string(), |r| format!("{r:.2}"));
            out.push_str(&format!("{key:<28} {time:>14} {ratio:>16}\n"));
        }
        if let Some(n) = &self.networks {
            out.push_str(&n.to_table());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_run_fills_the_required_fields_and_serialises() {
        let config = BenchConfig { rounds: 3, batch: Duration::from_micros(200), quick: true, networks: None };
        let report = run(config).unwrap();
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        for key in [
            "aes_ns_per_block",
            "aes_best_ns_per_block",
            "aes_best_aes_ratio",
            "proj_garble_ns",
            "proj_garble_loop_ns",
            "proj_eval_ns",
            "proj_eval_aes_ratio",
            "crt_add8_ns",
            "relu_garble_ns",
            "relu_eval_ns",
            "rescale_garble_ns",
            "rescale_eval_ns",
            "mlp_garble_ms",
            "mlp_online_ms",
        ] {
            let v = json[key].as_f64().unwrap_or_else(|| panic!("{key} missing"));
            assert!(v.is_finite() && v > 0.0, "{key} = {v}");
        }
        let table = report.to_table();
        assert!(table.contains("proj_eval_ns") && table.contains("aes_ns_per_block"));
    }

    #[test]
    fn unset_fields_are_left_out() {
        let json = BenchReport::default().to_json();
        assert!(!json.contains("proj_eval_ns"));
        assert!(json.contains("aes_ns_per_block"));
    }
}
