//! The compact network format a firmware embeds (`.dnet`), version 1.
//!
//! The host exports its quantised integer network (`dash-host`'s
//! `export` module, `dashgc device export`) to this format; the firmware
//! embeds the bytes in flash and reads them in place with [`NetFile::parse`]
//! (no copy, no allocation). All integers are little-endian.
//!
//! ```text
//! magic        8 bytes  "DASHNET\0"
//! version      u16      1
//! k            u8       CRT primes (1..=12)
//! layers       u8       layer count (1..=MAX_LAYERS)
//! model hash   32 bytes SHA-256 of the host IntNetwork's canonical encoding
//!                       (copied into the material header; the host's
//!                       evaluator checks it against its own model)
//! primes       k × u16
//! input        u32      input elements (flattened)
//! moduli       u8 count, then count × u16: every modulus the inference keys,
//!                       in the host plan's order (CRT primes first)
//! per layer    u8 kind, then
//!   1 dense    u32 inputs, u32 outputs, u8 weight bytes w (1, 2 or 4),
//!              outputs × inputs signed weights of w bytes (row-major),
//!              outputs × i32 biases
//!   2 sign     u32 rows per element, u32 gates per element
//!   3 relu     u32 rows per element, u32 gates per element
//!   4 flatten  (nothing: the values keep their order)
//! checksum     u32      FNV-1a over every byte before it
//! ```
//!
//! The reader checks every count against a cap and the bytes left before
//! it slices, every layer against the shape it receives, and the checksum;
//! a truncated, padded or corrupted image is an [`McuError::Format`], never
//! a panic. The rows and gates per element and the moduli are the host
//! plan's; the device recomputes them from its own gadgets
//! ([`crate::garble::DevicePlan`]) and refuses an image that disagrees.

use crate::McuError;
use dash_core::{CrtBase, Modulus};

/// First 8 bytes of a network image.
pub const MAGIC: [u8; 8] = *b"DASHNET\0";
/// The format version this code reads.
pub const VERSION: u16 = 1;
/// Most layers an image may hold.
pub const MAX_LAYERS: usize = 16;
/// Most moduli an image may list.
pub const MAX_MODULI: usize = 32;
/// Most input elements, and most outputs of a dense layer.
pub const MAX_ELEMENTS: usize = 1 << 16;

/// Layer kind codes.
pub mod kind {
    /// Dense layer.
    pub const DENSE: u8 = 1;
    /// Sign activation.
    pub const SIGN: u8 = 2;
    /// ReLU.
    pub const RELU: u8 = 3;
    /// Flatten (no operation on a flat vector).
    pub const FLATTEN: u8 = 4;
}

/// FNV-1a, 32 bits: the image's checksum (integrity, not authenticity).
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A dense layer, read in place from the image.
#[derive(Clone, Copy, Debug)]
pub struct Dense<'a> {
    /// Input length.
    pub inputs: usize,
    /// Output length.
    pub outputs: usize,
    wbytes: usize,
    weights: &'a [u8],
    bias: &'a [u8],
}

