//! Guests as managed processes: kernel discovery, command-line builder, supervisor, state, exec client.
