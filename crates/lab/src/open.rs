//! Opening a lab for a command: where lab state lives, the lab folder read
//! and planned, and the plan saved at start (for stopping or cleaning a lab
//! whose description no longer loads).

use std::path::{Path, PathBuf};

use crate::error::{io_err, LabError, Result};
use crate::load::Loaded;
use crate::model::Dialect;
use crate::plan::Plan;

/// The state root, absolute (fixed once, so a relative `UMLKIT_LAB_STATE`
/// means the same folder to every step, and to `lab clean` later):
/// `explicit`, else `$UMLKIT_LAB_STATE`, else [`default_state_root`].
pub fn state_root(explicit: Option<&Path>) -> PathBuf {
    let root = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("UMLKIT_LAB_STATE").map(PathBuf::from))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(default_state_root);
    std::path::absolute(&root).unwrap_or(root)
}

/// `$XDG_RUNTIME_DIR/umlkit-lab`, else `/tmp/umlkit-lab-UID` (per user, so
/// no other user's folder is ever taken for ours; it is checked anyway).
pub fn default_state_root() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("umlkit-lab"),
        None => PathBuf::from(format!("/tmp/umlkit-lab-{}", umlkit_sys::private::euid())),
    }
}

/// Read the lab folder `dir` (dialect forced or detected; memory floor
/// `min_mem` if given) and plan it with its state folder under `root`.
pub fn load(
    dir: &Path,
    dialect: Option<Dialect>,
    min_mem: Option<u32>,
    root: &Path,
) -> Result<(Plan, Loaded)> {
    let mut loaded = crate::load::load_lab(dir, dialect)?;
    if let Some(n) = min_mem {
        loaded.lab.lab.min_mem = Some(n);
    }
    let state_dir = root.join(crate::plan::lab_id(&loaded.dir));
    // image names mapped by the user's images.toml (after the lab's own)
    let user_images = crate::images::load_user_map()?;
    let plan = crate::plan::plan_with(&loaded.lab, &loaded.dir, &state_dir, user_images.as_ref())?;
    Ok((plan, loaded))
}

/// The plan saved in the state folder (under `root`) of the lab folder
/// `dir` when it was started, and its path; `None` when there is none.
/// The state folder must be private and the plan must name it.
pub fn saved_plan(dir: &Path, root: &Path) -> Result<Option<(Plan, PathBuf)>> {
    let Ok(lab_dir) = dir.canonicalize() else {
        return Ok(None);
    };
    let state_dir = root.join(crate::plan::lab_id(&lab_dir));
    let saved = state_dir.join("plan.json");
    if saved.symlink_metadata().is_err() {
        return Ok(None);
    }
    umlkit_sys::private::private_dir(&state_dir, false)?;
    let bytes =
        umlkit_sys::private::read_nofollow(&saved).map_err(io_err("cannot read", &saved))?;
    let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| LabError::Invalid {
        file: saved.clone(),
        rule: format!("unreadable saved plan: {e}"),
    })?;
    if plan.state_dir != state_dir {
        return Err(LabError::Invalid {
            file: saved.clone(),
            rule: format!(
                "names state folder {}, not its own",
                plan.state_dir.display()
            ),
        });
    }
    Ok(Some((plan, saved)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_plan_must_name_its_own_state_folder() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("lab");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("lab.conf"), "a[0]=A\n").unwrap();
        let root = t.path().join("state");
        assert!(saved_plan(&dir, &root).unwrap().is_none());
        let (plan, _) = load(&dir, None, None, &root).unwrap();
        std::fs::create_dir_all(&plan.state_dir).unwrap();
        umlkit_sys::private::private_dir(&plan.state_dir, true).unwrap();
        let saved = plan.state_dir.join("plan.json");
        std::fs::write(&saved, serde_json::to_vec(&plan).unwrap()).unwrap();
        let (p, at) = saved_plan(&dir, &root).unwrap().unwrap();
        assert_eq!((p.state_dir, at), (plan.state_dir.clone(), saved.clone()));
        // a plan naming another state folder is refused, with the file named
        let mut other = plan.clone();
        other.state_dir = t.path().join("elsewhere");
        std::fs::write(&saved, serde_json::to_vec(&other).unwrap()).unwrap();
        let e = saved_plan(&dir, &root).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: names state folder ", saved.display())),
            "{e}"
        );
        std::fs::write(&saved, b"{").unwrap();
        let e = saved_plan(&dir, &root).unwrap_err().to_string();
        assert!(e.contains(": unreadable saved plan: "), "{e}");
    }
}