impl Dense<'_> {
    /// Weight `(o, i)` (row-major `outputs × inputs`). `o < outputs`,
    /// `i < inputs` (checked by the caller's loops; out of range reads 0).
    #[inline(always)]
    pub fn weight(&self, o: usize, i: usize) -> i32 {
        let at = (o * self.inputs + i) * self.wbytes;
        match (self.wbytes, self.weights.get(at..at + self.wbytes)) {
            (1, Some(b)) => b[0] as i8 as i32,
            (2, Some(b)) => i16::from_le_bytes([b[0], b[1]]) as i32,
            (4, Some(b)) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => 0,
        }
    }

    /// Bias `o`.
    pub fn bias(&self, o: usize) -> i32 {
        match self.bias.get(4 * o..4 * o + 4) {
            Some(b) => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    /// Bytes per weight.
    pub fn weight_bytes(&self) -> usize {
        self.wbytes
    }
}

/// One layer of an image.
#[derive(Clone, Copy, Debug)]
pub enum Layer<'a> {
    /// `y = W·x + b`.
    Dense(Dense<'a>),
    /// Sign activation (`+1` for `x >= 0`, else `-1`), exact.
    Sign {
        /// Rows per element (the host plan's figure).
        rows: u32,
        /// Gate identifiers per element.
        gates: u32,
    },
    /// ReLU, exact.
    Relu {
        /// Rows per element.
        rows: u32,
        /// Gate identifiers per element.
        gates: u32,
    },
    /// Flatten: nothing to do on a flat vector.
    Flatten,
}

/// A parsed network image (borrowing the image's bytes).
#[derive(Clone, Debug)]
pub struct NetFile<'a> {
    /// The host's model hash.
    pub model_hash: [u8; 32],
    /// The CRT base.
    pub base: CrtBase,
    /// Input elements.
    pub input_len: usize,
    /// The layers.
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
    /// Every modulus the inference keys, in the host plan's order.
    pub moduli: heapless::Vec<Modulus, MAX_MODULI>,
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], McuError> {
        if n > self.bytes.len() {
            return Err(McuError::Format);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, McuError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, McuError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, McuError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn count(&mut self, max: usize) -> Result<usize, McuError> {
        let v = self.u32()? as usize;
        if v == 0 || v > max { Err(McuError::Format) } else { Ok(v) }
    }
}

impl<'a> NetFile<'a> {
    /// Parses and checks an image (see the module documentation).
    pub fn parse(bytes: &'a [u8]) -> Result<NetFile<'a>, McuError> {
        let body_len = bytes.len().checked_sub(4).ok_or(McuError::Format)?;
        let (body, sum) = bytes.split_at(body_len);
        if fnv1a(body) != u32::from_le_bytes([sum[0], sum[1], sum[2], sum[3]]) {
            return Err(McuError::Format);
        }
        let mut r = Reader { bytes: body };
        if r.take(8)? != MAGIC {
            return Err(McuError::Format);
        }
        if r.u16()? != VERSION {
            return Err(McuError::Version);
        }
        let k = r.u8()? as usize;
        let nl = r.u8()? as usize;
        if !(1..=dash_core::crt::MAX_CRT_PRIMES).contains(&k) || !(1..=MAX_LAYERS).contains(&nl) {
            return Err(McuError::Format);
        }
        let mut model_hash = [0u8; 32];
        model_hash.copy_from_slice(r.take(32)?);
        let mut primes = [0u16; dash_core::crt::MAX_CRT_PRIMES];
        for p in primes.iter_mut().take(k) {
            *p = r.u16()?;
        }
        let base = CrtBase::new(&primes[..k])?;
        let input_len = r.count(MAX_ELEMENTS)?;
        let nm = r.u8()? as usize;
        if nm < k || nm > MAX_MODULI {
            return Err(McuError::Format);
        }
        let mut moduli = heapless::Vec::new();
        for _ in 0..nm {
            let m = Modulus::new(r.u16()?)?;
            if moduli.contains(&m) {
                return Err(McuError::Format);
            }
            moduli.push(m).map_err(|_| McuError::Format)?;
        }
        if moduli[..k] != *base.moduli() {
            return Err(McuError::Format);
        }
        let mut layers = heapless::Vec::new();
        let mut len = input_len;
        for _ in 0..nl {
            let layer = match r.u8()? {
                kind::DENSE => {
                    let inputs = r.count(MAX_ELEMENTS)?;
                    let outputs = r.count(MAX_ELEMENTS)?;
                    let wbytes = r.u8()? as usize;
                    if inputs != len || !matches!(wbytes, 1 | 2 | 4) {
                        return Err(McuError::Format);
                    }
                    let weights = r.take(inputs * outputs * wbytes)?;
                    let bias = r.take(outputs * 4)?;
                    len = outputs;
                    Layer::Dense(Dense { inputs, outputs, wbytes, weights, bias })
                }
                kind::SIGN => Layer::Sign { rows: r.u32()?, gates: r.u32()? },
                kind::RELU => Layer::Relu { rows: r.u32()?, gates: r.u32()? },
                kind::FLATTEN => Layer::Flatten,
                _ => return Err(McuError::Unsupported),
            };
            layers.push(layer).map_err(|_| McuError::Format)?;
        }
        if !r.bytes.is_empty() {
            return Err(McuError::Format);
        }
        Ok(NetFile { model_hash, base, input_len, layers, moduli })
    }

    /// Elements of the network's output.
    pub fn output_len(&self) -> usize {
        self.layers.iter().fold(self.input_len, |len, l| match l {
            Layer::Dense(d) => d.outputs,
            _ => len,
        })
    }

    /// The largest activation the garbler holds (elements): the largest
    /// dense output (the input itself is never held: the first layer is
    /// dense and takes its input labels straight from the generator).
    pub fn max_elements(&self) -> usize {
        self.layers.iter().fold(0, |m, l| match l {
            Layer::Dense(d) => m.max(d.outputs),
            _ => m,
        })
    }
}
