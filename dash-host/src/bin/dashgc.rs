//! `dashgc`: the Dash command-line tool.
//!
//! * `dashgc demo [--images N]`: private inference of the bundled SecureML
//!   MLP on the first N bundled MNIST test images (quantise, garble,
//!   evaluate, decode and verify), then accuracy, time per phase and sizes.
//!   `dashgc demo --toy`: the small CRT walk-through (garble, evaluate,
//!   verify, tamper).
//! * `dashgc run --model FILE --mnist IMAGES LABELS [--limit N] [--json]`:
//!   the same on a given model file (ONNX or the JSON format) and IDX files.
//! * `dashgc bench [--quick] [--json]`: single-threaded micro-benchmarks,
//!   each also given as a ratio to the AES block time of the same run.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::{Args, Parser, Subcommand};
use dash_host::{bench, demo, inference, mnist, model, onnx, quantize, rng};
use std::path::PathBuf;
use std::process::ExitCode;

/// Dash: private CNN inference with arithmetic garbled circuits.
#[derive(Parser)]
#[command(name = "dashgc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Private inference of the bundled MNIST model on bundled MNIST test
    /// images, end to end (or, with --toy, a small CRT walk-through).
    Demo(DemoArgs),
    /// Private inference of a model on MNIST IDX files: quantise, garble,
    /// evaluate, decode and verify every image; float, quantised and garbled
    /// accuracy side by side.
    Run(RunArgs),
    /// Measure AES, projection gates and CRT addition on one thread.
    Bench(BenchArgs),
    /// Print what each gadget costs (ciphertexts, bytes, moduli), counted by
    /// running it on the cost-counting backend.
    Costs(CostsArgs),
}

#[derive(Args)]
struct CostsArgs {
    /// CRT base sizes (first k primes) to tabulate.
    #[arg(long, value_delimiter = ',', default_values_t = vec![5, 6, 7, 8, 9])]
    k: Vec<usize>,
    /// Print one JSON array (as the last line) instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// Model file: ONNX (`.onnx`) or the project's JSON model format (see
    /// models/README.md).
    #[arg(long)]
    model: PathBuf,
    /// ONNX models: float value of one integer input unit (the model sees
    /// pixel · SCALE; MNIST trained on x/255: 1/255).
    #[arg(long, default_value_t = 1.0 / 255.0)]
    input_scale: f64,
    /// ONNX models: smallest integer input value.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    input_min: i64,
    /// ONNX models: largest integer input value.
    #[arg(long, default_value_t = 255, allow_hyphen_values = true)]
    input_max: i64,
    /// ONNX models: read Tanh, Clip(-1, 1) and HardTanh as the sign
    /// activation (sign networks trained with a tanh surrogate).
    #[arg(long)]
    tanh_as_sign: bool,
    /// MNIST image and label files (IDX, raw or gzipped).
    #[arg(long, num_args = 2, value_names = ["IMAGES", "LABELS"], required = true)]
    mnist: Vec<PathBuf>,
    /// Garble only the first N images (float and quantised accuracy over all
    /// images are reported as well).
    #[arg(long)]
    limit: Option<usize>,
    /// Print the report on standard error and one JSON object as the last
    /// line of standard output.
    #[arg(long)]
    json: bool,
    /// Report float and quantised accuracy on the garbled images only
    /// (skip the plaintext pass over the whole data set).
    #[arg(long)]
    garbled_only: bool,
    /// Proven bound on hidden activations after rescaling: 2^BITS.
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
}

#[derive(Args)]
struct DemoArgs {
    /// Number of bundled MNIST test images to run privately.
    #[arg(long, default_value_t = 20)]
    images: usize,
    /// Also compute float and quantised accuracy (plaintext) on all 10,000
    /// bundled test images.
    #[arg(long)]
    all_plain: bool,
    /// Run the small CRT walk-through instead (garble, evaluate, verify,
    /// tamper), with --inputs, --outputs and --x.
    #[arg(long)]
    toy: bool,
    /// Length of the private input vector (--toy).
    #[arg(long, default_value_t = 16)]
    inputs: usize,
    /// Number of outputs (rows of the public weight matrix) (--toy).
    #[arg(long, default_value_t = 4)]
    outputs: usize,
    /// The private input vector, comma-separated (default: random in -9..=9) (--toy).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    x: Option<Vec<i64>>,
}

