//! Pure COW ("MOOO") format of User-Mode Linux: header v1, v2, v3 and the
//! "broken v3" 64-bit layout; layout math (bitmap and data offsets, file
//! lengths); bitmap bit math; backing-path absolutization rules. No I/O.
//!
//! ```text
//! v3 header (what the kernel and uml_mkcow write), 4128 bytes, big-endian:
//!  0      4       8       12              20      24      28      32           4128
//!  +------+-------+-------+---------------+-------+-------+-------+-- ... ------+
//!  |magic |version| mtime |     size      | sect. | align | fmt=0 | backing path|
//!  |"OOOM"|   3   |  u32  |      u64      |  512  | 4096  |       | NUL-ended   |
//!  +------+-------+-------+---------------+-------+-------+-------+-- ... ------+
//! then: bitmap at ROUND_UP(4128, align) (1 bit per sector, LSB first),
//!       data area at ROUND_UP(bitmap_offset + bitmap_len, align), a full
//!       (sparse) image of the backing file.
//! ```
//!
//! Byte order lives in the field types ([`zerocopy::byteorder`]): v2/v3 are
//! big-endian, v1 is host order.

pub mod bitmap;
pub mod header;
pub mod path;

pub use bitmap::{bit_is_set, count_set, set_bit, SetRuns};
pub use header::{CowHeader, Layout, Version};
pub use path::{absolutize_plan, join_absolute, AbsPlan};

/// `COW_MAGIC` as the C code defines it ("MOOO"; stored big-endian as "OOOM").
pub const COW_MAGIC: u32 = 0x4F4F_4F4D;
/// Sector size written by uml_mkcow and the kernel.
pub const SECTOR_SIZE: u32 = 512;
/// Alignment written by uml_mkcow and the kernel on x86 (the page size).
pub const DEFAULT_ALIGNMENT: u32 = 4096;
/// Longest backing path a v2/v3 header holds (the field is 4096 bytes, NUL-terminated).
pub const MAX_BACKING_PATH: usize = 4095;
/// Bytes the reader reads to detect every version (size of the broken-v3 struct).
pub const MAX_HEADER_LEN: usize = header::V3_BROKEN_LEN;

/// Everything that can be wrong with COW header bytes or values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer than 8 bytes: not even magic and version.
    #[error("short header: {got} bytes, at least 8 needed for magic and version")]
    ShortHeader { got: usize },
    /// The first 4 bytes are not the COW magic in either byte order.
    #[error("not a COW file (wrong magic {found:02x?}, expected 4f 4f 4f 4d)")]
    WrongMagic { found: [u8; 4] },
    /// Magic is right, version is not 1, 2 or 3.
    #[error("unknown COW version {0} (1, 2 and 3 are supported)")]
    UnknownVersion(u32),
    /// The header of this version needs more bytes than there are.
    #[error("truncated {version} header: {needed} bytes needed, {got} present")]
    Truncated {
        version: Version,
        needed: usize,
        got: usize,
    },
    /// A v3 header with alignment 0 (the C reader would divide by zero).
    #[error("invalid COW header: alignment is 0")]
    ZeroAlignment,
    /// A header with sector size 0.
    #[error("invalid COW header: sector size is 0")]
    ZeroSectorSize,
    /// Backing path longer than the header field holds.
    #[error("backing file name is too long: {len} bytes, names are limited to {max} characters")]
    PathTooLong { len: usize, max: usize },
    /// A backing path that cannot be stored (empty or with a NUL byte).
    #[error("invalid backing file name (empty or containing a NUL byte)")]
    BadPath,
    /// Sizes so large that the layout overflows 64 bits.
    #[error("backing size {size} is too large for a COW layout")]
    Overflow { size: u64 },
}

/// `ROUND_UP(x, n)` as the C code does it (`n` > 0).
pub fn round_up(x: u64, n: u64) -> Option<u64> {
    x.checked_add(n - 1).map(|v| v / n * n)
}
