//! The device garbler (`dash-mcu`, what `firmware/src/bin/netgarbler.rs`
//! runs on the Cortex-M4) against the host engine: seeded with the same test
//! generator, both must write the same material stream byte for byte and the
//! same input labels; the host's evaluation of the device's material must
//! decode, on the device, to the plaintext integer network's outputs; and a
//! forged answer must be rejected by the device.

use dash_core::compact_garbler::CtPacked;
use dash_core::{Block, CrtBase};
use dash_host::engine::{self, EvaluatorSession, Plan};
use dash_host::network::{IntLayer, IntNetwork};
use dash_host::tensor::CrtTensor;
use dash_mcu::McuError;
use dash_mcu::garble::{self, DevicePlan, Link};
use dash_mcu::netfile::NetFile;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

struct VecLink(Vec<u8>);

impl Link for VecLink {
    fn send(&mut self, bytes: &[u8]) -> Result<(), McuError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The device's key-set capacity and accumulator words, as the firmware's.
const N: usize = 12;
const ACC: usize = 128 * 40;

fn blocks(bytes: &[u8]) -> Vec<Block> {
    bytes.chunks_exact(16).map(|c| Block(u128::from_le_bytes(c.try_into().unwrap()))).collect()
}

/// Garbles `net` on both sides with `seed`, compares, evaluates the
/// device's material on the host, decodes on the device; then the same with
/// a forged answer.
fn parity(net: &IntNetwork, seed: u64, inputs: &[Vec<i64>]) {
    let plan = Plan::new(net).unwrap();
    let image = dash_host::export::export(net).unwrap();
    let file = NetFile::parse(&image).unwrap();
    let dplan = DevicePlan::new(&file).unwrap();
    assert_eq!(dplan.total_rows(), plan.total_rows());
    let k = net.base.len();
    let n = file.input_len;

    // One generator per side, one key set per inference, several inferences
    // in a row: the streams must stay in step.
    let mut host_rng = ChaCha12Rng::seed_from_u64(seed);
    let mut dev_rng = ChaCha12Rng::seed_from_u64(seed);
    let mut acts = vec![CtPacked::EMPTY; garble::act_slots(&file)];
    let mut slot = garble::KeySlot::new();
    for (i, x) in inputs.iter().enumerate() {
        let mut host = Vec::new();
        let session = engine::garble(&plan, &mut host_rng, &mut host).unwrap();
        let mut link = VecLink(Vec::new());
        let inf = garble::garble::<_, _, _, _, N, ACC>(
            &file,
            &dplan,
            &mut dev_rng,
            x,
            &mut link,
            &mut slot,
            &mut acts,
            &mut (),
        )
        .unwrap();
        assert_eq!(inf.rows, plan.total_rows());
        // The link: the material header, the input labels (residue-major),
        // the rest of the material. Header plus rest is the host's stream.
        let header =
            host.len() - 8 - 16 * plan.total_rows() as usize - 16 * plan.costs().iter().filter(|c| c.rows > 0).count();
        let labels_end = header + 16 * n * k;
        assert_eq!(link.0.len(), host.len() + 16 * n * k, "inference {i}: sizes differ");
        assert!(link.0[..header] == host[..header], "inference {i}: the device's header differs from the host's");
        assert!(link.0[labels_end..] == host[header..], "inference {i}: the device's material differs from the host's");
        let material = [&link.0[..header], &link.0[labels_end..]].concat();

        // Input labels: residue-major from the device, element-major on the host.
        let dev_labels = blocks(&link.0[header..labels_end]);
        let (host_input, awaiting) = session.encode_input(x).unwrap();
        let host_labels = host_input.to_blocks();
        for t in 0..k {
            for e in 0..n {
                assert_eq!(dev_labels[t * n + e], host_labels[e * k + t], "input label {e}/{t}");
            }
        }

        // The host evaluates the device's material, the device decodes.
        let out = EvaluatorSession::start(&plan, material.as_slice())
            .unwrap()
            .evaluate(&CrtTensor::from_blocks(&net.base, plan.input_shape(), &host_labels).unwrap())
            .unwrap()
            .to_blocks();
        let want = net.eval_plain(x).unwrap();
        let mut got = vec![0i64; inf.outputs()];
        inf.decode(&out, &mut got, &mut ()).unwrap();
        assert_eq!(got, want, "inference {i}");
        assert_eq!(awaiting.decode_output(&out).unwrap(), want);

        // Forged answers: a flipped bit, two outputs' labels swapped, a label
        // of the right modulus but random.
        let mut flip = out.clone();
        flip[k * (inf.outputs() - 1)].0 ^= 1 << 9;
        let mut swap = out.clone();
        for t in 0..k {
            swap.swap(t, k + t);
        }
        let mut random = out.clone();
        random[1] = Block(0x0123_4567_89ab_cdef_0011_2233_4455_6677 ^ i as u128);
        for forged in [&flip, &swap, &random] {
            if *forged == out {
                continue; // two equal outputs swapped: not a forgery
            }
            let err = inf.decode(forged, &mut got, &mut ()).unwrap_err();
            assert!(err.is_authenticity(), "{err:?}");
            assert!(got.iter().all(|&v| v == 0), "a rejected answer leaves no values behind");
        }
    }
}

fn dense(inputs: usize, outputs: usize, rng: &mut ChaCha12Rng, w: i64, b: i64) -> IntLayer {
    let mut r = |m: i64| (rng.next_u64() % (2 * m as u64 + 1)) as i64 - m;
    IntLayer::Dense {
        inputs,
        outputs,
        weights: (0..inputs * outputs).map(|_| r(w)).collect(),
        bias: (0..outputs).map(|_| r(b)).collect(),
    }
}

#[test]
fn sign_network_equals_host_byte_for_byte() {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    let net = IntNetwork::new(
        vec![40],
        vec![dense(40, 9, &mut rng, 17, 1700), IntLayer::Sign, IntLayer::Flatten, dense(9, 4, &mut rng, 7000, 4000)],
        CrtBase::first(7).unwrap(),
    )
    .unwrap();
    let inputs: Vec<Vec<i64>> = (0..3).map(|_| (0..40).map(|_| (rng.next_u64() % 256) as i64).collect()).collect();
    parity(&net, 7, &inputs);
}

#[test]
fn relu_network_equals_host_byte_for_byte() {
    // Two dense layers after the first: the later ones read their inputs
    // from the activation buffer and overwrite it residue by residue.
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let net = IntNetwork::new(
        vec![30],
        vec![
            dense(30, 12, &mut rng, 3, 20),
            IntLayer::Relu,
            dense(12, 16, &mut rng, 3, 20),
            IntLayer::Relu,
            dense(16, 5, &mut rng, 200, 9),
        ],
        CrtBase::first(6).unwrap(),
    )
    .unwrap();
    let inputs: Vec<Vec<i64>> = (0..2).map(|_| (0..30).map(|_| (rng.next_u64() % 41) as i64 - 20).collect()).collect();
    parity(&net, 8, &inputs);
}

#[test]
fn fhe_dinn100_equals_host_byte_for_byte() {
    // The network the firmware embeds, quantised as `dashgc device export`
    // does, on two real MNIST test images.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = dash_host::model::FloatModel::load(root.join("models/fhe_dinn100.onnx")).unwrap();
    let q = dash_host::quantize::quantize(&model, &Default::default()).unwrap();
    let data = dash_host::mnist::bundled_test_set().unwrap();
    let inputs: Vec<Vec<i64>> =
        (0..2).map(|i| data.images.get(i).unwrap().iter().map(|&p| p as i64).collect()).collect();
    parity(&q.network, 9, &inputs);
    // The committed firmware image is today's export of this network.
    let committed = std::fs::read(root.join("firmware/net/fhe_dinn100.dnet")).unwrap();
    assert!(committed == dash_host::export::export(&q.network).unwrap(), "firmware/net/fhe_dinn100.dnet is stale");
}
