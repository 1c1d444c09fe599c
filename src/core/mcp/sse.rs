//! Filtering MCP list results in a `text/event-stream` response, event by event, as the body
//! streams: only the incomplete last event is held back. Events are split and read as the HTML
//! standard's event-stream parser reads them (lines end in CRLF, LF or CR; a blank line ends an
//! event; `data:` lines joined with LF are the message; one leading BOM is ignored), so that what
//! a client reads as a message is what gets filtered. Every event whose data is not a response
//! to a pending list request leaves byte for byte as it came.

use crate::mcp::lists::{filter_response, unfilterable_response, ListKind, PendingList};

const BOM: &[u8] = "\u{feff}".as_bytes();

/// The streaming list filter of one response body.
pub struct SseFilter {
    /// The most an event may take while held back to be read whole.
    max_event_bytes: usize,
    /// The event being received, while it fits in `max_event_bytes`.
    event: Vec<u8>,
    mode: Mode,
    /// The last byte seen ended a line (or nothing was seen yet).
    at_line_start: bool,
    /// The last chunk ended in a CR: where an LF opening the next one belongs (CRLF is one line
    /// ending, and a CR alone already ended the line, so the event is not held for it).
    lf_after_cr: Option<Sink>,
    /// How many bytes of a leading byte order mark the stream has matched, until it is decided.
    bom_matched: Option<usize>,
}

/// What becomes of the event being received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Held until its blank line, then read and filtered.
    Holding,
    /// Too large to hold, on a stream no list is awaited on: sent on as it comes.
    PassingThrough,
    /// Too large to hold while a list is awaited: it may be that list, unreadable whole, so it
    /// is dropped and the pending requests were answered with an error instead.
    Dropping,
}

/// Where the bytes of a line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Event,
    Output,
    Nowhere,
}

struct Lists<'a> {
    pending: &'a [PendingList],
    allowed: &'a dyn Fn(ListKind, &str) -> bool,
}

impl SseFilter {
    pub fn new(max_event_bytes: usize) -> SseFilter {
        SseFilter {
            max_event_bytes,
            event: Vec::new(),
            mode: Mode::Holding,
            at_line_start: true,
            lf_after_cr: None,
            bom_matched: Some(0),
        }
    }

    /// Takes the next chunk of the body and returns the bytes to send now. `end`: the last
    /// chunk; whatever is left is flushed, an unterminated event filtered like any other.
    ///
    /// An event larger than `max_event_bytes` is never held whole: with no list pending it is
    /// passed on unread; with lists pending it is dropped and each pending request gets a
    /// JSON-RPC error event (`-32603`) instead, since it may be the list and cannot be filtered.
    pub fn push(
        &mut self,
        chunk: &[u8],
        end: bool,
        pending: &[PendingList],
        allowed: &dyn Fn(ListKind, &str) -> bool,
    ) -> Vec<u8> {
        let lists = Lists { pending, allowed };
        let mut out = Vec::with_capacity(chunk.len());
        let (bom_prefix, rest) = self.skip_bom(chunk, end, &mut out);
        self.feed(bom_prefix, &lists, &mut out);
        self.feed(rest, &lists, &mut out);
        if end {
            self.finish(&lists, &mut out);
        }
        out
    }

