//! Constant-time check of the garbler (the ctgrind technique).
//!
//! Run under valgrind memcheck: every secret is marked *undefined*: the
//! offsets `Δ_p`, the garbler's zero labels `O_p` of the constant-one wires
//! (inside `GarblerKeys`), the zero labels of the inputs, and the garbler's
//! private input values. Memcheck then reports any conditional branch or
//! memory address that depends on undefined data, i.e. on a secret, in:
//!
//! * label arithmetic on zero labels (constants, add, sub, neg, cmul: the
//!   free gates of the `Garbler` backend, and `Label`'s own operations);
//! * encoding of inputs (`GarblerKeys::encode` of a secret residue);
//! * projection garbling (`Garbler::project` with public tables, and every
//!   gadget built on it: sign bit, sign activation, exact ReLU, `max2`,
//!   rescale, Dash's halving, base extension), multiply-by-bit, and batches
//!   of projections (`projection::garble_batch`, short and long tables);
//! * the verified decoding of outputs (`GarblerKeys::decode_ct`).
//!
//! Data that the protocol makes public is declassified explicitly (marked
//! defined) before it is looked at: the labels sent to the evaluator
//! (encoded inputs, the one-labels, the garbled rows' count) and the verdict
//! of the output check.
//!
//! `valgrind --error-exitcode=1 target/release/ct-check` must exit 0;
//! `ct-check --plant` adds a deliberate branch on an offset `Δ`,
//! `--plant-one` one on a one-wire zero label, `--plant-input` a table
//! lookup indexed by the private input; each must be reported (exit 1),
//! which shows the check can fail and that those secrets are marked.

use dash_core::gadgets::basechange::BaseExtension;
use dash_core::gadgets::compare::max2;
use dash_core::gadgets::rescale::{Halving, Rescale, Rounding};
use dash_core::gadgets::sign::{Accuracy, SignGadget};
use dash_core::{
    Backend, Block, Bundle, CountingSink, CrtBase, Delta, Domain, FixedKeyHash, Garbler, GarblerKeys, Label, Modulus,
    Tweak, ZeroLabel, crt, projection,
};
use rand_core::{Rng, SeedableRng};

use ctgrind::{declassify, public, secret};

