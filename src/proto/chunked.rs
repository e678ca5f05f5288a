//! Sans-IO decoder of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! [`ChunkedDecoder::decode`] takes the bytes received so far and passes the decoded body bytes
//! to a sink, borrowed from the input. It answers [`Decoded::NeedMore`] when it used all of
//! them (nothing is ever left for a later call: the decoder keeps only counters, no bytes),
//! [`Decoded::Done`] with the length of the body's framing once the last chunk and the trailer
//! section are read (the bytes after it belong to the next request), or a [`ChunkedError`] that
//! maps to the status to answer with. Each byte is looked at once, so a body cut into any reads
//! costs the same, and memory is the sink's alone.
//!
//! Grammar (RFC 9112 §7.1, strict line endings):
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF     chunk-size = 1*HEXDIG
//! last-chunk   = 1*"0" [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) BWS
//! trailer-section = *( field-name ":" field-value CRLF )
//! ```
//!
//! Every line ends with CRLF; a bare LF, or a CR without LF, is an error (RFC 9112 §7.1 writes
//! CRLF, and lenient chunk parsing is a known request-smuggling vector). Extensions and trailer
//! fields are checked for syntax and dropped. Whitespace before the CR of a chunk-size line is
//! accepted (`BWS`). The bounds, checked as bytes arrive:
//!
//! * the running total of chunk sizes, against [`ChunkedLimits::max_body`], as soon as the
//!   digits of a chunk size end: an oversized body is refused before any of its data;
//! * one chunk-size line (size and extensions, without CRLF), [`DEFAULT_MAX_CHUNK_LINE`];
//! * framing bytes (chunk-size lines with their CRLF, the CRLF after the data) beyond an
//!   allowance of [`DEFAULT_CHUNK_FRAMING_ALLOWANCE`] plus twice the data of each chunk,
//!   [`DEFAULT_MAX_CHUNK_FRAMING`] (the rule of Go's `net/http`): many tiny chunks with long
//!   extensions cannot turn a bounded body into an unbounded stream;
//! * the trailer section with its final CRLF, [`DEFAULT_MAX_TRAILER_BYTES`].
//!
//! ```text
//!   SizeStart ─hex─▶ Size ─┬─ CR ─────────────────────────────▶ LineLf ─LF─┬─ size>0 ─▶ Data
//!                          ├─ SP/HT ─▶ SizeBws ─┬─ CR ─▶ LineLf            │            │
//!                          └─ ";" ──────────────┴─▶ ExtNameStart ─▶ … ─CR─▶ LineLf     (size bytes)
//!                                                                          │            ▼
//!                                                                          │   DataCr ─CR─▶ DataLf ─LF─▶ SizeStart
//!                                                                          └─ size=0 ─▶ TrailerStart
//!   TrailerStart ─┬─ CR ─▶ FinalLf ─LF─▶ Done
//!                 └─ tchar ─▶ TrailerName ─":"─▶ TrailerValue ─CR─▶ TrailerLf ─LF─▶ TrailerStart
//! ```

use std::fmt;

/// Default limit on one chunk-size line: the size, its extensions and any whitespace, without
/// the CRLF.
///
/// Senders write a few hex digits and almost never an extension; 4 KiB leaves room for
/// extensions nobody sends while keeping the work and the framing a line can cost small.
pub const DEFAULT_MAX_CHUNK_LINE: usize = 4 * 1024;

/// Default limit on the framing bytes of a chunked body beyond its allowance (see
/// [`DEFAULT_CHUNK_FRAMING_ALLOWANCE`]).
///
/// Each chunk may bring [`DEFAULT_CHUNK_FRAMING_ALLOWANCE`] framing bytes plus twice its data
/// without counting; only what goes beyond is summed and may reach 16 KiB. Ordinary senders
/// (a few digits and two CRLFs per chunk, even one-byte chunks) never count a byte, while a peer
/// sending tiny chunks with long extensions is refused after a few of them. The rule and its
/// numbers are those of Go's `net/http` (CVE-2023-39326).
pub const DEFAULT_MAX_CHUNK_FRAMING: u64 = 16 * 1024;

