//! A small Server-Sent Events reader: splits a byte stream into events and
//! hands back each event's `data` (its `data:` lines joined by `\n`). Comments
//! (`: keep-alive`) and other fields (`id:`, `retry:`) are skipped. Bytes are
//! kept as bytes until an event is complete, so a board of a megabyte costs
//! one copy, not one per chunk.

/// Buffers chunks and yields complete events.
#[derive(Default)]
pub struct Events {
    buffer: Vec<u8>,
    /// Where to start looking for the next line end in `buffer`.
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    /// Largest event accepted; a larger one is an error (no unbounded buffer).
    limit: usize,
}

/// An event larger than the limit.
#[derive(Debug, thiserror::Error)]
#[error("an event of more than {0} bytes")]
pub struct TooLarge(pub usize);

impl Events {
    /// Accepts events up to `limit` bytes.
    pub fn new(limit: usize) -> Events {
        Events {
            limit,
            ..Events::default()
        }
    }

    /// Adds a chunk and calls `each` with the data of every event it
    /// completes, in order.
    pub fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), TooLarge> {
        self.buffer.extend_from_slice(chunk);
        let mut start = 0;
        while let Some(end) = self.buffer[self.scanned.max(start)..]
            .iter()
            .position(|b| *b == b'\n')
        {
            let end = self.scanned.max(start) + end;
            let mut line = &self.buffer[start..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                if self.has_data {
                    each(&self.data);
                }
                self.data.clear();
                self.has_data = false;
            } else if let Some(value) = field(line, b"data") {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            start = end + 1;
        }
        self.buffer.drain(..start);
        self.scanned = self.buffer.len();
        if self.buffer.len() + self.data.len() > self.limit {
            return Err(TooLarge(self.limit));
        }
        Ok(())
    }
}

/// The value of `line` when it is the field `name` (`name:value`, one space
/// after the colon dropped).
fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?;
    if rest.is_empty() {
        return Some(rest);
    }
    let value = rest.strip_prefix(b":")?;
    Some(value.strip_prefix(b" ").unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<String> {
        let mut events = Events::new(1 << 20);
        let mut out = Vec::new();
        for chunk in chunks {
            events
                .push(chunk, |data| {
                    out.push(String::from_utf8_lossy(data).into_owned())
                })
                .unwrap();
        }
        out
    }

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let stream: &[u8] = b"retry: 1000\n\nid: 1\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\ndata: x\ndata: y\r\n\r\n";
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(all(&[a, b]), ["{\"a\":1}", "x\ny"], "cut at {cut}");
        }
    }

    #[test]
    fn an_event_past_the_limit_is_an_error() {
        let mut events = Events::new(8);
        assert!(events.push(b"data: 0123456789", |_| {}).is_err());
    }
}
