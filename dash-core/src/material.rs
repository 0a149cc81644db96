//! Where garbled material goes and where it comes from.
//!
//! The garbler writes ciphertext rows to a [`MaterialSink`] as it produces
//! them; the evaluator reads them from a [`MaterialSource`] in the same
//! order. `dash-core` never allocates: the slice adapters here write into
//! and read from caller-provided buffers, and `dash-host` provides streaming
//! implementations (files, sockets, channels).

use crate::block::Block;
use crate::error::Error;

/// Accepts garbled rows in circuit order.
pub trait MaterialSink {
    /// Appends rows. An error (e.g. [`Error::SinkFull`]) aborts garbling.
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error>;
}

/// Yields garbled rows in circuit order.
pub trait MaterialSource {
    /// The next `count` rows, or [`Error::SourceExhausted`].
    fn next_rows(&mut self, count: usize) -> Result<&[Block], Error>;
}

impl<S: MaterialSink + ?Sized> MaterialSink for &mut S {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        (**self).put_rows(rows)
    }
}

impl<S: MaterialSource + ?Sized> MaterialSource for &mut S {
    fn next_rows(&mut self, count: usize) -> Result<&[Block], Error> {
        (**self).next_rows(count)
    }
}

/// A sink over a caller-provided buffer.
#[derive(Debug)]
pub struct SliceSink<'a> {
    buf: &'a mut [Block],
    len: usize,
}

impl<'a> SliceSink<'a> {
    /// A sink that fills `buf` from the start.
    pub fn new(buf: &'a mut [Block]) -> Self {
        SliceSink { buf, len: 0 }
    }

    /// Rows written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows written so far.
    pub fn written(&self) -> &[Block] {
        &self.buf[..self.len]
    }
}

impl MaterialSink for SliceSink<'_> {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        let end = self.len.checked_add(rows.len()).ok_or(Error::SinkFull)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(Error::SinkFull)?;
        dst.copy_from_slice(rows);
        self.len = end;
        Ok(())
    }
}

/// A source over a caller-provided buffer.
#[derive(Debug)]
pub struct SliceSource<'a> {
    buf: &'a [Block],
    pos: usize,
}

impl<'a> SliceSource<'a> {
    /// A source that reads `buf` from the start.
    pub fn new(buf: &'a [Block]) -> Self {
        SliceSource { buf, pos: 0 }
    }

    /// Rows not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl MaterialSource for SliceSource<'_> {
    fn next_rows(&mut self, count: usize) -> Result<&[Block], Error> {
        let end = self.pos.checked_add(count).ok_or(Error::SourceExhausted)?;
        let rows = self.buf.get(self.pos..end).ok_or(Error::SourceExhausted)?;
        self.pos = end;
        Ok(rows)
    }
}

/// A sink that only counts rows (for sizing buffers and for cost checks).
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingSink {
    /// Rows seen.
    pub rows: u64,
}

impl MaterialSink for CountingSink {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        self.rows += rows.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_sink_and_source_bound_checks() {
        let mut buf = [Block::ZERO; 3];
        let mut sink = SliceSink::new(&mut buf);
        sink.put_rows(&[Block(1), Block(2)]).unwrap();
        assert_eq!(sink.put_rows(&[Block(3), Block(4)]), Err(Error::SinkFull));
        sink.put_rows(&[Block(3)]).unwrap();
        assert_eq!(sink.written(), &[Block(1), Block(2), Block(3)]);
        let mut src = SliceSource::new(&buf);
        assert_eq!(src.next_rows(2).unwrap(), &[Block(1), Block(2)]);
        assert_eq!(src.next_rows(2), Err(Error::SourceExhausted));
        assert_eq!(src.next_rows(usize::MAX), Err(Error::SourceExhausted));
        assert_eq!(src.next_rows(1).unwrap(), &[Block(3)]);
    }
}
