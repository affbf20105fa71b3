//! Syscall wrappers: file.
