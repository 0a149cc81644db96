//! `dashgc`: the Dash command-line tool.
//!
//! * `dashgc demo`: garble, evaluate and verify a small CRT computation,
//!   then show a tampered result being rejected.
//! * `dashgc bench [--quick] [--json]`: single-threaded micro-benchmarks,
//!   each also given as a ratio to the AES block time of the same run.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use clap::{Args, Parser, Subcommand};
use dash_host::{bench, demo, rng};
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
    /// Garble, evaluate, decode and verify a small CRT computation, then
    /// tamper with one returned label and show the rejection.
    Demo(DemoArgs),
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
struct DemoArgs {
    /// Length of the private input vector.
    #[arg(long, default_value_t = 16)]
    inputs: usize,
    /// Number of outputs (rows of the public weight matrix).
    #[arg(long, default_value_t = 4)]
    outputs: usize,
    /// The private input vector, comma-separated (default: random in -9..=9).
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