/// Framing bytes each chunk may bring without counting towards [`DEFAULT_MAX_CHUNK_FRAMING`],
/// besides twice its data: a chunk whose size is written in at most 12 digits, without an
/// extension, never counts a byte (Go's `net/http` allows the same 16).
pub const DEFAULT_CHUNK_FRAMING_ALLOWANCE: u64 = 16;

/// Default limit on the trailer section of a chunked body, its final CRLF included: the
/// request-head limit ([`DEFAULT_MAX_HEAD_BYTES`](super::http::DEFAULT_MAX_HEAD_BYTES)), since
/// trailer fields are header fields sent late. They are read and dropped.
pub const DEFAULT_MAX_TRAILER_BYTES: usize = super::http::DEFAULT_MAX_HEAD_BYTES;

/// Limits of one chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedLimits {
    /// Most decoded body bytes (the server passes `max_payload`).
    pub max_body: u64,
    /// Most bytes of one chunk-size line, CRLF excluded.
    pub max_line: usize,
    /// Most counted framing bytes (beyond each chunk's allowance).
    pub max_framing: u64,
    /// Most bytes of the trailer section, final CRLF included.
    pub max_trailer: usize,
}

impl ChunkedLimits {
    /// The default bounds with a body limit of `max_body` bytes.
    pub fn new(max_body: u64) -> Self {
        Self {
            max_body,
            max_line: DEFAULT_MAX_CHUNK_LINE,
            max_framing: DEFAULT_MAX_CHUNK_FRAMING,
            max_trailer: DEFAULT_MAX_TRAILER_BYTES,
        }
    }
}

/// A chunked body that cannot be read; [`ChunkedError::status`] is the status to answer with.
/// The connection must close: the rest of the input can no longer be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkedError {
    /// A chunk size without hex digits, with a byte that is not a hex digit where one must be
    /// (`-1`, `0x5`, `1 0`), or beyond 64 bits (400).
    BadSize,
    /// Bad extension syntax, a line not ended by CRLF, data not followed by CRLF, or a bad
    /// trailer field (400).
    Malformed,
    /// A chunk-size line longer than [`ChunkedLimits::max_line`] (400).
    LineTooLong,
    /// More framing than [`ChunkedLimits::max_framing`] allows (400).
    TooMuchFraming,
    /// A trailer section larger than [`ChunkedLimits::max_trailer`] (431).
    TrailerTooLarge,
    /// The chunk sizes add up to more than [`ChunkedLimits::max_body`] (413).
    TooLarge,
}

impl ChunkedError {
    /// HTTP status code to answer with.
    pub fn status(self) -> u16 {
        match self {
            Self::BadSize | Self::Malformed | Self::LineTooLong | Self::TooMuchFraming => 400,
            Self::TrailerTooLarge => 431,
            Self::TooLarge => 413,
        }
    }

