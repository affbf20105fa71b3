//! `pack`/`unpack`: COW files and their backing files in one standard tar
//! archive that GNU tar reads (`tar tvf`, `tar xf`), keeping holes (GNU
//! "oldgnu" sparse entries, type `S`), modes and mtimes.
//!
//! In the archive every file sits at the top level under its base name and
//! each COW header names its backing file by that relative name. `unpack`
//! makes those names absolute for the destination folder and restores the
//! mtimes, so the COW files validate against their backing files again.
//!
//! ```text
//! oldgnu header (512 bytes): name@0[100] mode@100[8] uid@108[8] gid@116[8]
//! size@124[12] mtime@136[12] chksum@148[8] type@156 linkname@157[100]
//! magic@257 "ustar  \0" uname@265[32] gname@297[32] ... sparse@386 4 x
//! {offset[12], numbytes[12]} isextended@482 realsize@483[12]
//! extension block: 21 x {offset[12], numbytes[12]} isextended@504
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::IoCtx;
use crate::{
    read_full_at, sync_parent, temp_sibling, validate_backing, CowError, CowFile, Op, Result,
};

const BLK: usize = 512;
const ZERO_SCAN: u64 = 4096;

fn put_num(field: &mut [u8], v: u64) {
    let w = field.len();
    let digits = w - 1;
    if digits * 3 >= 64 || v < (1u64 << (3 * digits)) {
        let s = format!("{v:0digits$o}");
        field[..digits].copy_from_slice(s.as_bytes());
        field[digits] = 0;
    } else {
        // GNU base-256: high bit of the first byte set, big-endian value.
        field.fill(0);
        field[0] = 0x80;
        let be = v.to_be_bytes();
        field[w - 8..].copy_from_slice(&be);
    }
}

