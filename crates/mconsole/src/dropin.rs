//! The `uml_mconsole` drop-in client: socket-name resolution, the local
//! commands (`quit`, `switch`, `log -f`, `mconsole-version`, `int`), the
//! interactive `(name) ` prompt loop and the C tool's output format and exit
//! statuses. Output goes to the writers passed in; nothing is printed here
//! directly.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::{Client, Error};

/// Where the drop-in writes: what uml_mconsole prints on stdout and stderr.
pub struct Io<'a> {
    /// Replies, prompts, local messages.
    pub out: &'a mut dyn Write,
    /// Warnings and errors.
    pub err: &'a mut dyn Write,
}

fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// uml_mconsole's socket resolution: `~/.uml/NAME/mconsole`,
/// `/tmp/uml/NAME/mconsole`, then `NAME` itself. With `warn`, each candidate
/// that cannot be stat'ed is reported on `warn` as the C tool does.
pub fn resolve(name: &str, warn: Option<&mut dyn Write>) -> Option<PathBuf> {
    let mut warn = warn;
    let home = std::env::var("HOME").unwrap_or_default();
    let home_uml = format!("{home}/.uml");
    let mut cands: Vec<String> = Vec::new();
    let skip1 = name.starts_with(&home_uml);
    let step1 = format!("{home_uml}/{name}/mconsole");
    if !skip1 {
        cands.push(step1.clone());
    }
    if !name.starts_with("/tmp/uml/") {
        cands.push(format!("/tmp/uml/{name}/mconsole"));
    }
    cands.push(name.to_string());
    if skip1 {
        cands.push(step1);
    }
    for c in cands {
        match std::fs::metadata(&c) {
            Ok(_) => return Some(PathBuf::from(c)),
            Err(e) => {
                if let Some(w) = warn.as_mut() {
                    let _ = writeln!(w, "Warning: couldn't stat file: {c} - {}", strerror(&e));
                }
            }
        }
    }
    None
}

fn uml_pid(name: &str) -> Option<u32> {
    let home = std::env::var("HOME").unwrap_or_default();
    for p in [
        format!("{home}/.uml/{name}/pid"),
        format!("/tmp/uml/{name}/{name}/pid"),
        format!(".//{name}/pid"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            if let Ok(pid) = s.trim().parse() {
                return Some(pid);
            }
        }
    }
    None
}

const LOCAL_HELP: &str = "Additional local mconsole commands:
    quit - Quit mconsole
    switch <socket-name> - Switch control to the given machine
    log -f <filename> - use contents of <filename> as UML log messages
    mconsole-version - version of this mconsole program
    int  - Interrupt UML session
";

/// One uml_mconsole session: the current target socket and its name.
pub struct Session<'a> {
    path: PathBuf,
    name: String,
    io: Io<'a>,
}

impl<'a> Session<'a> {
    /// A session talking to `path` (empty: none found), shown as `name`.
    pub fn new(path: PathBuf, name: &str, io: Io<'a>) -> Session<'a> {
        Session {
            path,
            name: name.to_string(),
            io,
        }
    }

    /// The socket the session currently talks to.
    pub fn target(&self) -> &Path {
        &self.path
    }

    /// Send one command, print `OK ...`/`ERR ...`; returns uml_mconsole's status.
    fn send(&mut self, cmd: &str) -> u8 {
        let shown = self.path.display().to_string();
        let err = &mut self.io.err;
        if shown.is_empty() {
            let _ = writeln!(err, "Sending command to '' : Invalid argument");
            return 1;
        }
        let client = match Client::new(&self.path) {
            Ok(c) => c,
            Err(Error::NoSocket(_, e)) | Err(Error::Socket(e)) => {
                let _ = writeln!(err, "Sending command to '{shown}' : {}", strerror(&e));
                return 1;
            }
            Err(e) => {
                let _ = writeln!(err, "Sending command to '{shown}' : {e}");
                return 1;
            }
        };
        match client.command(cmd) {
            Ok(r) => {
                let _ = writeln!(self.io.out, "{}", r.line());
                let _ = self.io.out.flush();
                r.exit_code()
            }
            Err(Error::Send(_, e)) => {
                let _ = writeln!(err, "Sending command to '{shown}' : {}", strerror(&e));
                1
            }
            Err(e) => {
                let _ = writeln!(err, "uml_mconsole: {e}");
                1
            }
        }
    }

    fn log_text(&mut self, text: &str) -> u8 {
        let mut code = 0;
        let bytes = text.as_bytes();
        for chunk in bytes.chunks(506) {
            code = self.send(&format!("log {}", String::from_utf8_lossy(chunk)));
        }
        if !text.ends_with('\n') {
            code = self.send("log \n");
        }
        code
    }

    fn say(&mut self, s: &str) {
        let _ = self.io.out.write_all(s.as_bytes());
        let _ = self.io.out.flush();
    }

    /// Handle one command line (local commands first); `None` = quit.
    pub fn line(&mut self, line: &str) -> Option<u8> {
        let line = line.trim_end();
        let word = line.split_whitespace().next().unwrap_or("");
        if line.starts_with("quit") {
            return None;
        }
        Some(if line.starts_with("mconsole-version") {
            self.say("uml_mconsole client version 2\n");
            0
        } else if line.starts_with("help") {
            let c = self.send("help");
            self.say(LOCAL_HELP);
            c
        } else if let Some(n) = line.strip_prefix("switch") {
            let n = n.trim();
            match resolve(n, Some(&mut *self.io.err)) {
                Some(p) => {
                    self.path = p;
                    self.name = n.to_string();
                    self.say(&format!("Switched to '{n}'\n"));
                    0
                }
                None => {
                    let _ = writeln!(self.io.err, "Couldn't switch to '{n}'");
                    1
                }
            }
        } else if word == "int" {
            match uml_pid(&self.name) {
                Some(pid) => {
                    let _ = umlkit_sys::process::kill(pid, umlkit_sys::process::SIGINT);
                    0
                }
                None => {
                    self.say("Cannot determine the PID of your UML session, not sending signal.\n");
                    1
                }
            }
        } else if let Some(rest) = line.strip_prefix("log") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            if let Some(f) = rest.strip_prefix("-f ") {
                match std::fs::read_to_string(f.trim()) {
                    Ok(t) => self.log_text(&t),
                    Err(e) => {
                        let _ = writeln!(
                            self.io.err,
                            "Couldn't open '{}' : {}",
                            f.trim(),
                            strerror(&e)
                        );
                        1
                    }
                }
            } else {
                let rest = rest.to_string();
                self.log_text(&rest)
            }
        } else if let Some(rest) = line.strip_prefix("config ubd") {
            self.send(&format!("config ubd{}", absolutize_ubd(rest)))
        } else {
            self.send(line)
        })
    }

