//! Private MNIST inference end to end: quantise a float model, then for
//! each image garble a fresh circuit, encode the image, evaluate, decode and
//! verify, and compare with the float model and the plaintext integer
//! network.
//!
//! [`plain_accuracy`] gives float and quantised accuracy over a whole data
//! set (cheap: no cryptography); [`run_mnist`] runs the garbled protocol on
//! the first `limit` images and returns a [`Report`] with every figure the
//! `dashgc run --json` line carries.
//!
//! What is counted where:
//!
//! * **garble seconds**: generating keys and writing the garbled material
//!   (offline; one fresh circuit per image, as security requires);
//! * **eval seconds**: the evaluator reading the material and evaluating
//!   (the online computation); encoding and decoding are the garbler's
//!   online work and are timed separately;
//! * **garbled bytes**: the material streams, header included, summed over
//!   images. Between the two phases one image's material is held in memory,
//!   or in an anonymous temporary file above [`SPOOL_TO_DISK_BYTES`];
//! * **online bytes**: the input labels sent and the output labels returned
//!   (16 bytes per label, one label per residue of each value), summed over
//!   images.

use crate::engine::{self, GarblerSession, Plan};
use crate::mnist::Dataset;
use crate::model::{FloatModel, argmax};
use crate::quantize::{QuantizeOptions, Quantized, quantize};
use crate::tensor::CrtTensor;
use anyhow::{Context, Result, ensure};
use rayon::prelude::*;
use serde::Serialize;
use std::time::Instant;

/// Bytes of one label on the wire.
pub const LABEL_BYTES: u64 = 16;

/// Garbled material above this size is spooled to an anonymous temporary
/// file between garbling and evaluation instead of being held in memory
/// (as an evaluating server would keep it on disk), so that peak memory
/// stays at about one layer's activations even for MiniONN-CIFAR.
pub const SPOOL_TO_DISK_BYTES: u64 = 256 << 20;

/// One image's garbled material between the offline phase (garbling) and
/// the online phase (evaluation): in memory, or on disk when large.
struct Spool {
    store: SpoolStore,
    len: u64,
}

enum SpoolStore {
    Memory(Vec<u8>),
    Disk(std::fs::File),
}

impl Spool {
    fn for_plan(plan: &Plan, spool_above: u64) -> Result<Spool> {
        let store = if plan.material_bytes() > spool_above {
            SpoolStore::Disk(tempfile::tempfile().context("creating a temporary file for the garbled material")?)
        } else {
            SpoolStore::Memory(Vec::with_capacity(plan.material_bytes() as usize + 4096))
        };
        Ok(Spool { store, len: 0 })
    }

    fn garble<R: rand_core::CryptoRng>(&mut self, plan: &Plan, rng: &mut R) -> Result<GarblerSession> {
        use std::io::Seek;
        match &mut self.store {
            SpoolStore::Memory(material) => {
                let session = engine::garble(plan, rng, material)?;
                self.len = material.len() as u64;
                Ok(session)
            }
            SpoolStore::Disk(file) => {
                let mut writer = std::io::BufWriter::with_capacity(1 << 20, &mut *file);
                let session = engine::garble(plan, rng, &mut writer)?;
                writer.into_inner().map_err(|e| e.into_error()).context("writing the garbled material")?;
                self.len = file.stream_position()?;
                file.rewind()?;
                Ok(session)
            }
        }
    }

    fn evaluate(&mut self, plan: &Plan, labels: &CrtTensor) -> Result<CrtTensor> {
        Ok(match &mut self.store {
            SpoolStore::Memory(material) => engine::evaluate(plan, material.as_slice(), labels)?,
            SpoolStore::Disk(file) => engine::evaluate(plan, std::io::BufReader::with_capacity(1 << 20, file), labels)?,
        })
    }
}

/// Garbles and evaluates `x` once more and flips one bit of the first
/// returned label: whether the garbler refuses the answer as forged.
fn forged_answer_rejected<R: rand_core::CryptoRng>(
    plan: &Plan,
    spool_above: u64,
    rng: &mut R,
    x: &[i64],
) -> Result<bool> {
    let mut spool = Spool::for_plan(plan, spool_above)?;
    let session = spool.garble(plan, rng)?;
    let (labels, awaiting) = session.encode_input(x)?;
    let mut returned = spool.evaluate(plan, &labels)?.to_blocks();
    returned[0].0 ^= 1;
    Ok(matches!(awaiting.decode_output(&returned), Err(engine::EngineError::Authenticity)))
}