    /// Sends a leading BOM on by itself (clients ignore it). Returns the bytes that turned out
    /// not to be one, and the rest of the chunk.
    fn skip_bom<'c>(
        &mut self,
        chunk: &'c [u8],
        end: bool,
        out: &mut Vec<u8>,
    ) -> (&'static [u8], &'c [u8]) {
        let Some(mut matched) = self.bom_matched else {
            return (&[], chunk);
        };
        let mut rest = chunk;
        while let (Some(expected), Some((byte, tail))) = (BOM.get(matched), rest.split_first()) {
            if byte != expected {
                break;
            }
            matched += 1;
            rest = tail;
        }
        if matched == BOM.len() {
            self.bom_matched = None;
            out.extend_from_slice(BOM);
            return (&[], rest);
        }
        if rest.is_empty() && !end {
            self.bom_matched = Some(matched);
            return (&[], rest);
        }
        self.bom_matched = None;
        (BOM.get(..matched).unwrap_or_default(), rest)
    }

    fn feed(&mut self, mut input: &[u8], lists: &Lists, out: &mut Vec<u8>) {
        if input.is_empty() {
            return;
        }
        if let Some(sink) = self.lf_after_cr.take() {
            if let Some(rest) = input.strip_prefix(b"\n") {
                match sink {
                    Sink::Event => {
                        self.take(b"\n", false, lists, out);
                    }
                    Sink::Output => out.push(b'\n'),
                    Sink::Nowhere => {}
                }
                input = rest;
            }
        }
        while !input.is_empty() {
            let (line, rest) = split_line(input);
            let terminated = line_ending(line).is_some();
            let blank = terminated && self.at_line_start && content(line).is_empty();
            self.at_line_start = terminated;
            let sink = self.take(line, blank, lists, out);
            if rest.is_empty() && line.last() == Some(&b'\r') {
                self.lf_after_cr = Some(sink);
            }
            input = rest;
        }
    }

    /// Takes one line, or a piece of one; `blank`: it is the blank line ending the event.
    fn take(&mut self, bytes: &[u8], blank: bool, lists: &Lists, out: &mut Vec<u8>) -> Sink {
        let too_large = self.event.len().saturating_add(bytes.len()) > self.max_event_bytes;
        if self.mode == Mode::Holding && !blank && too_large {
            self.overflow(lists, out);
        }
        match self.mode {
            Mode::Holding if blank => {
                dispatch(&self.event, lists, out);
                self.event.clear();
                out.extend_from_slice(bytes);
                Sink::Output
            }
            Mode::Holding => {
                self.event.extend_from_slice(bytes);
                Sink::Event
            }
            Mode::PassingThrough => {
                out.extend_from_slice(bytes);
                if blank {
                    self.mode = Mode::Holding;
                }
                Sink::Output
            }
            Mode::Dropping => {
                if blank {
                    self.mode = Mode::Holding;
                }
                Sink::Nowhere
            }
        }
    }

    fn overflow(&mut self, lists: &Lists, out: &mut Vec<u8>) {
        if lists.pending.is_empty() {
            out.extend_from_slice(&self.event);
            self.mode = Mode::PassingThrough;
        } else {
            for list in lists.pending {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(unfilterable_response(&list.id.to_string()).as_bytes());
                out.extend_from_slice(b"\n\n");
            }
            self.mode = Mode::Dropping;
        }
        self.event = Vec::new();
    }

    fn finish(&mut self, lists: &Lists, out: &mut Vec<u8>) {
        if self.mode == Mode::Holding {
            dispatch(&self.event, lists, out);
        }
        self.event = Vec::new();
        self.mode = Mode::Holding;
        self.at_line_start = true;
        self.lf_after_cr = None;
    }
}

/// Sends an event on: as it came, or with its data replaced when it answered a pending list.
fn dispatch(event: &[u8], lists: &Lists, out: &mut Vec<u8>) {
    let lines: Vec<&[u8]> = Lines(event).collect();
    let filtered =
        event_data(&lines).and_then(|data| filter_response(&data, lists.pending, lists.allowed));
    match filtered {
        None => out.extend_from_slice(event),
        Some(message) => rewrite(&lines, &message, out),
    }
}

