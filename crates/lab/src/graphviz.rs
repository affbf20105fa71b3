//! Running a Graphviz layout engine: DOT text in, SVG text out, in a child
//! process with a timeout. The DOT itself is written by the pure
//! [`crate::graph::dot`]; this module is the I/O around it.

use crate::error::{LabError, Result};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Debian package that provides the layout engines.
pub const PACKAGE: &str = "graphviz";

/// How long a layout may take before the engine is killed (50 machines
/// take well under a second; see docs/labs.md).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Lay out `dot` with `engine` (`neato`, `fdp`, `sfdp`, `dot`, found on
/// `PATH`) and return the SVG the engine writes. A missing engine is an
/// error that names the package to install; an engine that fails, writes no
/// SVG or runs longer than `timeout` (then it is killed) is an error with
/// its stderr.
pub fn render(engine: &str, dot: &str, timeout: Duration) -> Result<String> {
    let mut child = Command::new(engine)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    ": not found; install the Debian package {PACKAGE} (apt-get install {PACKAGE})"
                )
            } else {
                String::new()
            };
            LabError::Layout {
                what: format!("cannot run the Graphviz layout engine {engine}{hint}"),
                source: Some(e),
            }
        })?;
    let pid = child.id();
    // Feed stdin and drain stdout/stderr on their own threads, so that a
    // large graph cannot fill a pipe while we wait for the exit.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = dot.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        // an engine that exits early closes its stdin: its exit status tells why
        let _ = stdin.write_all(&input);
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    // `pid` is our unreaped child: its number cannot be reused before wait().
    let exited = umlkit_sys::watch::wait_exit(&[pid], |_| true, timeout);
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| LabError::Layout {
        what: format!("cannot wait for the Graphviz layout engine {engine}"),
        source: Some(e),
    })?;
    let _ = writer.join();
    let out = out.join().unwrap_or_default();
    let err = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let err = err.trim();
    if !exited {
        return Err(LabError::Layout {
            what: format!(
                "the Graphviz layout engine {engine} took longer than {} s and was stopped",
                timeout.as_secs_f64()
            ),
            source: None,
        });
    }
    if !status.success() {
        return Err(LabError::Layout {
            what: format!("the Graphviz layout engine {engine} failed ({status}): {err}"),
            source: None,
        });
    }
    let svg = String::from_utf8(out).map_err(|_| LabError::Layout {
        what: format!("the Graphviz layout engine {engine} wrote SVG that is not UTF-8"),
        source: None,
    })?;
    // the document from its <svg> element on: no XML prolog or DOCTYPE, so
    // the text can also be put inline into an HTML page
    match svg.find("<svg") {
        Some(at) if svg.trim_end().ends_with("</svg>") => Ok(svg[at..].to_string()),
        _ => Err(LabError::Layout {
            what: format!("the Graphviz layout engine {engine} wrote no SVG: {err}"),
            source: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in engine: a shell script that ignores its arguments.
    fn script(dir: &std::path::Path, body: &str) -> String {
        let p = dir.join("engine");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        p.to_str().unwrap().to_string()
    }

    /// A missing engine names the package to install.
    #[test]
    fn a_missing_engine_names_the_graphviz_package() {
        let e = render("/nonexistent/neato", "graph{}", TIMEOUT)
            .unwrap_err()
            .to_string();
        assert!(e.contains("install the Debian package graphviz"), "{e}");
    }

    /// An engine that fails says so with its stderr.
    #[test]
    fn a_failing_engine_reports_its_stderr() {
        let d = tempfile::tempdir().unwrap();
        let e = render(
            &script(d.path(), "echo broken >&2; exit 3"),
            "graph{}",
            TIMEOUT,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("failed") && e.contains("broken"), "{e}");
    }

    /// An engine that hangs is killed at the timeout.
    #[test]
    fn a_hanging_engine_is_stopped_at_the_timeout() {
        let d = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        let e = render(
            &script(d.path(), "exec sleep 30"),
            "graph{}",
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("took longer than"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    /// A real engine turns DOT into an SVG document without prolog.
    #[test]
    fn neato_writes_svg() {
        let s = render("neato", "graph { a -- b }", TIMEOUT).unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
    }
}
