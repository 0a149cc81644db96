//! Garbled material held in memory.
//!
//! The garbler streams rows into a [`MaterialSink`] as it produces them;
//! [`VecSink`] keeps them in a growable buffer, and the evaluator then
//! reads them back in the same order through a
//! [`dash_core::SliceSource`] over [`VecSink::rows`].

use dash_core::{Block, Error, MaterialSink};

/// Bytes of one garbled row (one ciphertext).
pub const ROW_BYTES: usize = Block::BYTES;

/// A sink that appends every row to an in-memory buffer.
#[derive(Clone, Debug, Default)]
pub struct VecSink {
    rows: Vec<Block>,
}

impl VecSink {
    /// An empty sink.
    pub fn new() -> VecSink {
        VecSink::default()
    }

    /// An empty sink with room for `rows` rows before it reallocates.
    pub fn with_capacity(rows: usize) -> VecSink {
        VecSink { rows: Vec::with_capacity(rows) }
    }

    /// The rows received so far, in order.
    pub fn rows(&self) -> &[Block] {
        &self.rows
    }

    /// Gives back the rows.
    pub fn into_rows(self) -> Vec<Block> {
        self.rows
    }

    /// Rows (ciphertexts) received so far.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row was received.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Size of the material in bytes.
    pub fn bytes(&self) -> usize {
        self.rows.len() * ROW_BYTES
    }
}

impl MaterialSink for VecSink {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        self.rows.extend_from_slice(rows);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dash_core::{MaterialSource, SliceSource};

    #[test]
    fn rows_come_back_in_order() {
        let mut sink = VecSink::new();
        sink.put_rows(&[Block(1), Block(2)]).unwrap();
        sink.put_rows(&[Block(3)]).unwrap();
        assert_eq!(sink.len(), 3);
        assert_eq!(sink.bytes(), 48);
        let mut src = SliceSource::new(sink.rows());
        assert_eq!(src.next_rows(2).unwrap(), &[Block(1), Block(2)]);
        assert_eq!(src.next_rows(1).unwrap(), &[Block(3)]);
        assert_eq!(src.next_rows(1), Err(Error::SourceExhausted));
    }
}
