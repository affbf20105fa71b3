//! `umlkit bench moo`: builds the benchmark case and times uml_moo against ours.
