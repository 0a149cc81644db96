//! `dashgc serve` and `dashgc query` as separate processes on loopback,
//! against the local `dashgc run` on the same model and images.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const MODEL: &str = "models/secureml_mlp.json";
const IMAGES: &str = "data/mnist/t10k-images-idx3-ubyte.gz";
const LABELS: &str = "data/mnist/t10k-labels-idx1-ubyte.gz";

fn dashgc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dashgc"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

/// A `dashgc serve` process, killed when dropped.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(extra: &[&str]) -> ServerProcess {
    let mut child = dashgc()
        .args(["serve", "--listen", "127.0.0.1:0", "--model", MODEL, "--insecure-plaintext"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dashgc serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_string();
    ServerProcess { child, addr }
}

fn query(addr: &str, limit: usize) -> serde_json::Value {
    let out = dashgc()
        .args([
            "query",
            "--server",
            addr,
            "--model",
            MODEL,
            "--mnist",
            IMAGES,
            LABELS,
            "--json",
            "--insecure-plaintext",
        ])
        .args(["--limit", &limit.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Garbled predictions of `dashgc run`, from its per-image report lines.
fn local_predictions(limit: usize) -> Vec<u64> {
    let out = dashgc()
        .args(["run", "--model", MODEL, "--mnist", IMAGES, LABELS, "--garbled-only"])
        .args(["--limit", &limit.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split("garbled prediction ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn twenty_images_over_loopback_equal_the_local_run() {
    let server = serve(&[]);
    let v = query(&server.addr, 20);
    assert_eq!(v["images"], 20);
    assert_eq!(v["verified"], true);
    assert_eq!(v["equals_plaintext"], true);
    let remote: Vec<u64> = v["predictions"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
    assert_eq!(remote, local_predictions(20));
    // Online: 784 input and 10 output values, one 16-byte label per residue,
    // plus two frame headers and circuit ids.
    let k = v["crt_moduli"].as_array().unwrap().len() as u64;
    assert_eq!(v["online_bytes_per_image"].as_u64().unwrap(), (784 + 10) * k * 16 + 2 * (5 + 16));
    assert_eq!(v["online_bytes"].as_u64().unwrap(), 20 * v["online_bytes_per_image"].as_u64().unwrap());
    assert!(v["online_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert!(v["accuracy"].as_f64().is_some_and(|a| a > 0.8));
}

#[test]
fn a_killed_client_and_a_wrong_model_leave_the_server_serving() {
    let server = serve(&["--timeout-secs", "5"]);
    // A client killed while it streams material and queries.
    let mut victim = dashgc()
        .args(["query", "--server", &server.addr, "--model", MODEL, "--mnist", IMAGES, LABELS])
        .args(["--limit", "500", "--queue", "8", "--insecure-plaintext"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(victim.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("verified"), "{first:?}");
    victim.kill().unwrap();
    victim.wait().unwrap();

    // A client with another quantisation of the model is refused, clearly.
    let out = dashgc()
        .args(["query", "--server", &server.addr, "--model", MODEL, "--mnist", IMAGES, LABELS])
        .args(["--limit", "1", "--activation-bits", "8", "--insecure-plaintext"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model hash mismatch"), "{err}");

    let v = query(&server.addr, 3);
    assert_eq!(v["verified"], true);
    assert_eq!(v["images"], 3);
}

#[test]
fn query_reads_raw_pgm_and_png_images() {
    let server = serve(&[]);
    let data = dash_host::mnist::bundled_test_set().unwrap();
    let pixels = data.images.get(0).unwrap();
    let dir = std::env::temp_dir().join(format!("dashgc-query-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("digit.raw");
    std::fs::write(&raw, pixels).unwrap();
    let pgm = dir.join("digit.pgm");
    let mut p5 = b"P5\n28 28\n255\n".to_vec();
    p5.extend_from_slice(pixels);
    std::fs::write(&pgm, p5).unwrap();
    let png_path = dir.join("digit.png");
    {
        let f = std::fs::File::create(&png_path).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 28, 28);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(pixels).unwrap();
    }
    let want = local_predictions(1)[0];
    for file in [&raw, &pgm, &png_path] {
        let out = dashgc()
            .args(["query", "--server", &server.addr, "--model", MODEL, "--json", "--insecure-plaintext", "--input"])
            .arg(file)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(v["images"], 1);
        assert_eq!(v["verified"], true);
        assert_eq!(v["accuracy"], serde_json::Value::Null);
        assert_eq!(v["predictions"][0].as_u64().unwrap(), want, "{}", file.display());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serve_and_query_refuse_to_run_without_tls_unless_told_and_token_hash_prints_a_token_line() {
    // Neither TLS nor --insecure-plaintext: both commands refuse to start.
    let out = dashgc().args(["serve", "--listen", "127.0.0.1:0", "--model", MODEL]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dashgc().args(["query", "--server", "127.0.0.1:1", "--model", MODEL, "--input", MODEL]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca-file"), "{}", String::from_utf8_lossy(&out.stderr));
    // The token file line for a token on standard input: its SHA-256, never the token.
    let token = "0123456789abcdef0123456789abcdef";
    let mut child = dashgc()
        .args(["token-hash", "--name", "client-a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{token}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.trim(), format!("client-a {}", dash_host::protocol::auth::token_hash_hex(token.as_bytes())));
    assert!(!line.contains(token));
    let store = dash_host::protocol::auth::TokenStore::parse(&line).unwrap();
    assert_eq!(store.check(token.as_bytes()), Some("client-a"));
    // A short token is refused.
    let mut child =
        dashgc().args(["token-hash", "--name", "x"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"short\n").unwrap();
    assert!(!child.wait().unwrap().success());
}