/// One private inference of one input, timed by phase: what [`infer_one`]
/// returns.
#[derive(Clone, Debug, PartialEq)]
pub struct OneInference {
    /// The decoded and verified integer outputs.
    pub output: Vec<i64>,
    /// Bytes of garbled material (header included).
    pub material_bytes: u64,
    /// Seconds spent generating keys and garbling.
    pub garble_seconds: f64,
    /// Seconds the evaluator spent reading the material and evaluating.
    pub eval_seconds: f64,
    /// Seconds the garbler spent encoding the input and decoding the output.
    pub encode_decode_seconds: f64,
}

/// One private inference of `x` on `plan`, both parties in this process:
/// garble under fresh keys (material in memory, or in a temporary file
/// above `spool_above` bytes), encode, evaluate, then decode and verify
/// every output label. What `dashgc run` does per image and what the
/// Python module's `dashgc.infer` does; typed engine errors
/// ([`engine::EngineError`]: an input out of range, a failed check) stay
/// reachable through the error's chain.
pub fn infer_one<R: rand_core::CryptoRng>(
    plan: &Plan,
    rng: &mut R,
    x: &[i64],
    spool_above: u64,
) -> Result<OneInference> {
    let t = Instant::now();
    let mut spool = Spool::for_plan(plan, spool_above)?;
    let session = spool.garble(plan, rng).context("garbling")?;
    let garble_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (labels, awaiting) = session.encode_input(x).map_err(|e| e.error).context("encoding the input")?;
    let mut encode_decode_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let out = spool.evaluate(plan, &labels).context("evaluating")?;
    let eval_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let returned = out.to_blocks();
    let output = awaiting.decode_output(&returned).context("decoding")?;
    encode_decode_seconds += t.elapsed().as_secs_f64();
    Ok(OneInference { output, material_bytes: spool.len, garble_seconds, eval_seconds, encode_decode_seconds })
}

/// Options of [`run_mnist`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How to quantise.
    pub quantize: QuantizeOptions,
    /// Show progress bars on standard error.
    pub progress: bool,
    /// Also compute float and quantised accuracy (in plaintext) over every
    /// image of the data set, not only the garbled ones.
    pub plain_all: bool,
    /// Where linear layers and the evaluator's projection batches run
    /// (`None`: the CPU). See [`crate::offload::select_device`].
    pub offload: Option<crate::offload::OffloadHandle>,
    /// Garbled material of one image larger than this many bytes waits for
    /// the evaluator in an anonymous temporary file instead of memory
    /// (default [`SPOOL_TO_DISK_BYTES`]).
    pub spool_above: u64,
    /// Garble the planner's circuit ([`crate::planner`]; the default), or
    /// today's unplanned one.
    pub plan: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            quantize: QuantizeOptions::default(),
            progress: false,
            plain_all: true,
            offload: None,
            spool_above: SPOOL_TO_DISK_BYTES,
            plan: true,
        }
    }
}

/// Float and quantised accuracy of a model on a data set, without garbling.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlainAccuracy {
    /// Images.
    pub images: usize,
    /// Float accuracy.
    pub float: f64,
    /// Quantised (integer network) accuracy.
    pub quantized: f64,
    /// Fraction of images where float and quantised predictions agree.
    pub agreement: f64,
    /// Per image: (float prediction, quantised prediction).
    #[serde(skip)]
    pub predictions: Vec<(usize, usize)>,
}

fn pixels(image: &[u8]) -> Vec<i64> {
    image.iter().map(|&p| p as i64).collect()
}

/// Float and quantised predictions and accuracy on every image of `data`
/// (in parallel).
pub fn plain_accuracy(model: &FloatModel, q: &Quantized, data: &Dataset) -> Result<PlainAccuracy> {
    plain_accuracy_with(model, q, data, false)
}

