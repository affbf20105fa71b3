//! A client of the management console (`-M`): one connection, commands in,
//! data blocks out. Used by `umlkit link ...` and `umlkit capture`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use net_proto::mgmt::{DATA_END, DATA_START, PROMPT};

use crate::Error;

/// How long one command may take before the client gives up.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// (errno, status text) of a reply: the last `1NNN text` line.
pub fn status_of(reply: &str) -> (i32, String) {
    for line in reply.lines().rev() {
        let b = line.as_bytes();
        if b.len() >= 5 && b[0] == b'1' && b[1..4].iter().all(u8::is_ascii_digit) && b[4] == b' ' {
            let errno = line[1..4].parse().unwrap_or(-1);
            return (errno, line[5..].to_string());
        }
    }
    (-1, "no status line".into())
}

/// The data block of a reply (empty if none).
pub fn data_of(reply: &str) -> &str {
    match reply.find(DATA_START) {
        Some(i) => {
            let rest = &reply[i + DATA_START.len()..];
            match rest.rfind(&format!("\n{DATA_END}")) {
                Some(j) => &rest[..j + 1],
                None if rest.starts_with(DATA_END) => "",
                None => rest,
            }
        }
        None => "",
    }
}

/// A connected console.
pub struct Console {
    path: PathBuf,
    stream: UnixStream,
    /// Bytes read after the last prompt (the start of a capture stream).
    rest: Vec<u8>,
}

impl Console {
    /// Connect and read the banner.
    pub fn connect(path: &Path) -> Result<Console, Error> {
        let stream = UnixStream::connect(path).map_err(|source| Error::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        let mut c = Console {
            path: path.to_path_buf(),
            stream,
            rest: Vec::new(),
        };
        c.stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| c.err(e))?;
        c.read_reply()?;
        Ok(c)
    }

    fn err(&self, source: std::io::Error) -> Error {
        Error::Console {
            path: self.path.clone(),
            source,
        }
    }

    /// Read up to the prompt; what follows it is kept.
    fn read_reply(&mut self) -> Result<String, Error> {
        let mut out = std::mem::take(&mut self.rest);
        let mut buf = [0u8; 4096];
        let p = PROMPT.as_bytes();
        loop {
            if let Some(i) = out.windows(p.len()).position(|w| w == p) {
                self.rest = out.split_off(i + p.len());
                break;
            }
            // a read with a timeout is not restarted after SIGSTOP/SIGCONT
            let n = match self.stream.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => r.map_err(|e| self.err(e))?,
            };
            if n == 0 {
                return Err(Error::BadReply {
                    path: self.path.clone(),
                    reply: String::from_utf8_lossy(&out).into_owned(),
                });
            }
            out.extend_from_slice(&buf[..n]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Send one command; its data block if the switch accepted it.
    pub fn command(&mut self, line: &str) -> Result<String, Error> {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|e| self.err(e))?;
        let reply = self.read_reply()?;
        let (errno, status) = status_of(&reply);
        if errno != 0 {
            return Err(Error::Refused {
                path: self.path.clone(),
                command: line.to_string(),
                status,
            });
        }
        Ok(data_of(&reply).to_string())
    }

    /// The connection (e.g. turned into a capture stream) and the bytes
    /// already read from it after the last reply.
    pub fn into_stream(self) -> (UnixStream, Vec<u8>) {
        (self.stream, self.rest)
    }
}

/// Connect, run one command, return its data block.
pub fn command(path: &Path, line: &str) -> Result<String, Error> {
    Console::connect(path)?.command(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: bytes after the prompt (a capture stream that starts in
    /// the same read as its `1000 Success`) were lost or made the client
    /// wait forever for a prompt at the very end.
    #[test]
    fn bytes_after_the_prompt_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(format!("banner{PROMPT}").as_bytes()).unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).unwrap();
            let mut r = net_proto::mgmt::reply(None, 0).into_bytes();
            r.extend_from_slice(b"\x02STREAM");
            s.write_all(&r).unwrap();
        });
        let mut c = Console::connect(&path).unwrap();
        assert_eq!(c.command("capture/start").unwrap(), "");
        t.join().unwrap();
        let (_, rest) = c.into_stream();
        assert_eq!(rest, b"\x02STREAM");
    }

    #[test]
    fn reply_parts() {
        let r = net_proto::mgmt::reply(Some("a\nb\n"), 0);
        assert_eq!(status_of(&r), (0, "Success".into()));
        assert_eq!(data_of(&r), "a\nb\n");
        let r = net_proto::mgmt::reply(Some(""), 6);
        assert_eq!(status_of(&r), (6, "No such device or address".into()));
        assert_eq!(data_of(&r), "");
        let r = net_proto::mgmt::reply(None, 22);
        assert_eq!(status_of(&r).0, 22);
        assert_eq!(data_of(&r), "");
    }
}
