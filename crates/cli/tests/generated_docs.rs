//! Man pages and shell completions generated from the clap definitions:
//! every command `umlkit --help` lists (recursively) has a page that
//! renders, and the bash completion loads.

use std::path::Path;
use std::process::Command;

fn umlkit(args: &[&str]) -> std::process::Output {
    Command::new(testkit::umlkit_bin())
        .args(args)
        .output()
        .expect("run umlkit")
}

/// The subcommand names a `--help` text lists under "Commands:".
fn subcommands(path: &[String]) -> Vec<String> {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("--help");
    let o = umlkit(&args);
    assert!(o.status.success(), "{args:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect()
}

fn walk(path: Vec<String>, out: &mut Vec<Vec<String>>) {
    for s in subcommands(&path) {
        let mut p = path.clone();
        p.push(s);
        walk(p.clone(), out);
        out.push(p);
    }
}

#[test]
fn every_command_has_a_man_page_that_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man1");
    let o = umlkit(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut cmds = Vec::new();
    walk(Vec::new(), &mut cmds);
    assert!(cmds.len() > 40, "only {} commands found", cmds.len());
    assert!(cmds.contains(&vec!["lab".to_string(), "start".to_string()]));
    let mut pages = vec![dir.join("umlkit.1")];
    for c in &cmds {
        pages.push(dir.join(format!("umlkit-{}.1", c.join("-"))));
    }
    for p in &pages {
        assert!(p.is_file(), "no man page {}", p.display());
        render(p);
    }
}

fn render(page: &Path) {
    let o = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(page)
        .output()
        .expect("groff");
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}: {}",
        page.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bash_completion_loads() {
    let exe = testkit::umlkit_bin();
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{}' completions bash) && complete -p umlkit",
            exe.display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("-F _umlkit umlkit"), "{out}");
    // and completes a subcommand
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{}' completions bash) && COMP_WORDS=(umlkit la) COMP_CWORD=1 && _umlkit umlkit la umlkit && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            exe.display()
        ))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().any(|l| l == "lab"), "{out}");
}

#[test]
fn zsh_and_fish_scripts_are_generated() {
    for (shell, marker) in [("zsh", "#compdef umlkit"), ("fish", "complete -c umlkit")] {
        let o = umlkit(&["completions", shell]);
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(marker),
            "{shell}"
        );
    }
    let o = umlkit(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}