#[derive(Args)]
struct BenchArgs {
    /// A few seconds instead of about half a minute.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object (as the last line) instead of a table.
    #[arg(long)]
    json: bool,
}

fn run_demo(args: DemoArgs) -> anyhow::Result<bool> {
    if !args.toy {
        anyhow::ensure!(
            (1..=10_000).contains(&args.images),
            "--images {}: choose 1..=10000 (the bundled test set)",
            args.images
        );
        println!(
            "dashgc demo: private inference of the bundled SecureML MLP (784-128-128-10, ReLU) on the first {} bundled MNIST test images",
            args.images
        );
        let report = inference::bundled_demo(args.images, true, args.all_plain)?;
        inference::write_report(&report, &mut std::io::stdout().lock())?;
        return Ok(report.garbled_equals_plaintext && report.tamper_rejected);
    }
    let spec = demo::DemoSpec::new(args.inputs, args.outputs)?;
    let mut rng = rng::os_seeded()?;
    let x = match args.x {
        Some(x) => {
            demo::check_inputs(&spec, &x)?;
            x
        }
        None => demo::random_inputs(&mut rng, spec.inputs()),
    };
    Ok(demo::run_to_stdout(&spec, &x, &mut rng)?.ok())
}

fn run_run(args: RunArgs) -> anyhow::Result<bool> {
    use anyhow::Context;
    let [images, labels] = args.mnist.as_slice() else {
        anyhow::bail!("--mnist takes two files: IMAGES LABELS");
    };
    let is_onnx = args.model.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"));
    let model = if is_onnx {
        let options = onnx::ImportOptions {
            input_min: args.input_min,
            input_max: args.input_max,
            input_scale: args.input_scale,
            tanh_as_sign: args.tanh_as_sign,
        };
        onnx::import_file(&args.model, &options)?
    } else {
        model::FloatModel::load(&args.model)?
    };
    let data = mnist::load(images, labels).context("reading the MNIST files")?;
    let options = inference::RunOptions {
        quantize: quantize::QuantizeOptions { activation_bits: args.activation_bits, ..Default::default() },
        progress: true,
        plain_all: !args.garbled_only,
    };
    let report = inference::run_mnist(&model, &data, args.limit, &options)?;
    if args.json {
        inference::write_report(&report, &mut std::io::stderr().lock())?;
        println!("{}", report.summary_json());
    } else {
        inference::write_report(&report, &mut std::io::stdout().lock())?;
    }
    Ok(report.garbled_equals_plaintext && report.tamper_rejected)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<bool> {
    let config = if args.quick { bench::BenchConfig::quick() } else { bench::BenchConfig::full() };
    eprintln!("dashgc bench: measuring on one thread ({} mode)...", if args.quick { "quick" } else { "full" });
    let report = bench::run(config)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(true)
}

fn run_costs(args: CostsArgs) -> anyhow::Result<bool> {
    if let Some(&k) = args.k.iter().find(|&&k| !(1..=12).contains(&k)) {
        anyhow::bail!("--k {k}: choose CRT base sizes between 1 and 12");
    }
    let table = dash_host::costs::cost_table(&args.k)?;
    if args.json {
        println!("{}", serde_json::to_string(&table)?);
    } else {
        println!(
            "{:<16} {:>2} {:>10} {:>12} {:>10} {:>8}  moduli",
            "gadget", "k", "accuracy", "ciphertexts", "bytes", "divisor"
        );
        for r in &table {
            let acc = match &r.accuracy {
                serde_json::Value::String(s) => s.clone(),
                v => format!("{:.6}", v.as_f64().unwrap_or(f64::NAN)),
            };
            let div = r.divisor.map(|d| format!("{d} {}", r.rounding.unwrap_or(""))).unwrap_or_default();
            println!(
                "{:<16} {:>2} {:>10} {:>12} {:>10} {:>8}  {:?}",
                r.gadget, r.k, acc, r.ciphertexts, r.bytes, div, r.moduli
            );
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Run(args) => run_run(args),
        Command::Bench(args) => run_bench(args),
        Command::Costs(args) => run_costs(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
