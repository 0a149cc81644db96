//! Query images: raw bytes (one byte per pixel, exactly the model's input
//! length), binary or plain PGM (`P5`/`P2`, 8-bit), or PNG (8- or 16-bit,
//! grey or colour; colour is turned to grey with the Rec. 601 weights).

use anyhow::{Context, Result, bail, ensure};
use std::path::Path;

/// Largest image file read.
pub const MAX_IMAGE_FILE_BYTES: u64 = 16 << 20;

/// Reads an image file and returns its pixels (row-major, one byte each),
/// which must number `pixels`.
pub fn load_image(path: impl AsRef<Path>, pixels: usize) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read image {}", path.display()))?;
    ensure!(
        meta.len() <= MAX_IMAGE_FILE_BYTES,
        "image {} is {} bytes, more than the {MAX_IMAGE_FILE_BYTES} accepted",
        path.display(),
        meta.len()
    );
    let bytes = std::fs::read(path).with_context(|| format!("cannot read image {}", path.display()))?;
    decode_image(&bytes, pixels).with_context(|| format!("in image {}", path.display()))
}

/// [`load_image`] on bytes already read.
pub fn decode_image(bytes: &[u8], pixels: usize) -> Result<Vec<u8>> {
    let image = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)?
    } else if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        decode_pgm(bytes)?
    } else {
        ensure!(
            bytes.len() == pixels,
            "a raw image must be exactly {pixels} bytes (one per pixel), this one is {} (PNG and PGM are recognised by their signature)",
            bytes.len()
        );
        return Ok(bytes.to_vec());
    };
    ensure!(image.len() == pixels, "the image has {} pixels, the model takes {pixels}", image.len());
    Ok(image)
}

fn decode_png(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    // An image that claims to be huge is refused before any allocation.
    decoder.set_limits(png::Limits { bytes: 64 << 20 });
    let mut reader = decoder.read_info().context("malformed PNG")?;
    let size = reader.output_buffer_size().context("PNG too large")?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).context("malformed PNG")?;
    let data = &buf[..info.buffer_size()];
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => bail!("indexed PNG was not expanded"),
    };
    ensure!(info.bit_depth == png::BitDepth::Eight, "PNG bit depth {:?} after expansion", info.bit_depth);
    let stride = info.line_size;
    ensure!(data.len() >= stride * h && stride >= w * channels, "PNG buffer smaller than its image");
    let mut out = Vec::with_capacity(w * h);
    for row in data.chunks(stride).take(h) {
        for px in row[..w * channels].chunks_exact(channels) {
            out.push(match channels {
                1 | 2 => px[0],
                _ => ((299 * px[0] as u32 + 587 * px[1] as u32 + 114 * px[2] as u32 + 500) / 1000) as u8,
            });
        }
    }
    Ok(out)
}

fn decode_pgm(bytes: &[u8]) -> Result<Vec<u8>> {
    let binary = bytes.starts_with(b"P5");
    // Header: magic, width, height, maxval, separated by whitespace and
    // `#` comments; in P5 exactly one whitespace byte precedes the pixels.
    let mut pos = 2;
    let mut fields = [0usize; 3];
    for f in fields.iter_mut() {
        loop {
            match bytes.get(pos) {
                Some(b'#') => {
                    while bytes.get(pos).is_some_and(|&b| b != b'\n') {
                        pos += 1;
                    }
                }
                Some(b) if b.is_ascii_whitespace() => pos += 1,
                Some(_) => break,
                None => bail!("PGM header truncated"),
            }
        }
        let start = pos;
        while bytes.get(pos).is_some_and(|b| b.is_ascii_digit()) {
            pos += 1;
        }
        ensure!(pos > start && pos - start <= 6, "malformed PGM header");
        *f = std::str::from_utf8(&bytes[start..pos])?.parse()?;
    }
    let [w, h, maxval] = fields;
    ensure!(w > 0 && h > 0 && w * h <= 1 << 24, "PGM size {w}×{h} out of bounds");
    ensure!(maxval == 255, "PGM maxval {maxval}: only 8-bit (255) images are read");
    ensure!(bytes.get(pos).is_some_and(|b| b.is_ascii_whitespace()), "malformed PGM header");
    pos += 1;
    let n = w * h;
    if binary {
        let data = bytes.get(pos..pos + n).context("PGM pixel data truncated")?;
        return Ok(data.to_vec());
    }
    let text = std::str::from_utf8(&bytes[pos..]).context("plain PGM is not text")?;
    let values: Vec<u8> =
        text.split_ascii_whitespace().map(|t| t.parse::<u8>()).collect::<Result<_, _>>().context("PGM pixel")?;
    ensure!(values.len() == n, "PGM has {} pixels, its header says {n}", values.len());
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels() -> Vec<u8> {
        (0..12u8).map(|i| i * 20).collect()
    }

    #[test]
    fn raw_pgm_and_png_give_the_same_pixels() {
        let px = pixels();
        assert_eq!(decode_image(&px, 12).unwrap(), px);
        assert!(decode_image(&px[..11], 12).is_err());

        let mut p5 = b"P5\n# a comment\n4 3\n255\n".to_vec();
        p5.extend_from_slice(&px);
        assert_eq!(decode_image(&p5, 12).unwrap(), px);
        assert!(decode_image(&p5[..p5.len() - 1], 12).is_err());
        let p2 = format!("P2 4 3 255 {}", px.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "));
        assert_eq!(decode_image(p2.as_bytes(), 12).unwrap(), px);

        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, 4, 3);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().unwrap();
            w.write_image_data(&px).unwrap();
        }
        assert_eq!(decode_image(&png_bytes, 12).unwrap(), px);
        assert!(decode_image(&png_bytes, 13).is_err());
        assert!(decode_image(&png_bytes[..png_bytes.len() / 2], 12).is_err());
    }
}
