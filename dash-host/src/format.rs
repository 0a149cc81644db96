//! The binary format of streamed garbled material, version 2 (version 1
//! numbered the sign gadget's gates in another order; its material is
//! refused with an error that names both versions).
//!
//! All integers are little-endian.
//!
//! ```text
//! header:
//!   magic        8 bytes  "DASHGCM\0"
//!   version      u32      2
//!   model hash   32 bytes SHA-256 of the IntNetwork's canonical encoding
//!   k            u8       number of CRT primes, then k × u16 primes
//!   moduli       u16      count, then count × (u16 modulus, 16-byte one-label)
//!   layers       u32      count, then count × u64 rows of that layer
//! then for every layer with rows > 0, in order:
//!   tag          4 bytes  "LAYR", u32 layer index, u64 rows
//!   rows         rows × 16 bytes (one ciphertext each, gate order)
//! trailer:
//!   8 bytes "DASHEND\0"
//! ```
//!
//! The reader never trusts a size it has not checked: counts are capped
//! before anything is allocated, the evaluator compares every size with the
//! one its own plan of the model gives, and a short, long or corrupted
//! stream is an error, never a panic.

use crate::engine::{EngineError, EngineResult as Result};
use dash_core::Block;
use std::io::{Read, Write};

/// First 8 bytes of a material stream.
pub const MAGIC: [u8; 8] = *b"DASHGCM\0";
/// Last 8 bytes of a material stream.
pub const TRAILER: [u8; 8] = *b"DASHEND\0";
/// The format version this code writes and reads.
pub const VERSION: u32 = 2;
/// Tag in front of each layer's rows.
pub const LAYER_TAG: [u8; 4] = *b"LAYR";
/// Most CRT primes a header may list.
pub const MAX_HEADER_PRIMES: usize = 16;
/// Most moduli (one-labels) a header may list.
pub const MAX_HEADER_MODULI: usize = 256;
/// Most layers a header may list.
pub const MAX_HEADER_LAYERS: usize = 1 << 16;

/// The header of a material stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// SHA-256 of the model's canonical encoding.
    pub model_hash: [u8; 32],
    /// The CRT primes, in base order.
    pub primes: Vec<u16>,
    /// The evaluator's one-labels, packed, with their moduli (garbler's order).
    pub ones: Vec<(u16, Block)>,
    /// Rows (16-byte ciphertexts) of each layer.
    pub layer_rows: Vec<u64>,
}

/// `ensure!` for the material stream: a failed check is malformed material.
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(EngineError::material(format!($($fmt)+)));
        }
    };
}

fn read_exact<R: Read>(r: &mut R, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|source| match source.kind() {
        std::io::ErrorKind::UnexpectedEof => EngineError::material(format!("the stream ended while reading {what}")),
        _ => EngineError::Io { what: "reading garbled material", source },
    })
}

fn written(what: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Io { what, source }
}

fn read_u8<R: Read>(r: &mut R, what: &str) -> Result<u8> {
    let mut b = [0u8; 1];
    read_exact(r, &mut b, what)?;
    Ok(b[0])
}

fn read_u16<R: Read>(r: &mut R, what: &str) -> Result<u16> {
    let mut b = [0u8; 2];
    read_exact(r, &mut b, what)?;
    Ok(u16::from_le_bytes(b))
}

fn read_u32<R: Read>(r: &mut R, what: &str) -> Result<u32> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64<R: Read>(r: &mut R, what: &str) -> Result<u64> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b, what)?;
    Ok(u64::from_le_bytes(b))
}

fn read_block<R: Read>(r: &mut R, what: &str) -> Result<Block> {
    let mut b = [0u8; 16];
    read_exact(r, &mut b, what)?;
    Ok(Block(u128::from_le_bytes(b)))
}

impl Header {
    /// Writes the header.
    pub fn write<W: Write>(&self, w: &mut W) -> Result<()> {
        check!(self.primes.len() <= MAX_HEADER_PRIMES, "too many primes for the header");
        check!(self.ones.len() <= MAX_HEADER_MODULI, "too many moduli for the header");
        check!(self.layer_rows.len() <= MAX_HEADER_LAYERS, "too many layers for the header");
        let mut buf = Vec::with_capacity(64 + self.ones.len() * 18 + self.layer_rows.len() * 8);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&self.model_hash);
        buf.push(self.primes.len() as u8);
        for p in &self.primes {
            buf.extend_from_slice(&p.to_le_bytes());
        }
        buf.extend_from_slice(&(self.ones.len() as u16).to_le_bytes());
        for (m, b) in &self.ones {
            buf.extend_from_slice(&m.to_le_bytes());
            buf.extend_from_slice(&b.0.to_le_bytes());
        }
        buf.extend_from_slice(&(self.layer_rows.len() as u32).to_le_bytes());
        for r in &self.layer_rows {
            buf.extend_from_slice(&r.to_le_bytes());
        }
        w.write_all(&buf).map_err(written("writing the material header"))
    }

    /// Reads a header, checking magic, version and every count's cap.
    pub fn read<R: Read>(r: &mut R) -> Result<Header> {
        let mut magic = [0u8; 8];
        read_exact(r, &mut magic, "the magic number")?;
        check!(magic == MAGIC, "not a Dash garbled-material stream (bad magic)");
        let version = read_u32(r, "the version")?;
        check!(version == VERSION, "material format version {version}, this build reads version {VERSION}");
        let mut model_hash = [0u8; 32];
        read_exact(r, &mut model_hash, "the model hash")?;
        let k = read_u8(r, "the prime count")? as usize;
        check!((1..=MAX_HEADER_PRIMES).contains(&k), "header lists {k} CRT primes");
        let primes = (0..k).map(|_| read_u16(r, "a CRT prime")).collect::<Result<Vec<_>>>()?;
        let nm = read_u16(r, "the modulus count")? as usize;
        check!(nm <= MAX_HEADER_MODULI, "header lists {nm} moduli (at most {MAX_HEADER_MODULI})");
        let mut ones = Vec::with_capacity(nm);
        for _ in 0..nm {
            let m = read_u16(r, "a one-label modulus")?;
            let b = read_block(r, "a one-label")?;
            ones.push((m, b));
        }
        let nl = read_u32(r, "the layer count")? as usize;
        check!(nl <= MAX_HEADER_LAYERS, "header lists {nl} layers (at most {MAX_HEADER_LAYERS})");
        let layer_rows = (0..nl).map(|_| read_u64(r, "a layer size")).collect::<Result<Vec<_>>>()?;
        Ok(Header { model_hash, primes, ones, layer_rows })
    }
}

