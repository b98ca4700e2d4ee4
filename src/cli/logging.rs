//! How the text log's lines are written: tracing-subscriber's own format, with
//! two parts of it done more cheaply for the same bytes. Formatting the access
//! line (nine fields, and the time) was about a tenth of an upload's CPU under
//! load, most of it `core::fmt` machinery around a few short strings.
//!
//! - [`PlainFields`]: a line's fields written straight into the line where the
//!   writer has no colours, as tracing's `DefaultFields` writes them
//!   (`name=value`, text quoted and escaped as `{:?}` does). With colours, and
//!   for the message and errors, `DefaultFields` itself writes them.
//! - [`SecondCache`]: the time as tracing's `SystemTime` writes it
//!   (`2026-12-06T23:59:59.123456Z`), the part up to the second kept per thread.
//!
//! [`Lingering`] is the log thread's writer: it rests a moment after each batch.

use std::cell::RefCell;
use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FormatFields;

/// Fields as `DefaultFields` writes them, without its per-field formatting
/// where there are no colours to write.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut visitor = PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// Nothing written yet: the next field needs no space before it.
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Fields tracing-subscriber never writes (a `log` record's metadata).
    fn skipped(&self, field: &Field) -> bool {
        self.result.is_err() || field.name().starts_with("log.")
    }

    /// The space before a field and its `name=`; false when it is not written.
    fn begin(&mut self, field: &Field) -> bool {
        if self.skipped(field) {
            return false;
        }
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        let space = if std::mem::replace(&mut self.is_empty, false) {
            ""
        } else {
            " "
        };
        self.result = self
            .writer
            .write_str(space)
            .and_then(|()| self.writer.write_str(name))
            .and_then(|()| self.writer.write_char('='));
        self.result.is_ok()
    }

    /// A number's field, `text` being what `{:?}` writes of `value`
    /// (`DefaultVisitor` writes every number so, the message too).
    fn record_number(&mut self, field: &Field, text: &str, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            return self.by_default_visitor(field, |v| v.record_debug(field, value));
        }
        if self.begin(field) {
            self.result = self.writer.write_str(text);
        }
    }

    /// The message and errors, whose escaping `DefaultVisitor` owns.
    fn by_default_visitor(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.skipped(field) {
            return;
        }
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            return self.by_default_visitor(field, |v| v.record_str(field, value));
        }
        if self.begin(field) {
            self.result = write_quoted(&mut self.writer, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.by_default_visitor(field, |v| v.record_error(field, value));
    }

    /// Whole numbers (a status) as `{:?}` writes them, without its machinery.
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_number(field, itoa::Buffer::new().format(value), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_number(field, itoa::Buffer::new().format(value), &value);
    }

    /// A latency, without `core::fmt`'s float code where ryu writes what `{:?}`
    /// does: a plain decimal (`{:?}` writes one from 1e-4 up to 1e16) of at most
    /// 15 digits, the only decimal that short to give the number. (With 16 or
    /// 17 digits there can be two, and the two choose differently.)
    fn record_f64(&mut self, field: &Field, value: f64) {
        let mut digits = ryu::Buffer::new();
        let plain = value == 0.0 || (1e-4..1e16).contains(&value.abs());
        match plain.then(|| digits.format_finite(value)) {
            // A point and at most 15 digits, a sign or not.
            Some(text) if text.len() <= 16 + usize::from(value < 0.0) => {
                self.record_number(field, text, &value)
            }
            _ => self.record_debug(field, &value),
        }
    }

    /// Booleans come here too (`Visit`'s own defaults), written
    /// as `{:?}` writes them, as `DefaultVisitor` does.
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            return self.by_default_visitor(field, |v| v.record_debug(field, value));
        }
        if self.begin(field) {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// `text` as `{:?}` writes it: quoted, and escaped where it has to be. Text of
/// printable ASCII without `"` or `\` (ids, names, routes) needs no escape.
fn write_quoted(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    let plain = |b: u8| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\';
    if text.bytes().all(plain) {
        out.write_char('"')?;
        out.write_str(text)?;
        out.write_char('"')
    } else {
        write!(out, "{text:?}")
    }
}

/// The time as tracing-subscriber's `SystemTime` writes it, the date and time
/// up to the second made once a second per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct SecondCache;

thread_local! {
    /// The second last written, and its text up to the `.` before the fraction.
    static SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

impl FormatTime for SecondCache {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let now = chrono::Utc::now();
        let second = now.timestamp();
        // Years outside 0..=9999 are written as tracing writes them.
        if !(0..=253_402_300_799).contains(&second) {
            return tracing_subscriber::fmt::time::SystemTime.format_time(w);
        }
        SECOND.with_borrow_mut(|(cached, text)| {
            if *cached != second {
                text.clear();
                write!(text, "{}.", now.format("%Y-%m-%dT%H:%M:%S"))?;
                *cached = second;
            }
            w.write_str(text)
        })?;
        write!(w, "{:06}Z", now.timestamp_subsec_micros())
    }
}

/// The log thread's writer: after a flush that wrote lines, the thread rests
/// for `linger` before it takes the next batch. Under load it woke for every
/// few lines, and its waiting (spinning, then a wake-up from the request's
/// thread) cost about 2 % of an upload's CPU; resting, it takes a batch a few
/// milliseconds long, and senders find it awake or asleep, never waiting.
/// Lines are written at most `linger` later; none is lost or reordered.
#[derive(Debug)]
pub struct Lingering<W> {
    inner: W,
    linger: std::time::Duration,
    wrote: bool,
}

/// The log thread's rest after each batch (a line may show this much later).
pub const LOG_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

impl<W> Lingering<W> {
    pub fn new(inner: W, linger: std::time::Duration) -> Self {
        Lingering {
            inner,
            linger,
            wrote: false,
        }
    }
}

impl<W: std::io::Write> std::io::Write for Lingering<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.wrote = true;
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.inner.flush();
        if std::mem::take(&mut self.wrote) {
            std::thread::sleep(self.linger);
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    /// Every line written through the log thread arrives, in order, and a
    /// flush rests only after lines were written.
    #[test]
    fn lingering_writer_loses_nothing_and_rests_only_after_lines() {
        use std::io::Write;
        let kept = Kept::default();
        let (mut writer, flushed) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .finish(Lingering::new(kept.clone(), LOG_LINGER));
        let sent: String = (0..2000).map(|n| format!("line {n}\n")).collect();
        for line in sent.split_inclusive('\n') {
            writer.write_all(line.as_bytes()).unwrap();
        }
        drop(flushed); // waits for the thread to write what is left
        assert_eq!(
            String::from_utf8(kept.0.lock().unwrap().clone()).unwrap(),
            sent
        );

        let rest = std::time::Duration::from_millis(300);
        let mut direct = Lingering::new(Kept::default(), rest);
        let started = std::time::Instant::now();
        direct.flush().unwrap();
        assert!(
            started.elapsed() < rest,
            "a flush with nothing written rested"
        );
        direct.write_all(b"x\n").unwrap();
        direct.flush().unwrap();
        assert!(
            started.elapsed() >= rest,
            "a flush after a line did not rest"
        );
    }

    /// A writer that keeps what a subscriber writes.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines an event makes with `fields` as the field formatter, without
    /// time or colours.
    fn lines_with<F>(fields: F, ansi: bool, event: impl FnOnce()) -> String
    where
        F: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let kept = Kept::default();
        let out = kept.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(fields)
            .without_time()
            .with_ansi(ansi)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let bytes = kept.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn access_line(text: &str, number: i64, real: f64, error: Option<&std::io::Error>) {
        let error: Option<&(dyn std::error::Error + 'static)> =
            error.map(|e| e as &(dyn std::error::Error + 'static));
        tracing::info!(
            target: "sms_audit::access",
            request_id = text,
            method = %text,
            route = "/v3/tasks/:task_id/consistency-result",
            task_id = Some(text),
            credential = None::<&str>,
            status = 200u16,
            count = number,
            latency_ms = number as f64 / 1000.0,
            flag = number % 2 == 0,
            real,
            r#type = text,
            detail = ?text,
            error,
            "request {text}"
        );
        tracing::warn!(text, "plain");
        tracing::info!(number);
        // A number as the message, which tracing writes without its name.
        tracing::info!(message = number);
        tracing::info!(message = real);
    }

    /// Numbers at the edges of `{:?}`'s plain decimals, and latencies as they
    /// are (microseconds over 1000), written as tracing writes them.
    #[test]
    fn numbers_are_written_as_tracing_writes_them() {
        let mut reals = vec![
            0.0, -0.0, 1.0, -1.0, 0.5, 1e-4, 9.9e-5, 1e16, 9.999e15, 1e15,
        ];
        reals.extend([
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            0.1 + 0.2,
        ]);
        // 17 digits, where ryu (…297.2) and `{:?}` (…297.3) choose differently.
        reals.push(1_910_627_685_315_297_152_i64 as f64 / 1000.0);
        reals.extend((0..5000).map(|us| f64::from(us * 37) / 1000.0));
        for real in reals {
            let ours = lines_with(PlainFields, false, || access_line("t", -7, real, None));
            let theirs = lines_with(DefaultFields::new(), false, || {
                access_line("t", -7, real, None)
            });
            assert_eq!(ours, theirs, "{real:?}");
        }
    }

    proptest! {
        /// Whatever the text (quotes, backslashes, control characters, escape
        /// sequences, any Unicode), the lines are tracing's own, byte for byte.
        #[test]
        fn lines_are_tracings_own(
            text in ".{0,40}|[ -~]{0,40}",
            number in any::<i64>(),
            real in any::<f64>(),
        ) {
            let error = std::io::Error::other(text.clone());
            for error in [None, Some(&error)] {
                let line = |fields, ansi| match fields {
                    Some(plain) => lines_with(plain, ansi, || access_line(&text, number, real, error)),
                    None => lines_with(DefaultFields::new(), ansi, || access_line(&text, number, real, error)),
                };
                prop_assert_eq!(line(Some(PlainFields), false), line(None, false));
                prop_assert_eq!(line(Some(PlainFields), true), line(None, true));
            }
        }
    }

    #[test]
    fn quoting_escapes_what_debug_escapes() {
        let mut out = String::new();
        write_quoted(&mut out, "a\"b\\c\nd\u{1b}[31m").unwrap();
        assert_eq!(out, r#""a\"b\\c\nd\u{1b}[31m""#);
    }

    /// The cached time is written as tracing's: same shape, same instant.
    #[test]
    fn time_is_written_as_tracing_writes_it() {
        for _ in 0..3 {
            let (mut ours, mut theirs) = (String::new(), String::new());
            SecondCache
                .format_time(&mut Writer::new(&mut ours))
                .unwrap();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
            let parse = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
            let apart = parse(&theirs) - parse(&ours);
            assert!(apart >= chrono::TimeDelta::zero(), "{ours} / {theirs}");
            assert!(apart < chrono::TimeDelta::seconds(1), "{ours} / {theirs}");
            let shape = |s: &str| s.chars().map(|c| c.is_ascii_digit()).collect::<Vec<_>>();
            assert_eq!(shape(&ours), shape(&theirs));
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.');
            std::thread::sleep(std::time::Duration::from_millis(400));
        }
    }
}
