//! The fields of a text log line without colours, written as tracing-subscriber's
//! `DefaultFields` writes them with ANSI off (the same text: `name=value` with `Debug`
//! values, a bare message, `r#` names without their prefix, an error's sources, and
//! terminal escapes in messages and errors sanitized), without styling each name
//! through an empty `nu_ansi_term` style: that styling was 6,600 of the ~17,000
//! instructions a sidecar's access log line cost (BENCHMARKS.md, issue #46). The
//! differential test below holds the two formatters to the same output.

use std::error::Error;
use std::fmt::{self, Debug, Display, Write as _};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;

/// [`FormatFields`] for text logs without colours.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'w> FormatFields<'w> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let sanitize = writer.sanitizes_ansi_escapes();
        let mut visitor = Plain {
            writer,
            sanitize,
            empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct Plain<'w> {
    writer: Writer<'w>,
    sanitize: bool,
    empty: bool,
    result: fmt::Result,
}

impl Visit for Plain<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"))
        } else {
            self.record_debug(field, &value)
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        let sanitize = self.sanitize;
        let text = Escaped(format_args!("{value}"), sanitize);
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!(
                    "{text} {}.sources={}",
                    field.name(),
                    Sources(source, sanitize)
                ),
            ),
            None => self.record_debug(field, &format_args!("{text}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        if self.result.is_err() {
            return;
        }
        if self.empty {
            self.empty = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
        let name = field.name();
        self.result = match name {
            "message" => write!(self.writer, "{:?}", Escaped(value, self.sanitize)),
            name => write!(
                self.writer,
                "{}={value:?}",
                name.strip_prefix("r#").unwrap_or(name)
            ),
        };
    }
}

/// A value written with terminal control characters escaped (when `.1`).
struct Escaped<T>(T, bool);

impl<T: Debug> Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            true => write!(Escaping(f), "{:?}", self.0),
            false => write!(f, "{:?}", self.0),
        }
    }
}

impl<T: Display> Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            true => write!(Escaping(f), "{}", self.0),
            false => write!(f, "{}", self.0),
        }
    }
}

/// Writes through, escaping the C0 characters of terminal sequences (ESC, BEL, BS,
/// FF), DEL and the C1 controls.
struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", ch as u32)?,
                _ => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

/// An error's chain of sources, as a list.
struct Sources<'a>(&'a (dyn Error + 'static), bool);

impl Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut current = Some(self.0);
        while let Some(e) = current {
            list.entry(&Escaped(format_args!("{e}"), self.1));
            current = e.source();
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::PlainFields;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Inner;
    impl std::fmt::Display for Inner {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("inner \x1b[31mcause\u{85}")
        }
    }
    impl std::error::Error for Inner {}

    #[derive(Debug)]
    struct Outer(Inner);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer failed")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field the sidecar and the agent log, through both formatters.
    fn events() {
        tracing::info!(
            target: "tribune::access",
            version = 7u64,
            caller = "-",
            method = %"GET",
            path = %"/a b/\x1b[2J",
            status = 200u16,
            decision = "allow",
            reason = "quote \" back \\ tab \t é \u{9b}",
            latency_us = 12u64,
        );
        tracing::warn!(
            r#type = "x",
            negative = -3i64,
            on = true,
            "a message \x1b[0m with {}",
            1
        );
        tracing::error!(
            error = &Outer(Inner) as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::error!(error = &Inner as &(dyn std::error::Error + 'static));
        tracing::info!(empty = "", float = 1.5f64, debug = ?vec!["a", "b"]);
        let span = tracing::info_span!("request", id = 3u64, who = "web");
        let _in = span.enter();
        tracing::info!("inside \x07 a span");
        tracing::info!(message = "a message field", other = 1u8);
    }

    fn run(plain: bool) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(buf.clone());
        if plain {
            tracing::subscriber::with_default(builder.fmt_fields(PlainFields).finish(), events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn plain_fields_write_what_the_default_fields_write_without_colours() {
        let (plain, default) = (run(true), run(false));
        assert_eq!(plain, default);
        assert_eq!(plain.lines().count(), 7, "{plain}");
        assert!(plain.contains("path=/a b/\\x1b[2J") || plain.contains("path=/a b/\x1b[2J"));
    }
}
