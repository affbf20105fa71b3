//! COW headers: on-disk structs (byte order in the field types), the typed
//! [`CowHeader`], version detection and [`Layout`] math.

use zerocopy::byteorder::{big_endian, native_endian};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::{round_up, FormatError, COW_MAGIC, DEFAULT_ALIGNMENT, MAX_BACKING_PATH, SECTOR_SIZE};

/// Length of a v1 header.
pub const V1_LEN: usize = 280;
/// Length of a v2 header.
pub const V2_LEN: usize = 4120;
/// Length of a v3 header.
pub const V3_LEN: usize = 4128;
/// Length of a "broken v3" (unpacked LP64) header.
pub const V3_BROKEN_LEN: usize = 4136;

type Be32 = big_endian::U32;
type Be64 = big_endian::U64;
type Ne32 = native_endian::U32;
type Ne64 = native_endian::U64;

/// v1: host byte order, 256-byte path field.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawV1 {
    pub magic: Ne32,
    pub version: Ne32,
    pub backing_file: [u8; 256],
    pub mtime: Ne32,
    pub size: Ne64,
    pub sectorsize: Ne32,
}

/// v2: big-endian, path before the numbers.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawV2 {
    pub magic: Be32,
    pub version: Be32,
    pub backing_file: [u8; 4096],
    pub mtime: Be32,
    pub size: Be64,
    pub sectorsize: Be32,
}

/// v3: big-endian, numbers first, path last.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawV3 {
    pub magic: Be32,
    pub version: Be32,
    pub mtime: Be32,
    pub size: Be64,
    pub sectorsize: Be32,
    pub alignment: Be32,
    pub cow_format: Be32,
    pub backing_file: [u8; 4096],
}

/// "Broken v3": the LP64 unpacked struct of old 64-bit writers. The s64
/// mtime holds `htonl(mtime)`: a BE u32 followed by 4 zero bytes.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawV3Broken {
    pub magic: Be32,
    pub version: Be32,
    pub mtime: Be32,
    pub mtime_pad: [u8; 4],
    pub size: Be64,
    pub sectorsize: Be32,
    pub alignment: Be32,
    pub cow_format: Be32,
    pub backing_file: [u8; 4096],
    /// Tail padding of the LP64 struct (aligned to 8).
    pub tail_pad: [u8; 4],
}

const _: () = assert!(std::mem::size_of::<RawV1>() == V1_LEN);
const _: () = assert!(std::mem::size_of::<RawV2>() == V2_LEN);
const _: () = assert!(std::mem::size_of::<RawV3>() == V3_LEN);
const _: () = assert!(std::mem::size_of::<RawV3Broken>() == V3_BROKEN_LEN);

/// Header version as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V1,
    V2,
    V3,
    /// Version 3 written with the 64-bit unpacked layout.
    V3Broken,
}

impl Version {
    /// Header length of this version.
    pub fn header_len(self) -> usize {
        match self {
            Version::V1 => V1_LEN,
            Version::V2 => V2_LEN,
            Version::V3 => V3_LEN,
            Version::V3Broken => V3_BROKEN_LEN,
        }
    }
    /// The number stored in the version field.
    pub fn number(self) -> u32 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
            Version::V3 | Version::V3Broken => 3,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::V3 => "v3",
            Version::V3Broken => "broken-v3 (64-bit layout)",
        })
    }
}

/// A parsed, validated COW header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowHeader {
    pub version: Version,
    /// Backing file path bytes as stored (up to the first NUL).
    pub backing_file: Vec<u8>,
    /// Backing file mtime, seconds, truncated to 32 bits.
    pub mtime: u32,
    /// Backing file size in bytes.
    pub size: u64,
    pub sector_size: u32,
    /// v3 alignment; for v1/v2 the sector size (as the C reader sets it).
    pub alignment: u32,
    /// v3 `cow_format` (0 = bitmap); 0 for v1/v2.
    pub cow_format: u32,
}

