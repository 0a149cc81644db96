//! `dashgc device`: the host's side of a microcontroller that garbles whole
//! inferences (`dash-mcu`, `firmware/src/bin/netgarbler.rs`,
//! `docs/EMBEDDED.md`).
//!
//! * `export --model FILE --out IMAGE [--check]`: the quantised integer
//!   network as the image the firmware embeds ([`crate::export`]); with
//!   `--check`, compare with an existing image instead (CI: the embedded
//!   image is the one today's quantiser produces).
//! * `images --limit N [--repeat R] --out FILE --reference FILE`: the
//!   device's sensor readings for a test (the first N bundled MNIST test
//!   images, each R times) and, for the checker only, each image's label and
//!   the plaintext integer network's prediction.
//! * `serve --model FILE --tx PATH --rx PATH [--tamper odd]`: the evaluator,
//!   as a server would run it. Reads what the device sends on `tx` (a FIFO,
//!   a serial device or a file) and answers on `rx`. It never sees a key,
//!   an input value or a decoded output.
//! * `check-material --model FILE --seed FILE --material FILE`: garbles one
//!   inference on the host engine from the 32-byte seed the device's
//!   generator was given and compares the material byte for byte.
//!
//! # The link (device → host, then host → device), per inference
//!
//! ```text
//! device:  "INFR" u32 index
//!          material header (format.rs, with the one-labels)
//!          input labels: k × n blocks, residue-major (residue t, element e at t·n + e)
//!          the rest of the material stream (layer tags and rows, trailer)
//! host:    output labels: outputs × k blocks, element-major (o·k + t)
//! ...
//! device:  "DONE" u32 inferences
//! ```
//!
//! Blocks are 16 bytes, little-endian. The device sends each input label as
//! it draws the label's zero label (during the first dense layer), so the
//! labels come between the header and the layers; header and layers
//! together are exactly the host engine's material stream. The host buffers
//! one inference's material; the device never holds it.

use crate::engine::{self, EvaluatorSession, Plan};
use crate::format::Header;
use crate::network::IntNetwork;
use crate::tensor::CrtTensor;
use crate::{mnist, model, quantize};
use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Subcommand, ValueEnum};
use dash_core::{Block, Label};
use rand_core::SeedableRng;
use std::io::{Read, Write};
use std::path::PathBuf;

/// `dashgc device` arguments.
#[derive(Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    command: DeviceCommand,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Export the quantised network as the image the firmware embeds.
    Export(ExportArgs),
    /// Write the device's test inputs (bundled MNIST test images) and the
    /// plaintext reference predictions.
    Images(ImagesArgs),
    /// Evaluate what the device streams, as a server would, and answer.
    Serve(ServeArgs),
    /// Garble on the host from the device's seed and compare the material.
    CheckMaterial(CheckArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// Model file (ONNX or the project's JSON format).
    #[arg(long)]
    model: PathBuf,
    /// Proven bound on hidden activations after rescaling: 2^BITS (as
    /// `dashgc run`).
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image file.
    #[arg(long)]
    out: PathBuf,
    /// Compare with the existing image instead of writing it.
    #[arg(long)]
    check: bool,
}

#[derive(Args)]
struct ImagesArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The first N bundled MNIST test images.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Each image this many times in a row (one inference each).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// The device's input file.
    #[arg(long)]
    out: PathBuf,
    /// Per image: index, label, plaintext integer prediction.
    #[arg(long)]
    reference: PathBuf,
}

/// Which answers the server forges (to show the device rejects them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Tamper {
    /// Honest answers only.
    None,
    /// Every odd-numbered inference: alternately one flipped bit in an
    /// output label, and the labels of outputs 0 and 1 swapped (a
    /// well-formed answer for other wires, which would change the logits).
    Odd,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// What the device sends (FIFO, serial device or file).
    #[arg(long)]
    tx: PathBuf,
    /// Where the answers go.
    #[arg(long)]
    rx: PathBuf,
    /// Forge some answers.
    #[arg(long, value_enum, default_value_t = Tamper::None)]
    tamper: Tamper,
    /// Write the first inference's material stream here.
    #[arg(long)]
    capture: Option<PathBuf>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The 32 bytes the device's generator (ChaCha12) was seeded with.
    #[arg(long)]
    seed: PathBuf,
    /// The device's material stream (`serve --capture`).
    #[arg(long)]
    material: PathBuf,
}

