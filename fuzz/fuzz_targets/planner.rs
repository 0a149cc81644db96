//! The circuit planner on small random integer networks (the same
//! generator as the `network` target): for an input range drawn from the
//! case, the planned network's plaintext twin must equal the unplanned
//! `eval_plain` on an input in that range, the garbled planned circuit must
//! equal both bit for bit, and the plan must never cost more rows.
#![no_main]

use dash_core::CrtBase;
use dash_host::engine::{self, Plan};
use dash_host::planner;
use dash_host::quantize::Interval;
use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;

#[path = "common/random_network.rs"]
mod random_network;

use random_network::{Case, PRIMES, build, numel};

fuzz_target!(|case: Case| {
    static POOL: std::sync::Once = std::sync::Once::new();
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
    let Ok(unplanned) = Plan::new(&net) else { return };
    // An input range inside the base's, from the seed.
    let lo = (-((case.seed & 0xff) as i128)).max(base.min_value());
    let hi = (((case.seed >> 8) & 0xff) as i128).min(base.max_value());
    let range = Interval::new(lo, hi);
    let planned = planner::plan(&net, range).expect("planning a valid network on a valid range failed");
    let plan = Plan::planned(&planned).expect("the planned network does not plan");
    assert!(plan.total_rows() <= unplanned.total_rows(), "the plan costs more than the unplanned circuit");
    let width = (hi - lo + 1) as i64;
    let input: Vec<i64> = (0..numel(&net.input_shape))
        .map(|i| (lo + case.values.get(i).copied().unwrap_or(i as i64).rem_euclid(width) as i128) as i64)
        .collect();
    let want = net.eval_plain(&input).expect("eval_plain failed on a valid network and input");
    assert_eq!(
        planned.eval_plain(&input).expect("planned twin failed"),
        want,
        "planned twin differs: {:?}",
        planned.rewrites
    );

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
    let mut material = Vec::new();
    let session = engine::garble(&plan, &mut rng, &mut material).expect("garbling a planned network failed");
    assert_eq!(session.rows, plan.total_rows(), "garbler wrote a different number of rows than planned");
    let (labels, awaiting) = session.encode_input(&input).expect("encoding an input in range failed");
    let out = engine::evaluate(&plan, material.as_slice(), &labels).expect("evaluating honest material failed");
    let got = awaiting.decode_output(&out.to_blocks()).expect("honest output failed its check");
    assert_eq!(got, want, "garbled planned circuit differs from eval_plain");

    // A flipped byte of planned material may fail, never pass a wrong value.
    if let Some((at, bit)) = case.flip {
        let at = at as usize % material.len();
        material[at] ^= 1 << (bit % 8);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(case.seed);
        let again = engine::garble(&plan, &mut rng, &mut std::io::sink()).expect("garbling again failed");
        let (_, awaiting) = again.encode_input(&input).expect("encoding an input in range failed");
        if let Ok(out) = engine::evaluate(&plan, material.as_slice(), &labels)
            && let Ok(got) = awaiting.decode_output(&out.to_blocks())
        {
            assert_eq!(got, want, "tampered planned material gave a wrong value that passed the output check");
        }
    }
});