/// Writes the tag in front of layer `index`'s `rows` rows.
pub fn write_layer_tag<W: Write>(w: &mut W, index: u32, rows: u64) -> Result<()> {
    let mut buf = [0u8; 16];
    buf[..4].copy_from_slice(&LAYER_TAG);
    buf[4..8].copy_from_slice(&index.to_le_bytes());
    buf[8..].copy_from_slice(&rows.to_le_bytes());
    w.write_all(&buf).map_err(written("writing a layer tag"))
}

/// Reads a layer tag and checks it announces layer `index` with `rows` rows.
pub fn read_layer_tag<R: Read>(r: &mut R, index: u32, rows: u64) -> Result<()> {
    let mut buf = [0u8; 16];
    read_exact(r, &mut buf, "a layer tag")?;
    check!(buf[..4] == LAYER_TAG, "no layer tag where layer {index} should start");
    let got_index = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let mut rb = [0u8; 8];
    rb.copy_from_slice(&buf[8..]);
    let got_rows = u64::from_le_bytes(rb);
    check!(got_index == index, "layer {got_index} where layer {index} was expected");
    check!(got_rows == rows, "layer {index} announces {got_rows} rows, the model needs {rows}");
    Ok(())
}

/// Writes rows (16 bytes each, little-endian) through a bounded buffer.
pub fn write_rows<W: Write>(w: &mut W, rows: &[Block]) -> Result<()> {
    let mut buf = Vec::with_capacity(rows.len().min(1 << 16) * 16);
    for chunk in rows.chunks(1 << 16) {
        buf.clear();
        for b in chunk {
            buf.extend_from_slice(&b.0.to_le_bytes());
        }
        w.write_all(&buf).map_err(written("writing garbled rows"))?;
    }
    Ok(())
}

/// Reads exactly `out.len()` rows into `out`.
pub fn read_rows<R: Read>(r: &mut R, out: &mut [Block]) -> Result<()> {
    let mut buf = vec![0u8; out.len().min(1 << 16) * 16];
    for chunk in out.chunks_mut(1 << 16) {
        let bytes = &mut buf[..chunk.len() * 16];
        read_exact(r, bytes, "garbled rows")?;
        for (b, raw) in chunk.iter_mut().zip(bytes.chunks_exact(16)) {
            let mut a = [0u8; 16];
            a.copy_from_slice(raw);
            *b = Block(u128::from_le_bytes(a));
        }
    }
    Ok(())
}

/// Writes the trailer.
pub fn write_trailer<W: Write>(w: &mut W) -> Result<()> {
    w.write_all(&TRAILER).map_err(written("writing the material trailer"))?;
    w.flush().map_err(written("flushing garbled material"))
}

/// Reads and checks the trailer.
pub fn read_trailer<R: Read>(r: &mut R) -> Result<()> {
    let mut t = [0u8; 8];
    read_exact(r, &mut t, "the trailer")?;
    if t != TRAILER {
        return Err(EngineError::material("extra or corrupted data where the trailer should be"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_truncation() {
        let h = Header {
            model_hash: [7; 32],
            primes: vec![2, 3, 5],
            ones: vec![(2, Block(5)), (3, Block(9))],
            layer_rows: vec![0, 12, 3],
        };
        let mut buf = Vec::new();
        h.write(&mut buf).unwrap();
        assert_eq!(Header::read(&mut buf.as_slice()).unwrap(), h);
        for cut in 0..buf.len() {
            assert!(Header::read(&mut &buf[..cut]).is_err());
        }
        let mut bad = buf.clone();
        // Any other version, older (the sign gadget's gate order changed in
        // version 2) or newer, is refused with a message that says so.
        for v in [1u8, VERSION as u8 + 1] {
            bad[8] = v;
            assert!(Header::read(&mut bad.as_slice()).unwrap_err().to_string().contains("version"));
        }
        let mut bad = buf.clone();
        bad[0] = b'X';
        assert!(Header::read(&mut bad.as_slice()).is_err());
    }
}