/// Where things are in a COW file, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub bitmap_offset: u64,
    pub bitmap_len: u64,
    pub data_offset: u64,
    /// Length of a freshly created COW file: `data_offset + size`.
    pub file_len: u64,
    /// Number of sectors of the backing file (rounded up).
    pub sectors: u64,
    /// Sectors uml_moo merges: `size / sector_size` (a partial last sector is dropped).
    pub merge_sectors: u64,
}

fn path_field(field: &[u8]) -> Vec<u8> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    field[..end].to_vec()
}

/// Detect the version from the first 8 bytes (magic and version).
pub fn detect(bytes: &[u8]) -> Result<Version, FormatError> {
    if bytes.len() < 8 {
        return Err(FormatError::ShortHeader { got: bytes.len() });
    }
    let first: [u8; 4] = bytes[0..4].try_into().expect("4 bytes");
    let ver: [u8; 4] = bytes[4..8].try_into().expect("4 bytes");
    let version = if u32::from_ne_bytes(first) == COW_MAGIC {
        u32::from_ne_bytes(ver)
    } else if u32::from_be_bytes(first) == COW_MAGIC {
        u32::from_be_bytes(ver)
    } else {
        return Err(FormatError::WrongMagic { found: first });
    };
    match version {
        1 => Ok(Version::V1),
        2 => Ok(Version::V2),
        3 => {
            // Broken v3: packed-v3 backing_file would start with 4 NUL bytes.
            if bytes.len() >= 36 && bytes[32..36] == [0, 0, 0, 0] {
                Ok(Version::V3Broken)
            } else {
                Ok(Version::V3)
            }
        }
        v => Err(FormatError::UnknownVersion(v)),
    }
}

fn need(version: Version, bytes: &[u8]) -> Result<(), FormatError> {
    let needed = version.header_len();
    if bytes.len() < needed {
        return Err(FormatError::Truncated {
            version,
            needed,
            got: bytes.len(),
        });
    }
    Ok(())
}

impl CowHeader {
    /// Parse the header at the start of `bytes` (read [`crate::MAX_HEADER_LEN`]
    /// bytes, or fewer if the file is shorter).
    pub fn parse(bytes: &[u8]) -> Result<CowHeader, FormatError> {
        let version = detect(bytes)?;
        need(version, bytes)?;
        let h = match version {
            Version::V1 => {
                let (r, _) = RawV1::read_from_prefix(bytes).expect("length checked");
                CowHeader {
                    version,
                    backing_file: path_field(&r.backing_file),
                    mtime: r.mtime.get(),
                    size: r.size.get(),
                    sector_size: r.sectorsize.get(),
                    alignment: r.sectorsize.get(),
                    cow_format: 0,
                }
            }
            Version::V2 => {
                let (r, _) = RawV2::read_from_prefix(bytes).expect("length checked");
                CowHeader {
                    version,
                    backing_file: path_field(&r.backing_file),
                    mtime: r.mtime.get(),
                    size: r.size.get(),
                    sector_size: r.sectorsize.get(),
                    alignment: r.sectorsize.get(),
                    cow_format: 0,
                }
            }
            Version::V3 => {
                let (r, _) = RawV3::read_from_prefix(bytes).expect("length checked");
                CowHeader {
                    version,
                    backing_file: path_field(&r.backing_file),
                    mtime: r.mtime.get(),
                    size: r.size.get(),
                    sector_size: r.sectorsize.get(),
                    alignment: r.alignment.get(),
                    cow_format: r.cow_format.get(),
                }
            }
            Version::V3Broken => {
                let (r, _) = RawV3Broken::read_from_prefix(bytes).expect("length checked");
                CowHeader {
                    version,
                    backing_file: path_field(&r.backing_file),
                    mtime: r.mtime.get(),
                    size: r.size.get(),
                    sector_size: r.sectorsize.get(),
                    alignment: r.alignment.get(),
                    cow_format: r.cow_format.get(),
                }
            }
        };
        if h.alignment == 0 {
            return Err(FormatError::ZeroAlignment);
        }
        if h.sector_size == 0 {
            return Err(FormatError::ZeroSectorSize);
        }
        h.layout()?;
        Ok(h)
    }