    /// Short English sentence describing the error.
    pub fn reason(self) -> &'static str {
        match self {
            Self::BadSize => "Chunk size is not a valid hex number.",
            Self::Malformed => "Chunked body is malformed.",
            Self::LineTooLong => "Chunk size line is too long.",
            Self::TooMuchFraming => "Chunked body has too much framing for its data.",
            Self::TrailerTooLarge => "Trailer section is too large.",
            Self::TooLarge => "Payload Too Large.",
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ChunkedError {}

/// What [`ChunkedDecoder::decode`] made of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Every input byte was used; the body goes on.
    NeedMore,
    /// The body ended after this many input bytes (the final CRLF included).
    Done(usize),
}

/// Where the decoder is in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    // call: decode (first byte of a chunk-size line)
    // next: Size
    SizeStart,
    // call: decode (hex digits)
    // next: Size, SizeBws, ExtNameStart, LineLf
    Size,
    // call: decode (whitespace after the size)
    // next: ExtNameStart, LineLf
    SizeBws,
    // call: decode (after ";": whitespace, then the name)
    // next: ExtName
    ExtNameStart,
    // call: decode (name characters)
    // next: ExtNameBws, ExtValueStart, ExtNameStart, LineLf
    ExtName,
    // call: decode (whitespace after a name)
    // next: ExtValueStart, ExtNameStart, LineLf
    ExtNameBws,
    // call: decode (after "=": whitespace, then a token or a quote)
    // next: ExtToken, ExtQuoted
    ExtValueStart,
    // call: decode (token characters)
    // next: ExtValueEnd, ExtNameStart, LineLf
    ExtToken,
    // call: decode (inside a quoted string)
    // next: ExtQuotedPair, ExtValueEnd
    ExtQuoted,
    // call: decode (the byte after a backslash)
    // next: ExtQuoted
    ExtQuotedPair,
    // call: decode (after a value: whitespace, ";" or CR)
    // next: ExtNameStart, LineLf
    ExtValueEnd,
    // call: decode (the LF of a chunk-size line)
    // next: Data, TrailerStart
    LineLf,
    // call: decode (chunk data; `size` bytes remain)
    // next: DataCr
    Data,
    // call: decode (the CR after the data)
    // next: DataLf
    DataCr,
    // call: decode (the LF after the data)
    // next: SizeStart
    DataLf,
    // call: decode (a trailer field line or the final CRLF)
    // next: TrailerName, FinalLf
    TrailerStart,
    // call: decode (field name)
    // next: TrailerValue
    TrailerName,
    // call: decode (field value)
    // next: TrailerLf
    TrailerValue,
    // call: decode (the LF of a trailer field line)
    // next: TrailerStart
    TrailerLf,
    // call: decode (the final LF)
    // next: Done
    FinalLf,
    // call: decode (answers Done(0))
    // next: –
    Done,
}

