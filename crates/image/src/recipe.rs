//! Image recipes: small declarative TOML files (`crates/image/images/*.toml`,
//! embedded in the binary) that say which Debian packages, files and
//! commands make a lab image. Pure: text in, typed values out.
//!
//! ```toml
//! name = "kathara"
//! aliases = ["kathara/base", "kathara/frr"]   # any `:tag` resolves too
//! suite = "bookworm"
//! variant = "minbase"
//! mirrors = ["deb http://deb.debian.org/debian bookworm main"]
//! size = "2G"                                 # sparse ext4 size
//! packages = ["iproute2", "frr"]
//! modules = ["kernel/net"]                    # subtrees of /usr/lib/uml/modules/<ver>
//! customize = ["rm -f /etc/frr/frr.conf"]     # bash -e, run in the image
//! [[file]]                                    # asset (embedded) or link
//! path = "/etc/init.d/quagga"
//! mode = 0o755
//! asset = "quagga"
//! ```

use serde::Deserialize;

/// A recipe as written in its TOML file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub suite: String,
    #[serde(default = "default_variant")]
    pub variant: String,
    #[serde(default)]
    pub mirrors: Vec<String>,
    #[serde(default = "default_size")]
    pub size: String,
    #[serde(default)]
    pub packages: Vec<String>,
    /// Subtrees of the kernel's module dir to copy; empty = all of it.
    #[serde(default)]
    pub modules: Vec<String>,
    #[serde(default, rename = "file")]
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub customize: Vec<String>,
}

/// A file added to the image: an embedded asset or a symbolic link.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the image.
    pub path: String,
    /// Permission bits (default 0o644).
    pub mode: Option<u32>,
    /// Name of an embedded asset ([`asset`]).
    pub asset: Option<String>,
    /// Symbolic link target.
    pub link: Option<String>,
}

fn default_variant() -> String {
    "minbase".into()
}
fn default_size() -> String {
    "2G".into()
}

/// A recipe that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("recipe {file}: {msg}")]
pub struct RecipeError {
    pub file: String,
    pub msg: String,
}

/// The recipes built into umlkit: (file name, text).
pub const BUILTIN: &[(&str, &str)] = &[("kathara.toml", include_str!("../images/kathara.toml"))];

/// Files recipes may name in `[[file]] asset = ...`.
const ASSETS: &[(&str, &str)] = &[
    ("quagga", include_str!("../images/assets/quagga")),
    (
        "named-compat",
        include_str!("../images/assets/named-compat"),
    ),
    (
        "ovs-vswitchd-wait",
        include_str!("../images/assets/ovs-vswitchd-wait"),
    ),
];

/// The text of an embedded asset.
pub fn asset(name: &str) -> Option<&'static str> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn bad(file: &str, msg: impl Into<String>) -> RecipeError {
    RecipeError {
        file: file.into(),
        msg: msg.into(),
    }
}

fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._:".contains(c))
}

/// Parse and check a recipe (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    let r: Recipe = toml::from_str(text).map_err(|e| bad(file, e.to_string()))?;
    if !r
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || r.name.is_empty()
    {
        return Err(bad(
            file,
            format!("bad name '{}' (letters, digits, - _)", r.name),
        ));
    }
    for (what, v) in [("suite", &r.suite), ("variant", &r.variant)] {
        if !safe_word(v) {
            return Err(bad(file, format!("bad {what} '{v}'")));
        }
    }
    if let Some(p) = r.packages.iter().find(|p| !safe_word(p)) {
        return Err(bad(file, format!("bad package name '{p}'")));
    }
    if crate::parse_size(&r.size).is_none() {
        return Err(bad(file, format!("bad size '{}'", r.size)));
    }
    for m in &r.modules {
        if m.starts_with('/') || m.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(bad(file, format!("bad modules subtree '{m}'")));
        }
    }
    for f in &r.files {
        if !f.path.starts_with('/') || f.path.split('/').skip(1).any(|c| c == ".." || c.is_empty())
        {
            return Err(bad(file, format!("bad file path '{}'", f.path)));
        }
        match (&f.asset, &f.link) {
            (Some(a), None) => {
                if asset(a).is_none() {
                    return Err(bad(file, format!("{}: unknown asset '{a}'", f.path)));
                }
            }
            (None, Some(_)) => {}
            _ => {
                return Err(bad(
                    file,
                    format!("{}: give exactly one of asset or link", f.path),
                ))
            }
        }
        if f.mode.is_some_and(|m| m > 0o7777) {
            return Err(bad(file, format!("{}: bad mode", f.path)));
        }
    }
    Ok(r)
}

