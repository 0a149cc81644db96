//! A hostile garbled-material stream: the evaluator of a fixed small CNN
//! (conv with padding, ReLU, max pooling, rescale, dense) reads either raw
//! fuzzer bytes or honest material with fuzzer edits (byte changes,
//! truncation, insertion, appended bytes). It may fail; it may not panic,
//! allocate without bound, or (when the garbler's verified decode accepts
//! the output) return a wrong value. The returned-label decoder
//! (`CrtTensor::from_blocks`) gets the same bytes.
#![no_main]

use arbitrary::Arbitrary;
use dash_core::{Block, CrtBase};
use dash_host::engine::{self, AwaitingAnswer, Plan};
use dash_host::format::{self, Header};
use dash_host::network::{IntLayer, IntNetwork, Padding, Rounding};
use dash_host::tensor::CrtTensor;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
enum Edit {
    Xor {
        at: u32,
        mask: u8,
    },
    Set {
        at: u32,
        value: u8,
    },
    Truncate {
        at: u32,
    },
    Insert {
        at: u32,
        bytes: Vec<u8>,
    },
    /// Overwrite 8 bytes with a little-endian integer (counts, sizes).
    Word {
        at: u32,
        value: u64,
    },
}

#[derive(Arbitrary, Debug)]
enum Case {
    /// The whole stream from the fuzzer.
    Raw(Vec<u8>),
    /// Honest material, edited, with bytes appended.
    Edited { edits: Vec<Edit>, tail: Vec<u8> },
}

struct Fixture {
    plan: Plan,
    input: Vec<i64>,
    material: Vec<u8>,
    labels: CrtTensor,
    want: Vec<i64>,
}

/// The garbler's seed: the same keys and material every time.
const SEED: u64 = 7;

impl Fixture {
    /// A fresh decoding state of the fixture's inference (keys are
    /// single-use, so each answer checked needs its own: garbling again from
    /// the same seed gives the same keys).
    fn awaiting(&self) -> AwaitingAnswer {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED);
        let session = engine::garble(&self.plan, &mut rng, &mut std::io::sink()).unwrap();
        session.encode_input(&self.input).unwrap().1
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
        let base = CrtBase::first(6).unwrap();
        let layers = vec![
            IntLayer::Conv2d {
                in_channels: 1,
                out_channels: 2,
                kernel: [3, 3],
                stride: [1, 1],
                padding: Padding::uniform(1),
                weights: (0..18).map(|i| (i % 5) - 2).collect(),
                bias: vec![3, -4],
            },
            IntLayer::Relu,
            IntLayer::MaxPool { kernel: [2, 2], stride: [2, 2] },
            IntLayer::Rescale { divisor: 5, rounding: Rounding::Nearest },
            IntLayer::Flatten,
            IntLayer::Dense {
                inputs: 8,
                outputs: 3,
                weights: (0..24).map(|i| (i % 7) - 3).collect(),
                bias: vec![1, 0, -1],
            },
        ];
        // The plan owns its network (an `Arc`): nothing here outlives the
        // fixture unreachable, which LeakSanitizer would report.
        let net = IntNetwork::new(vec![1, 4, 4], layers, base).unwrap();
        let plan = Plan::new(&net).unwrap();
        let input: Vec<i64> = (0..16).map(|i| (i * 37 % 101) - 50).collect();
        let want = net.eval_plain(&input).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED);
        let mut material = Vec::new();
        let session = engine::garble(&plan, &mut rng, &mut material).unwrap();
        let (labels, awaiting) = session.encode_input(&input).unwrap();
        let out = engine::evaluate(&plan, material.as_slice(), &labels).unwrap();
        assert_eq!(awaiting.decode_output(&out.to_blocks()).unwrap(), want);
        Fixture { plan, input, material, labels, want }
    })
}

fn apply(material: &[u8], edits: &[Edit], tail: &[u8]) -> Vec<u8> {
    let mut m = material.to_vec();
    for e in edits.iter().take(16) {
        let at = |a: u32, len: usize| a as usize % len.max(1);
        match e {
            Edit::Xor { at: a, mask } if !m.is_empty() => {
                let i = at(*a, m.len());
                m[i] ^= mask;
            }
            Edit::Set { at: a, value } if !m.is_empty() => {
                let i = at(*a, m.len());
                m[i] = *value;
            }
            Edit::Truncate { at: a } => m.truncate(at(*a, m.len() + 1)),
            Edit::Insert { at: a, bytes } => {
                let i = at(*a, m.len() + 1);
                m.splice(i..i, bytes.iter().copied().take(64));
            }
            Edit::Word { at: a, value } if m.len() >= 8 => {
                let i = at(*a, m.len() - 7);
                m[i..i + 8].copy_from_slice(&value.to_le_bytes());
            }
            _ => {}
        }
    }
    m.extend_from_slice(tail);
    m
}

fuzz_target!(|case: Case| {
    let f = fixture();
    let stream = match &case {
        Case::Raw(bytes) => bytes.clone(),
        Case::Edited { edits, tail } => apply(&f.material, edits, tail),
    };

    // The header reader alone, on the same bytes: an error or a header
    // within its caps.
    if let Ok(h) = Header::read(&mut stream.as_slice()) {
        assert!(h.primes.len() <= format::MAX_HEADER_PRIMES);
        assert!(h.ones.len() <= format::MAX_HEADER_MODULI);
        assert!(h.layer_rows.len() <= format::MAX_HEADER_LAYERS);
    }

    // The evaluator on the hostile stream; the garbler's check on its output.
    if let Ok(out) = engine::evaluate(&f.plan, stream.as_slice(), &f.labels)
        && let Ok(got) = f.awaiting().decode_output(&out.to_blocks())
    {
        assert_eq!(got, f.want, "hostile material produced a wrong value that passed the output check");
    }

    // Returned labels from untrusted bytes: decoded or rejected, and a
    // wrong label never decodes to a wrong value.
    let blocks: Vec<Block> =
        stream.chunks_exact(16).map(|c| Block(u128::from_le_bytes(c.try_into().unwrap()))).collect();
    let shape = f.plan.output_shape();
    if let Ok(t) = CrtTensor::from_blocks(&f.plan.network().base, shape, &blocks) {
        assert_eq!(t.to_blocks(), blocks, "from_blocks then to_blocks must round-trip");
    }
    if let Ok(got) = f.awaiting().decode_output(&blocks) {
        assert_eq!(got, f.want, "arbitrary returned labels passed the output check with a wrong value");
    }
});