    /// A v3 header as uml_mkcow and the kernel write it (sector size 512,
    /// alignment 4096, format 0). `backing` must already be absolute.
    pub fn new_v3(backing: &[u8], mtime: u32, size: u64) -> Result<CowHeader, FormatError> {
        check_backing_path(backing)?;
        let h = CowHeader {
            version: Version::V3,
            backing_file: backing.to_vec(),
            mtime,
            size,
            sector_size: SECTOR_SIZE,
            alignment: DEFAULT_ALIGNMENT,
            cow_format: 0,
        };
        h.layout()?;
        Ok(h)
    }

    /// Serialize as a packed v3 header (4128 bytes), whatever version was
    /// read. Note: the layout of a v1/v2/broken file differs from v3, so
    /// rewriting another version's header in place needs [`Self::to_bytes`].
    pub fn to_v3_bytes(&self) -> Result<Vec<u8>, FormatError> {
        check_backing_path(&self.backing_file)?;
        let mut raw = RawV3::new_zeroed();
        raw.magic.set(COW_MAGIC);
        raw.version.set(3);
        raw.mtime.set(self.mtime);
        raw.size.set(self.size);
        raw.sectorsize.set(self.sector_size);
        raw.alignment.set(self.alignment);
        raw.cow_format.set(self.cow_format);
        raw.backing_file[..self.backing_file.len()].copy_from_slice(&self.backing_file);
        Ok(raw.as_bytes().to_vec())
    }

    /// Serialize in this header's own version and layout (for in-place
    /// rewrites such as rebase). v1 is written in host byte order with the
    /// magic in host order, as a v1 writer did.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        match self.version {
            Version::V3 => self.to_v3_bytes(),
            Version::V3Broken => {
                check_backing_path(&self.backing_file)?;
                let mut raw = RawV3Broken::new_zeroed();
                raw.magic.set(COW_MAGIC);
                raw.version.set(3);
                raw.mtime.set(self.mtime);
                raw.size.set(self.size);
                raw.sectorsize.set(self.sector_size);
                raw.alignment.set(self.alignment);
                raw.cow_format.set(self.cow_format);
                raw.backing_file[..self.backing_file.len()].copy_from_slice(&self.backing_file);
                Ok(raw.as_bytes().to_vec())
            }
            Version::V2 => {
                check_backing_path(&self.backing_file)?;
                let mut raw = RawV2::new_zeroed();
                raw.magic.set(COW_MAGIC);
                raw.version.set(2);
                raw.mtime.set(self.mtime);
                raw.size.set(self.size);
                raw.sectorsize.set(self.sector_size);
                raw.backing_file[..self.backing_file.len()].copy_from_slice(&self.backing_file);
                Ok(raw.as_bytes().to_vec())
            }
            Version::V1 => {
                if self.backing_file.len() > 255 {
                    return Err(FormatError::PathTooLong {
                        len: self.backing_file.len(),
                        max: 255,
                    });
                }
                check_backing_path(&self.backing_file)?;
                let mut raw = RawV1::new_zeroed();
                raw.magic.set(COW_MAGIC);
                raw.version.set(1);
                raw.mtime.set(self.mtime);
                raw.size.set(self.size);
                raw.sectorsize.set(self.sector_size);
                raw.backing_file[..self.backing_file.len()].copy_from_slice(&self.backing_file);
                Ok(raw.as_bytes().to_vec())
            }
        }
    }

    /// Offsets and lengths of this header's file, per version (including the
    /// v1/v2 bitmap rounding quirk).
    pub fn layout(&self) -> Result<Layout, FormatError> {
        layout(self.version, self.size, self.sector_size, self.alignment)
    }
}