/// Runs `dashgc device`; `Ok(false)` when a check fails.
pub fn run(args: DeviceArgs) -> Result<bool> {
    match args.command {
        DeviceCommand::Export(a) => export(a),
        DeviceCommand::Images(a) => images(a),
        DeviceCommand::Serve(a) => serve(a),
        DeviceCommand::CheckMaterial(a) => check_material(a),
    }
}

fn network(m: &ModelArgs) -> Result<quantize::Quantized> {
    let model = model::FloatModel::load(&m.model)?;
    let options = quantize::QuantizeOptions { activation_bits: m.activation_bits, ..Default::default() };
    quantize::quantize(&model, &options).context("quantisation")
}

fn export(a: ExportArgs) -> Result<bool> {
    let q = network(&a.model)?;
    let image = crate::export::export(&q.network)?;
    if a.check {
        let have = std::fs::read(&a.out).with_context(|| format!("reading {}", a.out.display()))?;
        if have != image {
            eprintln!(
                "{} is not the image of {} ({} bytes, today's export {} bytes): re-export it with `dashgc device export`",
                a.out.display(),
                a.model.model.display(),
                have.len(),
                image.len()
            );
            return Ok(false);
        }
        println!("{}: {} bytes, equal to today's export", a.out.display(), image.len());
    } else {
        std::fs::write(&a.out, &image).with_context(|| format!("writing {}", a.out.display()))?;
        println!("{}: {} bytes, model hash {}", a.out.display(), image.len(), hex(&q.network.hash()));
    }
    Ok(true)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Magic of the device's input file.
pub const IMAGES_MAGIC: [u8; 8] = *b"DASHIMG\0";

fn images(a: ImagesArgs) -> Result<bool> {
    let q = network(&a.model)?;
    let data = mnist::bundled_test_set().context("the bundled MNIST test set")?;
    ensure!(a.limit >= 1 && a.limit <= data.len(), "--limit must be 1..={}", data.len());
    ensure!((1..=16).contains(&a.repeat), "--repeat must be 1..=16");
    let n = data.images.pixels_per_image();
    let mut file = IMAGES_MAGIC.to_vec();
    file.extend_from_slice(&((a.limit * a.repeat) as u32).to_le_bytes());
    file.extend_from_slice(&(n as u32).to_le_bytes());
    let mut reference = String::from("# image label plaintext_prediction\n");
    for i in 0..a.limit {
        let im = data.images.get(i).context("image index")?;
        for _ in 0..a.repeat {
            file.extend_from_slice(im);
        }
        let x: Vec<i64> = im.iter().map(|&p| p as i64).collect();
        reference.push_str(&format!("{i} {} {}\n", data.labels[i], q.predict(&x)?));
    }
    std::fs::write(&a.out, file).with_context(|| format!("writing {}", a.out.display()))?;
    std::fs::write(&a.reference, reference).with_context(|| format!("writing {}", a.reference.display()))?;
    println!("{}: {} images × {}; reference in {}", a.out.display(), a.limit, a.repeat, a.reference.display());
    Ok(true)
}

/// A reader that keeps what it reads.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn read_blocks<R: Read>(r: &mut R, count: usize) -> Result<Vec<Block>> {
    let mut bytes = vec![0u8; count * 16];
    r.read_exact(&mut bytes).context("the link closed inside the input labels")?;
    Ok(bytes.chunks_exact(16).map(|c| Block(u128::from_le_bytes(c.try_into().expect("16 bytes")))).collect())
}

