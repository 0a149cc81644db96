//! Garbled material held in memory.
//!
//! The garbler streams rows into a [`dash_core::MaterialSink`] as it
//! produces them; [`VecSink`] (dash-core's, feature `alloc`) keeps them in a
//! growable buffer, and the evaluator then
//! reads them back in the same order through a
//! [`dash_core::SliceSource`] over [`VecSink::rows`].

use dash_core::Block;
pub use dash_core::VecSink;

/// Bytes of one garbled row (one ciphertext).
pub const ROW_BYTES: usize = Block::BYTES;

#[cfg(test)]
mod tests {
    use super::*;
    use dash_core::{Error, MaterialSink, MaterialSource, SliceSource};

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
