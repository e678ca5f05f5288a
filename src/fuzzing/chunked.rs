//! The `chunked_body` target: [`ChunkedDecoder`] on arbitrary bytes, whole and in small reads,
//! judged against an independent reading of RFC 9112 §7.1 over the whole input.

use super::Input;
use crate::proto::chunked::{
    ChunkedDecoder, ChunkedError, ChunkedLimits, DEFAULT_CHUNK_FRAMING_ALLOWANCE, Decoded,
};

/// What a decoder made of a whole input.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Done { data: Vec<u8>, end: usize },
    NeedMore { data: Vec<u8> },
    Failed { data: Vec<u8>, error: ChunkedError },
}

/// A chunked body read whole, in reads of 1–64 bytes and one byte at a time gives the same
/// data, end and error; the decoded data stays within the body limit; the decoder accepts the
/// input exactly when the model ([`model`]) finds a complete body within the limits, with the
/// same data and the same end.
///
/// Byte 0: bits 0–1 the limits (the server's defaults with a 1 MiB body; then small bounds
/// so that each one is reached by short inputs), bits 2–7 the read size − 1. The rest: the
/// bytes after a request head with `Transfer-Encoding: chunked`.
pub fn chunked_body(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.byte();
    let limits = match setup & 3 {
        0 => ChunkedLimits::new(1_048_576),
        1 => ChunkedLimits {
            max_body: 64,
            max_line: 16,
            max_framing: 48,
            max_trailer: 24,
        },
        2 => ChunkedLimits::new(8),
        _ => ChunkedLimits {
            max_body: u64::MAX,
            max_line: 40,
            max_framing: 100,
            max_trailer: 10,
        },
    };
    let read = usize::from(setup >> 2) + 1;
    let stream = input.rest();
    let whole = feed(stream, limits, stream.len().max(1));
    assert_eq!(feed(stream, limits, read), whole, "reads of {read} bytes");
    assert_eq!(feed(stream, limits, 1), whole, "one-byte reads");
    let data = match &whole {
        Outcome::Done { data, end } => {
            assert!(*end <= stream.len());
            data
        }
        Outcome::NeedMore { data } | Outcome::Failed { data, .. } => data,
    };
    assert!(data.len() as u64 <= limits.max_body);
    match (&whole, model(stream, &limits)) {
        (Outcome::Done { data, end }, Some((d, e))) => {
            assert_eq!((data, *end), (&d, e), "the model reads another body");
        }
        (Outcome::Done { .. }, None) => panic!("accepted a body the model refuses"),
        (_, Some(_)) => panic!("refused a body the model accepts: {whole:?}"),
        (_, None) => {}
    }
}

/// The decoder on `stream` in reads of `read` bytes, each appended to a buffer the decoder is
/// given whole, as a connection does.
fn feed(stream: &[u8], limits: ChunkedLimits, read: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut data = Vec::new();
    let mut buffer = Vec::new();
    let mut used = 0;
    for piece in stream.chunks(read) {
        buffer.extend_from_slice(piece);
        match decoder.decode(&buffer, &mut |d| data.extend_from_slice(d)) {
            Ok(Decoded::NeedMore) => {
                used += buffer.len();
                buffer.clear();
            }
            Ok(Decoded::Done(n)) => {
                assert!(
                    n > 0 && n <= buffer.len(),
                    "done at {n} of {}",
                    buffer.len()
                );
                return Outcome::Done {
                    data,
                    end: used + n,
                };
            }
            Err(error) => return Outcome::Failed { data, error },
        }
    }
    Outcome::NeedMore { data }
}

/// RFC 9112 §7.1 read line by line over the whole input, with the bounds of spec/README.md §3
/// applied afterwards: the body's data and the bytes it takes, or `None` when the input holds
/// no complete valid body within the limits.
fn model(input: &[u8], limits: &ChunkedLimits) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut data = Vec::new();
    let mut framing: u64 = 0;
    let counted = |framing: u64, add: u64| {
        let sum = framing + add;
        (sum <= limits.max_framing).then_some(sum)
    };
    loop {
        let line = crlf_line(input, at)?;
        let size = size_line(line)?;
        if line.len() > limits.max_line
            || (data.len() as u64).saturating_add(size) > limits.max_body
        {
            return None;
        }
        framing = counted(framing, line.len() as u64 + 2)?;
        framing = framing
            .saturating_sub(DEFAULT_CHUNK_FRAMING_ALLOWANCE.saturating_add(size.saturating_mul(2)));
        at += line.len() + 2;
        if size == 0 {
            break;
        }
        let size = usize::try_from(size).ok()?;
        let chunk = input.get(at..at.checked_add(size)?)?;
        data.extend_from_slice(chunk);
        at += size;
        if input.get(at..at + 2)? != b"\r\n" {
            return None;
        }
        framing = counted(framing, 2)?;
        at += 2;
    }
    let trailer_start = at;
    loop {
        let line = crlf_line(input, at)?;
        at += line.len() + 2;
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| tchar(b)) || !value.iter().all(|&b| text(b)) {
            return None;
        }
    }
    (at - trailer_start <= limits.max_trailer).then_some((data, at))
}

/// The bytes from `at` to the next CRLF, which must be the first CR or LF there.
fn crlf_line(input: &[u8], at: usize) -> Option<&[u8]> {
    let rest = input.get(at..)?;
    let end = rest.iter().position(|&b| b == b'\r' || b == b'\n')?;
    (rest.get(end..end + 2)? == b"\r\n").then_some(&rest[..end])
}

/// The size of a chunk-size line whose extensions are well formed.
fn size_line(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        let d = char::from(b).to_digit(16)?;
        size = size.checked_mul(16)?.checked_add(u64::from(d))?;
    }
    let mut rest = &line[digits..];
    loop {
        rest = skip_ws(rest);
        match rest.split_first() {
            None => return Some(size),
            Some((b';', after)) => rest = extension(skip_ws(after))?,
            Some(_) => return None,
        }
    }
}

/// `name [ BWS "=" BWS value ]`; the bytes after it.
fn extension(s: &[u8]) -> Option<&[u8]> {
    let name = s.iter().take_while(|&&b| tchar(b)).count();
    if name == 0 {
        return None;
    }
    let after = skip_ws(&s[name..]);
    let Some((b'=', value)) = after.split_first() else {
        return Some(&s[name..]);
    };
    let value = skip_ws(value);
    if let Some((b'"', mut q)) = value.split_first() {
        loop {
            match q.split_first()? {
                (b'"', after) => return Some(after),
                (b'\\', [c, after @ ..]) if text(*c) => q = after,
                (c, after) if text(*c) && *c != b'\\' => q = after,
                _ => return None,
            }
        }
    }
    let token = value.iter().take_while(|&&b| tchar(b)).count();
    (token > 0).then_some(&value[token..])
}

fn skip_ws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// RFC 9110 §5.6.2, written out.
fn tchar(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Field-value and quoted-string text: HTAB, SP, VCHAR, obs-text.
fn text(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}