    /// Run the session: the command in `words` if any (its status), else the
    /// interactive loop reading lines from `input` until `quit` or EOF (0).
    pub fn run(&mut self, words: &[String], input: &mut dyn BufRead) -> u8 {
        if !words.is_empty() {
            let line = words.join(" ");
            return self.line(line.trim_end()).unwrap_or(0);
        }
        let mut l = String::new();
        loop {
            let shown: String = if self.path.as_os_str().is_empty() {
                "[None]".into()
            } else {
                self.name.chars().take(10).collect()
            };
            self.say(&format!("({shown}) "));
            l.clear();
            match input.read_line(&mut l) {
                Ok(n) if n > 0 => {
                    let t = l.strip_suffix('\n').unwrap_or(&l).to_string();
                    if t.trim().is_empty() {
                        continue;
                    }
                    if self.line(&t).is_none() {
                        return 0;
                    }
                }
                _ => {
                    self.say("\n");
                    return 0;
                }
            }
        }
    }
}

/// `0=a,b` -> `0=/cwd/a,/cwd/b` (file names of a ubd config made absolute).
pub fn absolutize_ubd(rest: &str) -> String {
    let Some((dev, files)) = rest.split_once('=') else {
        return rest.to_string();
    };
    let abs: Vec<String> = files
        .split(',')
        .map(|f| {
            if f.is_empty() || f.starts_with('/') {
                f.to_string()
            } else {
                std::path::absolute(f)
                    .map(|p| p.display().to_string())
                    .unwrap_or(f.to_string())
            }
        })
        .collect();
    format!("{dev}={}", abs.join(","))
}

/// `uml_mconsole socket-name [command...]` (argv without argv[0]): its exit
/// status. Reads commands from `input` when no command is given.
pub fn main(args: &[String], input: &mut dyn BufRead, io: Io<'_>) -> u8 {
    if args.is_empty() {
        let _ = writeln!(io.err, "Usage : uml_mconsole socket-name [command]");
        return 1;
    }
    let name = &args[0];
    let path = resolve(name, Some(&mut *io.err)).unwrap_or_default();
    Session::new(path, name, io).run(&args[1..], input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolutize_ubd_keeps_absolute_and_empty_names() {
        assert_eq!(absolutize_ubd("0=/a,/b"), "0=/a,/b");
        assert_eq!(absolutize_ubd("0"), "0");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolutize_ubd("1=x,"), format!("1={}/x,", cwd.display()));
    }

    #[test]
    fn dropin_local_commands_and_prompt_without_a_socket() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut input = &b"mconsole-version\n\nversion\nquit\nnever\n"[..];
        let code = main(
            &["/nonexistent/umlkit-mc-test".into()],
            &mut input,
            Io {
                out: &mut out,
                err: &mut err,
            },
        );
        assert_eq!(code, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "([None]) uml_mconsole client version 2\n([None]) ([None]) ([None]) "
        );
        let err = String::from_utf8(err).unwrap();
        assert!(err.contains("Warning: couldn't stat file: /nonexistent/umlkit-mc-test - No such file or directory"), "{err}");
        assert!(
            err.ends_with("Sending command to '' : Invalid argument\n"),
            "{err}"
        );
    }

    #[test]
    fn dropin_usage_without_arguments() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = main(
            &[],
            &mut &b""[..],
            Io {
                out: &mut out,
                err: &mut err,
            },
        );
        assert_eq!(code, 1);
        assert_eq!(err, b"Usage : uml_mconsole socket-name [command]\n");
    }
}
