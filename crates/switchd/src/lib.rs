//! The switch daemon: sockets (uml_switch daemon transport and VDE), event loop, management console.