/// Byte offset of `needle` inside `haystack`.
fn locate(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Marks the digits of the garbler's one-wire zero labels `O_p`, stored
/// privately inside `keys`, as secret. They are found by their value (a
/// copy obtained through `Garbler::constant(1, p)` before anything is
/// marked): random 16-bit digits, so the match is unique.
fn mark_one_wire_zero_labels<const N: usize>(keys: &GarblerKeys<N>, hash: &FixedKeyHash) -> usize {
    // Padding inside `keys` is undefined to memcheck; the search below reads
    // it, so the whole object is first marked defined (nothing is secret yet).
    public(keys);
    let mut probe = Garbler::new(hash, keys, CountingSink::default());
    let moduli: Vec<Modulus> = keys.moduli().collect();
    // SAFETY: `keys` is a live object of `size_of_val(keys)` bytes; its
    // padding was marked defined above, and it is only read here.
    let bytes = unsafe {
        core::slice::from_raw_parts(keys as *const GarblerKeys<N> as *const u8, core::mem::size_of_val(keys))
    };
    // Every range is located before any is marked: the search must not read
    // bytes that are already secret.
    let ranges: Vec<(usize, usize)> = moduli
        .into_iter()
        .map(|m| {
            let one = probe.constant(1, m).expect("listed");
            let needle: Vec<u8> = one.as_label().digits().iter().flat_map(|d| d.to_ne_bytes()).collect();
            let at = locate(bytes, &needle).expect("the one-wire zero label is stored in the keys");
            (at, needle.len())
        })
        .collect();
    for &(at, len) in &ranges {
        secret(&bytes[at..at + len]);
    }
    ranges.len()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plant = |name: &str| args.iter().any(|a| a == name);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let hash = FixedKeyHash::new();
    let base = CrtBase::first(7).expect("k = 7");
    let sign = SignGadget::new(&base, Accuracy::Exact).expect("sign gadget");
    let rescale = Rescale::new(&base, 35, Rounding::Nearest).expect("rescale gadget");
    let halving = Halving::new(&base).expect("halving gadget");
    let big = CrtBase::first(9).expect("k = 9");
    let extension = BaseExtension::new(&base, &big).expect("base extension");
    let mut moduli = sign.moduli().to_vec();
    moduli.extend_from_slice(rescale.moduli());
    moduli.extend_from_slice(halving.moduli());
    moduli.extend_from_slice(extension.moduli());
    moduli.extend_from_slice(big.moduli());
    let keys: GarblerKeys<48> = GarblerKeys::generate(&mut rng, &moduli).expect("keys");
    let ones = mark_one_wire_zero_labels(&keys, &hash);
    for m in keys.moduli() {
        secret(keys.delta(m).expect("listed").as_label().digits());
    }
    let x: Bundle<ZeroLabel> = keys.input_bundle(&base, &mut rng).expect("input");
    let y: Bundle<ZeroLabel> = keys.input_bundle(&base, &mut rng).expect("input");
    for w in x.wires().iter().chain(y.wires()) {
        secret(w.as_label().digits());
    }

    if plant("--plant") {
        // A deliberate secret-dependent branch: memcheck must flag it.
        let d = keys.delta(base.moduli()[3]).expect("listed").as_label().digits()[1];
        if d > 3 {
            println!("planted branch taken");
        }
    }
    if plant("--plant-one") {
        // A branch on a one-wire zero label (shows those are marked too).
        let mut probe = Garbler::new(&hash, &keys, CountingSink::default());
        let one = probe.constant(1, base.moduli()[2]).expect("listed");
        if one.as_label().digits()[2] > 2 {
            println!("planted branch taken");
        }
    }

    // Encoding of inputs: the garbler's private residues are secret; the
    // labels they select are sent to the evaluator, so they become public.
    let mut private_input = [0u16; 7];
    for (r, m) in private_input.iter_mut().zip(base.moduli()) {
        *r = (rng.next_u32() % m.value() as u32) as u16;
    }
    secret(&private_input);
    if plant("--plant-input") {
        // A table lookup indexed by the private input (a secret memory index).
        let table = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
        println!("planted lookup {}", core::hint::black_box(&table)[private_input[6] as usize]);
    }
    let mut sent = 0u128;
    for (z, &r) in x.wires().iter().zip(&private_input) {
        sent ^= declassify(keys.encode(z, r).expect("encode").to_block()).0;
    }
    // The evaluator's one-labels are public too.
    let one_labels = keys.one_labels();
    for l in one_labels.labels() {
        sent ^= declassify(l.to_block()).0;
    }

    let mut g = Garbler::new(&hash, &keys, CountingSink::default());
    // Free gates: constants (from O_p), add, sub, neg, cmul on zero labels,
    // and the label operations under them.
    let lin = crt::cmul(&mut g, &x, 3).expect("cmul");
    let lin = crt::sub(&mut g, &lin, &y).expect("sub");
    let lin = crt::neg(&mut g, &lin).expect("neg");
    let lin = crt::add_constant(&mut g, &lin, -17).expect("add constant");
    let lin = crt::add(&mut g, &lin, &x).expect("add");
    let raw = x.wires()[2].as_label().add(y.wires()[2].as_label()).expect("label add");
    let raw = raw.sub(&raw.cmul(5)).expect("label sub").neg();
    // Projections with public tables (one of them non-linear), then gadgets.
    let proj = g.project(&lin.wires()[4], base.moduli()[1], |v| (v * v + 1) % 3).expect("project");
    let relu = sign.relu(&mut g, &lin).expect("relu");
    let bit = sign.sign_bit(&mut g, &x).expect("sign");
    let act = sign.sign_activation(&mut g, &y).expect("sign activation");
    let max = max2(&sign, &mut g, &x, &y).expect("max2");
    let scaled = rescale.apply(&mut g, &x).expect("rescale");
    let halved = halving.apply(&mut g, &y).expect("halving");
    let extended = extension.apply(&mut g, &x).expect("base extension");
    let prod = g.mul_bit(&x.wires()[3], &bit).expect("mul_bit");
    let mut rows = declassify(g.sink().rows);
    // A batch of projections of one table (`projection::garble_batch`):
    // secret input zero labels under a secret offset, a short table (rotated
    // in registers from one doubled layout) and a long one (per gate).
    for (p_in, p_out) in [(17u16, 5u16), (37, 17)] {
        let (m_in, m_out) = (Modulus::new(p_in).expect("prime"), Modulus::new(p_out).expect("prime"));
        let (d_in, d_out) = (Delta::random(m_in, &mut rng), Delta::random(m_out, &mut rng));
        secret(d_in.as_label().digits());
        secret(d_out.as_label().digits());
        let inputs: Vec<ZeroLabel> = (0..3).map(|_| ZeroLabel::random(m_in, &mut rng)).collect();
        for z in &inputs {
            secret(z.as_label().digits());
        }
        let tweaks: Vec<Tweak> = (0..3).map(|i| Tweak::new(Domain::Projection, 1 << 40 | i, 0)).collect();
        let mut outputs: Vec<ZeroLabel> = (0..3).map(|_| ZeroLabel::new(Label::zero(m_out))).collect();
        let mut sink = CountingSink::default();
        projection::garble_batch(&hash, &tweaks, &inputs, &d_in, &d_out, |v| v * v + 1, &mut sink, &mut outputs)
            .expect("batch");
        rows += declassify(sink.rows);
    }

    // Verified decoding of returned labels: the evaluator's label is
    // public; the comparison with the secret expected label is declassified
    // only as its final yes/no.
    let wires = [
        &relu.wires()[2],
        &scaled.wires()[4],
        &prod,
        &proj,
        &act.wires()[1],
        &max.wires()[5],
        &halved.wires()[0],
        &extended.wires()[8],
        &lin.wires()[6],
    ];
    let mut accepted = 0;
    for zero in wires {
        for claimed in [1u16, 0] {
            // What the evaluator would send back is public to the garbler.
            let returned: Block = declassify(keys.encode(zero, claimed).expect("encode").to_block());
            let check = keys.decode_ct(zero, returned).expect("moduli match");
            // The verdict, and only the verdict, becomes public.
            let ok: u8 = declassify(check.is_some().unwrap_u8());
            if ok == 1 {
                accepted += 1;
            }
        }
        // A forged label is rejected, in constant time too.
        let forged: Block = declassify(Block(keys.encode(zero, 1).expect("encode").to_block().0 ^ 1));
        let ok: u8 = declassify(keys.decode_ct(zero, forged).expect("moduli match").is_some().unwrap_u8());
        if ok == 1 {
            accepted += 100;
        }
    }
    let _ = core::hint::black_box((sent, raw));
    println!(
        "garbled {rows} rows; {ones} one-wire zero labels secret; {accepted}/{} honest outputs verified, forgeries rejected",
        2 * wires.len()
    );
    if accepted != 2 * wires.len() {
        std::process::exit(2);
    }
}
