//! `dashgc`: the Dash command-line tool.
//!
//! * `dashgc demo [--images N]`: private inference of the bundled SecureML
//!   MLP on the first N bundled MNIST test images (quantise, garble,
//!   evaluate, decode and verify), then accuracy, time per phase and sizes.
//!   `dashgc demo --toy`: the small CRT walk-through (garble, evaluate,
//!   verify, tamper).
//! * `dashgc run --model FILE --mnist IMAGES LABELS [--limit N] [--json]`:
//!   the same on a given model file (ONNX or the JSON format) and IDX files.
//! * `dashgc serve --listen ADDR --model FILE (--tls-cert PEM --tls-key PEM
//!   | --insecure-plaintext) [--client-ca PEM] [--token-file FILE]
//!   [--metrics ADDR]`: the evaluator as a server (first line of standard
//!   output: `listening on ADDR`).
//! * `dashgc query --server ADDR --model FILE (--ca-file PEM | --pin-cert
//!   PEM | --insecure-plaintext) (--input IMAGE | --mnist IMAGES LABELS
//!   [--limit N]) [--queue N] [--retries N] [--json]`: the garbler as a
//!   client: circuits garbled and streamed ahead, one verified online round
//!   per image; a dropped connection is retried with backoff.
//! * `dashgc token-hash`: the line of a server's token file for a token
//!   read from standard input.
//! * `dashgc device (export|images|serve|check-material)`: a microcontroller
//!   as the garbler (`device_eval`, docs/EMBEDDED.md).
//! * `dashgc bench [--quick] [--json]`: single-threaded micro-benchmarks,
//!   each also given as a ratio to the AES block time of the same run.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::{Args, Parser, Subcommand};
use dash_host::{bench, demo, inference, mnist, model, offload, onnx, protocol, quantize, rng};
use std::path::{Path, PathBuf};
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
    /// Run the evaluator as a TCP server for one model (the client garbles,
    /// this side evaluates; it never sees the garbler's keys).
    Serve(ServeArgs),
    /// Private inference against a `dashgc serve` server: garble and stream
    /// circuits ahead (offline), then one round per image, every output
    /// label verified.
    Query(QueryArgs),
    /// Print what each gadget costs (ciphertexts, bytes, moduli), counted by
    /// running it on the cost-counting backend.
    Costs(CostsArgs),
    /// Print a model's circuit per layer before and after planning (layer,
    /// elements, gadget, base, ciphertexts, bytes), with totals.
    Plan(PlanArgs),
    /// Read a bearer token from standard input and print the line of a
    /// server's token file (`NAME SHA256`) for it.
    TokenHash(TokenHashArgs),
    /// A microcontroller as the garbler: export the network image it
    /// embeds, write its test inputs, evaluate what it streams, check its
    /// material against the host garbler's (docs/EMBEDDED.md).
    Device(dash_host::device_eval::DeviceArgs),
}

#[derive(Args)]
struct TokenHashArgs {
    /// The client's name in the server's logs and per-client limits.
    #[arg(long)]
    name: String,
}

