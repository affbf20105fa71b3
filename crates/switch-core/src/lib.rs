//! Pure switching logic: ports, MAC learning with aging, VLANs, hub mode. Time is passed in; no I/O.
