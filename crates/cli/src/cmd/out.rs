//! Writing to the terminal: command output that survives a closed pipe, and
//! names shown with their control characters escaped.

use std::borrow::Cow;
use std::io::Write;

/// Exit status after stdout turned out to be a closed pipe: what a shell
/// reports for a program killed by SIGPIPE (128 + 13), as the C tools give.
pub const CLOSED_PIPE_EXIT: i32 = 141;

/// Write command output to stdout (used by `outln!`/`out!`). A closed pipe
/// (EPIPE: the reader went away, `umlkit ps | head -1`) ends the program at
/// once, quietly, with [`CLOSED_PIPE_EXIT`]; any other write error is
/// reported once and ends it with status 1. Never panics.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE_EXIT);
        }
        write_stderr(format_args!("umlkit: cannot write to stdout: {e}\n"));
        std::process::exit(1);
    }
}

/// Write a diagnostic to stderr (used by `errln!`/`err!`); a write
/// error (EPIPE, a full disk behind a redirect) is ignored.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_fmt(args).and_then(|()| e.flush());
}

/// stdout as a [`Write`] for library calls that print through a writer,
/// with the closed-pipe rule of [`write_stdout`]: EPIPE ends the program
/// with [`CLOSED_PIPE_EXIT`], any other write error with status 1.
pub struct Stdout;

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut o = std::io::stdout().lock();
        if let Err(e) = o.write_all(buf) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(CLOSED_PIPE_EXIT);
            }
            write_stderr(format_args!("umlkit: cannot write to stdout: {e}\n"));
            std::process::exit(1);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Err(e) = std::io::stdout().lock().flush() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(CLOSED_PIPE_EXIT);
            }
            write_stderr(format_args!("umlkit: cannot write to stdout: {e}\n"));
            std::process::exit(1);
        }
        Ok(())
    }
}

/// `s` with control characters (ESC, CR, NUL, DEL, C1 ...) escaped as
/// `\x1b`, `\r`, `\u{9b}`, so a name from a lab file or a state folder
/// cannot drive the terminal. Other text, UTF-8 included, is unchanged.
pub fn shown(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`shown`] for multi-line text (e.g. what a guest printed): line
/// breaks (`\n`, `\r\n`) and tabs stay, every other control character is
/// escaped.
pub fn shown_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_lines && (c == '\n' || c == '\t');
    if !s.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if keep(c) => o.push(c),
            '\r' if keep_lines && it.peek() == Some(&'\n') => o.push(c),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                o.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => o.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => o.push(c),
        }
    }
    Cow::Owned(o)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("pc1"), "pc1");
        assert_eq!(shown("a\x1b[31mred"), "a\\x1b[31mred");
        assert_eq!(shown("x\ny\r\0\x7f"), "x\\ny\\r\\x00\\x7f");
        assert_eq!(shown("c1\u{9b}2J é"), "c1\\u{9b}2J é");
        assert_eq!(super::shown_lines("a\n\tb\x1b"), "a\n\tb\\x1b");
        assert_eq!(super::shown_lines("a\r\nb\rc"), "a\r\nb\\rc");
    }
}