fn get_num(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ' || b == 0)
        .take_while(|&b| (b'0'..=b'7').contains(&b))
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

fn checksum(h: &[u8; BLK]) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn finish_header(h: &mut [u8; BLK]) {
    h[257..263].copy_from_slice(b"ustar ");
    h[263..265].copy_from_slice(b" \0");
    let c = checksum(h);
    let s = format!("{c:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

struct Entry<'a> {
    name: &'a [u8],
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    /// Stored regions (offset, len), sorted.
    map: &'a [(u64, u64)],
}

/// Headers for one sparse file (plus a GNU long-name entry if needed).
fn entry_headers(e: &Entry) -> Vec<[u8; BLK]> {
    let mut out = Vec::new();
    if e.name.len() >= 100 {
        let mut h = [0u8; BLK];
        h[..13].copy_from_slice(b"././@LongLink");
        put_num(&mut h[100..108], 0o644);
        put_num(&mut h[108..116], 0);
        put_num(&mut h[116..124], 0);
        put_num(&mut h[124..136], e.name.len() as u64 + 1);
        put_num(&mut h[136..148], 0);
        h[156] = b'L';
        finish_header(&mut h);
        out.push(h);
        for chunk in e.name.chunks(BLK) {
            let mut d = [0u8; BLK];
            d[..chunk.len()].copy_from_slice(chunk);
            out.push(d);
        }
        if e.name.len().is_multiple_of(BLK) {
            out.push([0u8; BLK]);
        }
    }
    // GNU tar ends a map with a zero-length entry at EOF when the file ends
    // in a hole; do the same so the real size is restored.
    let mut map: Vec<(u64, u64)> = e.map.to_vec();
    if map.last().is_none_or(|&(o, l)| o + l < e.size) {
        map.push((e.size, 0));
    }
    let stored: u64 = map.iter().map(|m| m.1).sum();
    let mut h = [0u8; BLK];
    let n = e.name.len().min(99);
    h[..n].copy_from_slice(&e.name[..n]);
    put_num(&mut h[100..108], u64::from(e.mode & 0o7777));
    put_num(&mut h[108..116], u64::from(e.uid));
    put_num(&mut h[116..124], u64::from(e.gid));
    put_num(&mut h[124..136], stored);
    put_num(&mut h[136..148], e.mtime.max(0) as u64);
    h[156] = b'S';
    put_num(&mut h[483..495], e.size);
    let first = map.len().min(4);
    for (i, &(o, l)) in map[..first].iter().enumerate() {
        put_num(&mut h[386 + 24 * i..386 + 24 * i + 12], o);
        put_num(&mut h[386 + 24 * i + 12..386 + 24 * i + 24], l);
    }
    let mut rest = &map[first..];
    if !rest.is_empty() {
        h[482] = 1;
    }
    finish_header(&mut h);
    out.push(h);
    while !rest.is_empty() {
        let k = rest.len().min(21);
        let mut x = [0u8; BLK];
        for (i, &(o, l)) in rest[..k].iter().enumerate() {
            put_num(&mut x[24 * i..24 * i + 12], o);
            put_num(&mut x[24 * i + 12..24 * i + 24], l);
        }
        rest = &rest[k..];
        if !rest.is_empty() {
            x[504] = 1;
        }
        out.push(x);
    }
    out
}

/// Regions of `f` within `[0, size)` holding non-zero data: allocated
/// extents with all-zero 4 KiB blocks left out.
fn data_map(f: &File, path: &Path, size: u64) -> Result<Vec<(u64, u64)>> {
    let ext = umlkit_sys::file::data_extents(f, 0, size).ctx(Op::Other, path)?;
    let mut map: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for (o, l) in ext {
        let mut pos = o;
        while pos < o + l {
            let n = ((o + l - pos) as usize).min(buf.len());
            let got = read_full_at(f, &mut buf[..n], pos).ctx(Op::Other, path)?;
            let mut i = 0usize;
            while i < got {
                let start = pos + i as u64;
                let j = (i + (ZERO_SCAN - start % ZERO_SCAN) as usize).min(got);
                if buf[i..j].iter().any(|&b| b != 0) {
                    match map.last_mut() {
                        Some(last) if last.0 + last.1 == start => last.1 += (j - i) as u64,
                        _ => map.push((start, (j - i) as u64)),
                    }
                }
                i = j;
            }
            if got < n {
                break;
            }
            pos += n as u64;
        }
    }
    Ok(map)
}

struct Member {
    src: PathBuf,
    name: Vec<u8>,
    /// For a COW: the header bytes to store instead of the file's own.
    header: Option<Vec<u8>>,
}

/// Pack COW files and their backing files into the tar `out` (written to a
/// temporary name and renamed at the end). Each COW must validate against
/// its backing file. Returns the archive member names.
pub fn pack(out: &Path, cows: &[PathBuf]) -> Result<Vec<String>> {
    let mut members: Vec<Member> = Vec::new();
    let mut by_real: HashMap<PathBuf, Vec<u8>> = HashMap::new();
    let mut used: std::collections::HashSet<Vec<u8>> = Default::default();
    let mut unique = |base: &[u8]| -> Vec<u8> {
        let mut name = base.to_vec();
        let mut i = 1;
        while used.contains(&name) {
            name = format!("{i}-").into_bytes();
            name.extend_from_slice(base);
            i += 1;
        }
        used.insert(name.clone());
        name
    };
    for c in cows {
        let cow = CowFile::open(c, false)?;
        crate::ensure_unlocked(&cow.file, c, umlkit_sys::file::LockKind::Read)?;
        let backing = cow.backing_path();
        validate_backing(&cow, &backing)?;
        let bm = cow.read_bitmap()?;
        cow.check_data_area(&bm, cow.layout.sectors)?;
        let real = std::fs::canonicalize(&backing).ctx(Op::StatBacking, &backing)?;
        let bname = match by_real.get(&real) {
            Some(n) => n.clone(),
            None => {
                let base = backing
                    .file_name()
                    .map(|n| n.as_bytes().to_vec())
                    .unwrap_or(b"backing".to_vec());
                let n = unique(&base);
                by_real.insert(real.clone(), n.clone());
                members.push(Member {
                    src: backing.clone(),
                    name: n.clone(),
                    header: None,
                });
                n
            }
        };
        let mut h = cow.header.clone();
        h.backing_file = bname;
        let hb = h.to_bytes().map_err(|source| CowError::BackingName {
            name: backing.clone(),
            source,
        })?;
        let base = c
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or(b"cow".to_vec());
        members.push(Member {
            src: c.clone(),
            name: unique(&base),
            header: Some(hb),
        });
    }

    let tmp = temp_sibling(out, "umlkit-pack");
    let tf = OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .ctx(Op::WriteArchive, out)?;
    let r = write_members(&tf, out, &members);
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    drop(tf);
    if let Err(e) = std::fs::rename(&tmp, out).ctx(Op::Rename, out) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(out)?;
    Ok(members
        .iter()
        .map(|m| String::from_utf8_lossy(&m.name).into_owned())
        .collect())
}

fn write_members(tf: &File, out: &Path, members: &[Member]) -> Result<()> {
    let mut pos = 0u64;
    for m in members {
        let f = File::open(&m.src).ctx(Op::Other, &m.src)?;
        let md = f.metadata().ctx(Op::Other, &m.src)?;
        let size = md.len();
        let mut map = data_map(&f, &m.src, size)?;
        let hlen = m.header.as_ref().map_or(0, |h| h.len() as u64);
        if hlen > 0 {
            // The header region is always stored (it is rewritten); GNU tar
            // reads each region in whole 512-byte blocks, so keep it a
            // multiple of 512.
            map.push((
                0,
                hlen.div_ceil(BLK as u64)
                    .saturating_mul(BLK as u64)
                    .min(size),
            ));
            map.sort_unstable();
            let mut merged: Vec<(u64, u64)> = Vec::new();
            for (o, l) in map {
                match merged.last_mut() {
                    Some(last) if o <= last.0 + last.1 => last.1 = last.1.max(o + l - last.0),
                    _ => merged.push((o, l)),
                }
            }
            map = merged;
        }
        let e = Entry {
            name: &m.name,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            size,
            map: &map,
        };
        for h in entry_headers(&e) {
            tf.write_all_at(&h, pos).ctx(Op::WriteArchive, out)?;
            pos += BLK as u64;
        }
        for &(o, l) in &map {
            let mut o2 = o;
            let mut l2 = l;
            if let Some(hb) = &m.header {
                if o < hb.len() as u64 {
                    let k = (hb.len() as u64 - o).min(l);
                    tf.write_all_at(&hb[o as usize..(o + k) as usize], pos)
                        .ctx(Op::WriteArchive, out)?;
                    pos += k;
                    o2 += k;
                    l2 -= k;
                }
            }
            if l2 > 0 {
                umlkit_sys::file::copy_range(&f, o2, tf, pos, l2).map_err(|source| {
                    CowError::Io {
                        op: Op::WriteArchive,
                        path: out.to_path_buf(),
                        source: std::io::Error::new(
                            source.kind(),
                            format!("copying {}: {source}", m.src.display()),
                        ),
                    }
                })?;
                pos += l2;
            }
            // Each region's data starts on a block boundary (GNU tar).
            let pad = (BLK as u64 - pos % BLK as u64) % BLK as u64;
            if pad > 0 {
                tf.write_all_at(&vec![0u8; pad as usize], pos)
                    .ctx(Op::WriteArchive, out)?;
                pos += pad;
            }
        }
        let pad = (BLK as u64 - pos % BLK as u64) % BLK as u64;
        if pad > 0 {
            tf.write_all_at(&vec![0u8; pad as usize], pos)
                .ctx(Op::WriteArchive, out)?;
            pos += pad;
        }
    }
    // End of archive: two zero blocks, padded to a 10240-byte record.
    let mut end = pos + 2 * BLK as u64;
    end = end.div_ceil(10240) * 10240;
    tf.write_all_at(&vec![0u8; (end - pos) as usize], pos)
        .ctx(Op::WriteArchive, out)?;
    tf.sync_all().ctx(Op::Sync, out)
}

fn read_block(f: &File, path: &Path, pos: u64) -> Result<Option<[u8; BLK]>> {
    let mut b = [0u8; BLK];
    let n = read_full_at(f, &mut b, pos).ctx(Op::ReadArchive, path)?;
    if n == 0 {
        return Ok(None);
    }
    if n < BLK {
        return Err(CowError::Archive {
            path: path.to_path_buf(),
            msg: format!("truncated at byte {}", pos + n as u64),
        });
    }
    Ok(Some(b))
}

/// One file unpacked.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub path: PathBuf,
    /// For a COW: its new absolute backing path.
    pub backing: Option<PathBuf>,
}

/// Unpack an archive made by [`pack`] (or any tar of regular and GNU sparse
/// files at the top level) into `dir`, make COW backing paths absolute for
/// `dir` and restore mtimes. Existing files are not overwritten.
/// On failure the files it created (and `dir`, if it created it) are removed.
pub fn unpack(input: &Path, dir: &Path) -> Result<Vec<Unpacked>> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir).ctx(Op::Other, dir)?;
    let adir = std::fs::canonicalize(dir).ctx(Op::Other, dir)?;
    let mut created = Vec::new();
    let r = unpack_into(input, &adir, &mut created);
    if r.is_err() {
        for p in &created {
            let _ = std::fs::remove_file(p);
        }
        if !existed {
            let _ = std::fs::remove_dir(&adir);
        }
    }
    r
}

