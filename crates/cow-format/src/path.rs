//! Backing-path absolutization, as uml_mkcow and the kernel do it: if the
//! argument contains '/', change into the part before the last '/', take
//! `getcwd()` and append "/" + the last component; otherwise `getcwd()` +
//! "/" + argument. So symlinks in directory components are resolved and a
//! symlink as the last component is kept. The I/O (resolving the directory)
//! belongs to the caller; these functions only split and join.

use crate::{FormatError, MAX_BACKING_PATH};

/// What to resolve: the directory to change into (None = the current
/// directory) and the last component to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsPlan {
    pub dir: Option<Vec<u8>>,
    pub last: Vec<u8>,
}

/// Split a backing argument. Fails when the name is longer than 4095
/// characters (the C message: names are limited to 4095 characters).
///
/// Quirk kept from C: "/name" gives `dir = ""`, which cannot be changed
/// into ("absolutize : Can't cd to ..."); callers that want to be kind
/// treat an empty dir as "/".
pub fn absolutize_plan(arg: &[u8]) -> Result<AbsPlan, FormatError> {
    if arg.len() > MAX_BACKING_PATH {
        return Err(FormatError::PathTooLong {
            len: arg.len(),
            max: MAX_BACKING_PATH,
        });
    }
    if arg.is_empty() || arg.contains(&0) {
        return Err(FormatError::BadPath);
    }
    Ok(match arg.iter().rposition(|&b| b == b'/') {
        Some(i) => AbsPlan {
            dir: Some(arg[..i].to_vec()),
            last: arg[i + 1..].to_vec(),
        },
        None => AbsPlan {
            dir: None,
            last: arg.to_vec(),
        },
    })
}

/// `cwd + "/" + last`, exactly as C's strcat (so cwd "/" gives "//name"),
/// checked against the 4095-character limit.
pub fn join_absolute(cwd: &[u8], last: &[u8]) -> Result<Vec<u8>, FormatError> {
    let mut v = Vec::with_capacity(cwd.len() + 1 + last.len());
    v.extend_from_slice(cwd);
    v.push(b'/');
    v.extend_from_slice(last);
    if v.len() > MAX_BACKING_PATH {
        return Err(FormatError::PathTooLong {
            len: v.len(),
            max: MAX_BACKING_PATH,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        assert_eq!(
            absolutize_plan(b"img").unwrap(),
            AbsPlan {
                dir: None,
                last: b"img".to_vec()
            }
        );
        assert_eq!(
            absolutize_plan(b"sub/link/back.img").unwrap(),
            AbsPlan {
                dir: Some(b"sub/link".to_vec()),
                last: b"back.img".to_vec()
            }
        );
        assert_eq!(absolutize_plan(b"/x").unwrap().dir, Some(Vec::new()));
        assert!(matches!(
            absolutize_plan(&[b'a'; 4096]),
            Err(FormatError::PathTooLong {
                len: 4096,
                max: 4095
            })
        ));
        assert_eq!(join_absolute(b"/", b"x").unwrap(), b"//x");
        assert_eq!(
            join_absolute(b"/tmp/cow", b"back.img").unwrap(),
            b"/tmp/cow/back.img"
        );
    }
}
