//! Reading a lab folder (the only I/O before planning): lab.toml or lab.conf
//! plus lab.dep, Netkit machine directories, and the path-safety check of
//! `M/` and `shared/`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::conf::{parse_lab_conf_in, parse_lab_dep, start_waves, Note};
use crate::dialect::FolderFacts;
use crate::error::{io_err, LabError, Result};
use crate::model::{check_machine_name, Dialect, LabFile};

/// Where the lab description came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    LabConf,
    LabToml,
}

/// A lab folder read into the model.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Canonical lab folder.
    pub dir: PathBuf,
    pub lab: LabFile,
    pub source: Source,
    pub dialect_reason: String,
    /// Things asked for that are done differently (by name, with what was done).
    pub notes: Vec<String>,
    /// lab.conf keys that had no effect: `key (machine (line N), ...)`.
    pub ignored_keys: Vec<String>,
}

/// Folder names in a lab that are never machines.
pub const RESERVED_DIRS: &[&str] = &["shared", "_test", "_check"];

/// Read the lab in `dir`. lab.toml wins over lab.conf when both exist.
pub fn load_lab(dir: &Path, force: Option<Dialect>) -> Result<Loaded> {
    let dir = dir
        .canonicalize()
        .map_err(io_err("cannot open lab folder", dir))?;
    let toml_path = dir.join("lab.toml");
    let conf_path = dir.join("lab.conf");
    let mut notes = Vec::new();
    let mut ignored_keys = Vec::new();
    let (mut lab, source, reason, machines_line) = if toml_path.is_file() {
        let text = read(&toml_path)?;
        let mut lab = LabFile::from_toml(&text, &toml_path)?;
        if let Some(d) = force {
            lab.lab.dialect = d;
        }
        if conf_path.is_file() {
            notes.push("lab.toml and lab.conf both present: lab.toml is used".to_string());
        }
        let reason = format!("{} (lab.toml)", lab.lab.dialect);
        (lab, Source::LabToml, reason, None)
    } else if conf_path.is_file() {
        let text = read(&conf_path)?;
        let facts = if force.is_none() {
            folder_facts(&dir)?
        } else {
            FolderFacts::default()
        };
        let r = parse_lab_conf_in(&text, &conf_path, force, &facts)?;
        ignored_keys = r.ignored_keys().iter().map(|k| k.to_string()).collect();
        notes.extend(
            r.notes
                .iter()
                .map(Note::to_string)
                .map(|n| format!("lab.conf {n}")),
        );
        (r.lab, Source::LabConf, r.dialect_reason, r.machines_line)
    } else {
        return Err(LabError::Invalid {
            file: dir.clone(),
            rule: "no lab.conf or lab.toml in this folder".into(),
        });
    };

    if source == Source::LabConf {
        // Netkit: every sub-folder is a machine unless machines= says otherwise.
        if lab.lab.dialect == Dialect::Netkit && machines_line.is_none() {
            for name in subdirs(&dir)? {
                if RESERVED_DIRS.contains(&name.as_str()) || name.starts_with('.') {
                    continue;
                }
                if check_machine_name(&name, Dialect::Netkit).is_ok() {
                    lab.machines.entry(name).or_default();
                } else {
                    notes.push(format!(
                        "folder {name:?} is not a valid machine name, not started"
                    ));
                }
            }
        }
        if let Some(list) = &machines_line {
            lab.machines.retain(|k, _| list.contains(k));
        }
        let dep_path = dir.join("lab.dep");
        if dep_path.is_file() {
            let deps = parse_lab_dep(&read(&dep_path)?, &dep_path)?;
            apply_deps(&mut lab, &deps, &dep_path)?;
        }
    }
    if lab.lab.name.is_none() {
        lab.lab.name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    // Cycles in depends_on (from lab.dep or lab.toml) are errors.
    let names: Vec<String> = lab.machines.keys().cloned().collect();
    let deps: BTreeMap<String, Vec<String>> = lab
        .machines
        .iter()
        .map(|(k, m)| (k.clone(), m.depends_on.clone()))
        .collect();
    let dep_file = if source == Source::LabConf {
        dir.join("lab.dep")
    } else {
        toml_path.clone()
    };
    start_waves(&names, &deps, &dep_file)?;
    for name in lab.machines.keys() {
        check_tree_safe(&dir, &dir.join(name))?;
    }
    check_tree_safe(&dir, &dir.join("shared"))?;
    Ok(Loaded {
        dir,
        lab,
        source,
        dialect_reason: reason,
        notes,
        ignored_keys,
    })
}

/// Put lab.dep into the machines' `depends_on`.
pub fn apply_deps(
    lab: &mut LabFile,
    deps: &BTreeMap<String, Vec<String>>,
    file: &Path,
) -> Result<()> {
    for (m, ds) in deps {
        for d in ds.iter().chain(std::iter::once(m)) {
            if !lab.machines.contains_key(d) {
                return Err(LabError::Invalid {
                    file: file.to_path_buf(),
                    rule: format!("machine {d} is not part of the lab"),
                });
            }
        }
        let mach = lab.machines.get_mut(m).expect("checked");
        for d in ds {
            if !mach.depends_on.contains(d) {
                mach.depends_on.push(d.clone());
            }
        }
    }
    Ok(())
}

/// Largest part of a `.startup` file read for dialect detection.
const STARTUP_SNIFF_BYTES: u64 = 64 * 1024;

/// What the lab folder shows about its dialect (`dialect::decide`). Only
/// regular files and folders count: symlinks are not followed.
fn folder_facts(dir: &Path) -> Result<FolderFacts> {
    use std::io::Read;
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let mut facts = FolderFacts {
        test_dir: is_dir(&dir.join("_test")),
        lab_ext: std::fs::symlink_metadata(dir.join("lab.ext")).is_ok_and(|m| m.is_file()),
        shared_root_tree: ["etc", "root", "usr", "bin", "var"]
            .iter()
            .find(|d| is_dir(&dir.join("shared").join(d)))
            .map(|d| d.to_string()),
        startups: Vec::new(),
    };
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let e = e.map_err(io_err("cannot list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".startup") && e.file_type().is_ok_and(|t| t.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let p = dir.join(&name);
        let mut text = String::new();
        let f = std::fs::File::open(&p).map_err(io_err("cannot read", &p))?;
        // Not UTF-8 or unreadable as text: it shows nothing either way.
        let _ = f.take(STARTUP_SNIFF_BYTES).read_to_string(&mut text);
        facts.startups.push((name, text));
    }
    Ok(facts)
}

/// Read a lab file; a symlink leading outside the lab folder is refused.
fn read(p: &Path) -> Result<String> {
    if let (Some(dir), Some(name)) = (p.parent(), p.file_name()) {
        crate::confine::resolve_inside(dir, Path::new(name))?;
    }
    std::fs::read_to_string(p).map_err(io_err("cannot read", p))
}

fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
        let e = e.map_err(io_err("cannot list", dir))?;
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    Ok(v)
}

/// True when a relative path stays inside its root when resolved lexically
/// from `base` (a path relative to the root).
pub fn stays_inside(base: &Path, rel_target: &Path) -> bool {
    if rel_target.is_absolute() {
        return false;
    }
    let mut depth: i64 = base
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .count() as i64;
    for c in rel_target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Reject symlinks in `tree` (inside the lab folder `root`) whose target is
/// absolute or leads outside the lab folder. Missing trees are fine.
pub fn check_tree_safe(root: &Path, tree: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(tree) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let mut stack = vec![(tree.to_path_buf(), meta)];
    while let Some((p, meta)) = stack.pop() {
        let rel = p.strip_prefix(root).unwrap_or(&p).to_path_buf();
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(io_err("cannot read link", &p))?;
            let parent = rel.parent().unwrap_or(Path::new(""));
            if target.is_absolute() {
                return Err(LabError::Unsafe {
                    path: p,
                    rule: format!(
                        "symlink to absolute path {} (links must stay inside the lab folder)",
                        target.display()
                    ),
                });
            }
            if !stays_inside(parent, &target) {
                return Err(LabError::Unsafe {
                    path: p,
                    rule: format!(
                        "symlink to {} leads outside the lab folder",
                        target.display()
                    ),
                });
            }
            // Lexically inside is not enough: a chain (`M/x -> ../hop`,
            // `hop -> /etc`) is resolved fully. Dangling links stay links.
            if let Ok(real) = p.canonicalize() {
                if !real.starts_with(root) {
                    return Err(LabError::Unsafe {
                        path: p,
                        rule: format!(
                            "symlink to {} resolves to {} outside the lab folder",
                            target.display(),
                            real.display()
                        ),
                    });
                }
            }
        } else if meta.is_dir() {
            for e in std::fs::read_dir(&p).map_err(io_err("cannot list", &p))? {
                let e = e.map_err(io_err("cannot list", &p))?;
                let m =
                    std::fs::symlink_metadata(e.path()).map_err(io_err("cannot stat", e.path()))?;
                stack.push((e.path(), m));
            }
        }
    }
    Ok(())
}
