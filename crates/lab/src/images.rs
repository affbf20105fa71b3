//! Which image a lab machine boots: its `[image]` name looked up in the lab's
//! own mapping (lab.toml `[images]`), then in the user's mapping file
//! (`$XDG_CONFIG_HOME/umlkit/images.toml`, else `~/.config/umlkit/images.toml`,
//! the same `[images]` table), then among the built-in recipes (Kathará's
//! names, `image::recipe::resolve`). A name that none of them knows boots a
//! stand-in, named in one note per name: Kathará names (`kathara/...`) get
//! the Debian lab image, whose tools every Kathará image extends
//! (`kathara/p4` with its own note: bmv2 and p4c are missing), any other
//! name the default busybox image.
//!
//! ```toml
//! [images]
//! "kathara/pox" = "kathara/sdn"   # a built-in image name
//! "my/router:2" = "default"       # the busybox default image
//! ```
//!
//! Keys and targets are image references: a tag, `@digest` or `docker.io/`
//! prefix does not matter (`kathara/pox:latest` matches `"kathara/pox"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{io_err, LabError, Result};

/// The built-in recipe stand-ins for Kathará names without a recipe.
const KATHARA_FALLBACK: &str = "kathara";

/// A name-to-image mapping and the file it came from (for messages).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageMap {
    /// lab.toml or the user's images.toml.
    pub file: PathBuf,
    /// `[images]` entries as written.
    pub entries: BTreeMap<String, String>,
}

