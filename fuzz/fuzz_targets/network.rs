//! Small random integer networks: the CRT base, the layer sequence, every
//! shape, stride, padding, weight and input come from the fuzzer. Garbled
//! inference through dash-host's engine (plan → garble → stream → evaluate →
//! verified decode) must equal `IntNetwork::eval_plain` bit for bit; with
//! one byte of the material flipped it may fail, but never return a wrong
//! value.
#![no_main]

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[path = "common/random_network.rs"]
mod random_network;

use random_network::{Case, PRIMES, build, numel};

fuzz_target!(|case: Case| {
    static POOL: std::sync::Once = std::sync::Once::new();
    // One thread: the campaign's cores run fuzzers, not a rayon pool.
    POOL.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(1).build_global();
    });

    let primes: Vec<u16> =
        PRIMES.iter().enumerate().filter(|(i, _)| case.base_mask >> i & 1 == 1).map(|(_, &p)| p).collect();
    let Ok(base) = CrtBase::new(&primes) else { return };
    if base.is_empty() || base.product() >= 1 << dash_host::network::MAX_Q_BITS {
        return;
    }
    let Some(net) = build(&case, &base) else { return };
    let Ok(plan) = Plan::new(&net) else { return };
    let q = base.product() as i128;
    let input: Vec<i64> = (0..numel(&net.input_shape))
        .map(|i| (base.min_value() + (case.values.get(i).copied().unwrap_or(i as i64) as i128).rem_euclid(q)) as i64)
        .collect();
    let want = net.eval_plain(&input).expect("eval_plain failed on a valid network and input");

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let mut material = Vec::new();
    let session = engine::garble(&plan, &mut rng, &mut material).expect("garbling a planned network failed");
    assert_eq!(session.rows, plan.total_rows(), "garbler wrote a different number of rows than planned");
    assert!(material.len() as u64 > plan.material_bytes(), "material shorter than its rows");
    let (labels, awaiting) = session.encode_input(&input).expect("encoding a valid input failed");

    let out = engine::evaluate(&plan, material.as_slice(), &labels).expect("evaluating honest material failed");
    let got = awaiting.decode_output(&out.to_blocks()).expect("honest output failed its check");
    assert_eq!(got, want, "garbled inference differs from eval_plain");

    if let Some((at, bit)) = case.flip {
        let at = at as usize % material.len();
        material[at] ^= 1 << (bit % 8);
        // Keys are single-use: the same seed garbles the same keys again.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
        let again = engine::garble(&plan, &mut rng, &mut std::io::sink()).expect("garbling again failed");
        let (_, awaiting) = again.encode_input(&input).expect("encoding a valid input failed");
        if let Ok(out) = engine::evaluate(&plan, material.as_slice(), &labels)
            && let Ok(got) = awaiting.decode_output(&out.to_blocks())
        {
            assert_eq!(got, want, "tampered material gave a wrong value that passed the output check");
        }
    }
});
