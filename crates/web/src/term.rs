//! A browser terminal: a WebSocket bridged to a tty exec shell in a machine
//! (the guest's exec agent runs `/bin/sh -l` on a fresh pty).
//!
//! `?rows=R&cols=C` in the URL sizes the pty from the start.
//! Browser -> server: binary or text messages are keyboard input, except a
//! text message starting with `{` that parses as `{"resize":[ROWS,COLS]}`.
//! Server -> browser: binary messages are terminal output; a last text
//! message `{"exit": CODE}` or `{"error": MESSAGE}` ends the session.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::mpsc;

use crate::LabEntry;

/// What goes to the shell.
enum Input {
    Data(Vec<u8>),
    Resize(u16, u16),
}

/// What comes back.
enum Output {
    Data(Vec<u8>),
    End(String),
}

/// `{"resize":[rows,cols]}` from the page.
pub fn parse_resize(text: &str) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let a = v.get("resize")?.as_array()?;
    let rows = u16::try_from(a.first()?.as_u64()?).ok()?;
    let cols = u16::try_from(a.get(1)?.as_u64()?).ok()?;
    (rows > 0 && cols > 0).then_some((rows, cols))
}

pub async fn bridge(
    mut sock: WebSocket,
    l: Arc<LabEntry>,
    machine: String,
    size: Option<(u16, u16)>,
) {
    let (out_tx, mut out_rx) = mpsc::channel::<Output>(64);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Input>();
    // the exec session lives on plain threads (its client is blocking)
    std::thread::spawn(move || {
        let mut req = guest::ExecRequest {
            argv: vec![b"/bin/sh".to_vec(), b"-l".to_vec()],
            env: vec![],
            tty: true,
        };
        if let Some((rows, cols)) = size {
            req = req.with_winsize(rows, cols);
        }
        let mut sess = match l.backend.store().exec_session(&machine, &req) {
            Ok(s) => s,
            Err(e) => {
                let _ = out_tx.blocking_send(Output::End(
                    serde_json::json!({ "error": e.to_string() }).to_string(),
                ));
                return;
            }
        };
        let stdin = sess.stdin_handle();
        std::thread::spawn(move || {
            let Ok(mut stdin) = stdin else { return };
            for i in in_rx {
                let r = match i {
                    Input::Data(d) => stdin.write(&d),
                    Input::Resize(r, c) => stdin.resize(r, c),
                };
                if r.is_err() {
                    return;
                }
            }
            // the page went away: end the shell and what it runs
            let _ = stdin.signal(9);
        });
        loop {
            match sess.next_event(None) {
                Ok(guest::Event::Stdout(d)) | Ok(guest::Event::Stderr(d)) => {
                    if out_tx.blocking_send(Output::Data(d)).is_err() {
                        break;
                    }
                }
                Ok(guest::Event::Exit(c)) => {
                    let _ = out_tx
                        .blocking_send(Output::End(serde_json::json!({ "exit": c }).to_string()));
                    break;
                }
                Err(e) => {
                    let _ = out_tx.blocking_send(Output::End(
                        serde_json::json!({ "error": e.to_string() }).to_string(),
                    ));
                    break;
                }
            }
        }
    });
    loop {
        tokio::select! {
            o = out_rx.recv() => match o {
                Some(Output::Data(d)) => {
                    if sock.send(Message::Binary(d.into())).await.is_err() {
                        break;
                    }
                }
                Some(Output::End(t)) => {
                    let _ = sock.send(Message::Text(t.into())).await;
                    let _ = sock.send(Message::Close(None)).await;
                    break;
                }
                None => break,
            },
            m = sock.recv() => match m {
                Some(Ok(Message::Binary(b))) => {
                    if in_tx.send(Input::Data(b.to_vec())).is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let i = match t.starts_with('{').then(|| parse_resize(&t)).flatten() {
                        Some((r, c)) => Input::Resize(r, c),
                        None => Input::Data(t.as_bytes().to_vec()),
                    };
                    if in_tx.send(i).is_err() {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    // dropping in_tx ends the stdin thread, which kills the shell
}

#[cfg(test)]
mod tests {
    use super::parse_resize;

    #[test]
    fn resize_messages_are_checked() {
        assert_eq!(parse_resize(r#"{"resize":[30,100]}"#), Some((30, 100)));
        assert_eq!(parse_resize(r#"{"resize":[0,100]}"#), None);
        assert_eq!(parse_resize(r#"{"resize":[70000,100]}"#), None);
        assert_eq!(parse_resize(r#"{"resize":"x"}"#), None);
        assert_eq!(parse_resize("{ls"), None);
    }
}
