//! COW file I/O: mkcow, moo (merge), check, rebase, pack/unpack; sparse-aware copying.
