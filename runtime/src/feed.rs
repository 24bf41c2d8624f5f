//! How the forward pass gets weight bytes: a [`WeightFeed`] hands out rows of a tensor.
//!
//! - [`SliceFeed`]: the whole file is addressable (memory map, buffer, memory-mapped flash):
//!   rows are borrowed, nothing is copied.
//! - [`StreamFeed`]: weights are read on demand from any [`WeightSource`] into one fixed
//!   arena, so a model far larger than RAM (or than a microcontroller's SRAM) still runs, one
//!   matrix slice at a time, with no heap growth after start.

use alloc::boxed::Box;
use alloc::string::ToString;
use core::ops::Range;

use crate::error::GenerateError;
use crate::model::{Residency, WeightBytes};
use crate::source::WeightSource;
use crate::weights::{Matrix, ModelTensors, TensorRef};

/// Supplies the bytes of weight rows to the forward pass.
pub trait WeightFeed {
    /// Most rows of `t` one call to [`WeightFeed::rows`] can return (at least 1).
    fn max_rows(&self, t: &TensorRef) -> usize;

    /// The bytes of rows `rows` of `t` (at most [`WeightFeed::max_rows`] of them).
    fn rows(&mut self, t: &TensorRef, rows: Range<usize>) -> Result<&[u8], GenerateError>;

    /// Called before layer `layer` runs, so a feed can bring the next layer in and release
    /// earlier ones.
    fn begin_layer(&mut self, _layer: usize, _tensors: &ModelTensors) {}

    /// Rows of `t` read and done with, whose memory may go ([`Residency::DontNeed`]): the
    /// rows of an embedding released at load because its tied head was repacked.
    fn release(&mut self, _t: &TensorRef, _rows: Range<usize>) {}

    /// Bytes read from the source since the feed was made (0 when nothing is copied).
    fn bytes_read(&self) -> u64 {
        0
    }

    /// All of `t`'s bytes at once, when the feed holds the whole file in the address space and
    /// hands matrices out whole: lets the forward pass multiply several matrices in one
    /// parallel section (`matmul::matmul_many`). `None` (the default) when rows come in slices.
    fn whole(&self, _t: &TensorRef) -> Option<&[u8]> {
        None
    }
}

/// Rows borrowed from a file that is entirely in the address space.
///
/// While layer `l` runs, layer `l + 1` is announced to the memory system ([`Residency::WillNeed`])
/// so a memory map pages it in ahead of use; matrices whose representation was built at load are
/// skipped ([`Matrix::reads_file`]: their bytes were released and are not read again). The announcement costs a walk of the page cache
/// per call (about 1700 pages per layer of the 700M BitNet shape, 24000 for its output head),
/// so a session turns it off once every page has been touched ([`SliceFeed::layer_ahead`]),
/// unless it runs under a resident cap, where pages do leave.
///
/// With a resident cap (`release_chunk`, for a model larger than the cap), rows are handed out in slices of at most that many bytes and every
/// slice is released ([`Residency::DontNeed`]) once the next is asked for, so the weights
/// resident at once stay near one slice plus the layer being prefetched.
pub struct SliceFeed<'a> {
    bytes: &'a dyn WeightBytes,
    file: &'a [u8],
    release_chunk: Option<usize>,
    /// The range handed out last, released at the next request when capped.
    last: Option<(usize, usize)>,
    /// Whether [`WeightFeed::begin_layer`] announces the next layer.
    layer_ahead: bool,
}

impl<'a> SliceFeed<'a> {
    /// A feed over the whole file's bytes (the bytes the tensors were validated against);
    /// `release_chunk` caps and releases the bytes handed out at once (see above).
    pub fn new(bytes: &'a dyn WeightBytes, release_chunk: Option<usize>) -> Self {
        SliceFeed {
            bytes,
            file: bytes.bytes(),
            release_chunk,
            last: None,
            layer_ahead: true,
        }
    }

    /// Whether to announce each next layer to the memory system (on by default).
    pub fn layer_ahead(mut self, on: bool) -> Self {
        self.layer_ahead = on;
        self
    }

    /// Announces the file bytes of `matrices` that products will read.
    fn prefetch<'m>(&self, matrices: impl IntoIterator<Item = &'m Matrix>) {
        for m in matrices.into_iter().filter(|m| m.reads_file()) {
            self.bytes.advise(m.t.offset, m.t.len, Residency::WillNeed);
        }
    }
}

impl WeightFeed for SliceFeed<'_> {
    fn whole(&self, t: &TensorRef) -> Option<&[u8]> {
        // With a resident cap, matrices go out in released slices (see `rows`).
        match self.release_chunk {
            Some(_) => None,
            None => Some(&self.file[t.offset..t.offset + t.len]),
        }
    }

    fn max_rows(&self, t: &TensorRef) -> usize {
        match self.release_chunk {
            Some(chunk) => (chunk / t.row_bytes()).clamp(1, t.rows),
            None => t.rows,
        }
    }

    fn rows(&mut self, t: &TensorRef, rows: Range<usize>) -> Result<&[u8], GenerateError> {
        let rb = t.row_bytes();
        let start = t.offset + rows.start * rb;
        let len = rows.len() * rb;
        if self.release_chunk.is_some() {
            if let Some((offset, len)) = self.last.replace((start, len)) {
                self.bytes.advise(offset, len, Residency::DontNeed);
            }
        }
        Ok(&self.file[start..start + len])
    }

    fn release(&mut self, t: &TensorRef, rows: Range<usize>) {
        let rb = t.row_bytes();
        let start = t.offset + rows.start * rb;
        self.bytes
            .advise(start, rows.len() * rb, Residency::DontNeed);
    }

    fn begin_layer(&mut self, layer: usize, tensors: &ModelTensors) {
        if !self.layer_ahead {
            return;
        }
        let layers = &tensors.layers;
        match layers.get(layer + 1) {
            Some(next) => self.prefetch(next.matrices()),
            None => self.prefetch([&tensors.output]),
        }
    }
}

