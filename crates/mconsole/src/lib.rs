//! UML management console: the datagram protocol (pure `proto` module) and a client.
