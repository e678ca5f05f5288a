//! Unit tests of the parent module.
use super::WsError::*;
use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: FIN flag, RSV bits (already shifted), opcode, optional mask, payload.
fn frame(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | rsv | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len <= 125 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let m = mask.unwrap_or([0; 4]);
    out.extend_from_slice(&m[..if mask.is_some() { 4 } else { 0 }]);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
    out
}

/// A final, masked client frame.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(true, 0, opcode, Some(MASK), payload)
}

/// A non-final, masked client frame.
fn fragment(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(false, 0, opcode, Some(MASK), payload)
}

fn text(b: &[u8]) -> Option<Incoming> {
    Some(Incoming::Text(b.to_vec()))
}

fn binary(b: &[u8]) -> Option<Incoming> {
    Some(Incoming::Binary(b.to_vec()))
}

fn ping(b: &[u8]) -> Option<Incoming> {
    Some(Incoming::Ping(b.to_vec()))
}

fn close(code: u16, reason: &str) -> Option<Incoming> {
    Some(Incoming::Close(Some((code, reason.to_string()))))
}

/// Events (None = absorbed fragment) and the error that ended the stream, if any.
type Outcome = (Vec<Option<Incoming>>, Option<WsError>);

/// Drains every decodable frame at the front of `buf`; true if an error ended the stream.
fn drain(reader: &mut Reader, buf: &mut Vec<u8>, out: &mut Outcome) -> bool {
    loop {
        match reader.read(buf) {
            Ok(None) => return false,
            Ok(Some((consumed, msg))) => {
                assert!(consumed > 0 && consumed <= buf.len());
                buf.drain(..consumed);
                out.0.push(msg);
            }
            Err(e) => {
                out.1 = Some(e);
                return true;
            }
        }
    }
}

/// Feeds `stream` to a fresh reader, delivering bytes up to each cut, then the rest.
fn run_chunks(limits: (usize, usize), stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut reader = Reader::new(limits.0, limits.1);
    let (mut buf, mut out, mut start) = (Vec::new(), (Vec::new(), None), 0);
    for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
        buf.extend_from_slice(&stream[start..cut]);
        start = cut;
        if drain(&mut reader, &mut buf, &mut out) {
            break;
        }
    }
    out
}

/// Runs `stream` whole, one byte at a time (growing prefixes: Ok(None) until a frame is
/// complete), and split in two at every byte boundary; asserts all agree and returns the outcome.
fn run_limits(limits: (usize, usize), stream: &[u8]) -> Outcome {
    let whole = run_chunks(limits, stream, &[]);
    let bytewise: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(
        run_chunks(limits, stream, &bytewise),
        whole,
        "byte-at-a-time"
    );
    // Two-chunk splits are quadratic; the byte-at-a-time run covers the big streams.
    if stream.len() <= 4096 {
        for k in 0..=stream.len() {
            assert_eq!(run_chunks(limits, stream, &[k]), whole, "split at {k}");
        }
    }
    whole
}

fn run(stream: &[u8]) -> Outcome {
    run_limits((DEFAULT_MAX_FRAME_PAYLOAD, DEFAULT_MAX_MESSAGE), stream)
}

/// The error a stream ends with (after checking every split agrees).
fn err_of(stream: &[u8]) -> Option<WsError> {
    run(stream).1
}