/// Rows read on demand from a [`WeightSource`] into a fixed arena.
pub struct StreamFeed<S: WeightSource> {
    source: S,
    arena: Box<[u8]>,
    bytes_read: u64,
}

/// An arena of `megabytes` (10⁶ bytes) for streaming `model`'s weights through a
/// [`StreamFeed`], allocated without aborting. Refuses NaN, infinite and negative sizes and
/// sizes below the model's largest row ([`crate::model::Model::min_stream_arena`], which
/// every read must fit); a size above the model's tensor bytes is cut to them, since an arena
/// holding the whole model is the most one can use.
pub fn stream_arena(
    model: &crate::model::Model,
    megabytes: f64,
) -> Result<Box<[u8]>, crate::error::SessionError> {
    use crate::error::SessionError;
    let min = model.min_stream_arena();
    if !(megabytes.is_finite() && megabytes >= 0.0) {
        return Err(SessionError::BadStreamArena { given: None, min });
    }
    let most = usize::try_from(model.meta().tensor_bytes)
        .unwrap_or(usize::MAX)
        .max(min);
    // `as` saturates: 1e30 MB becomes usize::MAX, then the model's size.
    let bytes = ((megabytes * 1e6) as usize).min(most);
    if bytes < min {
        return Err(SessionError::BadStreamArena {
            given: Some(bytes),
            min,
        });
    }
    let arena = crate::kv_cache::try_filled(bytes, 0u8).map_err(|_| SessionError::OutOfMemory {
        bytes: bytes as u64,
    })?;
    Ok(arena.into_boxed_slice())
}

impl<S: WeightSource> StreamFeed<S> {
    /// A feed reading from `source` into `arena`, which must hold at least one row of the
    /// widest matrix (see [`crate::model::Model::min_stream_arena`]).
    pub fn new(source: S, arena: Box<[u8]>) -> Self {
        StreamFeed {
            source,
            arena,
            bytes_read: 0,
        }
    }

    /// The arena's size in bytes.
    pub fn arena_len(&self) -> usize {
        self.arena.len()
    }
}

impl<S: WeightSource> WeightFeed for StreamFeed<S> {
    fn max_rows(&self, t: &TensorRef) -> usize {
        (self.arena.len() / t.row_bytes()).clamp(1, t.rows)
    }

    fn rows(&mut self, t: &TensorRef, rows: Range<usize>) -> Result<&[u8], GenerateError> {
        let rb = t.row_bytes();
        let len = rows.len() * rb;
        // `ok_or_else`: the message is built only on failure, so a read allocates nothing.
        let buf = self
            .arena
            .get_mut(..len)
            .ok_or_else(|| GenerateError::WeightRead {
                offset: t.offset as u64,
                message: "the streaming arena is smaller than one row".to_string(),
            })?;
        let offset = (t.offset + rows.start * rb) as u64;
        self.source
            .read_at(offset, buf)
            .map_err(|e| GenerateError::WeightRead {
                offset,
                message: e.message,
            })?;
        self.bytes_read += len as u64;
        Ok(&self.arena[..len])
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_read
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    //! What [`SliceFeed`] announces, on the small TQ2_0 BitNet model of
    //! `tests/reference/make_bitnet_models.py` (a missing one fails the test).

    extern crate std;

    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use std::path::PathBuf;
    use std::sync::Mutex;

    use tern_kernels::Kernels;

    use super::*;
    use crate::model::Model;
    use crate::ternary::TernaryKernel;

    /// A file's bytes that record every `advise` call.
    struct Recorder {
        bytes: Vec<u8>,
        calls: Arc<Mutex<Vec<(usize, usize, Residency)>>>,
    }

    impl WeightBytes for Recorder {
        fn bytes(&self) -> &[u8] {
            &self.bytes
        }

        fn advise(&self, offset: usize, len: usize, residency: Residency) {
            self.calls.lock().unwrap().push((offset, len, residency));
        }
    }

    /// The next layer's matrices are announced when their products read the file, and left
    /// out when their representation was built at load (LUT): those bytes were released.
    #[test]
    fn the_next_layer_is_announced_unless_repacked() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/bitnet_small_tq2_0.gguf");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run tests/reference/make_bitnet_models.sh)",
                path.display()
            )
        });
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            bytes,
            calls: calls.clone(),
        };
        let mut m = Model::from_bytes(alloc::boxed::Box::new(recorder), Kernels::best())
            .expect("model loads");
        for (kernel, announced) in [(TernaryKernel::Mad, 7), (TernaryKernel::Lut, 0)] {
            m.set_ternary_kernel(kernel);
            calls.lock().unwrap().clear();
            let mut feed = SliceFeed::new(m.weight_bytes().expect("bytes"), None);
            feed.begin_layer(0, m.tensors());
            let got = calls.lock().unwrap().clone();
            let next: Vec<(usize, usize, Residency)> = m.tensors().layers[1]
                .matrices()
                .iter()
                .map(|w| (w.t.offset, w.t.len, Residency::WillNeed))
                .collect();
            assert_eq!(got.len(), announced, "{kernel:?}: {got:?}");
            assert!(got.iter().all(|c| next.contains(c)), "{kernel:?}: {got:?}");
        }
    }
}