/// [`plain_accuracy`], with a progress bar on standard error when `progress`.
pub fn plain_accuracy_with(model: &FloatModel, q: &Quantized, data: &Dataset, progress: bool) -> Result<PlainAccuracy> {
    ensure!(!data.is_empty(), "no images");
    ensure!(
        data.images.pixels_per_image() == model.input_len(),
        "images have {} pixels, the model takes {} inputs",
        data.images.pixels_per_image(),
        model.input_len()
    );
    let pb = bar(progress, data.len() as u64, "plaintext");
    pb.set_message("float and integer networks");
    let predictions: Vec<(usize, usize)> = data
        .images
        .iter()
        .collect::<Vec<_>>()
        .par_iter()
        .map(|im| {
            let x = pixels(im);
            let r = (model.predict(&x)?, q.predict(&x)?);
            pb.inc(1);
            Ok(r)
        })
        .collect::<Result<_>>()?;
    pb.finish_and_clear();
    let n = data.len() as f64;
    let count = |f: &dyn Fn(usize, &(usize, usize)) -> bool| {
        predictions.iter().enumerate().filter(|(i, p)| f(*i, p)).count() as f64 / n
    };
    Ok(PlainAccuracy {
        images: data.len(),
        float: count(&|i, p| p.0 == data.labels[i] as usize),
        quantized: count(&|i, p| p.1 == data.labels[i] as usize),
        agreement: count(&|_, p| p.0 == p.1),
        predictions,
    })
}

/// One image of a garbled run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ImageResult {
    /// Index in the data set.
    pub index: usize,
    /// The true label.
    pub label: u8,
    /// The float model's prediction.
    pub float_prediction: usize,
    /// The plaintext integer network's prediction.
    pub quantized_prediction: usize,
    /// The garbled (decoded and verified) prediction.
    pub garbled_prediction: usize,
    /// Whether the garbled output equals the plaintext integer output exactly.
    pub garbled_equals_plaintext: bool,
    /// The garbled (decoded and verified) integer outputs.
    pub garbled_output: Vec<i64>,
}

/// Results of [`run_mnist`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Images run through the garbled protocol.
    pub images: usize,
    /// Float accuracy on those images.
    pub accuracy_float: f64,
    /// Quantised accuracy on those images.
    pub accuracy_quantized: f64,
    /// Garbled accuracy on those images.
    pub accuracy_garbled: f64,
    /// True only if every image's garbled output equals the plaintext
    /// integer network's output.
    pub garbled_equals_plaintext: bool,
    /// Seconds spent quantising and planning (once).
    pub quantize_seconds: f64,
    /// Seconds spent on the plaintext float and integer networks over the
    /// whole data set.
    pub plain_seconds: f64,
    /// Seconds spent garbling, all images.
    pub garble_seconds: f64,
    /// Seconds spent evaluating, all images.
    pub eval_seconds: f64,
    /// Seconds the garbler spent encoding inputs and decoding outputs, all images.
    pub encode_decode_seconds: f64,
    /// Bytes of garbled material, all images.
    pub garbled_bytes: u64,
    /// Bytes of garbled material per image.
    pub garbled_bytes_per_image: u64,
    /// Online bytes (input labels out, output labels back), all images.
    pub online_bytes: u64,
    /// Online bytes per image.
    pub online_bytes_per_image: u64,
    /// Ciphertexts per image.
    pub ciphertexts_per_image: u64,
    /// The CRT primes.
    pub crt_moduli: Vec<u16>,
    /// Divisors of the rescale layers, in order.
    pub divisors: Vec<u64>,
    /// Whether the garbler rejected the first image's output after one bit
    /// of a returned label was flipped (it must).
    pub tamper_rejected: bool,
    /// Float and quantised accuracy over every image of the data set (not
    /// only the garbled ones; only those without [`RunOptions::plain_all`]),
    /// computed in plaintext.
    pub plain: PlainAccuracy,
    /// Per image.
    pub per_image: Vec<ImageResult>,
}

impl Report {
    /// The summary as one JSON object (without the per-image list).
    pub fn summary_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("per_image");
        }
        v
    }
}

fn bar(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(what.to_string());
    pb
}

/// Quantises `model`, then runs private inference on the first `limit`
/// images of `data` (all when `None`): garble, encode, evaluate, decode and
/// verify each, and compare with the float model and the plaintext integer
/// network.
pub fn run_mnist(model: &FloatModel, data: &Dataset, limit: Option<usize>, options: &RunOptions) -> Result<Report> {
    let t = Instant::now();
    let q = quantize(model, &options.quantize).context("quantisation")?;
    run_quantized(model, &q, data, limit, options, t.elapsed().as_secs_f64())
}