/// Layout math for a version, backing size, sector size and alignment.
///
/// * v1/v2: `bitmap_len = (size + ss - 1) / (8*ss)` (under-sized when the
///   sector count is not a multiple of 8 — the historical rounding bug),
///   `data_offset = ROUND_UP(bitmap_offset + bitmap_len, ss)`.
/// * v3: `bitmap_len = ceil(ceil(size/ss)/8)`,
///   `data_offset = ROUND_UP(bitmap_offset + bitmap_len, align)`.
pub fn layout(version: Version, size: u64, ss: u32, align: u32) -> Result<Layout, FormatError> {
    if ss == 0 {
        return Err(FormatError::ZeroSectorSize);
    }
    if align == 0 {
        return Err(FormatError::ZeroAlignment);
    }
    let over = FormatError::Overflow { size };
    let ss64 = u64::from(ss);
    let al64 = u64::from(align);
    let sectors = size.div_ceil(ss64);
    let (bitmap_offset, bitmap_len, data_offset) = match version {
        Version::V1 | Version::V2 => {
            let bo = version.header_len() as u64;
            let bl = size.checked_add(ss64 - 1).ok_or(over.clone())? / (8 * ss64);
            let d = round_up(bo + bl, ss64).ok_or(over.clone())?;
            (bo, bl, d)
        }
        Version::V3 | Version::V3Broken => {
            let bo = round_up(version.header_len() as u64, al64).ok_or(over.clone())?;
            let bl = sectors.div_ceil(8);
            let d = round_up(bo + bl, al64).ok_or(over.clone())?;
            (bo, bl, d)
        }
    };
    let file_len = data_offset.checked_add(size).ok_or(over)?;
    Ok(Layout {
        bitmap_offset,
        bitmap_len,
        data_offset,
        file_len,
        sectors,
        merge_sectors: size / ss64,
    })
}

