//! Disk image builder (sparse ext4 without root via `mkfs.ext4 -d`) and the default busybox image.
