//! `umlkit-agent`: the exec agent that runs inside a guest booted from the
//! default image. It is built as a fully static binary and copied into the image.

fn main() {
    eprintln!("umlkit-agent: not built yet");
    std::process::exit(1);
}