/// Decoder of one chunked body; a new one for each request.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    limits: ChunkedLimits,
    state: State,
    /// The size being read, then the data left in the chunk.
    size: u64,
    /// Sum of the chunk sizes so far.
    total: u64,
    /// Bytes of the current chunk-size line.
    line: usize,
    /// Counted framing bytes (beyond the allowances).
    framing: u64,
    /// Bytes of the trailer section so far.
    trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new(limits: ChunkedLimits) -> Self {
        Self {
            limits,
            state: State::SizeStart,
            size: 0,
            total: 0,
            line: 0,
            framing: 0,
            trailer: 0,
        }
    }

    /// Decodes `input`, the bytes after those already given, passing body bytes to `sink` in
    /// order. After an error the decoder must not be used again.
    pub fn decode(
        &mut self,
        input: &[u8],
        sink: &mut impl FnMut(&[u8]),
    ) -> Result<Decoded, ChunkedError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => return Ok(Decoded::Done(i)),
                State::Data => {
                    let left = input.len() - i;
                    let n = usize::try_from(self.size).map_or(left, |s| s.min(left));
                    sink(&input[i..i + n]);
                    i += n;
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    self.byte(input[i])?;
                    i += 1;
                    if self.state == State::Done {
                        return Ok(Decoded::Done(i));
                    }
                }
            }
        }
        Ok(match self.state {
            State::Done => Decoded::Done(i),
            _ => Decoded::NeedMore,
        })
    }

    /// One framing byte.
    fn byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        use State::*;
        match self.state {
            SizeStart | Size | SizeBws | ExtNameStart | ExtName | ExtNameBws | ExtValueStart
            | ExtToken | ExtQuoted | ExtQuotedPair | ExtValueEnd => {
                self.count_framing()?;
                if b != b'\r' {
                    self.line += 1;
                    if self.line > self.limits.max_line {
                        return Err(ChunkedError::LineTooLong);
                    }
                }
                self.line_byte(b)
            }
            LineLf => {
                self.count_framing()?;
                if b != b'\n' {
                    return Err(ChunkedError::Malformed);
                }
                self.line_done();
                Ok(())
            }
            DataCr | DataLf => {
                self.count_framing()?;
                match (self.state, b) {
                    (DataCr, b'\r') => self.state = DataLf,
                    (DataLf, b'\n') => self.state = SizeStart,
                    _ => return Err(ChunkedError::Malformed),
                }
                Ok(())
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | FinalLf => {
                self.trailer += 1;
                if self.trailer > self.limits.max_trailer {
                    return Err(ChunkedError::TrailerTooLarge);
                }
                self.state = match (self.state, b) {
                    (TrailerStart, b'\r') => FinalLf,
                    (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
                    (TrailerName, b':') => TrailerValue,
                    (TrailerValue, b'\r') => TrailerLf,
                    (TrailerValue, _) if is_field_text(b) => TrailerValue,
                    (TrailerLf, b'\n') => TrailerStart,
                    (FinalLf, b'\n') => Done,
                    _ => return Err(ChunkedError::Malformed),
                };
                Ok(())
            }
            // `decode` handles these without calling here.
            Data | Done => Ok(()),
        }
    }

    /// One byte of a chunk-size line, CR included (already counted).
    fn line_byte(&mut self, b: u8) -> Result<(), ChunkedError> {
        use State::*;
        let ws = b == b' ' || b == b'\t';
        self.state = match self.state {
            SizeStart | Size => match hex_value(b) {
                Some(d) => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|v| v.checked_add(u64::from(d)))
                        .ok_or(ChunkedError::BadSize)?;
                    Size
                }
                None if self.state == SizeStart => return Err(ChunkedError::BadSize),
                None => {
                    self.size_done()?;
                    match b {
                        b'\r' => LineLf,
                        b';' => ExtNameStart,
                        b'\n' => return Err(ChunkedError::Malformed),
                        _ if ws => SizeBws,
                        _ => return Err(ChunkedError::BadSize),
                    }
                }
            },
            SizeBws => match b {
                b'\r' => LineLf,
                b';' => ExtNameStart,
                _ if ws => SizeBws,
                _ if hex_value(b).is_some() => return Err(ChunkedError::BadSize),
                _ => return Err(ChunkedError::Malformed),
            },
            ExtNameStart if ws => ExtNameStart,
            ExtNameStart | ExtName if is_tchar(b) => ExtName,
            ExtName | ExtNameBws => match b {
                b'\r' => LineLf,
                b';' => ExtNameStart,
                b'=' => ExtValueStart,
                _ if ws => ExtNameBws,
                _ => return Err(ChunkedError::Malformed),
            },
            ExtValueStart if ws => ExtValueStart,
            ExtValueStart if b == b'"' => ExtQuoted,
            ExtValueStart | ExtToken if is_tchar(b) => ExtToken,
            ExtQuoted => match b {
                b'"' => ExtValueEnd,
                b'\\' => ExtQuotedPair,
                _ if is_field_text(b) => ExtQuoted,
                _ => return Err(ChunkedError::Malformed),
            },
            ExtQuotedPair if is_field_text(b) => ExtQuoted,
            ExtToken | ExtValueEnd => match b {
                b'\r' => LineLf,
                b';' => ExtNameStart,
                _ if ws => ExtValueEnd,
                _ => return Err(ChunkedError::Malformed),
            },
            _ => return Err(ChunkedError::Malformed),
        };
        Ok(())
    }

    /// The digits of a chunk size ended: the running total is checked before any data.
    fn size_done(&mut self) -> Result<(), ChunkedError> {
        match self.total.checked_add(self.size) {
            Some(total) if total <= self.limits.max_body => {
                self.total = total;
                Ok(())
            }
            _ => Err(ChunkedError::TooLarge),
        }
    }

    /// The LF of a chunk-size line: data follows, or the trailer section after the last chunk.
    fn line_done(&mut self) {
        let credit = DEFAULT_CHUNK_FRAMING_ALLOWANCE.saturating_add(self.size.saturating_mul(2));
        self.framing = self.framing.saturating_sub(credit);
        self.line = 0;
        self.state = if self.size == 0 {
            State::TrailerStart
        } else {
            State::Data
        };
    }

    fn count_framing(&mut self) -> Result<(), ChunkedError> {
        self.framing += 1;
        if self.framing > self.limits.max_framing {
            return Err(ChunkedError::TooMuchFraming);
        }
        Ok(())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, visible ASCII and obs-text: what a field value, a quoted string's text (besides
/// `"` and `\`, handled first) and a quoted pair may hold (RFC 9110 §5.5, §5.6.4).
fn is_field_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests;
