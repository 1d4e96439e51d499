//! A bounds-checked cursor over a byte slice. Every read checks that the
//! bytes are really there; a length-prefixed field becomes a sub-reader so
//! its contents can never run past its own length.
#![deny(clippy::indexing_slicing)]

use super::InspectError;

/// A cursor over `buf`; `base` is the offset of `buf[0]` in whatever the
/// caller reports errors against (the handshake message body).
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Offset of the next byte, relative to the outermost reader.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn err(&self, what: &'static str) -> InspectError {
        InspectError {
            offset: self.offset() as u64,
            what,
            kind: super::ErrorKind::Malformed,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes, or `what` as the error when fewer are left.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], InspectError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err(what))?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| self.err(what))?;
        self.pos = end;
        Ok(out)
    }

    /// Everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, InspectError> {
        match self.take(1, what)? {
            [a] => Ok(*a),
            _ => Err(self.err(what)),
        }
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, InspectError> {
        match self.take(2, what)? {
            [a, b] => Ok(u16::from_be_bytes([*a, *b])),
            _ => Err(self.err(what)),
        }
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, InspectError> {
        match self.take(4, what)? {
            [a, b, c, d] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(self.err(what)),
        }
    }

    fn sub_of(&mut self, len: usize, what: &'static str) -> Result<Reader<'a>, InspectError> {
        let base = self.offset();
        let buf = self.take(len, what)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// A field with a one-byte length prefix, as a reader of its own.
    pub(crate) fn sub_u8(&mut self, what: &'static str) -> Result<Reader<'a>, InspectError> {
        let len = self.u8(what)?;
        self.sub_of(usize::from(len), what)
    }

    /// A field with a two-byte length prefix, as a reader of its own.
    pub(crate) fn sub_u16(&mut self, what: &'static str) -> Result<Reader<'a>, InspectError> {
        let len = self.u16(what)?;
        self.sub_of(usize::from(len), what)
    }

    /// The bytes of this reader not yet consumed, without consuming them.
    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Fails with `what` unless every byte was consumed.
    pub(crate) fn expect_empty(&self, what: &'static str) -> Result<(), InspectError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors_with_the_offset() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        let e = r.u16("short").unwrap_err();
        assert_eq!((e.offset, e.what), (2, "short"));
        assert_eq!(r.u8("b").unwrap(), 3);
        assert!(r.expect_empty("trailing").is_ok());
    }

    #[test]
    fn sub_reader_is_bounded_by_its_length_prefix_and_reports_outer_offsets() {
        let mut r = Reader::new(&[9, 2, 0xaa, 0xbb, 0xcc]);
        r.u8("x").unwrap();
        let mut s = r.sub_u8("sub").unwrap();
        assert_eq!(s.take(2, "t").unwrap(), &[0xaa, 0xbb]);
        let e = s.u8("past sub").unwrap_err();
        assert_eq!(e.offset, 4);
        assert_eq!(r.left(), 1);
        assert!(r.expect_empty("trailing").is_err());
    }

    #[test]
    fn length_prefix_longer_than_the_data_is_an_error() {
        let mut r = Reader::new(&[0, 5, 1]);
        assert!(r.sub_u16("len").is_err());
    }
}