/// A backing path fits a v2/v3 header: 1..=4095 bytes, no NUL.
pub fn check_backing_path(p: &[u8]) -> Result<(), FormatError> {
    if p.len() > MAX_BACKING_PATH {
        return Err(FormatError::PathTooLong {
            len: p.len(),
            max: MAX_BACKING_PATH,
        });
    }
    if p.is_empty() || p.contains(&0) {
        return Err(FormatError::BadPath);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file of cow-v3.md §6 (64 MiB backing, mtime 2024-01-02 03:04:05 UTC).
    fn spec_example() -> Vec<u8> {
        let mut v = vec![
            0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 3, 0x65, 0x93, 0x7d, 0x25, 0, 0, 0, 0, 0x04, 0, 0, 0,
            0, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0,
        ];
        v.extend_from_slice(b"/tmp/cow/back.img");
        v.resize(V3_LEN, 0);
        v
    }

    #[test]
    fn writes_spec_example_byte_identical() {
        let h = CowHeader::new_v3(b"/tmp/cow/back.img", 1704164645, 64 << 20).unwrap();
        assert_eq!(h.to_v3_bytes().unwrap(), spec_example());
    }

    #[test]
    fn parses_spec_example() {
        let h = CowHeader::parse(&spec_example()).unwrap();
        assert_eq!(h.version, Version::V3);
        assert_eq!(h.mtime, 1704164645);
        assert_eq!(h.size, 67108864);
        assert_eq!(h.backing_file, b"/tmp/cow/back.img");
        let l = h.layout().unwrap();
        assert_eq!(
            (l.bitmap_offset, l.bitmap_len, l.data_offset, l.file_len),
            (8192, 16384, 24576, 67133440)
        );
    }

    #[test]
    fn spec_layout_table() {
        let l = layout(Version::V3, 8 << 20, 512, 4096).unwrap();
        assert_eq!(
            (l.bitmap_offset, l.bitmap_len, l.data_offset, l.file_len),
            (8192, 2048, 12288, 8400896)
        );
        let l = layout(Version::V3, 1 << 20, 512, 4096).unwrap();
        assert_eq!(
            (l.bitmap_offset, l.bitmap_len, l.data_offset, l.file_len),
            (8192, 256, 12288, 1060864)
        );
        let l = layout(Version::V2, 8 << 20, 512, 512).unwrap();
        assert_eq!(
            (l.bitmap_offset, l.bitmap_len, l.data_offset),
            (4120, 2048, 6656)
        );
        let l = layout(Version::V1, 8 << 20, 512, 512).unwrap();
        assert_eq!(
            (l.bitmap_offset, l.bitmap_len, l.data_offset),
            (280, 2048, 2560)
        );
    }

    #[test]
    fn v1_v2_rounding_quirk() {
        // 9 sectors: v3 needs 2 bitmap bytes, v1/v2 compute (9*512+511)/4096 = 1.
        let size = 9 * 512;
        assert_eq!(layout(Version::V3, size, 512, 4096).unwrap().bitmap_len, 2);
        assert_eq!(layout(Version::V2, size, 512, 512).unwrap().bitmap_len, 1);
        assert_eq!(layout(Version::V1, size, 512, 512).unwrap().bitmap_len, 1);
        // Partial last sector: merge drops it.
        let l = layout(Version::V3, 1000, 512, 4096).unwrap();
        assert_eq!((l.sectors, l.merge_sectors), (2, 1));
    }

    #[test]
    fn broken_v3_detected_and_parsed() {
        let mut raw = RawV3Broken::new_zeroed();
        raw.magic.set(COW_MAGIC);
        raw.version.set(3);
        raw.mtime.set(0x1234_5678);
        raw.size.set(1 << 20);
        raw.sectorsize.set(512);
        raw.alignment.set(4096);
        raw.backing_file[..6].copy_from_slice(b"/x/img");
        let h = CowHeader::parse(raw.as_bytes()).unwrap();
        assert_eq!(h.version, Version::V3Broken);
        assert_eq!(h.mtime, 0x1234_5678);
        assert_eq!(h.backing_file, b"/x/img");
        let l = h.layout().unwrap();
        assert_eq!(l.bitmap_offset, 8192); // ROUND_UP(4136, 4096)
        assert_eq!(h.to_bytes().unwrap(), raw.as_bytes());
    }

    #[test]
    fn v1_host_order_and_be_magic() {
        let h = CowHeader {
            version: Version::V1,
            backing_file: b"/a".to_vec(),
            mtime: 7,
            size: 4096,
            sector_size: 512,
            alignment: 512,
            cow_format: 0,
        };
        let bytes = h.to_bytes().unwrap();
        assert_eq!(&bytes[0..4], &COW_MAGIC.to_ne_bytes());
        assert_eq!(CowHeader::parse(&bytes).unwrap(), h);
    }

    #[test]
    fn errors() {
        assert_eq!(
            CowHeader::parse(b"OOO"),
            Err(FormatError::ShortHeader { got: 3 })
        );
        assert!(matches!(
            CowHeader::parse(b"ABCDEFGH"),
            Err(FormatError::WrongMagic { .. })
        ));
        assert_eq!(
            CowHeader::parse(&[0x4f, 0x4f, 0x4f, 0x4d, 0, 0, 0, 9]),
            Err(FormatError::UnknownVersion(9))
        );
        let ex = spec_example();
        assert_eq!(
            CowHeader::parse(&ex[..100]),
            Err(FormatError::Truncated {
                version: Version::V3,
                needed: 4128,
                got: 100
            })
        );
        let mut z = ex.clone();
        z[24..28].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(CowHeader::parse(&z), Err(FormatError::ZeroAlignment));
        let long = vec![b'a'; 4096];
        assert_eq!(
            CowHeader::new_v3(&long, 0, 0),
            Err(FormatError::PathTooLong {
                len: 4096,
                max: 4095
            })
        );
        assert!(CowHeader::new_v3(&long[..4095], 0, 0).is_ok());
    }
}
