//! Unit tests of the parent module (spec/README.md §3 "Bodies", spec/errors.md §1).
use super::*;

/// What a connection makes of a body fed in pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The body ended `end` bytes into the input.
    Done { data: Vec<u8>, end: usize },
    /// The input ended inside the body.
    NeedMore { data: Vec<u8> },
    /// The body was refused after `data` was decoded.
    Failed { data: Vec<u8>, error: ChunkedError },
}

/// Feeds `input` cut at `cuts` the way a connection does: each read is appended to a buffer
/// that the decoder is given whole; what it used is dropped from the buffer.
fn feed(input: &[u8], limits: ChunkedLimits, cuts: &[usize]) -> Outcome {
    let mut decoder = ChunkedDecoder::new(limits);
    let mut data = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut used = 0;
    let mut from = 0;
    for &to in cuts.iter().chain(&[input.len()]) {
        if to < from {
            continue;
        }
        buffer.extend_from_slice(&input[from..to]);
        from = to;
        match decoder.decode(&buffer, &mut |d| data.extend_from_slice(d)) {
            Ok(Decoded::NeedMore) => {
                used += buffer.len();
                buffer.clear();
            }
            Ok(Decoded::Done(n)) => {
                assert!(n <= buffer.len(), "done past the buffer");
                // A finished decoder uses nothing more.
                assert_eq!(
                    decoder.decode(&buffer[n..], &mut |_| panic!("data after done")),
                    Ok(Decoded::Done(0))
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

/// The outcome of `input` whole, checked to be the same for every cut into two reads and for
/// one-byte reads; a proper prefix needs more bytes or already fails the same way.
fn decode_split_with(input: &[u8], limits: ChunkedLimits) -> Outcome {
    let whole = feed(input, limits, &[]);
    let bytewise: Vec<usize> = (1..input.len()).collect();
    assert_eq!(feed(input, limits, &bytewise), whole, "one-byte reads");
    for cut in 0..input.len() {
        assert_eq!(feed(input, limits, &[cut]), whole, "cut {cut}");
        match (feed(&input[..cut], limits, &[]), &whole) {
            (Outcome::NeedMore { .. }, _) => {}
            (Outcome::Done { data, end }, Outcome::Done { data: d, end: e }) => {
                assert_eq!((&data, end), (d, *e), "prefix {cut}")
            }
            (Outcome::Failed { error, .. }, Outcome::Failed { error: e, .. }) => {
                assert_eq!(error, *e, "prefix {cut}")
            }
            (prefix, _) => panic!("prefix {cut}: {prefix:?}, whole: {whole:?}"),
        }
    }
    whole
}

fn limits() -> ChunkedLimits {
    ChunkedLimits::new(1_048_576)
}

fn decode_split(input: &[u8]) -> Outcome {
    decode_split_with(input, limits())
}

/// The body of a complete valid input, which must end exactly at its end.
fn body(input: impl AsRef<[u8]>) -> Vec<u8> {
    let input = input.as_ref();
    match decode_split(input) {
        Outcome::Done { data, end } => {
            assert_eq!(end, input.len(), "{:?}", String::from_utf8_lossy(input));
            data
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn error_with(input: impl AsRef<[u8]>, limits: ChunkedLimits) -> ChunkedError {
    let input = input.as_ref();
    match decode_split_with(input, limits) {
        Outcome::Failed { error, .. } => error,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn error(input: impl AsRef<[u8]>) -> ChunkedError {
    error_with(input, limits())
}

#[test]
fn valid_bodies_at_every_split() {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz";
    for (input, expected) in [
        (&b"5\r\nhello\r\n0\r\n\r\n"[..], &b"hello"[..]),
        (b"0\r\n\r\n", b""),
        (b"000\r\n\r\n", b""),
        (
            b"3\r\nabc\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n1\r\n!\r\n0\r\n\r\n",
            b"abcabcdefghijklmnopqrstuvwxyz!",
        ),
        (
            b"0005\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n",
            b"hello0123456789",
        ),
        // CR and LF inside the data are data.
        (b"4\r\n\r\n\r\n\r\n0\r\n\r\n", b"\r\n\r\n"),
        // Whitespace before the CR and around extensions.
        (b"5 \r\nhello\r\n0\t\r\n\r\n", b"hello"),
    ] {
        assert_eq!(
            body(input),
            expected,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(
        body([&b"1a\r\n"[..], alphabet, b"\r\n0\r\n\r\n"].concat()),
        alphabet
    );
}

#[test]
fn extensions_are_ignored() {
    for input in [
        &b"5;name=value\r\nhello\r\n0\r\n\r\n"[..],
        b"5;flag\r\nhello\r\n0;last\r\n\r\n",
        b"5 ; a ; b = \"q \\\" s;\" ;c=tok\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\\\\\xff\t\" \r\nhello\r\n0\r\n\r\n",
        b"5;a=b;c;d=\"e\"\r\nhello\r\n0;x=\"y\"\r\n\r\n",
        b"5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            body(input),
            b"hello",
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn trailers_are_read_and_dropped() {
    for input in [
        &b"2\r\nhi\r\n0\r\nX-Checksum: abc\r\n\r\n"[..],
        b"2\r\nhi\r\n0\r\nA: 1\r\nExpires:\r\nB-c:\t v \xff \r\n\r\n",
        b"2\r\nhi\r\n0;ext=1\r\nX:y\r\n\r\n",
    ] {
        assert_eq!(body(input), b"hi", "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn next_request_starts_after_the_final_crlf() {
    let body = b"5\r\nhello\r\n0\r\nT: v\r\n\r\n";
    let next = b"GET / HTTP/1.1\r\n\r\n";
    let input = [&body[..], next].concat();
    assert_eq!(
        decode_split(&input),
        Outcome::Done {
            data: b"hello".to_vec(),
            end: body.len()
        }
    );
    // A pipelined request that starts like a chunk is not read.
    let input = [&b"0\r\n\r\n"[..], b"5\r\nhello\r\n"].concat();
    assert_eq!(
        decode_split(&input),
        Outcome::Done {
            data: Vec::new(),
            end: 5
        }
    );
}

#[test]
fn incomplete_bodies_need_more() {
    for (input, data) in [
        (&b""[..], &b""[..]),
        (b"5", b""),
        (b"5\r", b""),
        (b"5\r\nhel", b"hel"),
        (b"5\r\nhello", b"hello"),
        (b"5\r\nhello\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\nX: y\r\n", b"hello"),
        (b"5\r\nhello\r\n0\r\n\r", b"hello"),
        (b"5;a=\"x", b""),
    ] {
        assert_eq!(
            decode_split(input),
            Outcome::NeedMore {
                data: data.to_vec()
            },
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn bad_sizes_are_400() {
    for input in [
        &b"\r\n"[..],
        b";a\r\n",
        b" 5\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b"0x5\r\n",
        b"1 0\r\n",
        b"1\t0\r\n",
        b"g\r\n",
        b"5g\r\n",
        b"5.0\r\n",
        // 17 significant hex digits: beyond 64 bits.
        b"10000000000000000\r\n",
        b"fffffffffffffffff",
        b"99999999999999999999999999\r\n",
    ] {
        let e = error(input);
        assert_eq!(
            (e, e.status()),
            (ChunkedError::BadSize, 400),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Leading zeros do not overflow.
    assert_eq!(body(b"00000000000000000000001\r\nx\r\n0\r\n\r\n"), b"x");
}

#[test]
fn oversized_bodies_are_413_before_their_data() {
    let small = ChunkedLimits::new(10);
    for input in [
        &b"b\r\n"[..],
        b"ffffffffffffffff\r\n",
        b"B;ext=1\r\nhello world",
        b"5\r\nhello\r\n6\r\n",
        b"a\r\n0123456789\r\n1\r\n",
    ] {
        let e = error_with(input, small);
        assert_eq!((e, e.status()), (ChunkedError::TooLarge, 413));
    }
    // The refusal comes with the size's last digit, before the extension or any data.
    assert_eq!(
        feed(b"5\r\nhello\r\n6;a=b\r\nworld!\r\n0\r\n\r\n", small, &[]),
        Outcome::Failed {
            data: b"hello".to_vec(),
            error: ChunkedError::TooLarge
        }
    );
    assert!(matches!(
        feed(b"b;", small, &[]),
        Outcome::Failed {
            error: ChunkedError::TooLarge,
            ..
        }
    ));
    // Exactly the limit is accepted.
    assert_eq!(
        decode_split_with(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", small),
        Outcome::Done {
            data: b"helloworld".to_vec(),
            end: 25
        }
    );
    // The running total cannot wrap around.
    let max = ChunkedLimits::new(u64::MAX);
    let input = b"ffffffffffffffff\r\n";
    assert_eq!(
        feed(input, max, &[]),
        Outcome::NeedMore { data: Vec::new() }
    );
    let mut decoder = ChunkedDecoder::new(max);
    decoder.total = 1;
    assert_eq!(
        decoder.decode(input, &mut |_| {}),
        Err(ChunkedError::TooLarge)
    );
}

#[test]
fn bad_framing_is_400() {
    for input in [
        // Bare LF or lone CR ending a chunk-size line.
        &b"5\nhello\r\n0\r\n\r\n"[..],
        b"5\rhello\r\n",
        b"5;a\nhello",
        b"5;a=b\n",
        // Data not followed by CRLF.
        b"5\r\nhelloX\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r0\r\n",
        // The last chunk and the trailer section.
        b"0\r\n\n",
        b"0\r\n\rX",
        b"0\r\nX: y\n\r\n",
        b"0\r\nX: y\r\r\n",
        b"0\r\nX: y\r\n z\r\n\r\n",
        b"0\r\n y: z\r\n\r\n",
        b"0\r\nBad\r\n\r\n",
        b"0\r\nBad Name: v\r\n\r\n",
        b"0\r\n: v\r\n\r\n",
        b"0\r\nX: a\x00b\r\n\r\n",
        b"0\r\nX: a\x7fb\r\n\r\n",
        // Extensions.
        b"5;\r\n",
        b"5; \r\n",
        b"5;=v\r\n",
        b"5;a=\r\n",
        b"5;a= \r\n",
        b"5;a b\r\n",
        b"5;a=b c\r\n",
        b"5;a=\"x\"y\r\n",
        b"5;a=\"x\r\n\"\r\n",
        b"5;a=\"\x01\"\r\n",
        b"5;a=\"\\\x00\"\r\n",
        b"5;a=(b)\r\n",
        b"5;a@b\r\n",
        b"5 x\r\n",
        b"5 ;a=\"b\" c\r\n",
    ] {
        let e = error(input);
        assert_eq!(
            (e, e.status()),
            (ChunkedError::Malformed, 400),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn chunk_line_is_bounded() {
    let ext = |n: usize| format!("1;{}\r\nx\r\n0\r\n\r\n", "a".repeat(n - 2));
    assert_eq!(body(ext(DEFAULT_MAX_CHUNK_LINE)), b"x");
    let e = error(ext(DEFAULT_MAX_CHUNK_LINE + 1));
    assert_eq!((e, e.status()), (ChunkedError::LineTooLong, 400));
    let digits = "0".repeat(DEFAULT_MAX_CHUNK_LINE + 1);
    assert_eq!(error(digits), ChunkedError::LineTooLong);
    let spaces = format!("1{}", " ".repeat(DEFAULT_MAX_CHUNK_LINE));
    assert_eq!(error(spaces), ChunkedError::LineTooLong);
}

#[test]
fn tiny_chunks_with_long_extensions_are_refused() {
    let chunk = format!("1;{}\r\nx\r\n", "e".repeat(1000));
    let input = chunk.repeat(100);
    let Outcome::Failed { data, error } = feed(input.as_bytes(), limits(), &[]) else {
        panic!("accepted");
    };
    assert_eq!((error, error.status()), (ChunkedError::TooMuchFraming, 400));
    // 16 KiB of counted framing at about 1 KiB per chunk.
    assert!((15..=17).contains(&data.len()), "{}", data.len());
    // The same extensions on chunks with as much data are fine.
    let chunk = format!("200;{}\r\n{}\r\n", "e".repeat(1000), "x".repeat(512));
    let input = format!("{}0\r\n\r\n", chunk.repeat(100));
    let Outcome::Done { data, .. } = feed(input.as_bytes(), limits(), &[]) else {
        panic!("refused");
    };
    assert_eq!(data.len(), 51_200);
}

#[test]
fn many_one_byte_chunks_are_fine() {
    let n = 100_000;
    let input = format!("{}0\r\n\r\n", "1\r\nx\r\n".repeat(n));
    let cuts: Vec<usize> = (1..input.len()).step_by(7).collect();
    for cuts in [&[][..], &cuts] {
        match feed(input.as_bytes(), limits(), cuts) {
            Outcome::Done { data, end } => {
                assert_eq!((data.len(), end), (n, input.len()));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn trailer_section_is_bounded() {
    // "0\r\n", then a field line of `n` bytes with its CRLF, then the final CRLF.
    let with_trailer = |n: usize| format!("0\r\nX: {}\r\n\r\n", "v".repeat(n - 5));
    let fits = with_trailer(DEFAULT_MAX_TRAILER_BYTES - 2);
    assert_eq!(fits.len() - 3, DEFAULT_MAX_TRAILER_BYTES);
    assert_eq!(
        feed(fits.as_bytes(), limits(), &[]),
        Outcome::Done {
            data: Vec::new(),
            end: fits.len()
        }
    );
    let over = with_trailer(DEFAULT_MAX_TRAILER_BYTES - 1);
    let Outcome::Failed { error, .. } = feed(over.as_bytes(), limits(), &[]) else {
        panic!("accepted");
    };
    assert_eq!(
        (error, error.status()),
        (ChunkedError::TrailerTooLarge, 431)
    );
    // Many small fields count the same.
    let many = format!(
        "0\r\n{}\r\n",
        "A: b\r\n".repeat(DEFAULT_MAX_TRAILER_BYTES / 6 + 1)
    );
    let Outcome::Failed { error, .. } = feed(many.as_bytes(), limits(), &[]) else {
        panic!("accepted");
    };
    assert_eq!(error, ChunkedError::TrailerTooLarge);
    let small = ChunkedLimits {
        max_trailer: 8,
        ..limits()
    };
    assert_eq!(
        error_with(b"0\r\nAB: c\r\n\r\n", small),
        ChunkedError::TrailerTooLarge
    );
}

#[test]
fn errors_map_to_status_and_reason() {
    for (e, status) in [
        (ChunkedError::BadSize, 400),
        (ChunkedError::Malformed, 400),
        (ChunkedError::LineTooLong, 400),
        (ChunkedError::TooMuchFraming, 400),
        (ChunkedError::TrailerTooLarge, 431),
        (ChunkedError::TooLarge, 413),
    ] {
        assert_eq!(e.status(), status, "{e:?}");
        assert!(e.reason().ends_with('.') && e.reason().len() > 10);
        assert_eq!(e.to_string(), e.reason());
    }
}

/// xorshift64*: deterministic pseudo-random numbers without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random data, chunked at random with random extensions and trailers, decodes back to the
/// data, whatever the reads.
#[test]
fn random_encodings_round_trip() {
    const EXTENSIONS: [&str; 5] = ["", ";a", ";a=b", " ; q = \"x\\\"y\" ", ";n=1;m"];
    const TRAILERS: [&str; 3] = ["", "X: 1\r\n", "A: b\r\nC-d: \te f\r\n"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..400 {
        let data: Vec<u8> = (0..rng.below(3000)).map(|_| rng.next() as u8).collect();
        let mut input = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(700)).min(rest.len());
            let size = match rng.below(3) {
                0 => format!("{n:x}"),
                1 => format!("{n:X}"),
                _ => format!("00{n:x}"),
            };
            let ext = EXTENSIONS[rng.below(EXTENSIONS.len())];
            input.extend_from_slice(format!("{size}{ext}\r\n").as_bytes());
            input.extend_from_slice(&rest[..n]);
            input.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        let ext = EXTENSIONS[rng.below(EXTENSIONS.len())];
        let trailer = TRAILERS[rng.below(TRAILERS.len())];
        input.extend_from_slice(format!("0{ext}\r\n{trailer}\r\n").as_bytes());
        let end = input.len();
        input.extend_from_slice(b"POST /next HTTP/1.1\r\n");
        let mut cuts: Vec<usize> = (0..rng.below(12)).map(|_| rng.below(input.len())).collect();
        cuts.sort_unstable();
        let expected = Outcome::Done { data, end };
        assert_eq!(feed(&input, limits(), &cuts), expected);
        assert_eq!(feed(&input, limits(), &[]), expected);
    }
}

/// Soup of chunked-like pieces never panics and is judged the same whatever the reads.
#[test]
fn random_soup_is_split_consistent() {
    const PIECES: [&[u8]; 24] = [
        b"0",
        b"5",
        b"a",
        b"F",
        b"ffffffffffffffff",
        b"\r\n",
        b"\n",
        b"\r",
        b";",
        b"=",
        b"\"",
        b"\\",
        b" ",
        b"\t",
        b"x",
        b"hello",
        b":",
        b"\x00",
        b"\xff",
        b"-",
        b"0\r\n\r\n",
        b"5\r\nhello\r\n",
        b"0\r\n",
        b"X: y\r\n",
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let small = ChunkedLimits {
        max_body: 40,
        max_line: 12,
        max_framing: 30,
        max_trailer: 20,
    };
    let mut seen = [0usize; 3];
    for _ in 0..1500 {
        let mut s = Vec::new();
        for _ in 0..rng.below(30) {
            s.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        }
        for l in [limits(), small] {
            match decode_split_with(&s, l) {
                Outcome::Done { end, .. } => {
                    assert!(end <= s.len());
                    seen[0] += 1;
                }
                Outcome::NeedMore { .. } => seen[1] += 1,
                Outcome::Failed { data, .. } => {
                    assert!(data.len() as u64 <= l.max_body);
                    seen[2] += 1;
                }
            }
        }
    }
    assert!(
        seen.iter().all(|&n| n > 30),
        "outcome mix too thin: {seen:?}"
    );
}
