//! Syscall wrappers: net.