/// The event's `data` lines, joined with LF; `None` when it has none (clients ignore it).
fn event_data(lines: &[&[u8]]) -> Option<Vec<u8>> {
    let mut data: Option<Vec<u8>> = None;
    for line in lines {
        if let Some(value) = data_value(content(line)) {
            match data.as_mut() {
                Some(data) => {
                    data.push(b'\n');
                    data.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    data
}

/// The event with its `data` lines replaced by `message`, written where the first one was (a
/// line per line of `message`: its only line breaks are the LFs that joined data lines); other
/// lines as they came.
fn rewrite(lines: &[&[u8]], message: &[u8], out: &mut Vec<u8>) {
    let mut written = false;
    for line in lines {
        if data_value(content(line)).is_none() {
            out.extend_from_slice(line);
            continue;
        }
        if written {
            continue;
        }
        written = true;
        // An unterminated last line (the stream ended) still gets its data lines ended.
        let ending = line_ending(line).unwrap_or(b"\n");
        let mut rest = message;
        loop {
            let (piece, after) = match line_break(rest) {
                Some(at) => (rest.get(..at).unwrap_or(rest), rest.get(at + 1..)),
                None => (rest, None),
            };
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(piece);
            out.extend_from_slice(ending);
            let Some(after) = after else {
                break;
            };
            rest = after;
        }
    }
}

/// The value of a `data` field line (one leading space dropped); `None` for any other line.
fn data_value(line: &[u8]) -> Option<&[u8]> {
    let (field, value) = match line.iter().position(|&byte| byte == b':') {
        Some(colon) => (line.get(..colon)?, line.get(colon + 1..)?),
        None => (line, &[][..]),
    };
    (field == b"data").then(|| value.strip_prefix(b" ").unwrap_or(value))
}

/// The first line of `input` with its ending (if it has one yet), and the rest.
fn split_line(input: &[u8]) -> (&[u8], &[u8]) {
    let Some(end) = line_break(input) else {
        return (input, &[]);
    };
    let crlf = input.get(end..end + 2) == Some(b"\r\n");
    input
        .split_at_checked(if crlf { end + 2 } else { end + 1 })
        .unwrap_or((input, &[]))
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Where the first CR or LF of `bytes` is, read eight bytes at a time: a list is one long line.
fn line_break(bytes: &[u8]) -> Option<usize> {
    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let word = u64::from_le_bytes(word);
        let breaks = zero_bytes(word ^ (ONES * u64::from(b'\n')))
            | zero_bytes(word ^ (ONES * u64::from(b'\r')));
        if breaks != 0 {
            // The lowest flag is exact (a false one can only sit above a true one).
            return Some(offset + (breaks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = words.remainder();
    let at = tail
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')?;
    Some(offset + at)
}

/// The high bit of the lowest zero byte of `word` (and perhaps of bytes above it); 0 if none.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGHS
}

fn line_ending(line: &[u8]) -> Option<&'static [u8]> {
    if line.ends_with(b"\r\n") {
        Some(b"\r\n")
    } else if line.ends_with(b"\n") {
        Some(b"\n")
    } else if line.ends_with(b"\r") {
        Some(b"\r")
    } else {
        None
    }
}

/// A line without its ending.
fn content(line: &[u8]) -> &[u8] {
    match line_ending(line) {
        Some(ending) => line.strip_suffix(ending).unwrap_or(line),
        None => line,
    }
}

/// The lines of a held event, each with its ending.
struct Lines<'a>(&'a [u8]);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (line, rest) = split_line(self.0);
        self.0 = rest;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const LIST: &str =
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"drop"},{"name":"alpha"}]}}"#;
    const FILTERED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"alpha"}]}}"#;
    const OTHER: &str = r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"drop"}]}}"#;

    fn lists() -> Vec<PendingList> {
        vec![PendingList {
            id: json!(1),
            kind: ListKind::Tools,
        }]
    }

    fn starts_with_a(_: ListKind, name: &str) -> bool {
        name.starts_with('a')
    }

    /// Pushes the chunks in turn, the last with `end`; returns everything sent.
    fn stream(filter: &mut SseFilter, chunks: &[&[u8]], pending: &[PendingList]) -> Vec<u8> {
        let mut out = Vec::new();
        for (index, chunk) in chunks.iter().enumerate() {
            out.extend(filter.push(chunk, index + 1 == chunks.len(), pending, &starts_with_a));
        }
        out
    }

    /// Asserts that `input` comes out as `expected` however it is split in two, and byte by byte.
    fn assert_every_split(
        input: &str,
        expected: &str,
        max_event_bytes: usize,
        pending: &[PendingList],
    ) {
        let bytes = input.as_bytes();
        for split in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(split);
            let out = stream(&mut SseFilter::new(max_event_bytes), &[head, tail], pending);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "split at {split}"
            );
        }
        let mut bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        bytewise.push(b"");
        let out = stream(&mut SseFilter::new(max_event_bytes), &bytewise, pending);
        assert_eq!(String::from_utf8(out).unwrap(), expected, "byte by byte");
    }

    fn mixed_stream(ending: &str) -> (String, String) {
        let events = |list: &str| {
            [
                ": keepalive\n\n".to_string(),
                format!("id: e1\nevent: message\ndata: {OTHER}\n\n"),
                "retry: 500\n\n".to_string(),
                format!("event: message\nid: e2\ndata: {list}\n: note\n\n"),
                r#"data: {"jsonrpc":"2.0","method":"notifications/progress"}"#.to_string() + "\n\n",
            ]
            .concat()
            .replace('\n', ending)
        };
        (events(LIST), events(FILTERED))
    }

    #[test]
    fn list_events_are_filtered_and_everything_else_passes_at_every_split() {
        for ending in ["\n", "\r\n", "\r"] {
            let (input, expected) = mixed_stream(ending);
            assert_every_split(&input, &expected, 4096, &lists());
        }
    }

    #[test]
    fn mixed_line_endings_are_read_as_clients_read_them() {
        let input = format!("id: x\r\ndata: {LIST}\r\r\n: c\n\rdata: {OTHER}\n\r\n");
        let expected = format!("id: x\r\ndata: {FILTERED}\r\r\n: c\n\rdata: {OTHER}\n\r\n");
        assert_every_split(&input, &expected, 4096, &lists());
    }

    #[test]
    fn with_no_list_pending_the_stream_is_unchanged() {
        let (input, _) = mixed_stream("\r\n");
        assert_every_split(&input, &input, 4096, &[]);
    }

    #[test]
    fn complete_events_are_sent_at_once() {
        let mut filter = SseFilter::new(4096);
        let first = format!("data: {LIST}\n\n: ping\n\ndata: {{\"jsonrpc\"");
        let out = filter.push(first.as_bytes(), false, &lists(), &starts_with_a);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("data: {FILTERED}\n\n: ping\n\n")
        );
        // A CR may be followed by an LF in the next chunk, but it already ended the event.
        let out = filter.push(b":\"2.0\"}\r\r", false, &lists(), &starts_with_a);
        assert_eq!(out, b"data: {\"jsonrpc\":\"2.0\"}\r\r");
        let out = filter.push(b"\n", true, &lists(), &starts_with_a);
        assert_eq!(out, b"\n");
    }

    #[test]
    fn data_split_over_lines_is_joined_filtered_and_written_where_it_began() {
        let input = "id: 9\ndata: {\"jsonrpc\":\"2.0\",\nevent: message\ndata:\"id\":1,\"result\":{\"tools\":[\n\
            data: {\"name\":\"drop\"},{\"name\":\"alpha\"}]}}\n\n";
        let expected =
            "id: 9\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\"result\":{\"tools\":[\n\
            data: {\"name\":\"alpha\"}]}}\nevent: message\n\n";
        assert_every_split(input, expected, 4096, &lists());
        // `data` with no colon is an empty data line; a list after it is still read.
        let input = format!("data\ndata:{LIST}\n\n");
        let expected = format!("data: \ndata: {FILTERED}\n\n");
        assert_every_split(&input, &expected, 4096, &lists());
    }

    #[test]
    fn lines_that_are_not_data_fields_are_not_read_as_data() {
        // `data ` and `Data` are other fields, a `:data` line a comment: there is no message.
        let input = format!("data : {LIST}\nData: {LIST}\n:data: {LIST}\n\n");
        assert_every_split(&input, &input, 4096, &lists());
    }

    #[test]
    fn any_event_type_is_filtered() {
        let input = format!("event: custom\ndata: {LIST}\n\n");
        let expected = format!("event: custom\ndata: {FILTERED}\n\n");
        assert_every_split(&input, &expected, 4096, &lists());
    }

    #[test]
    fn the_end_flushes_an_unterminated_event_filtered() {
        let input = format!("data: {OTHER}\n\nid: 3\ndata: {LIST}");
        let expected = format!("data: {OTHER}\n\nid: 3\ndata: {FILTERED}\n");
        assert_every_split(&input, &expected, 4096, &lists());
        let input = format!("data: {OTHER}\n: unterminated");
        assert_every_split(&input, &input, 4096, &lists());
    }

    #[test]
    fn a_leading_byte_order_mark_does_not_hide_the_first_event() {
        let input = format!("\u{feff}data: {LIST}\n\n");
        let expected = format!("\u{feff}data: {FILTERED}\n\n");
        assert_every_split(&input, &expected, 4096, &lists());
        // Only one is ignored: a second makes the line another field.
        let input = format!("\u{feff}\u{feff}data: {LIST}\n\n");
        assert_every_split(&input, &input, 4096, &lists());
        // Bytes that only begin like one are part of the first line.
        let out = stream(
            &mut SseFilter::new(4096),
            &[b"\xEF\xBB", b": c\n\n"],
            &lists(),
        );
        assert_eq!(out, b"\xEF\xBB: c\n\n");
        let out = stream(&mut SseFilter::new(4096), &[b"\xEF", b""], &lists());
        assert_eq!(out, b"\xEF");
    }

    #[test]
    fn an_oversized_event_never_lets_a_list_through() {
        let max = 64;
        let big = format!("id: big\ndata: {LIST}\n\n");
        assert!(big.len() > max);
        let small = r#"data: {"jsonrpc":"2.0","id":2,"result":{}}"#;
        assert!(small.len() < max);
        let input = format!(": before\n\n{big}{small}\n\n");
        let error = r#"data: {"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"list result could not be filtered"}}"#;
        let expected = format!(": before\n\n{error}\n\n{small}\n\n");
        assert_every_split(&input, &expected, max, &lists());
        let two = [
            lists(),
            vec![PendingList {
                id: json!("s"),
                kind: ListKind::Prompts,
            }],
        ]
        .concat();
        let error_s = error.replace(r#""id":1"#, r#""id":"s""#);
        let expected = format!(": before\n\n{error}\n\n{error_s}\n\n{small}\n\n");
        assert_every_split(&input, &expected, max, &two);
        // With no list pending it cannot be one: it passes unread.
        assert_every_split(&input, &input, max, &[]);
    }

    #[test]
    fn line_breaks_are_found_at_any_position_among_any_bytes() {
        for length in 0..20 {
            for at in 0..=length {
                for (byte, filler) in [
                    (b'\n', b'a'),
                    (b'\r', 0xff),
                    (b'\n', 0x0b),
                    (b'\r', 0x0c),
                    (b'\n', 0x80),
                ] {
                    let mut bytes = vec![filler; length];
                    if let Some(slot) = bytes.get_mut(at) {
                        *slot = byte;
                    }
                    if let Some(slot) = bytes.get_mut(at + 2) {
                        *slot = b'\n';
                    }
                    let expected = (at < length).then_some(at);
                    assert_eq!(line_break(&bytes), expected, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn the_held_event_never_exceeds_the_limit() {
        let max = 100;
        let mut filter = SseFilter::new(max);
        let line = format!("data: {}", "x".repeat(10_000));
        for chunk in line.as_bytes().chunks(7) {
            let out = filter.push(chunk, false, &[], &starts_with_a);
            assert!(filter.event.len() <= max);
            assert!(out.len() <= max + chunk.len());
        }
        assert_eq!(filter.push(b"\n\n", true, &[], &starts_with_a), b"\n\n");
        let mut filter = SseFilter::new(max);
        for chunk in line.as_bytes().chunks(7) {
            filter.push(chunk, false, &lists(), &starts_with_a);
            assert!(filter.event.len() <= max);
        }
    }
}