/// [`run_mnist`] with an already quantised network.
pub fn run_quantized(
    model: &FloatModel,
    q: &Quantized,
    data: &Dataset,
    limit: Option<usize>,
    options: &RunOptions,
    quantize_seconds: f64,
) -> Result<Report> {
    let n = limit.unwrap_or(data.len()).min(data.len());
    ensure!(n > 0, "no images to run");
    ensure!(
        data.images.pixels_per_image() == model.input_len(),
        "images have {} pixels, the model takes {} inputs",
        data.images.pixels_per_image(),
        model.input_len()
    );
    let t = Instant::now();
    let plain = if options.plain_all {
        plain_accuracy_with(model, q, data, options.progress)?
    } else {
        let mut first = data.clone();
        first.truncate(n);
        plain_accuracy_with(model, q, &first, options.progress)?
    };
    let plain_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut plan = crate::planner::circuit_plan(q, options.plan)?;
    plan.set_offload(options.offload.clone());
    let quantize_seconds = quantize_seconds + t.elapsed().as_secs_f64();
    let k = q.network.base.len() as u64;
    let n_in = model.input_len() as u64;
    let n_out = plan.output_shape().iter().product::<usize>() as u64;
    let online_per_image = (n_in + n_out) * k * LABEL_BYTES;
    let mut rng = crate::rng::os_seeded()?;

    let pb = bar(options.progress, n as u64, "garbled");
    let (mut garble_s, mut eval_s, mut codec_s) = (0.0, 0.0, 0.0);
    let mut garbled_bytes = 0u64;
    let mut per_image = Vec::with_capacity(n);
    let mut tamper_rejected = false;
    for i in 0..n {
        let image = data.images.get(i).context("image index")?;
        let x = pixels(image);
        let float_prediction = model.predict(&x)?;
        let want = q.network.eval_plain(&x)?;

        let one = infer_one(&plan, &mut rng, &x, options.spool_above).with_context(|| format!("image {i}"))?;
        garble_s += one.garble_seconds;
        eval_s += one.eval_seconds;
        codec_s += one.encode_decode_seconds;
        garbled_bytes += one.material_bytes;
        let got = one.output;
        if i == 0 {
            // A forged output label must be rejected, not decoded. Keys are
            // single-use, so this is a second inference of the same image,
            // untimed.
            tamper_rejected = forged_answer_rejected(&plan, options.spool_above, &mut rng, &x)?;
        }

        let r = ImageResult {
            index: i,
            label: data.labels[i],
            float_prediction,
            quantized_prediction: argmax(&want),
            garbled_prediction: argmax(&got),
            garbled_equals_plaintext: got == want,
            garbled_output: got,
        };
        pb.set_message(format!("image {i}: label {} → {}", r.label, r.garbled_prediction));
        pb.inc(1);
        per_image.push(r);
    }
    pb.finish_and_clear();

    let acc = |f: &dyn Fn(&ImageResult) -> usize| {
        per_image.iter().filter(|r| f(r) == r.label as usize).count() as f64 / n as f64
    };
    Ok(Report {
        images: n,
        accuracy_float: acc(&|r| r.float_prediction),
        accuracy_quantized: acc(&|r| r.quantized_prediction),
        accuracy_garbled: acc(&|r| r.garbled_prediction),
        garbled_equals_plaintext: per_image.iter().all(|r| r.garbled_equals_plaintext),
        quantize_seconds,
        plain_seconds,
        garble_seconds: garble_s,
        eval_seconds: eval_s,
        encode_decode_seconds: codec_s,
        garbled_bytes,
        garbled_bytes_per_image: garbled_bytes / n as u64,
        online_bytes: online_per_image * n as u64,
        online_bytes_per_image: online_per_image,
        ciphertexts_per_image: plan.total_rows(),
        crt_moduli: q.primes(),
        divisors: q.dense.iter().filter_map(|d| d.divisor).collect(),
        tamper_rejected,
        plain,
        per_image,
    })
}