fn unpack_into(input: &Path, adir: &Path, created: &mut Vec<PathBuf>) -> Result<Vec<Unpacked>> {
    let bad = |msg: String| CowError::Archive {
        path: input.to_path_buf(),
        msg,
    };
    let tf = File::open(input).ctx(Op::ReadArchive, input)?;
    let mut pos = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut files: Vec<(Vec<u8>, PathBuf, i64)> = Vec::new();
    while let Some(h) = read_block(&tf, input, pos)? {
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let sum = get_num(&h[148..156]).unwrap_or(u64::MAX);
        if sum != checksum(&h) {
            return Err(bad(format!("bad header checksum at byte {pos}")));
        }
        pos += BLK as u64;
        let size =
            get_num(&h[124..136]).ok_or_else(|| bad(format!("bad size field at byte {pos}")))?;
        let typ = h[156];
        let data_blocks = size
            .checked_next_multiple_of(BLK as u64)
            .filter(|&d| pos.checked_add(d).is_some())
            .ok_or_else(|| bad(format!("impossible size {size} at byte {}", pos - 512)))?;
        match typ {
            b'L' => {
                if size > 65536 {
                    return Err(bad(format!(
                        "long name of {size} bytes at byte {}",
                        pos - 512
                    )));
                }
                let mut v = vec![0u8; size as usize];
                read_full_at(&tf, &mut v, pos).ctx(Op::ReadArchive, input)?;
                let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                v.truncate(end);
                long_name = Some(v);
                pos += data_blocks;
                continue;
            }
            b'x' | b'g' => {
                // PAX records can override names and sizes or describe
                // sparse files (GNU.sparse.*); ignoring them could unpack
                // wrong data, so refuse.
                return Err(bad(format!(
                    "PAX extended header at byte {} is not supported (make the archive with `umlkit cow pack`, or GNU tar's default format)",
                    pos - 512
                )));
            }
            b'0' | 0 | b'S' => {}
            b'5' => {
                pos += data_blocks;
                long_name = None;
                continue;
            }
            t => {
                return Err(bad(format!(
                    "unsupported entry type '{}' at byte {}",
                    t as char,
                    pos - 512
                )))
            }
        }
        let mut name = long_name.take().unwrap_or_else(|| {
            let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            h[..end].to_vec()
        });
        while name.starts_with(b"./") {
            name.drain(..2);
        }
        if name.is_empty() || name.contains(&b'/') || name == b".." || name == b"." {
            return Err(bad(format!(
                "unsafe or nested member name \"{}\" (only top-level files are unpacked)",
                String::from_utf8_lossy(&name)
            )));
        }
        let mode = get_num(&h[100..108]).unwrap_or(0o644) as u32 & 0o7777;
        let mtime = get_num(&h[136..148]).unwrap_or(0) as i64;
        let (real_size, map) = if typ == b'S' {
            let real = get_num(&h[483..495]).ok_or_else(|| bad("bad realsize".into()))?;
            let mut map = Vec::new();
            let mut push = |b: &[u8]| {
                let o = get_num(&b[..12]).unwrap_or(0);
                let l = get_num(&b[12..24]).unwrap_or(0);
                if b[..24].iter().any(|&x| x != 0) {
                    map.push((o, l));
                }
            };
            for i in 0..4 {
                push(&h[386 + 24 * i..386 + 24 * i + 24]);
            }
            let mut ext = h[482] != 0;
            while ext {
                let x = read_block(&tf, input, pos)?
                    .ok_or_else(|| bad("truncated sparse map".into()))?;
                pos += BLK as u64;
                for i in 0..21 {
                    push(&x[24 * i..24 * i + 24]);
                }
                ext = x[504] != 0;
            }
            (real, map)
        } else {
            (size, vec![(0, size)])
        };
        let target = adir.join(std::ffi::OsStr::from_bytes(&name));
        let of = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .ctx(Op::CreateOutput, &target)?;
        created.push(target.clone());
        of.set_len(real_size).ctx(Op::WriteData, &target)?;
        let mut dpos = pos;
        for &(o, l) in &map {
            if l == 0 {
                continue;
            }
            if o.checked_add(l).is_none_or(|e| e > real_size) || dpos.checked_add(l).is_none() {
                return Err(bad(format!(
                    "sparse map of {} goes past its size",
                    target.display()
                )));
            }
            umlkit_sys::file::copy_range(&tf, dpos, &of, o, l).map_err(|source| CowError::Io {
                op: Op::WriteData,
                path: target.clone(),
                source,
            })?;
            dpos = dpos.saturating_add(l.div_ceil(BLK as u64).saturating_mul(BLK as u64));
        }
        of.set_permissions(std::fs::Permissions::from_mode(mode))
            .ctx(Op::WriteData, &target)?;
        pos += data_blocks;
        files.push((name, target, mtime));
    }
    // Make COW backing names absolute for the new folder.
    let names: HashMap<Vec<u8>, PathBuf> = files
        .iter()
        .map(|(n, p, _)| (n.clone(), p.clone()))
        .collect();
    let mut result = Vec::new();
    for (_, target, _) in &files {
        let mut backing = None;
        if let Ok(cow) = CowFile::open(target, true) {
            if let Some(bp) = names.get(&cow.header.backing_file) {
                let mut h = cow.header.clone();
                h.backing_file = bp.as_os_str().as_bytes().to_vec();
                cow.write_header(&h)?;
                backing = Some(bp.clone());
            }
        }
        result.push(Unpacked {
            path: target.clone(),
            backing,
        });
    }
    for (_, target, mtime) in &files {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs((*mtime).max(0) as u64);
        let f = File::options()
            .write(true)
            .open(target)
            .ctx(Op::Other, target)?;
        f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .ctx(Op::Other, target)?;
        f.sync_all().ctx(Op::Sync, target)?;
    }
    Ok(result)
}

/// `PathBuf` from raw bytes.
pub fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(b.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut f = [0u8; 12];
        put_num(&mut f, 0o1234);
        assert_eq!(&f, b"00000001234\0");
        assert_eq!(get_num(&f), Some(0o1234));
        put_num(&mut f, 1 << 40);
        assert_eq!(f[0], 0x80);
        assert_eq!(get_num(&f), Some(1 << 40));
    }

    #[test]
    fn header_checksum_valid() {
        let map = [(0u64, 512u64)];
        let e = Entry {
            name: b"x.img",
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1,
            size: 4096,
            map: &map,
        };
        let hs = entry_headers(&e);
        assert_eq!(hs.len(), 1);
        assert_eq!(get_num(&hs[0][148..156]), Some(checksum(&hs[0])));
        assert_eq!(get_num(&hs[0][124..136]), Some(512));
        assert_eq!(get_num(&hs[0][483..495]), Some(4096));
    }
}