impl ImageMap {
    /// The target of `name` (compared as image references), as written.
    fn lookup(&self, name: &str) -> Option<(&str, &str)> {
        let want = image::recipe::repo_of(name);
        self.entries
            .iter()
            .find(|(k, _)| image::recipe::repo_of(k) == want)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every target must be `default` or a built-in image name.
    pub fn check(&self) -> Result<()> {
        for (k, v) in &self.entries {
            if k.trim().is_empty() {
                return Err(LabError::Invalid {
                    file: self.file.clone(),
                    rule: "[images]: an empty image name cannot be mapped".into(),
                });
            }
            if !is_default(v) && image::recipe::resolve(v).is_none() {
                return Err(LabError::Invalid {
                    file: self.file.clone(),
                    rule: format!(
                        "[images] {k:?} = {v:?}: umlkit has no image {v:?} (use \"default\" or a name `umlkit image ls` lists: {})",
                        builtin_names().join(", ")
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The user's mapping file: `$XDG_CONFIG_HOME/umlkit/images.toml`, else
/// `$HOME/.config/umlkit/images.toml` (`None` without either variable).
pub fn user_map_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })?;
    Some(base.join("umlkit").join("images.toml"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    #[serde(default)]
    images: BTreeMap<String, String>,
}

/// Parse a user mapping file's text (`file` names it in errors).
pub fn parse_user_map(text: &str, file: &Path) -> Result<ImageMap> {
    let u: UserFile = toml::from_str(text).map_err(|e| LabError::Toml {
        file: file.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })?;
    let m = ImageMap {
        file: file.to_path_buf(),
        entries: u.images,
    };
    m.check()?;
    Ok(m)
}

/// Read the user's mapping file ([`user_map_path`]): empty when it does not
/// exist (it still names the file for notes), `None` without a home. A file
/// that cannot be read or used is an error naming it.
pub fn load_user_map() -> Result<Option<ImageMap>> {
    let Some(p) = user_map_path() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&p) {
        Ok(t) => parse_user_map(&t, &p).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(ImageMap {
            file: p,
            entries: BTreeMap::new(),
        })),
        Err(e) => Err(io_err("cannot read the image mapping file", p)(e)),
    }
}

fn is_default(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("default")
}

/// Names a mapping may point at.
fn builtin_names() -> Vec<String> {
    let mut v = Vec::new();
    for (r, _) in image::recipe::builtin() {
        v.push(r.name.clone());
        v.extend(r.aliases.iter().cloned());
    }
    v
}

/// What a machine's `[image]` name comes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The built-in recipe booted; `None`: the default busybox image.
    pub recipe: Option<String>,
    /// How: `"kathara/pox" = "kathara/sdn" (FILE [images])`, or the stand-in
    /// reason; `None` when the name itself is an image (or none was given).
    pub via: Option<String>,
    /// Why the name was not found, for the one note per name.
    pub missing: Option<Missing>,
}

/// Why a name has no image of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// `kathara/p4`: bmv2 and p4c are not packaged anywhere reachable.
    P4,
    /// Any other name umlkit cannot build.
    Unknown,
}

/// Resolve `name` (a machine's `[image]`): the lab's map first, then the
/// user's, then the built-in recipes, then a stand-in. Mapping targets are
/// checked when the maps are read ([`ImageMap::check`]).
pub fn resolve(name: Option<&str>, lab: Option<&ImageMap>, user: Option<&ImageMap>) -> Resolved {
    let plain = |recipe: Option<String>| Resolved {
        recipe,
        via: None,
        missing: None,
    };
    let Some(name) = name.filter(|n| !is_default(n)) else {
        return plain(None);
    };
    for map in [lab, user].into_iter().flatten() {
        if let Some((k, v)) = map.lookup(name) {
            let recipe = if is_default(v) {
                None
            } else {
                image::recipe::resolve(v).map(|(r, _)| r.name)
            };
            return Resolved {
                recipe,
                via: Some(format!("{k:?} = {v:?} ({} [images])", map.file.display())),
                missing: None,
            };
        }
    }
    if let Some((r, _)) = image::recipe::resolve(name) {
        return plain(Some(r.name));
    }
    let repo = image::recipe::repo_of(name);
    if repo == "kathara/p4" {
        return Resolved {
            recipe: Some(KATHARA_FALLBACK.into()),
            via: Some("stand-in: no bmv2/p4c".into()),
            missing: Some(Missing::P4),
        };
    }
    if repo.starts_with("kathara/") {
        return Resolved {
            recipe: Some(KATHARA_FALLBACK.into()),
            via: Some("stand-in: no recipe of that name".into()),
            missing: Some(Missing::Unknown),
        };
    }
    Resolved {
        recipe: None,
        via: Some("stand-in: no recipe of that name".into()),
        missing: Some(Missing::Unknown),
    }
}

/// The one note for image `name` that the `machines` ask for and that
/// resolved to `r` (a stand-in): what is missing, what they boot instead and
/// how to map the name (in lab.toml or `user_file`).
pub fn missing_note(
    name: &str,
    machines: &[String],
    r: &Resolved,
    user_file: Option<&Path>,
) -> String {
    let who = machines.join(", ");
    let boot = if machines.len() == 1 { "boots" } else { "boot" };
    let instead = match &r.recipe {
        Some(x) => format!("the Debian lab image {x} (kathara/base's tools)"),
        None => "the default busybox image".into(),
    };
    let user = user_file
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "~/.config/umlkit/images.toml".into());
    let how = format!(
        "to choose another, map the name in lab.toml or in {user}: `[images] {:?} = \"IMAGE\"` (`umlkit image ls` lists the images, \"default\" is busybox)",
        image::recipe::repo_of(name)
    );
    match r.missing {
        Some(Missing::P4) => format!(
            "image {name} ({who}): bmv2 (simple_switch, simple_switch_grpc, simple_switch_CLI) and the P4 compiler p4c are not packaged in Debian or any registry umlkit can reach, so umlkit has no kathara/p4; {who} {boot} {instead} instead, and the simple_switch/p4c commands in startup files will fail; {how}"
        ),
        _ => format!(
            "image {name} ({who}): umlkit has no image of that name; {who} {boot} {instead} instead; {how}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(file: &str, e: &[(&str, &str)]) -> ImageMap {
        ImageMap {
            file: file.into(),
            entries: e
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn lab_map_wins_over_user_map_which_wins_over_builtin_names() {
        let lab = map("/l/lab.toml", &[("kathara/pox", "default")]);
        let user = map(
            "/h/images.toml",
            &[("kathara/pox", "kathara/sdn"), ("kathara/frr", "default")],
        );
        // lab first
        let r = resolve(Some("kathara/pox:latest"), Some(&lab), Some(&user));
        assert_eq!(r.recipe, None);
        assert!(r.via.as_deref().unwrap().contains("/l/lab.toml"), "{r:?}");
        assert_eq!(r.missing, None);
        // then the user's file
        let r = resolve(Some("kathara/pox"), None, Some(&user));
        assert_eq!(r.recipe.as_deref(), Some("kathara"));
        assert!(r.via.as_deref().unwrap().contains("/h/images.toml"));
        // a mapping overrides a built-in name
        let r = resolve(Some("docker.io/kathara/frr:9"), Some(&lab), Some(&user));
        assert_eq!(r.recipe, None, "{r:?}");
        // built-in names without any mapping
        let r = resolve(Some("kathara/sdn"), Some(&lab), None);
        assert_eq!((r.recipe.as_deref(), r.via), (Some("kathara"), None));
        assert_eq!(resolve(None, Some(&lab), Some(&user)).recipe, None);
        assert_eq!(resolve(Some("default"), None, None).via, None);
    }

    #[test]
    fn names_without_an_image_get_a_named_stand_in() {
        let r = resolve(Some("kathara/p4"), None, None);
        assert_eq!(
            (r.recipe.as_deref(), r.missing),
            (Some("kathara"), Some(Missing::P4))
        );
        let n = missing_note("kathara/p4", &["s1".into(), "s2".into()], &r, None);
        for want in ["simple_switch", "p4c", "s1, s2", "kathara", "[images]"] {
            assert!(n.contains(want), "{want}: {n}");
        }
        let r = resolve(Some("kathara/pox"), None, None);
        assert_eq!(
            (r.recipe.as_deref(), r.missing),
            (Some("kathara"), Some(Missing::Unknown))
        );
        let r = resolve(Some("lscr.io/linuxserver/wireshark"), None, None);
        assert_eq!(
            (r.recipe.clone(), r.missing),
            (None, Some(Missing::Unknown))
        );
        let n = missing_note(
            "lscr.io/linuxserver/wireshark",
            &["w".into()],
            &r,
            Some(Path::new("/u/images.toml")),
        );
        assert!(n.contains("default busybox image"), "{n}");
        assert!(n.contains("in lab.toml or in /u/images.toml"), "{n}");
    }

    #[test]
    fn user_map_file_errors_name_the_file() {
        let f = Path::new("/h/umlkit/images.toml");
        let e = parse_user_map("[images]\n\"x\" = \"nope/none\"\n", f).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/h/umlkit/images.toml: "), "{s}");
        assert!(s.contains("no image \"nope/none\""), "{s}");
        let e = parse_user_map("[imagez]\n", f).unwrap_err().to_string();
        assert!(e.starts_with("/h/umlkit/images.toml: "), "{e}");
        let m = parse_user_map("[images]\n\"kathara/pox\" = \"kathara/sdn:latest\"\n", f).unwrap();
        assert_eq!(m.entries.len(), 1);
        assert_eq!(parse_user_map("", f).unwrap().entries.len(), 0);
    }
}