/// Writes the report for a person: one line per image, then accuracy,
/// time per phase and sizes.
pub fn write_report(report: &Report, out: &mut impl std::io::Write) -> std::io::Result<()> {
    for r in &report.per_image {
        writeln!(
            out,
            "image {:>5}  label {}  garbled prediction {}  {}{}",
            r.index,
            r.label,
            r.garbled_prediction,
            if r.garbled_prediction == r.label as usize { "ok   " } else { "WRONG" },
            if r.garbled_equals_plaintext { "" } else { "  (differs from the plaintext integer network!)" },
        )?;
    }
    let n = report.images as f64;
    let pct = |a: f64| 100.0 * a;
    writeln!(out)?;
    writeln!(
        out,
        "accuracy on {} images: float {:.2}%  quantised {:.2}%  garbled {:.2}%  (garbled = plaintext integer network on every image: {})",
        report.images,
        pct(report.accuracy_float),
        pct(report.accuracy_quantized),
        pct(report.accuracy_garbled),
        if report.garbled_equals_plaintext { "yes" } else { "NO" }
    )?;
    if report.plain.images > report.images {
        writeln!(
            out,
            "plaintext accuracy on all {} images: float {:.2}%  quantised {:.2}%  (predictions agree on {:.2}%)",
            report.plain.images,
            pct(report.plain.float),
            pct(report.plain.quantized),
            pct(report.plain.agreement)
        )?;
    }
    writeln!(
        out,
        "CRT base {:?} (k = {}), rescale divisors {:?}",
        report.crt_moduli,
        report.crt_moduli.len(),
        report.divisors
    )?;
    writeln!(
        out,
        "a forged output label (one bit flipped) was {}",
        if report.tamper_rejected { "rejected by the garbler's check" } else { "NOT rejected" }
    )?;
    writeln!(
        out,
        "time: quantise+plan {:.3} s, plaintext float+integer networks on {} images {:.3} s",
        report.quantize_seconds, report.plain.images, report.plain_seconds
    )?;
    writeln!(
        out,
        "      garble {:.3} s ({:.1} ms/image), evaluate {:.3} s ({:.1} ms/image), encode+decode {:.3} s",
        report.garble_seconds,
        1e3 * report.garble_seconds / n,
        report.eval_seconds,
        1e3 * report.eval_seconds / n,
        report.encode_decode_seconds
    )?;
    writeln!(
        out,
        "garbled material {:.2} MB per image ({} ciphertexts), online {:.1} KB per image (input and output labels)",
        report.garbled_bytes_per_image as f64 / 1e6,
        report.ciphertexts_per_image,
        report.online_bytes_per_image as f64 / 1e3
    )?;
    Ok(())
}

/// The bundled model on the first `images` bundled MNIST test images:
/// what `dashgc demo` runs (plaintext accuracy over all 10,000 images only
/// with `plain_all`).
pub fn bundled_demo(images: usize, progress: bool, plain_all: bool) -> Result<Report> {
    bundled_demo_with(images, &RunOptions { progress, plain_all, ..RunOptions::default() })
}

/// [`bundled_demo`] with every [`RunOptions`] (e.g. an offload device).
pub fn bundled_demo_with(images: usize, options: &RunOptions) -> Result<Report> {
    let model = FloatModel::bundled_mlp().context("the bundled model")?;
    let data = crate::mnist::bundled_test_set().context("the bundled MNIST test set")?;
    run_mnist(&model, &data, Some(images), options)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Material spooled through a temporary file evaluates exactly as
    /// material held in memory.
    #[test]
    fn spooled_material_evaluates_like_material_in_memory() {
        let run = |spool_above| {
            bundled_demo_with(2, &RunOptions { plain_all: false, spool_above, ..RunOptions::default() }).unwrap()
        };
        let (memory, disk) = (run(u64::MAX), run(0));
        for r in [&memory, &disk] {
            assert!(r.garbled_equals_plaintext && r.tamper_rejected);
            assert_eq!(r.images, 2);
        }
        assert_eq!(memory.garbled_bytes, disk.garbled_bytes);
        let predictions = |r: &Report| r.per_image.iter().map(|i| i.garbled_prediction).collect::<Vec<_>>();
        assert_eq!(predictions(&memory), predictions(&disk));
    }
}
