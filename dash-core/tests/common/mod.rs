//! What several of dash-core's test files share. dash-core itself never
//! allocates; its tests keep garbled material in a growable buffer.

use dash_core::{Block, Error, MaterialSink};

/// A sink that appends every row to a `Vec` (the tests' only copy).
#[derive(Default)]
pub struct VecSink(Vec<Block>);

impl VecSink {
    /// An empty sink.
    pub fn new() -> VecSink {
        VecSink::default()
    }

    /// The rows received, in order.
    pub fn into_rows(self) -> Vec<Block> {
        self.0
    }
}

impl MaterialSink for VecSink {
    fn put_rows(&mut self, rows: &[Block]) -> Result<(), Error> {
        self.0.extend_from_slice(rows);
        Ok(())
    }
}