/// Evaluates one inference from the link: material header, input labels
/// (residue-major), the rest of the material. Every size comes from the
/// plan, never from the link (the header's layer sizes are compared with
/// the plan's before anything else is read). Returns the material stream
/// and the output labels, element-major.
fn evaluate_one<R: Read>(plan: &Plan, net: &IntNetwork, link: &mut R) -> Result<(Vec<u8>, Vec<Block>)> {
    let mut tee = Tee { inner: link, kept: Vec::new() };
    let h = Header::read(&mut tee)?;
    let want: Vec<u64> = plan.costs().iter().map(|c| c.rows).collect();
    ensure!(h.layer_rows == want, "the device announces layers of {:?} rows, the model has {:?}", h.layer_rows, want);
    let (link, mut material) = (tee.inner, tee.kept);

    let n: usize = plan.input_shape().iter().product();
    let k = net.base.len();
    let blocks = read_blocks(link, n * k)?;
    let mut input = CrtTensor::zeros(&net.base, plan.input_shape());
    for (t, (res, &m)) in input.residues_mut().iter_mut().zip(net.base.moduli()).enumerate() {
        for e in 0..n {
            let l = Label::from_block(m, blocks[t * n + e])
                .with_context(|| format!("input label of element {e}, residue {t} is malformed"))?;
            res.set(e, &l)?;
        }
    }

    // Layer tags and rows, then the trailer.
    let rest: u64 = want.iter().filter(|&&r| r > 0).map(|r| 16 + 16 * r).sum::<u64>() + 8;
    let start = material.len();
    material.resize(start + usize::try_from(rest)?, 0);
    link.read_exact(&mut material[start..]).context("the link closed inside the material")?;
    let out = EvaluatorSession::start(plan, material.as_slice())?.evaluate(&input)?;
    Ok((material, out.to_blocks()))
}

fn serve(a: ServeArgs) -> Result<bool> {
    let q = network(&a.model)?;
    let plan = Plan::new(&q.network)?;
    // The same order as the device (tx, then rx), so two FIFOs cannot
    // deadlock on their opens.
    let mut tx =
        std::io::BufReader::new(std::fs::File::open(&a.tx).with_context(|| format!("opening {}", a.tx.display()))?);
    let mut rx =
        std::fs::OpenOptions::new().write(true).open(&a.rx).with_context(|| format!("opening {}", a.rx.display()))?;
    let mut served = 0u32;
    loop {
        let mut frame = [0u8; 8];
        tx.read_exact(&mut frame).context("the link closed between inferences")?;
        let index = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
        match &frame[..4] {
            b"DONE" => {
                ensure!(index == served, "the device reports {index} inferences, {served} were served");
                println!("served {served} inferences");
                return Ok(true);
            }
            b"INFR" => ensure!(index == served, "inference {index} where {served} was expected"),
            _ => bail!("malformed link: no inference frame"),
        }
        let (material, mut out) =
            evaluate_one(&plan, &q.network, &mut tx).with_context(|| format!("inference {index}"))?;
        if served == 0
            && let Some(path) = &a.capture
        {
            std::fs::write(path, &material).with_context(|| format!("writing {}", path.display()))?;
        }
        let what = match (a.tamper, index % 4) {
            (Tamper::Odd, 1) => {
                out[0].0 ^= 1 << 7;
                "tampered (one bit of an output label flipped)"
            }
            (Tamper::Odd, 3) => {
                let k = q.network.base.len();
                for t in 0..k {
                    out.swap(t, k + t);
                }
                "tampered (labels of outputs 0 and 1 swapped)"
            }
            _ => "honest",
        };
        let bytes: Vec<u8> = out.iter().flat_map(|b| b.0.to_le_bytes()).collect();
        rx.write_all(&bytes).and_then(|()| rx.flush()).context("answering the device")?;
        println!("inference {index}: {} bytes of material evaluated, answer {what}", material.len());
        served += 1;
    }
}

fn check_material(a: CheckArgs) -> Result<bool> {
    let q = network(&a.model)?;
    let plan = Plan::new(&q.network)?;
    let seed: [u8; 32] = std::fs::read(&a.seed)
        .with_context(|| format!("reading {}", a.seed.display()))?
        .try_into()
        .map_err(|_| anyhow::anyhow!("{}: a seed is 32 bytes", a.seed.display()))?;
    let device = std::fs::read(&a.material).with_context(|| format!("reading {}", a.material.display()))?;
    let mut rng = rand_chacha::ChaCha12Rng::from_seed(seed);
    let mut host = Vec::new();
    engine::garble(&plan, &mut rng, &mut host)?;
    if host == device {
        println!("material: {} bytes, byte for byte the host garbler's for the same seed", host.len());
        return Ok(true);
    }
    let at = host.iter().zip(&device).position(|(a, b)| a != b).unwrap_or(host.len().min(device.len()));
    eprintln!(
        "material differs from the host garbler's at byte {at} (host {} bytes, device {})",
        host.len(),
        device.len()
    );
    Ok(false)
}