/// All built-in recipes.
pub fn builtin() -> Vec<(Recipe, &'static str)> {
    BUILTIN
        .iter()
        .map(|(f, t)| {
            // checked by a unit test: the built-in recipes parse
            (parse(f, t).expect("built-in recipe"), *t)
        })
        .collect()
}

/// The repository part of an image reference: `docker.io/` and
/// `library/` prefixes, `:tag` and `@digest` suffixes dropped, lower case.
pub fn repo_of(reference: &str) -> String {
    let mut r = reference.trim();
    if let Some(i) = r.find('@') {
        r = &r[..i];
    }
    // a tag is after the last '/', so a registry port stays
    if let Some(i) = r.rfind(':') {
        if !r[i..].contains('/') {
            r = &r[..i];
        }
    }
    let r = r.strip_prefix("docker.io/").unwrap_or(r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    r.to_ascii_lowercase()
}

/// The built-in recipe an image name or reference stands for: its recipe
/// name, or one of its aliases with any tag (`kathara/frr:latest`).
pub fn resolve(reference: &str) -> Option<(Recipe, &'static str)> {
    let repo = repo_of(reference);
    builtin()
        .into_iter()
        .find(|(r, _)| r.name == repo || r.aliases.iter().any(|a| repo_of(a) == repo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse() {
        for (f, t) in BUILTIN {
            let r = parse(f, t).unwrap();
            assert!(!r.packages.is_empty());
        }
    }

    #[test]
    fn kathara_names_resolve_to_one_recipe() {
        for n in [
            "kathara/base",
            "kathara/frr",
            "kathara/quagga",
            "kathara/bind:9.11",
            "kathara/base:latest",
            "docker.io/kathara/frr:10",
            "KATHARA/FRR",
            "kathara",
            "kathara/sdn",
        ] {
            assert_eq!(
                resolve(n).map(|(r, _)| r.name),
                Some("kathara".into()),
                "{n}"
            );
        }
        assert!(resolve("kathara/p4").is_none());
        assert!(resolve("debian:12").is_none());
        assert_eq!(repo_of("reg:5000/x/y:1"), "reg:5000/x/y");
    }

    #[test]
    fn bad_recipes_are_rejected_with_the_file_name() {
        let base = "name='x'\nsuite='bookworm'\n";
        let cases = [
            (format!("{base}packages=['a;rm -rf /']"), "bad package"),
            (format!("{base}size='lots'"), "bad size"),
            (format!("{base}modules=['../etc']"), "bad modules"),
            (
                format!("{base}[[file]]\npath='/etc/../x'\nlink='y'"),
                "bad file path",
            ),
            (
                format!("{base}[[file]]\npath='/x'\nasset='nope'"),
                "unknown asset",
            ),
            (format!("{base}[[file]]\npath='/x'"), "exactly one"),
            (format!("{base}colour='red'"), "unknown field"),
            ("name='a b'\nsuite='s'".to_string(), "bad name"),
        ];
        for (text, want) in cases {
            let e = parse("t.toml", &text).unwrap_err();
            assert!(e.to_string().contains(want), "{e} (want {want})");
            assert!(e.to_string().starts_with("recipe t.toml: "), "{e}");
        }
    }
}