#[test]
fn accept_key_rfc_example() {
    // RFC 6455 §1.3.
    let key = accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn error_codes_and_reasons() {
    let all = [
        Unmasked,
        ReservedBits,
        UnknownOpcode,
        FragmentedControl,
        ControlTooLong,
        FrameTooLarge,
        MessageTooLarge,
        UnexpectedContinuation,
        ExpectedContinuation,
        InvalidUtf8,
        InvalidCloseCode,
        BadClosePayload,
    ];
    for e in all {
        let expected = match e {
            InvalidUtf8 => 1007,
            FrameTooLarge | MessageTooLarge => 1009,
            _ => 1002,
        };
        assert_eq!(e.close_code(), expected, "{e:?}");
        assert!(!e.reason().is_empty() && e.reason().len() <= MAX_CLOSE_REASON);
        // The close frame we send for it is itself receivable.
        assert!(is_valid_close_code(e.close_code()));
    }
}

#[test]
fn rfc_masked_hello() {
    // RFC 6455 §5.7: a single-frame masked text message "Hello".
    let stream = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(run(&stream), (vec![text(b"Hello")], None));
    let whole = Reader::default().read(&stream);
    assert_eq!(whole, Ok(Some((stream.len(), text(b"Hello")))));
    for k in 0..stream.len() {
        assert_eq!(Reader::default().read(&stream[..k]), Ok(None), "prefix {k}");
    }
}

#[test]
fn unmasking_uses_all_four_key_bytes() {
    let payload: Vec<u8> = (0..=255u8).collect();
    let stream = frame(true, 0, 0x2, Some([0x01, 0x80, 0xff, 0x5a]), &payload);
    assert_eq!(run(&stream), (vec![binary(&payload)], None));
    // A zero mask leaves the bytes unchanged.
    let stream = frame(true, 0, 0x2, Some([0; 4]), b"abc");
    assert_eq!(run(&stream).0, vec![binary(b"abc")]);
}

#[test]
fn unmasked_frame_rejected() {
    // RFC 6455 §5.7: the unmasked "Hello".
    let stream = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(err_of(&stream), Some(Unmasked));
    assert_eq!(err_of(&frame(true, 0, 0x9, None, b"")), Some(Unmasked));
    // Rejected from the header alone.
    assert_eq!(Reader::default().read(&stream[..2]), Err(Unmasked));
}

#[test]
fn reserved_bits_rejected() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        for op in [0x1, 0x9] {
            let stream = frame(true, rsv, op, Some(MASK), b"x");
            assert_eq!(err_of(&stream), Some(ReservedBits));
        }
    }
}

#[test]
fn unknown_opcodes_rejected() {
    for op in (0x3..=0x7).chain(0xB..=0xF) {
        let err = err_of(&masked(op, b"abc"));
        assert_eq!(err, Some(UnknownOpcode), "opcode {op}");
    }
}

#[test]
fn control_frame_rules() {
    for op in [0x8, 0x9, 0xA] {
        assert_eq!(err_of(&fragment(op, b"")), Some(FragmentedControl));
        assert_eq!(err_of(&masked(op, &[b'a'; 126])), Some(ControlTooLong));
    }
    let data = [7u8; 125];
    assert_eq!(run(&masked(0x9, &data)).0, vec![ping(&data)]);
    assert_eq!(
        run(&masked(0xA, &data)).0,
        vec![Some(Incoming::Pong(data.to_vec()))]
    );
    // A control frame announcing a 16-bit length fails before the payload arrives.
    let stream = masked(0x9, &[0u8; 200]);
    assert_eq!(Reader::default().read(&stream[..8]), Err(ControlTooLong));
}

#[test]
fn frame_too_large_fails_on_header() {
    let limits = (10, 100);
    let stream = masked(0x2, &[1u8; 11]);
    // Header (2 + 4 mask bytes) only: already rejected.
    assert_eq!(Reader::new(10, 100).read(&stream[..6]), Err(FrameTooLarge));
    assert_eq!(run_limits(limits, &stream), (vec![], Some(FrameTooLarge)));
    let ok = masked(0x2, &[1u8; 10]);
    assert_eq!(run_limits(limits, &ok), (vec![binary(&[1u8; 10])], None));
    // A 64-bit length with the top bit set (§5.2 forbids it) is simply too large.
    let mut huge = vec![0x82, 0xFF];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    huge.extend_from_slice(&MASK);
    assert_eq!(Reader::default().read(&huge), Err(FrameTooLarge));
    huge[2] = 0x00;
    assert_eq!(Reader::default().read(&huge), Err(FrameTooLarge));
}

