//! The page's files, embedded in the binary (no CDN: it works offline).
//! xterm.js and its fit addon are vendored under `assets/vendor/` (versions
//! in its README).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes)
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/app.css"),
    ),
    (
        "vendor/xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/xterm.js"),
    ),
    (
        "vendor/xterm.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/vendor/xterm.css"),
    ),
    (
        "vendor/addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/vendor/addon-fit.js"),
    ),
];

/// The embedded file `name`, or 404.
pub fn response(name: &str) -> Response {
    match FILES.iter().find(|f| f.0 == name) {
        Some((_, ty, bytes)) => ([(header::CONTENT_TYPE, *ty)], *bytes).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
