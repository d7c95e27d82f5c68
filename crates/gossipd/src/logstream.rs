//! The agent's log lines, live, for `GET /v1/agent/monitor` (`gossipd monitor`).
//!
//! A tracing layer of its own, beside the one that writes stderr: it formats the events at the
//! levels some monitor asked for (plain text, as the text log format, without colours) and
//! hands each line to every monitor that wants its level. Independent of `--log-level`: a
//! monitor at `debug` sees debug lines of an agent that logs `info`. Nobody watching costs
//! nothing: the layer's interest follows the most verbose monitor attached
//! (`rebuild_interest_cache` on every change), so with no monitor every callsite it would
//! format stays disabled for it.
//!
//! Bounded, a slow reader never grows memory: each monitor has a queue of at most
//! [`QUEUE_LINES`] lines of at most [`MAX_LINE`] bytes; a line that finds the queue full is
//! dropped and counted, and the reader is told how many before its next line. At most
//! [`MAX_MONITORS`] monitors at once. When the agent stops, [`close`] ends every stream after
//! the lines already queued (the last being the agent's "stopped").

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

/// Lines queued for one monitor before further lines are dropped.
pub const QUEUE_LINES: usize = 512;
/// Longest line streamed, in bytes; longer ones are cut (and say so).
pub const MAX_LINE: usize = 4096;
/// Most monitors attached at once.
pub const MAX_MONITORS: usize = 8;

/// One monitor's queue.
#[derive(Debug)]
struct Queue {
    level: Level,
    lines: Mutex<VecDeque<Arc<str>>>,
    dropped: AtomicU64,
    ready: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Hub {
    monitors: Mutex<Vec<Arc<Queue>>>,
    /// The most verbose level attached: 0 none, 1 error ... 5 trace.
    max: AtomicU8,
    closed: std::sync::atomic::AtomicBool,
}

static HUB: LazyLock<Hub> = LazyLock::new(Hub::default);

fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Whether some monitor wants `meta`. hickory's resolver logs every query at info: as on
/// stderr, only its warnings and errors are streamed.
fn wanted(meta: &Metadata<'_>) -> bool {
    let level = *meta.level();
    if rank(level) > HUB.max.load(Ordering::Relaxed) {
        return false;
    }
    !(meta.target().starts_with("hickory") && level > Level::WARN)
}

/// Parses a `?loglevel=` value: Consul's `trace`, `debug`, `info`, `warn`, `err` (and `warning`,
/// `error`), any case.
pub fn parse_level(s: &str) -> Option<Level> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

/// The layer that feeds the monitors; installed beside the stderr layer (`main.rs`).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer().with_ansi(false).with_writer(MakeLine).with_filter(MonitorFilter)
}

struct MonitorFilter;

impl<S> Filter<S> for MonitorFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        wanted(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Re-asked at every attach and detach (`rebuild_interest_cache`).
        if wanted(meta) { tracing::subscriber::Interest::sometimes() } else { tracing::subscriber::Interest::never() }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match HUB.max.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }
}

struct MakeLine;

/// One formatted event: the fmt layer writes it whole, then drops the writer.
struct LineWriter {
    level: Level,
    buf: Vec<u8>,
}

impl<'a> MakeWriter<'a> for MakeLine {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { level: Level::INFO, buf: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter { level: *meta.level(), buf: Vec::new() }
    }
}

impl std::io::Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        // Never more than a line's worth: the rest is cut anyway.
        let room = (MAX_LINE + 1).saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            publish(self.level, &self.buf);
        }
    }
}

/// Cuts a line to [`MAX_LINE`] bytes (on a character boundary), ending in one newline.
fn make_line(bytes: &[u8]) -> Arc<str> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches('\n');
    if text.len() < MAX_LINE {
        return format!("{text}\n").into();
    }
    const CUT: &str = " [cut]\n";
    let mut end = MAX_LINE - CUT.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT}", &text[..end]).into()
}