#[test]
fn message_too_large_across_fragments() {
    let limits = (10, 15);
    let stream = [fragment(0x2, &[1; 10]), masked(0x0, &[2; 6])].concat();
    assert_eq!(
        run_limits(limits, &stream),
        (vec![None], Some(MessageTooLarge))
    );
    // Rejected as soon as the second header is in.
    let mut reader = Reader::new(10, 15);
    assert_eq!(reader.read(&stream), Ok(Some((16, None))));
    assert_eq!(reader.read(&stream[16..22]), Err(MessageTooLarge));
    let ok = [fragment(0x2, &[1; 10]), masked(0x0, &[2; 5])].concat();
    let expected = [[1; 10].as_slice(), &[2; 5]].concat();
    assert_eq!(
        run_limits(limits, &ok),
        (vec![None, binary(&expected)], None)
    );
    // A single frame above the message limit.
    let single = run_limits((100, 15), &masked(0x1, &[b'a'; 16]));
    assert_eq!(single, (vec![], Some(MessageTooLarge)));
    // Control frames do not count toward the message.
    let stream = [
        fragment(0x2, &[1; 10]),
        masked(0x9, &[0; 20]),
        masked(0x0, &[2; 5]),
    ];
    let (events, err) = run_limits((20, 15), &stream.concat());
    assert_eq!((events.len(), err), (3, None));
}

#[test]
fn continuation_rules() {
    assert_eq!(err_of(&masked(0x0, b"x")), Some(UnexpectedContinuation));
    assert_eq!(err_of(&fragment(0x0, b"x")), Some(UnexpectedContinuation));
    for first in [0x1, 0x2] {
        for op in [0x1, 0x2] {
            for next in [masked(op, b"b"), fragment(op, b"b")] {
                let stream = [fragment(first, b"a"), next].concat();
                assert_eq!(run(&stream), (vec![None], Some(ExpectedContinuation)));
            }
        }
    }
    // After a complete message a continuation is unexpected again.
    let stream = [fragment(0x1, b"a"), masked(0x0, b"b"), masked(0x0, b"c")].concat();
    let expected = (vec![None, text(b"ab")], Some(UnexpectedContinuation));
    assert_eq!(run(&stream), expected);
}

#[test]
fn fragmented_messages_and_in_progress() {
    let stream = [
        fragment(0x1, b"Hel"),
        fragment(0x0, b""),
        masked(0x0, b"lo"),
    ]
    .concat();
    assert_eq!(run(&stream), (vec![None, None, text(b"Hello")], None));
    let mut reader = Reader::default();
    assert!(!reader.in_progress());
    assert_eq!(reader.read(&stream), Ok(Some((9, None))));
    assert!(reader.in_progress());
    assert_eq!(reader.read(&stream[9..]), Ok(Some((6, None))));
    assert!(reader.in_progress());
    assert_eq!(reader.read(&stream[15..]), Ok(Some((8, text(b"Hello")))));
    assert!(!reader.in_progress());
    assert_eq!(
        reader.partial.capacity(),
        0,
        "no buffer held between messages"
    );

    let stream = [fragment(0x2, &[0, 1]), masked(0x0, &[2, 0xff])].concat();
    assert_eq!(run(&stream).0, vec![None, binary(&[0, 1, 2, 0xff])]);
}

#[test]
fn control_frames_between_fragments() {
    let stream = [
        fragment(0x1, b"fra"),
        masked(0x9, b"p1"),
        fragment(0x0, b"gme"),
        masked(0xA, b""),
        masked(0x9, b"p2"),
        masked(0x0, b"nted"),
        masked(0x2, b"next"),
    ];
    let events = vec![
        None,
        ping(b"p1"),
        None,
        Some(Incoming::Pong(vec![])),
        ping(b"p2"),
        text(b"fragmented"),
        binary(b"next"),
    ];
    assert_eq!(run(&stream.concat()), (events, None));
    // A close between fragments is delivered too.
    let stream = [fragment(0x2, b"a"), masked(0x8, &[0x03, 0xE8])].concat();
    assert_eq!(run(&stream).0, vec![None, close(1000, "")]);
}

