//! Just enough of ELF64 little-endian (x86-64) to copy a dynamically linked
//! host program into an image: its program interpreter (`PT_INTERP`), the
//! libraries it needs (`DT_NEEDED`) and its search paths (`DT_RUNPATH`,
//! `DT_RPATH`). Pure: bytes in, values out; every read is bounds-checked.

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynInfo {
    /// `PT_INTERP` (e.g. `/lib64/ld-linux-x86-64.so.2`); `None` when static.
    pub interp: Option<String>,
    /// `DT_NEEDED` sonames, in order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` and `DT_RPATH` entries (colon-split).
    pub runpath: Vec<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}
fn cstr_at(d: &[u8], o: usize) -> Option<String> {
    let rest = d.get(o..)?;
    let end = rest.iter().position(|&c| c == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

struct Phdr {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Parse the dynamic-linking facts; `None` when `d` is not a well-formed
/// ELF64 little-endian file.
pub fn parse(d: &[u8]) -> Option<DynInfo> {
    if d.get(..4)? != b"\x7fELF" || *d.get(4)? != 2 || *d.get(5)? != 1 {
        return None;
    }
    let phoff = usize::try_from(u64_at(d, 0x20)?).ok()?;
    let phentsize = usize::from(u16_at(d, 0x36)?);
    let phnum = usize::from(u16_at(d, 0x38)?);
    if phentsize < 56 {
        return None;
    }
    let mut ph = Vec::with_capacity(phnum);
    for i in 0..phnum {
        let o = phoff.checked_add(i.checked_mul(phentsize)?)?;
        ph.push(Phdr {
            kind: u32_at(d, o)?,
            offset: u64_at(d, o + 8)?,
            vaddr: u64_at(d, o + 16)?,
            filesz: u64_at(d, o + 32)?,
        });
    }
    let mut info = DynInfo::default();
    if let Some(p) = ph.iter().find(|p| p.kind == PT_INTERP) {
        info.interp = Some(cstr_at(d, usize::try_from(p.offset).ok()?)?);
    }
    let Some(dynamic) = ph.iter().find(|p| p.kind == PT_DYNAMIC) else {
        return Some(info);
    };
    // Virtual address -> file offset through the PT_LOAD segments.
    let to_off = |va: u64| -> Option<usize> {
        let p = ph
            .iter()
            .find(|p| p.kind == PT_LOAD && va >= p.vaddr && va - p.vaddr < p.filesz)?;
        usize::try_from(p.offset.checked_add(va - p.vaddr)?).ok()
    };
    let start = usize::try_from(dynamic.offset).ok()?;
    let count = usize::try_from(dynamic.filesz / 16).ok()?;
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut paths = Vec::new();
    for i in 0..count {
        let o = start.checked_add(i * 16)?;
        let (tag, val) = (u64_at(d, o)?, u64_at(d, o + 8)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(to_off(val)?),
            DT_RPATH | DT_RUNPATH => paths.push(val),
            _ => {}
        }
    }
    if needed.is_empty() && paths.is_empty() {
        return Some(info);
    }
    let strtab = strtab?;
    let s = |v: u64| cstr_at(d, strtab.checked_add(usize::try_from(v).ok()?)?);
    for v in needed {
        info.needed.push(s(v)?);
    }
    for v in paths {
        info.runpath
            .extend(s(v)?.split(':').filter(|p| !p.is_empty()).map(String::from));
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_without_panicking() {
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"\x7fELF"), None);
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.resize(64, 0xff);
        assert_eq!(parse(&v), None);
        // every truncation of a real binary is handled
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for n in [0, 16, 63, 64, 100, 500, 4096] {
            let _ = parse(&me[..n.min(me.len())]);
        }
    }

    #[test]
    fn reads_the_test_binary_itself() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let info = parse(&me).unwrap();
        let interp = info.interp.unwrap();
        assert!(interp.contains("ld-linux"), "{interp}");
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{:?}",
            info.needed
        );
    }
}
