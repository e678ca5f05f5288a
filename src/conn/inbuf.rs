//! A connection's input buffer: bytes read and not yet consumed by a parser.
//!
//! Consuming only moves a start offset, so a read that brings many pipelined requests costs one
//! copy of each byte, not one shift of the rest per request. The unconsumed bytes move to the
//! front only when they are no more than the consumed part (amortized: each byte moves at most
//! once per time the buffer's length doubles). An empty buffer holds no memory once released.

use std::ops::Deref;

/// Input bytes with a consumed prefix that is skipped, not shifted.
#[derive(Debug, Default)]
pub struct InBuf {
    buf: Vec<u8>,
    start: usize,
}

impl InBuf {
    /// Appends bytes read from the peer.
    pub fn extend(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() - self.start {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The first `n` unconsumed bytes were used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Drops every unconsumed byte, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Drops every unconsumed byte and frees the memory (idle connections hold none).
    pub fn release(&mut self) {
        *self = Self::default();
    }

    /// Frees the memory if nothing is left to consume.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && self.buf.capacity() > 0 {
            self.release();
        }
    }
}

impl Deref for InBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_skips_and_extend_compacts() {
        let mut b = InBuf::default();
        b.extend(b"abcdef");
        b.consume(2);
        assert_eq!(&*b, b"cdef");
        // Four left, two consumed: no move yet.
        b.extend(b"gh");
        assert_eq!(&*b, b"cdefgh");
        b.consume(4);
        assert_eq!(&*b, b"gh");
        // Six consumed, two left: moved to the front before appending.
        b.extend(b"ij");
        assert_eq!(&*b, b"ghij");
        assert_eq!(b.start, 0);
        b.consume(10);
        assert!(b.is_empty());
        b.release_if_empty();
        assert_eq!(b.buf.capacity(), 0);
    }

    #[test]
    fn consuming_everything_resets() {
        let mut b = InBuf::default();
        b.extend(b"xyz");
        b.consume(3);
        assert!(b.is_empty());
        assert_eq!(b.start, 0);
        b.extend(b"1");
        assert_eq!(&*b, b"1");
        b.clear();
        assert!(b.is_empty());
    }
}