#[test]
fn utf8_checked_at_message_completion() {
    assert_eq!(err_of(&masked(0x1, &[0xff])), Some(InvalidUtf8));
    // "é" = C3 A9 split across fragments is fine.
    let stream = [fragment(0x1, &[b'a', 0xC3]), masked(0x0, &[0xA9])].concat();
    assert_eq!(run(&stream).0, vec![None, text("aé".as_bytes())]);
    // Invalid only at the end: the fragments are absorbed, the final frame fails.
    let stream = [fragment(0x1, &[b'a', 0xC3]), masked(0x0, b"b")].concat();
    assert_eq!(run(&stream), (vec![None], Some(InvalidUtf8)));
    // Truncated sequence at the end of the message.
    let stream = [fragment(0x1, b"a"), masked(0x0, &[0xE2, 0x82])].concat();
    assert_eq!(run(&stream), (vec![None], Some(InvalidUtf8)));
    // Binary is not checked.
    assert_eq!(run(&masked(0x2, &[0xff])).0, vec![binary(&[0xff])]);
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    [code.to_be_bytes().as_slice(), reason].concat()
}

#[test]
fn close_frames() {
    assert_eq!(run(&masked(0x8, b"")).0, vec![Some(Incoming::Close(None))]);
    assert_eq!(err_of(&masked(0x8, &[0x03])), Some(BadClosePayload));
    let stream = masked(0x8, &close_payload(1000, "bye ✓".as_bytes()));
    assert_eq!(run(&stream).0, vec![close(1000, "bye ✓")]);
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4000, 4999,
    ] {
        let stream = masked(0x8, &close_payload(code, b""));
        assert_eq!(run(&stream).0, vec![close(code, "")], "code {code}");
    }
    for code in [
        0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        let err = err_of(&masked(0x8, &close_payload(code, b"")));
        assert_eq!(err, Some(InvalidCloseCode), "code {code}");
    }
    for bad in [&[0xC3][..], &[0xff, b'a']] {
        let err = err_of(&masked(0x8, &close_payload(1000, bad)));
        assert_eq!(err, Some(InvalidUtf8));
    }
    // Our own close frame, masked as a client would send it, reads back.
    let ours = close_frame(1009, MessageTooLarge.reason());
    assert_eq!(
        run(&masked(0x8, &ours[2..])).0,
        vec![close(1009, "1009: message too large")]
    );
}

#[test]
fn sixteen_bit_lengths() {
    for len in [126usize, 200, 65535] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let stream = [masked(0x2, &payload), masked(0x9, b"after")].concat();
        assert_eq!(stream[1], 0x80 | 126);
        assert_eq!(run(&stream), (vec![binary(&payload), ping(b"after")], None));
    }
}

#[test]
fn sixty_four_bit_length() {
    let payload: Vec<u8> = (0..70_000usize).map(|i| (i % 253) as u8).collect();
    let stream = [masked(0x2, &payload), masked(0xA, b"x")].concat();
    assert_eq!(stream[1], 0x80 | 127);
    let pong = Some(Incoming::Pong(b"x".to_vec()));
    assert_eq!(run(&stream), (vec![binary(&payload), pong], None));
    // Fragmented across two frames, the first with a 64-bit length.
    let a = vec![b'a'; 65_536];
    let stream = [fragment(0x1, &a), masked(0x0, b"z")].concat();
    let whole = [a.as_slice(), b"z"].concat();
    assert_eq!(run(&stream), (vec![None, text(&whole)], None));
}

#[test]
fn several_frames_in_one_buffer() {
    let stream = [masked(0x1, b"one"), masked(0x2, b"two"), masked(0x8, b"")].concat();
    let mut reader = Reader::default();
    assert_eq!(reader.read(&stream), Ok(Some((9, text(b"one")))));
    assert_eq!(reader.read(&stream[9..]), Ok(Some((9, binary(b"two")))));
    let last = reader.read(&stream[18..]);
    assert_eq!(last, Ok(Some((6, Some(Incoming::Close(None))))));
    assert_eq!(stream.len(), 24);
    assert_eq!(run(&stream).0.len(), 3);
}

