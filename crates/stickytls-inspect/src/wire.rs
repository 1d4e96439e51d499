//! The nom vocabulary every wire parser here is written in, and the error
//! they share.
//!
//! A handshake message reaches a parser only once it is whole, so every
//! parser runs on complete input: a length that runs past the end of its
//! container is an error (`complete`), never a request for more bytes.
//! Length-prefixed vectors are [`vec8`] and [`vec16`] (`length_data`), and
//! a structure that must fill its container says so with [`empty`], the
//! explicit check that nothing trails it.
#![deny(clippy::indexing_slicing)]

use nom::IResult;
use nom::combinator::complete;
use nom::error::{ErrorKind, ParseError};
use nom::multi::length_data;
use nom::number::complete::{be_u8, be_u16};

use super::InspectError;

/// Where a parse failed (the input left at the failing read, a suffix of
/// some field of the message) and what was wrong. Two words and a
/// `&'static str`, so failing costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WireError<'a> {
    pub(crate) at: &'a [u8],
    /// Empty until a [`ctx`] names the field; the innermost name wins.
    pub(crate) what: &'static str,
}

impl<'a> ParseError<&'a [u8]> for WireError<'a> {
    fn from_error_kind(input: &'a [u8], _kind: ErrorKind) -> Self {
        WireError {
            at: input,
            what: "",
        }
    }

    fn append(_input: &'a [u8], _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

/// A parser's result over a byte slice, failing with a [`WireError`].
pub(crate) type PResult<'a, O> = IResult<&'a [u8], O, WireError<'a>>;

/// Runs `p`, naming its failure `what` unless a parser inside it already
/// named it more precisely.
pub(crate) fn ctx<'a, O>(
    what: &'static str,
    mut p: impl FnMut(&'a [u8]) -> PResult<'a, O>,
) -> impl FnMut(&'a [u8]) -> PResult<'a, O> {
    move |i| {
        p(i).map_err(|e| {
            e.map(|mut err| {
                if err.what.is_empty() {
                    err.what = what;
                }
                err
            })
        })
    }
}

/// A failure at `at` (a slice of the message being parsed).
pub(crate) fn fail<'a, T>(at: &'a [u8], what: &'static str) -> Result<T, nom::Err<WireError<'a>>> {
    Err(nom::Err::Error(WireError { at, what }))
}

/// Fails with `what` unless `rest` is empty: the explicit check that
/// nothing trails a structure that must fill its container.
pub(crate) fn empty<'a>(rest: &'a [u8], what: &'static str) -> Result<(), nom::Err<WireError<'a>>> {
    if rest.is_empty() {
        Ok(())
    } else {
        fail(rest, what)
    }
}

/// `opaque field<0..2^8-1>`: the contents of a vector with a one-byte
/// length, which must be there in full.
pub(crate) fn vec8<'a>(what: &'static str) -> impl FnMut(&'a [u8]) -> PResult<'a, &'a [u8]> {
    ctx(what, complete(length_data(be_u8)))
}

/// `opaque field<0..2^16-1>`: the contents of a vector with a two-byte
/// length, which must be there in full.
pub(crate) fn vec16<'a>(what: &'static str) -> impl FnMut(&'a [u8]) -> PResult<'a, &'a [u8]> {
    ctx(what, complete(length_data(be_u16)))
}

/// Where `field`, a slice of `msg`, starts in it. Parsers hand out
/// sub-slices, never copies, so the distance between the two pointers is
/// the position; the clamp keeps a slice from elsewhere from producing
/// nonsense instead of wrapping.
pub(crate) fn offset_in(msg: &[u8], field: &[u8]) -> usize {
    (field.as_ptr() as usize)
        .wrapping_sub(msg.as_ptr() as usize)
        .min(msg.len())
}

/// Turns a parse failure into an [`InspectError`] whose offset counts
/// from the start of `msg`, the message the failing slice lies in.
pub(crate) fn error_in(msg: &[u8], e: nom::Err<WireError<'_>>) -> InspectError {
    let (at, what) = match e {
        nom::Err::Error(w) | nom::Err::Failure(w) => (Some(w.at), w.what),
        // Every parser runs under `complete`; an Incomplete escaping one
        // would be our bug, reported at the end of the message.
        nom::Err::Incomplete(_) => (None, ""),
    };
    let offset = at.map_or(msg.len(), |at| offset_in(msg, at));
    InspectError {
        offset: offset as u64,
        what: if what.is_empty() {
            "malformed handshake message"
        } else {
            what
        },
        kind: super::ErrorKind::Malformed,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a panic is a failed test
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_errors_at_the_read_that_failed() {
        let msg = [1u8, 2, 3];
        let (rest, v) = ctx("a", be_u16)(&msg).unwrap();
        assert_eq!(v, 0x0102);
        let e = error_in(&msg, ctx("short", be_u16)(rest).unwrap_err());
        assert_eq!((e.offset, e.what), (2, "short"));
        let (rest, b) = ctx("b", be_u8)(rest).unwrap();
        assert_eq!(b, 3);
        assert!(empty(rest, "trailing").is_ok());
    }

    #[test]
    fn a_vector_is_bounded_by_its_length_and_errors_inside_it_count_from_the_message() {
        let msg = [9u8, 2, 0xaa, 0xbb, 0xcc];
        let (rest, _) = be_u8::<_, WireError<'_>>(&msg[..]).unwrap();
        let (rest, v) = vec8("sub")(rest).unwrap();
        assert_eq!(v, &[0xaa, 0xbb]);
        let e = error_in(
            &msg,
            ctx("past sub", be_u8)(v.get(2..).unwrap()).unwrap_err(),
        );
        assert_eq!(e.offset, 4);
        assert_eq!(rest, &[0xcc]);
        let e = error_in(&msg, empty(rest, "trailing").unwrap_err());
        assert_eq!((e.offset, e.what), (4, "trailing"));
    }

    #[test]
    fn a_length_longer_than_the_data_is_an_error_at_the_length() {
        let msg = [0u8, 5, 1];
        let e = error_in(&msg, vec16("len")(&msg).unwrap_err());
        assert_eq!((e.offset, e.what), (0, "len"));
    }

    #[test]
    fn the_innermost_name_wins() {
        let msg = [0u8];
        let e = error_in(&msg, ctx("outer", ctx("inner", be_u16))(&msg).unwrap_err());
        assert_eq!(e.what, "inner");
    }
}