fn publish(level: Level, bytes: &[u8]) {
    let line = make_line(bytes);
    // No tracing in here: this runs inside an event.
    let monitors = HUB.monitors.lock().unwrap_or_else(|e| e.into_inner());
    for q in monitors.iter().filter(|q| level <= q.level) {
        let mut lines = q.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() >= QUEUE_LINES {
            q.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        lines.push_back(line.clone());
        drop(lines);
        q.ready.notify_one();
    }
}

/// Recomputes the most verbose level attached and tells tracing (outside the lock: the
/// rebuild asks [`MonitorFilter`] again).
fn levels_changed() {
    let max = {
        let monitors = HUB.monitors.lock().unwrap_or_else(|e| e.into_inner());
        monitors.iter().map(|q| rank(q.level)).max().unwrap_or(0)
    };
    if HUB.max.swap(max, Ordering::Relaxed) != max {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// Why a monitor cannot attach.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// [`MAX_MONITORS`] are attached already.
    #[error("{MAX_MONITORS} monitors are attached already: close one first")]
    Full,
    /// The agent is stopping.
    #[error("the agent is stopping")]
    Closed,
}

/// An attached monitor: the lines at its level from now on. Detaches when dropped.
#[derive(Debug)]
pub struct Monitor {
    queue: Arc<Queue>,
}

/// Attaches a monitor that receives every line at `level` or more severe.
pub fn attach(level: Level) -> Result<Monitor, AttachError> {
    let queue = Arc::new(Queue {
        level,
        lines: Mutex::new(VecDeque::new()),
        dropped: AtomicU64::new(0),
        ready: tokio::sync::Notify::new(),
    });
    {
        let mut monitors = HUB.monitors.lock().unwrap_or_else(|e| e.into_inner());
        if HUB.closed.load(Ordering::SeqCst) {
            return Err(AttachError::Closed);
        }
        if monitors.len() >= MAX_MONITORS {
            return Err(AttachError::Full);
        }
        monitors.push(queue.clone());
    }
    levels_changed();
    Ok(Monitor { queue })
}

impl Monitor {
    /// The next chunk to send: a note of the lines dropped since the last one, if any, then
    /// the next line. `None` once the agent has stopped and every queued line was taken.
    pub async fn next(&self) -> Option<String> {
        loop {
            // Registered before looking, so that a line published in between wakes us.
            let ready = self.queue.ready.notified();
            let dropped = self.queue.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                return Some(format!(
                    "[gossipd monitor] {dropped} log line(s) dropped: this reader is slower than the log\n"
                ));
            }
            let line = self.queue.lines.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            if let Some(line) = line {
                return Some(line.to_string());
            }
            if HUB.closed.load(Ordering::SeqCst) {
                return None;
            }
            ready.await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        HUB.monitors.lock().unwrap_or_else(|e| e.into_inner()).retain(|q| !Arc::ptr_eq(q, &self.queue));
        levels_changed();
    }
}

/// The agent is stopping: every stream ends after its queued lines. Waits (at most `grace`)
/// until every monitor has taken them and detached, so that the HTTP responses can finish
/// before the process exits.
pub async fn close(grace: Duration) {
    HUB.closed.store(true, Ordering::SeqCst);
    let monitors: Vec<Arc<Queue>> = HUB.monitors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for q in &monitors {
        q.ready.notify_one();
    }
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if HUB.monitors.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            // The last chunk is written after the body ends.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_consul_names_them() {
        assert_eq!(parse_level("err"), Some(Level::ERROR));
        assert_eq!(parse_level("WARN"), Some(Level::WARN));
        assert_eq!(parse_level("warning"), Some(Level::WARN));
        assert_eq!(parse_level("trace"), Some(Level::TRACE));
        assert_eq!(parse_level("verbose"), None);
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_LINE);
        let line = make_line(long.as_bytes());
        assert!(line.len() <= MAX_LINE && line.ends_with(" [cut]\n"), "{}", line.len());
        assert_eq!(&*make_line(b"short\n"), "short\n");
        assert_eq!(&*make_line(b"no newline"), "no newline\n");
    }

    /// One test for the shared hub (tests run in parallel threads): levels, bounds, drop
    /// counts, detach, close.
    #[tokio::test]
    async fn a_slow_monitor_drops_lines_and_is_told_how_many() {
        let info = attach(Level::INFO).unwrap();
        let debug = attach(Level::DEBUG).unwrap();
        assert_eq!(HUB.max.load(Ordering::Relaxed), rank(Level::DEBUG));
        publish(Level::DEBUG, b"a debug line\n");
        publish(Level::INFO, b"an info line\n");
        assert_eq!(debug.next().await.unwrap(), "a debug line\n");
        assert_eq!(debug.next().await.unwrap(), "an info line\n");
        assert_eq!(info.next().await.unwrap(), "an info line\n");
        drop(debug);
        assert_eq!(HUB.max.load(Ordering::Relaxed), rank(Level::INFO));

        // The reader stops reading: the queue holds QUEUE_LINES, the rest are counted.
        for i in 0..QUEUE_LINES + 100 {
            publish(Level::WARN, format!("line {i}").as_bytes());
        }
        assert_eq!(info.queue.lines.lock().unwrap().len(), QUEUE_LINES);
        assert_eq!(
            info.next().await.unwrap(),
            "[gossipd monitor] 100 log line(s) dropped: this reader is slower than the log\n"
        );
        assert_eq!(info.next().await.unwrap(), "line 0\n");

        let mut more: Vec<Monitor> = (1..MAX_MONITORS).map(|_| attach(Level::ERROR).unwrap()).collect();
        assert!(matches!(attach(Level::ERROR), Err(AttachError::Full)));
        more.clear();

        // Closing ends the stream after what is queued.
        let closing = tokio::spawn(close(Duration::from_secs(5)));
        let mut n = 1;
        while info.next().await.is_some() {
            n += 1;
        }
        assert_eq!(n, QUEUE_LINES);
        drop(info);
        closing.await.unwrap();
        assert!(matches!(attach(Level::INFO), Err(AttachError::Closed)));
    }
}