#[test]
fn frame_header_lengths() {
    let mut out = [0u8; 10];
    assert_eq!(frame_header(Opcode::Text, 0, &mut out), 2);
    assert_eq!(out[..2], [0x81, 0]);
    assert_eq!(frame_header(Opcode::Binary, 125, &mut out), 2);
    assert_eq!(out[..2], [0x82, 125]);
    assert_eq!(frame_header(Opcode::Text, 126, &mut out), 4);
    assert_eq!(out[..4], [0x81, 126, 0, 126]);
    assert_eq!(frame_header(Opcode::Text, 65535, &mut out), 4);
    assert_eq!(out[..4], [0x81, 126, 0xff, 0xff]);
    assert_eq!(frame_header(Opcode::Binary, 65536, &mut out), 10);
    assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    for (op, byte) in [
        (Opcode::Close, 0x88),
        (Opcode::Ping, 0x89),
        (Opcode::Pong, 0x8A),
    ] {
        frame_header(op, 3, &mut out);
        assert_eq!(out[..2], [byte, 3]);
    }
    // Agrees with tungstenite's parser.
    for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
        let n = frame_header(Opcode::Binary, len, &mut out);
        let mut cursor = Cursor::new(&out[..n]);
        let (header, parsed) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        assert_eq!((parsed, cursor.position()), (len as u64, n as u64));
        assert!(header.is_final && header.mask.is_none());
    }
}

#[test]
fn control_frame_truncates() {
    assert_eq!(
        control_frame(Opcode::Ping, b"hi"),
        vec![0x89, 2, b'h', b'i']
    );
    let f = control_frame(Opcode::Pong, &[9u8; 300]);
    assert_eq!((f.len(), f[0], f[1]), (2 + 125, 0x8A, 125));
    assert_eq!(control_frame(Opcode::Close, b""), vec![0x88, 0]);
}

#[test]
fn close_frame_truncates_at_char_boundary() {
    assert_eq!(close_frame(1000, ""), vec![0x88, 2, 0x03, 0xE8]);
    // The reason is written `<code>: <reason>` (spec/websocket.md §6).
    assert_eq!(
        close_frame(1002, "no"),
        [&[0x88, 10, 0x03, 0xEA][..], b"1002: no"].concat()
    );
    let a = |n: usize| "a".repeat(n);
    // "1001: " (6 bytes), 116 ASCII bytes, then "é" (2 bytes): 124 bytes, cut back to 122.
    let f = close_frame(1001, &format!("{}é", a(116)));
    assert_eq!(
        (f[1], &f[4..]),
        (2 + 122, format!("1001: {}", a(116)).as_bytes())
    );
    // Exactly 123 bytes fit.
    let reason = format!("{}é", a(115));
    let f = close_frame(1001, &reason);
    assert_eq!((f[1], &f[4..]), (125, format!("1001: {reason}").as_bytes()));
    // A 4-byte char straddling the limit.
    let f = close_frame(4000, &format!("{}😀", a(115)));
    assert_eq!(&f[4..], format!("4000: {}", a(115)).as_bytes());
    // All multi-byte: the result is always valid UTF-8 and at most 123 bytes.
    for prefix in 0..4 {
        let f = close_frame(1000, &format!("{}{}", a(prefix), "€".repeat(60)));
        assert!(f.len() - 4 <= MAX_CLOSE_REASON && f.len() - 4 > MAX_CLOSE_REASON - 3);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}

/// xorshift64: a tiny deterministic PRNG for the fuzz test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let len = rng.below(200);
        let mut stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Bias half the rounds toward plausible headers so deeper paths are reached.
        if round % 2 == 0 && stream.len() >= 2 {
            stream[0] &= 0x8F;
            stream[1] = 0x80 | (stream[1] & 0x1F);
        }
        let limits = (1 + rng.below(64), 1 + rng.below(128));
        let mut cuts: Vec<usize> = (0..rng.below(8))
            .map(|_| rng.below(len as u64 + 1))
            .collect();
        cuts.sort_unstable();
        // Random chunking never panics and never changes the outcome.
        let chunked = run_chunks(limits, &stream, &cuts);
        assert_eq!(chunked, run_chunks(limits, &stream, &[]), "round {round}");
    }
}