#[derive(Args)]
struct PlanArgs {
    /// Model file (quantised exactly as `dashgc run`, `serve` and `query` do).
    #[arg(long)]
    model: PathBuf,
    /// Proven bound on hidden activations after rescaling: 2^BITS.
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
    /// Print one JSON object (as the last line) instead of tables.
    #[arg(long)]
    json: bool,
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
    #[arg(long, num_args = 2, value_names = ["IMAGES", "LABELS"], required_unless_present = "random")]
    mnist: Vec<PathBuf>,
    /// Instead of MNIST: N images of uniformly random pixels (seeded by
    /// --seed), for models without a data set such as MiniONN-CIFAR. Their
    /// labels are the float model's own predictions, so "accuracy" is
    /// agreement with the float model.
    #[arg(long, value_name = "N", conflicts_with = "mnist")]
    random: Option<usize>,
    /// Seed of --random.
    #[arg(long, default_value_t = 1, requires = "random")]
    seed: u64,
    /// Garble only the first N images (float and quantised accuracy over all
    /// images are reported as well).
    #[arg(long)]
    limit: Option<usize>,
    /// Start at image N (0-based): the images before it are left out of
    /// every figure, so a long run can be split into ranges
    /// (`--skip 2000 --limit 2000 --garbled-only`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    skip: usize,
    /// Print the report on standard error and one JSON object as the last
    /// line of standard output.
    #[arg(long)]
    json: bool,
    /// With --json: the JSON object also lists every garbled image (index,
    /// label, predictions, and the garbled integer outputs).
    #[arg(long, requires = "json")]
    per_image: bool,
    /// Report float and quantised accuracy on the garbled images only
    /// (skip the plaintext pass over the whole data set).
    #[arg(long)]
    garbled_only: bool,
    /// Proven bound on hidden activations after rescaling: 2^BITS.
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
    /// Garble today's unplanned circuit instead of the planner's (for
    /// comparison; both sides must choose alike, the model hash differs).
    #[arg(long)]
    no_plan: bool,
    /// Where linear layers and projection batches run: `auto` uses a GPU
    /// when one is usable and says which it chose.
    #[arg(long, value_enum, default_value_t = offload::DeviceChoice::Auto)]
    device: offload::DeviceChoice,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port; the first line of
    /// standard output says which).
    #[arg(long)]
    listen: String,
    /// Model file (quantised exactly as `dashgc run` does).
    #[arg(long)]
    model: PathBuf,
    /// Proven bound on hidden activations after rescaling: 2^BITS (must
    /// match the client's).
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
    /// Garble today's unplanned circuit instead of the planner's (for
    /// comparison; both sides must choose alike, the model hash differs).
    #[arg(long)]
    no_plan: bool,
    /// Connections served at once.
    #[arg(long, default_value_t = 16)]
    max_connections: usize,
    /// Circuits one connection may send ahead.
    #[arg(long, default_value_t = 16)]
    max_pending: usize,
    /// Garbled material held over all connections, in MiB.
    #[arg(long, default_value_t = 4096)]
    max_spool_mib: u64,
    /// Seconds a frame may take to arrive (also the budget of the TLS
    /// handshake, and of authentication and agreement).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Idle budget: seconds a connection may go without a message outside
    /// a circuit's upload.
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Time budget of one circuit's upload, in seconds.
    #[arg(long, default_value_t = 300)]
    circuit_secs: u64,
    /// The server's certificate chain (PEM): serve over TLS.
    #[arg(long, requires = "tls_key", required_unless_present = "insecure_plaintext")]
    tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by a CA of this file (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Require a bearer token listed (as `NAME SHA256HEX`) in this file.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve plain TCP, without TLS (loopback tests, or behind a
    /// TLS-terminating proxy on the same host).
    #[arg(long, conflicts_with_all = ["tls_cert", "client_ca"])]
    insecure_plaintext: bool,
    /// Per client: circuits held at once, over all its connections.
    #[arg(long, default_value_t = 64)]
    client_max_circuits: usize,
    /// Per client: garbled material held at once, in MiB.
    #[arg(long, default_value_t = 1024)]
    client_max_spool_mib: u64,
    /// Per client: circuits started in any minute.
    #[arg(long, default_value_t = 6000)]
    client_circuits_per_minute: u32,
    /// Per client: connections open at once.
    #[arg(long, default_value_t = 8)]
    client_max_connections: usize,
    /// Serve Prometheus metrics (`/metrics`) and health checks (`/healthz`,
    /// `/readyz`) over HTTP on this address (keep it internal).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct QueryArgs {
    /// The server's address.
    #[arg(long)]
    server: String,
    /// Model file (the server must hold the same model: both compare hashes).
    #[arg(long)]
    model: PathBuf,
    /// One image: raw bytes (one per pixel), PGM or PNG.
    #[arg(long, conflicts_with = "mnist", required_unless_present = "mnist")]
    input: Option<PathBuf>,
    /// MNIST image and label files (IDX, raw or gzipped).
    #[arg(long, num_args = 2, value_names = ["IMAGES", "LABELS"])]
    mnist: Option<Vec<PathBuf>>,
    /// Only the first N images of --mnist.
    #[arg(long)]
    limit: Option<usize>,
    /// Circuits garbled and sent ahead of the queries.
    #[arg(long, default_value_t = 4)]
    queue: usize,
    /// Garble the next circuit between rounds on the main thread instead of
    /// on a second thread during them: slower overall, but the online
    /// rounds do not share the cores with garbling (for latency figures).
    #[arg(long)]
    serial_offline: bool,
    /// Print one JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
    /// Proven bound on hidden activations after rescaling: 2^BITS (must
    /// match the server's).
    #[arg(long, default_value_t = 9)]
    activation_bits: u32,
    /// Garble today's unplanned circuit instead of the planner's (for
    /// comparison; both sides must choose alike, the model hash differs).
    #[arg(long)]
    no_plan: bool,
    /// Seconds to wait for a frame (an answer may take up to ten times this).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Verify the server against the CA certificates of this file (PEM).
    #[arg(long, conflicts_with = "pin_cert", required_unless_present_any = ["pin_cert", "insecure_plaintext"])]
    ca_file: Option<PathBuf>,
    /// Accept exactly this server certificate (PEM), whatever its name and
    /// signer.
    #[arg(long)]
    pin_cert: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of
    /// --server).
    #[arg(long)]
    server_name: Option<String>,
    /// Our certificate chain (PEM), for servers that require client
    /// certificates.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// Our private key (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A file whose first line is our bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Plain TCP, without TLS (loopback tests).
    #[arg(long, conflicts_with_all = ["ca_file", "pin_cert", "client_cert"])]
    insecure_plaintext: bool,
    /// Reconnect this many times after a dropped connection, a timeout or
    /// a busy server (with exponential backoff), going on from the first
    /// image not yet verified; the count starts again after progress.
    /// Failed verification is never retried.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// First backoff before a retry, in milliseconds (doubled each time, at
    /// most 10 s, with jitter).
    #[arg(long, default_value_t = 200)]
    retry_backoff_ms: u64,
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
    /// Where linear layers and projection batches run: `auto` uses a GPU
    /// when one is usable and says which it chose (not --toy).
    #[arg(long, value_enum, default_value_t = offload::DeviceChoice::Auto)]
    device: offload::DeviceChoice,
}

#[derive(Args)]
struct BenchArgs {
    /// A few seconds instead of about half a minute.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object (as the last line) instead of a table.
    #[arg(long)]
    json: bool,
    /// Also whole layers through the engine (ReLU, rescale, max-pool of
    /// 65,536 elements, 8,192 with --quick) beside their gadgets' lane
    /// microbenchmarks, and linear layers per multiply-add (a few minutes).
    #[arg(long)]
    networks: bool,
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
        let device = offload::select_device(args.device);
        eprintln!("{}", device.message);
        let options = inference::RunOptions {
            progress: true,
            plain_all: args.all_plain,
            offload: device.offload,
            ..Default::default()
        };
        let report = inference::bundled_demo_with(args.images, &options)?;
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
    let data = match (args.random, args.mnist.as_slice()) {
        (Some(count), _) => {
            anyhow::ensure!(count > 0, "--random needs at least one image");
            let images =
                mnist::Images::random(count, 1, model.input_len(), args.seed).context("drawing random images")?;
            let labels = images
                .iter()
                .map(|image| {
                    let x: Vec<i64> = image.iter().map(|&p| p as i64).collect();
                    Ok(u8::try_from(model.predict(&x)?).unwrap_or(u8::MAX))
                })
                .collect::<anyhow::Result<Vec<u8>>>()?;
            mnist::Dataset::new(images, labels)?
        }
        (None, [images, labels]) => mnist::load(images, labels).context("reading the MNIST files")?,
        (None, _) => anyhow::bail!("--mnist takes two files: IMAGES LABELS"),
    };
    let mut data = data;
    if args.skip > 0 {
        anyhow::ensure!(args.skip < data.len(), "--skip {}: the data set has {} images", args.skip, data.len());
        data.skip(args.skip);
    }
    let device = offload::select_device(args.device);
    eprintln!("{}", device.message);
    let options = inference::RunOptions {
        quantize: quantize::QuantizeOptions { activation_bits: args.activation_bits, ..Default::default() },
        progress: true,
        plain_all: !args.garbled_only,
        offload: device.offload,
        plan: !args.no_plan,
        ..Default::default()
    };
    let report = inference::run_mnist(&model, &data, args.limit, &options)?;
    if args.json {
        inference::write_report(&report, &mut std::io::stderr().lock())?;
        let mut summary = report.summary_json();
        summary["first_image"] = args.skip.into();
        if args.per_image {
            summary["per_image"] = serde_json::to_value(&report.per_image)?;
        }
        println!("{summary}");
    } else {
        inference::write_report(&report, &mut std::io::stdout().lock())?;
    }
    Ok(report.garbled_equals_plaintext && report.tamper_rejected)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<bool> {
    let mut config = if args.quick { bench::BenchConfig::quick() } else { bench::BenchConfig::full() };
    if args.networks {
        config.networks = Some(if args.quick {
            bench::networks::NetworkScale::quick()
        } else {
            bench::networks::NetworkScale::full()
        });
    }
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

fn run_plan(args: PlanArgs) -> anyhow::Result<bool> {
    use dash_host::planner::{self, LayerRow};
    let (_, q) = quantised(&args.model, args.activation_bits)?;
    let before = planner::circuit_plan(&q, false)?;
    let planned = planner::plan(&q.network, q.input_range)?;
    let after = dash_host::engine::Plan::planned(&planned)?;
    let (rb, ra) = (planner::layer_rows(&before), planner::layer_rows(&after));
    let total = |p: &dash_host::engine::Plan| (p.total_rows(), p.material_bytes());
    if args.json {
        let side = |rows: &[LayerRow], p: &dash_host::engine::Plan| {
            serde_json::json!({
                "layers": rows,
                "ciphertexts": total(p).0,
                "bytes": total(p).1,
                "model_hash": hex(&p.model_hash()),
            })
        };
        let out = serde_json::json!({
            "model": args.model.display().to_string(),
            "base": q.primes(),
            "input_range": [q.input_range.lo as i64, q.input_range.hi as i64],
            "before": side(&rb, &before),
            "after": side(&ra, &after),
            "rewrites": planned.rewrites,
        });
        println!("{out}");
        return Ok(true);
    }
    let table = |title: &str, rows: &[LayerRow], p: &dash_host::engine::Plan| {
        println!("{title} (model hash {})", hex(&p.model_hash()));
        println!(
            "{:>5} {:<13} {:>9} {:<12} {:<34} {:>13} {:>15}",
            "layer", "kind", "elements", "gadget", "base", "ciphertexts", "bytes"
        );
        for r in rows {
            let base = if r.base.is_empty() { "-".to_string() } else { format!("{:?}", r.base) };
            println!(
                "{:>5} {:<13} {:>9} {:<12} {:<34} {:>13} {:>15}",
                r.layer, r.kind, r.elements, r.gadget, base, r.ciphertexts, r.bytes
            );
        }
        let (c, b) = total(p);
        println!("{:>5} {:<13} {:>9} {:<12} {:<34} {:>13} {:>15}\n", "total", "", "", "", "", c, b);
    };
    println!(
        "model {}, CRT base {:?}, input range [{}, {}]\n",
        args.model.display(),
        q.primes(),
        q.input_range.lo,
        q.input_range.hi
    );
    table("before planning", &rb, &before);
    table("after planning", &ra, &after);
    println!("rewrites:");
    for r in &planned.rewrites {
        println!("  {r}");
    }
    let (b, a) = (total(&before).1, total(&after).1);
    println!("material per image: {b} -> {a} bytes ({:.1} % of before)", 100.0 * a as f64 / b.max(1) as f64);
    Ok(true)
}

fn quantised(path: &Path, activation_bits: u32) -> anyhow::Result<(model::FloatModel, quantize::Quantized)> {
    use anyhow::Context;
    let model = model::FloatModel::load(path)?;
    let options = quantize::QuantizeOptions { activation_bits, ..Default::default() };
    let q = quantize::quantize(&model, &options).context("quantisation")?;
    Ok((model, q))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn init_logs(level: &str) -> anyhow::Result<()> {
    let level: tracing::Level =
        level.parse().map_err(|_| anyhow::anyhow!("--log-level {level}: error, warn, info, debug or trace"))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .init();
    Ok(())
}

fn run_serve(args: ServeArgs) -> anyhow::Result<bool> {
    use anyhow::Context;
    use std::io::Write;
    use std::sync::Arc;
    init_logs(&args.log_level)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(protocol::tls::server_config_from_files(cert, key, args.client_ca.as_deref())?),
        _ => None,
    };
    let tokens = args.token_file.as_deref().map(protocol::auth::TokenStore::load).transpose()?.map(Arc::new);
    let (_, q) = quantised(&args.model, args.activation_bits)?;
    let plan = dash_host::planner::circuit_plan(&q, !args.no_plan)?;
    let server =
        protocol::server::Server::bind(&args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = server.local_addr()?;
    println!("listening on {addr}");
    std::io::stdout().flush()?;
    eprintln!(
        "dashgc serve: model {} (hash {}), CRT base {:?}, {} bytes of material per circuit, {} online bytes per inference",
        args.model.display(),
        hex(&plan.model_hash()),
        q.primes(),
        protocol::material_bytes(&plan),
        protocol::online_bytes(&plan)
    );
    let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
    let config = protocol::server::ServerConfig {
        max_connections: args.max_connections.max(1),
        max_pending: args.max_pending.max(1),
        max_spool_bytes: args.max_spool_mib.saturating_mul(1 << 20),
        frame_timeout: secs(args.timeout_secs),
        idle_timeout: secs(args.idle_secs),
        circuit_timeout: secs(args.circuit_secs),
        tls,
        tokens,
        client_limits: protocol::auth::ClientLimits {
            max_circuits: args.client_max_circuits.max(1),
            max_bytes: args.client_max_spool_mib.saturating_mul(1 << 20),
            circuits_per_minute: args.client_circuits_per_minute.max(1),
            max_connections: args.client_max_connections.max(1),
        },
        ..Default::default()
    };
    tracing::info!(
        tls = config.tls.is_some(),
        client_certificates = args.client_ca.is_some(),
        tokens = config.tokens.as_ref().map_or(0, |t| t.len()),
        "serving on {addr}"
    );
    if config.tls.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "serving plain TCP on a non-loopback address: anyone on the path sees and can alter the traffic"
        );
    }
    if config.tokens.is_none() && args.client_ca.is_none() {
        tracing::warn!("no client authentication (--token-file, --client-ca): any peer may have circuits evaluated");
    }
    let service = protocol::server::Service::new(&plan, config);
    if let Some(m) = &args.metrics {
        let listener = std::net::TcpListener::bind(m).with_context(|| format!("cannot listen on {m} for metrics"))?;
        println!("metrics on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        let metrics = service.metrics().clone();
        std::thread::Builder::new()
            .name("dashgc-metrics".into())
            .spawn(move || protocol::metrics::serve_http(listener, metrics))?;
    }
    server.run(&service)
}

fn run_token_hash(args: TokenHashArgs) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut raw = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin().read_to_end(&mut raw)?;
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let token = protocol::auth::Token::new(line);
    anyhow::ensure!(
        (protocol::auth::MIN_TOKEN_BYTES..=protocol::auth::MAX_TOKEN_BYTES).contains(&token.bytes().len()),
        "a token has {} to {} bytes",
        protocol::auth::MIN_TOKEN_BYTES,
        protocol::auth::MAX_TOKEN_BYTES
    );
    anyhow::ensure!(!args.name.is_empty() && !args.name.contains(char::is_whitespace), "--name: one word");
    println!("{} {}", args.name, protocol::auth::token_hash_hex(token.bytes()));
    Ok(true)
}

/// The client's TLS settings and token from the query arguments.
fn client_credentials(
    args: &QueryArgs,
) -> anyhow::Result<(Option<protocol::tls::ClientTls>, Option<protocol::auth::Token>)> {
    use protocol::tls::{ClientTls, ServerTrust, load_certs, load_key};
    let token = args.token_file.as_deref().map(protocol::auth::Token::from_file).transpose()?;
    if args.insecure_plaintext {
        return Ok((None, token));
    }
    let trust = match (&args.ca_file, &args.pin_cert) {
        (Some(ca), _) => ServerTrust::Ca(load_certs(ca)?),
        (None, Some(pin)) => ServerTrust::Pinned(
            load_certs(pin)?.into_iter().next().ok_or_else(|| anyhow::anyhow!("no certificate in --pin-cert"))?,
        ),
        (None, None) => anyhow::bail!("give --ca-file or --pin-cert (or --insecure-plaintext on loopback)"),
    };
    let name = match &args.server_name {
        Some(n) => n.clone(),
        None => server_host(&args.server).to_string(),
    };
    let client_cert = match (&args.client_cert, &args.client_key) {
        (Some(c), Some(k)) => Some((load_certs(c)?, load_key(k)?)),
        _ => None,
    };
    Ok((Some(ClientTls::new(trust, &name, client_cert)?), token))
}

/// The host of `HOST:PORT` or `[V6]:PORT`.
fn server_host(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    server.rsplit_once(':').map_or(server, |(h, _)| h)
}

fn run_query(args: QueryArgs) -> anyhow::Result<bool> {
    let json = args.json;
    match query(args) {
        Ok(ok) => Ok(ok),
        Err(e) if json => {
            eprintln!("error: {e:#}");
            println!("{}", serde_json::json!({ "verified": false, "error": format!("{e:#}") }));
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn query(args: QueryArgs) -> anyhow::Result<bool> {
    use anyhow::{Context, ensure};
    use protocol::client::{Client, ClientConfig, run_batch};
    let (model, q) = quantised(&args.model, args.activation_bits)?;
    let plan = dash_host::planner::circuit_plan(&q, !args.no_plan)?;
    let (images, labels): (Vec<Vec<u8>>, Option<Vec<u8>>) = match (&args.input, &args.mnist) {
        (Some(path), _) => (vec![protocol::input::load_image(path, model.input_len())?], None),
        (None, Some(files)) => {
            let [im, lb] = files.as_slice() else { anyhow::bail!("--mnist takes two files: IMAGES LABELS") };
            let mut data = mnist::load(im, lb).context("reading the MNIST files")?;
            if let Some(n) = args.limit {
                data.truncate(n);
            }
            ensure!(!data.is_empty(), "no images to query");
            ensure!(
                data.images.pixels_per_image() == model.input_len(),
                "images have {} pixels, the model takes {} inputs",
                data.images.pixels_per_image(),
                model.input_len()
            );
            (data.images.iter().map(<[u8]>::to_vec).collect(), Some(data.labels.clone()))
        }
        (None, None) => anyhow::bail!("give --input FILE or --mnist IMAGES LABELS"),
    };
    let inputs: Vec<Vec<i64>> = images.iter().map(|im| im.iter().map(|&p| p as i64).collect()).collect();
    let timeout = std::time::Duration::from_secs(args.timeout_secs.max(1));
    let (tls, token) = client_credentials(&args)?;
    let config = ClientConfig { frame_timeout: timeout, answer_timeout: timeout * 10, tls, token };
    let mut predictions = Vec::with_capacity(inputs.len());
    let mut online_ms: Vec<f64> = Vec::with_capacity(inputs.len());
    let mut equals_plain = true;
    let mut stats = protocol::client::ClientStats::default();
    let mut queue_used = args.queue.max(1);
    let mut failures_in_a_row = 0u32;
    let mut reconnects = 0u32;
    let mut jitter = rng::os_seeded()?;
    // Each attempt: a new connection, new circuits (fresh keys), on from the
    // first image not yet verified. Nothing unverified is ever kept.
    while predictions.len() < inputs.len() {
        let start = predictions.len();
        let attempt = Client::connect(&args.server, &plan, config.clone(), rng::os_seeded()?).and_then(|mut client| {
            eprintln!(
                "dashgc query: agreed with {} on model hash {}; {} images to go, {} circuits queued ahead",
                args.server,
                hex(&plan.model_hash()),
                inputs.len() - start,
                args.queue.clamp(1, client.max_pending())
            );
            let batch = run_batch(&mut client, &inputs[start..], args.queue, !args.serial_offline, |j, inf| {
                let i = start + j;
                let p = model::argmax(&inf.output);
                let plain = q.network.eval_plain(&inputs[i]).ok();
                equals_plain &= plain.as_deref() == Some(inf.output.as_slice());
                let label = labels.as_ref().map(|l| format!("label {}  ", l[i])).unwrap_or_default();
                let line = format!(
                    "image {i:>5}  {label}prediction {p}  verified  online {:.2} ms, {} bytes",
                    inf.online_seconds * 1e3,
                    inf.online_bytes
                );
                if args.json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
                predictions.push(p);
                online_ms.push(inf.online_seconds * 1e3);
            });
            let s = &client.stats;
            stats.circuits += s.circuits;
            stats.offline_bytes += s.offline_bytes;
            stats.offline_seconds += s.offline_seconds;
            stats.inferences += s.inferences;
            stats.online_bytes += s.online_bytes;
            stats.online_seconds += s.online_seconds;
            let batch = batch?;
            queue_used = batch.queue;
            client.close().map(|_| ())
        });
        match attempt {
            Ok(()) => {}
            Err(e) => {
                if predictions.len() > start {
                    failures_in_a_row = 0;
                }
                if !e.is_retriable() || failures_in_a_row >= args.retries {
                    return Err(anyhow::Error::new(e).context(format!(
                        "querying {} ({} of {} images verified before)",
                        args.server,
                        predictions.len(),
                        inputs.len()
                    )));
                }
                failures_in_a_row += 1;
                reconnects += 1;
                let base = args.retry_backoff_ms.saturating_mul(1 << (failures_in_a_row - 1).min(10)).min(10_000);
                let wait = base / 2 + rand_core::Rng::next_u64(&mut jitter) % (base / 2 + 1);
                eprintln!(
                    "dashgc query: {e}; {} of {} images verified; reconnecting in {wait} ms (retry {failures_in_a_row} of {})",
                    predictions.len(),
                    inputs.len(),
                    args.retries
                );
                std::thread::sleep(std::time::Duration::from_millis(wait));
            }
        }
    }
    let n = predictions.len();
    let accuracy = labels
        .as_ref()
        .map(|l| predictions.iter().zip(l).filter(|(p, l)| **p == **l as usize).count() as f64 / n as f64);
    let mut ms = online_ms;
    ms.sort_by(f64::total_cmp);
    let median_ms = ms[ms.len() / 2];
    let summary = serde_json::json!({
        "images": n,
        "accuracy": accuracy,
        "predictions": predictions,
        "labels": labels.as_ref().map(|l| l.iter().map(|&x| x as usize).collect::<Vec<_>>()),
        "verified": stats.inferences as usize == n,
        "equals_plaintext": equals_plain,
        "online_bytes": stats.online_bytes,
        "online_bytes_per_image": stats.online_bytes / n as u64,
        "online_seconds": stats.online_seconds,
        "online_ms_mean": 1e3 * stats.online_seconds / n as f64,
        "online_ms_median": median_ms,
        "offline_bytes": stats.offline_bytes,
        "offline_bytes_per_image": stats.offline_bytes / n as u64,
        "offline_seconds": stats.offline_seconds,
        "queue": queue_used,
        "reconnects": reconnects,
        "garbling_overlaps_rounds": !args.serial_offline,
        "model_hash": hex(&plan.model_hash()),
        "crt_moduli": q.primes(),
    });
    let report = format!(
        "{n} images, every output label verified{}; online: {} bytes per image ({} in all), {:.2} ms mean, {:.2} ms median per round; offline: {:.2} MB per image, {:.3} s garbling and streaming",
        accuracy.map(|a| format!(", accuracy {:.2}%", 100.0 * a)).unwrap_or_default(),
        stats.online_bytes / n as u64,
        stats.online_bytes,
        1e3 * stats.online_seconds / n as f64,
        median_ms,
        stats.offline_bytes as f64 / n as f64 / 1e6,
        stats.offline_seconds
    );
    if args.json {
        eprintln!("{report}");
        println!("{summary}");
    } else {
        println!("{report}");
        if !equals_plain {
            println!("WARNING: a verified output differs from the plaintext integer network");
        }
    }
    Ok(equals_plain)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Run(args) => run_run(args),
        Command::Bench(args) => run_bench(args),
        Command::Costs(args) => run_costs(args),
        Command::Plan(args) => run_plan(args),
        Command::Device(args) => dash_host::device_eval::run(args),
        Command::Serve(args) => run_serve(args),
        Command::Query(args) => run_query(args),
        Command::TokenHash(args) => run_token_hash(args),
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
