//! Bitmap bit math: bit `i` (sector `i`) is `byte[i / 8] & (1 << (i % 8))`,
//! LSB first within each byte (what the kernel does on any host, and what
//! uml_moo's native `unsigned long` words amount to on little-endian hosts).

/// True when sector `sector`'s bit is set. Bits past the end read as clear.
pub fn bit_is_set(bitmap: &[u8], sector: u64) -> bool {
    let byte = (sector / 8) as usize;
    bitmap
        .get(byte)
        .is_some_and(|b| b & (1 << (sector % 8)) != 0)
}

/// Set sector `sector`'s bit. Panics if it is past the bitmap.
pub fn set_bit(bitmap: &mut [u8], sector: u64) {
    bitmap[(sector / 8) as usize] |= 1 << (sector % 8);
}

/// Number of set bits among the first `sectors` bits.
pub fn count_set(bitmap: &[u8], sectors: u64) -> u64 {
    SetRuns::new(bitmap, sectors).map(|(_, n)| n).sum()
}

/// Iterator over runs of set bits `(first_sector, count)`, in order, among
/// the first `sectors` bits (bits past the bitmap's end are clear).
pub struct SetRuns<'a> {
    bitmap: &'a [u8],
    pos: u64,
    end: u64,
}

impl<'a> SetRuns<'a> {
    pub fn new(bitmap: &'a [u8], sectors: u64) -> SetRuns<'a> {
        let end = sectors.min(bitmap.len() as u64 * 8);
        SetRuns {
            bitmap,
            pos: 0,
            end,
        }
    }

    /// Next position >= pos whose bit equals `want`, or `end`.
    fn find_from(&self, mut pos: u64, want: bool) -> u64 {
        let skip = if want { 0x00u8 } else { 0xffu8 };
        while pos < self.end {
            if pos & 7 == 0 {
                // Skip whole bytes (and 8-byte words) that cannot match.
                let mut byte = (pos / 8) as usize;
                while byte + 8 <= self.bitmap.len()
                    && self.bitmap[byte..byte + 8].iter().all(|&b| b == skip)
                {
                    byte += 8;
                }
                while byte < self.bitmap.len() && self.bitmap[byte] == skip {
                    byte += 1;
                }
                let np = byte as u64 * 8;
                if np >= self.end {
                    return self.end;
                }
                if np != pos {
                    pos = np;
                    continue;
                }
            }
            if bit_is_set(self.bitmap, pos) == want {
                return pos;
            }
            pos += 1;
        }
        self.end
    }
}

impl Iterator for SetRuns<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        let start = self.find_from(self.pos, true);
        if start >= self.end {
            self.pos = self.end;
            return None;
        }
        let stop = self.find_from(start, false);
        self.pos = stop;
        Some((start, stop - start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lsb_first() {
        // cow-v3.md §10: bytes ff ff 00.. ff(at +12) = sectors 0-15 and 96-103.
        let mut bm = vec![0u8; 16];
        bm[0] = 0xff;
        bm[1] = 0xff;
        bm[12] = 0xff;
        let runs: Vec<_> = SetRuns::new(&bm, 128).collect();
        assert_eq!(runs, vec![(0, 16), (96, 8)]);
        let mut b = [0u8; 2];
        set_bit(&mut b, 9);
        assert_eq!(b, [0, 0x02]);
        assert!(bit_is_set(&b, 9) && !bit_is_set(&b, 8) && !bit_is_set(&b, 1000));
    }

    #[test]
    fn limit_cuts_runs() {
        let bm = [0xffu8; 4];
        assert_eq!(SetRuns::new(&bm, 13).collect::<Vec<_>>(), vec![(0, 13)]);
        assert_eq!(SetRuns::new(&bm, 100).collect::<Vec<_>>(), vec![(0, 32)]);
        assert_eq!(count_set(&bm, 13), 13);
    }

    proptest! {
        #[test]
        fn runs_match_bits(bm in proptest::collection::vec(any::<u8>(), 0..64), n in 0u64..600) {
            let mut rebuilt = vec![false; n as usize];
            let mut last_end = None;
            for (s, c) in SetRuns::new(&bm, n) {
                prop_assert!(c > 0);
                if let Some(e) = last_end { prop_assert!(s > e); }
                for i in s..s + c { rebuilt[i as usize] = true; }
                last_end = Some(s + c);
            }
            for i in 0..n {
                prop_assert_eq!(rebuilt[i as usize], bit_is_set(&bm, i));
            }
        }
    }
}
