//! Netkit and Kathará command names, as multi-call names of `umlkit`.
//!
//! Invoked as `lstart`, `lhalt`, `lcrash`, `lclean`, `linfo`, `ltest`,
//! `lrestart`, `vstart`, `vlist`, `vhalt`, `vcrash` (Netkit) or `kathara lstart|lclean|
//! lrestart|linfo|exec|connect|list|wipe` (Kathará), umlkit translates the
//! command line into its own commands ([`translate`], pure) and runs them.
//! Flags with no meaning here (terminal choice, verbosity) are accepted and
//! ignored with one note; flags that would change what happens and that
//! umlkit cannot honour are refused by name (exit status 2).
//!
//! `vstart --ethN=DOMAIN` plugs the machine into a switch per collision
//! domain under `STATE_ROOT/.domains/DOMAIN` (started on first use, as
//! Netkit's hubs were; it keeps running until killed).

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

/// Names under which `umlkit` acts as a C tool of uml-utilities.
pub const UML_NAMES: &[&str] = &[
    "uml_mkcow",
    "uml_moo",
    "uml_switch",
    "uml_mconsole",
    "vde_plug",
];

/// The Netkit names `install-links` creates (plus `kathara`).
pub const NETKIT_NAMES: &[&str] = &[
    "lstart", "lhalt", "lcrash", "lclean", "linfo", "ltest", "lrestart", "vstart", "vlist",
    "vhalt", "vcrash",
];

/// Kathará's front command.
pub const KATHARA: &str = "kathara";

/// One thing to do for a translated command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run `umlkit ARGS...` (argv without argv[0]).
    Umlkit(Vec<String>),
    /// Make sure a switch serves the collision domain at this directory
    /// (start `umlkit switch -s DIR --daemon` unless DIR/ctl answers).
    EnsureSwitch(PathBuf),
}

/// What a compat command line means: steps run in order (the first failure
/// stops), plus notes about ignored flags (printed once, on stderr).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Translation {
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

/// A refused command line: the message names the command and the flag.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Val {
    /// a switch
    No,
    /// `-d DIR`, `-dDIR`, `--dir=DIR`, `--dir DIR`
    Req,
    /// `-p`, `-p4`, `-p 4` (a number only), `--parallel=4`
    OptNum,
}

struct Flag {
    id: &'static str,
    short: &'static [char],
    long: &'static [&'static str],
    val: Val,
}

const fn f(
    id: &'static str,
    short: &'static [char],
    long: &'static [&'static str],
    val: Val,
) -> Flag {
    Flag {
        id,
        short,
        long,
        val,
    }
}

struct Parsed {
    /// (flag id, value, the flag as typed)
    flags: Vec<(&'static str, Option<String>, String)>,
    pos: Vec<String>,
}

impl Parsed {
    fn has(&self, id: &str) -> bool {
        self.flags.iter().any(|(i, _, _)| *i == id)
    }
    fn value(&self, id: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(i, _, _)| *i == id)
            .and_then(|(_, v, _)| v.as_deref())
    }
    fn typed(&self, id: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, t)| t.as_str())
    }
}

/// getopt-like parsing against `table`. Option parsing stops at `--` and,
/// when `stop_after` is given, once that many positionals were seen (the
/// rest is positional: a command and its own flags).
fn parse(
    cmd: &str,
    table: &[Flag],
    args: &[String],
    stop_after: Option<usize>,
) -> Result<Parsed, Refused> {
    let mut p = Parsed {
        flags: Vec::new(),
        pos: Vec::new(),
    };
    let mut i = 0;
    let unknown = |a: &str| {
        Refused(format!(
            "{cmd}: option {a} is not supported by umlkit (see `{cmd} --help` for the ones that are)"
        ))
    };
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(n) = stop_after.filter(|n| p.pos.len() >= *n) {
            // `MACHINE -- CMD...`: the `--` right after is a separator
            if !(a == "--" && p.pos.len() == n) {
                p.pos.push(a.clone());
            }
            continue;
        }
        if a == "--" {
            p.pos.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            // --ethN=DOMAIN (vstart): any N
            let fl = table.iter().find(|fl| {
                fl.long.contains(&name)
                    || (fl.long.contains(&"ethN")
                        && name.strip_prefix("eth").is_some_and(|n| {
                            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                        }))
            });
            let Some(fl) = fl else {
                return Err(unknown(&format!("--{name}")));
            };
            let typed = format!("--{name}");
            let v = match (fl.val, inline) {
                (Val::No, Some(_)) => {
                    return Err(Refused(format!("{cmd}: option {typed} takes no value")))
                }
                (Val::No, None) => None,
                (_, Some(v)) => Some(v),
                (Val::Req, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| Refused(format!("{cmd}: option {typed} needs a value")))?;
                    i += 1;
                    Some(v.clone())
                }
                (Val::OptNum, None) => next_number(args, &mut i),
            };
            p.flags.push((fl.id, v, typed));
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let Some(fl) = table.iter().find(|fl| fl.short.contains(&c)) else {
                    return Err(unknown(&format!("-{c}")));
                };
                let typed = format!("-{c}");
                let rest: String = chars[j..].iter().collect();
                let v = match fl.val {
                    Val::No => None,
                    Val::Req if !rest.is_empty() => {
                        j = chars.len();
                        Some(rest)
                    }
                    Val::Req => {
                        let v = args.get(i).ok_or_else(|| {
                            Refused(format!("{cmd}: option {typed} needs a value"))
                        })?;
                        i += 1;
                        Some(v.clone())
                    }
                    Val::OptNum if !rest.is_empty() => {
                        j = chars.len();
                        Some(rest)
                    }
                    Val::OptNum => next_number(args, &mut i),
                };
                p.flags.push((fl.id, v, typed));
            }
            continue;
        }
        p.pos.push(a.clone());
    }
    Ok(p)
}

fn next_number(args: &[String], i: &mut usize) -> Option<String> {
    let v = args
        .get(*i)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))?;
    *i += 1;
    Some(v.clone())
}

// Flags shared by several commands.
const HELP: Flag = f("help", &['h'], &["help"], Val::No);
const DIR: Flag = f("dir", &['d'], &["directory"], Val::Req);
const VERBOSE: Flag = f("ignore", &['v'], &["verbose"], Val::No);
const QUICK: Flag = f("ignore", &['q'], &["quick", "quiet"], Val::No);
const FORCE_LAB: Flag = f("ignore", &['F'], &["force-lab"], Val::No);
const TERM: Flag = f("ignore", &[], &["xterm", "con0", "con1", "tmux"], Val::Req);
const TERM_SWITCH: Flag = f(
    "ignore",
    &[],
    &["tmux-attached", "tmux-detached", "no-terminals"],
    Val::No,
);

/// Is NAME (argv[0]'s file name) a Netkit or Kathará command?
pub fn is_name(name: &str) -> bool {
    NETKIT_NAMES.contains(&name) || name == KATHARA
}

/// Translate `NAME ARGS...` (argv[0]'s file name and the rest); `None` when
/// NAME is not a Netkit/Kathará name.
pub fn translate(name: &str, args: &[String]) -> Option<Result<Translation, Refused>> {
    let r = match name {
        "lstart" => lstart("lstart", args),
        "lhalt" => lhalt(args),
        "lcrash" => lcrash(args),
        "lclean" => lclean(args),
        "linfo" => linfo(args),
        "ltest" => ltest(args),
        "lrestart" => lrestart(args),
        "vstart" => vstart(args, &guest::Store::default_root()),
        "vlist" => vlist(args),
        "vhalt" => vhalt(args),
        "vcrash" => vcrash(args),
        KATHARA => kathara(args),
        _ => return None,
    };
    Some(r)
}

fn umlkit<const N: usize>(words: [&str; N]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn help(cmd: &[&str]) -> Translation {
    let mut v = umlkit([]);
    v.extend(cmd.iter().map(|s| s.to_string()));
    v.push("--help".into());
    Translation {
        steps: vec![Step::Umlkit(v)],
        notes: Vec::new(),
    }
}

/// One note listing the ignored flags, if any.
fn notes(cmd: &str, p: &Parsed, why: &str) -> Vec<String> {
    let ignored: Vec<&str> = p
        .flags
        .iter()
        .filter(|(id, _, _)| *id == "ignore")
        .map(|(_, _, t)| t.as_str())
        .collect();
    if ignored.is_empty() {
        return Vec::new();
    }
    vec![format!("{cmd}: ignoring {} ({why})", ignored.join(", "))]
}

fn dir_of(p: &Parsed) -> String {
    p.value("dir").unwrap_or(".").to_string()
}

fn refuse_if(p: &Parsed, cmd: &str, id: &str, why: &str) -> Result<(), Refused> {
    match p.typed(id) {
        Some(t) => Err(Refused(format!("{cmd}: {t} is not supported: {why}"))),
        None => Ok(()),
    }
}

fn no_machines(p: &Parsed, cmd: &str, hint: &str) -> Result<(), Refused> {
    if p.pos.is_empty() {
        Ok(())
    } else {
        Err(Refused(format!(
            "{cmd}: machine names ({}) are not supported: {hint}",
            p.pos.join(" ")
        )))
    }
}

/// `lstart [-d DIR] [-p[N]] [-s] [-f] [-F] [-l] [MACHINE...]` (Netkit).
fn lstart(cmd: &str, args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        cmd,
        &[
            HELP,
            DIR,
            VERBOSE,
            FORCE_LAB,
            TERM,
            TERM_SWITCH,
            f("parallel", &['p'], &["parallel"], Val::OptNum),
            f("sequential", &['s'], &["sequential"], Val::No),
            f("ignore", &['f'], &["fast"], Val::No),
            f("ignore", &['w'], &["wait"], Val::Req),
            f("list", &['l'], &["list"], Val::No),
            f("pass", &['o'], &["pass"], Val::Req),
            f("makefile", &['M'], &["makefile"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "start"]));
    }
    refuse_if(
        &p,
        cmd,
        "pass",
        "machine options come from lab.conf / lab.toml",
    )?;
    refuse_if(&p, cmd, "makefile", "umlkit starts lab.dep waves itself")?;
    let dir = dir_of(&p);
    let mut start = umlkit(["lab", "start", &dir]);
    if p.has("sequential") {
        start.extend(umlkit(["-p", "1"]));
    } else if let Some(n) = p.value("parallel").filter(|n| *n != "0") {
        start.extend(umlkit(["-p", n]));
    }
    if !p.pos.is_empty() {
        start.push("--".into());
        start.extend(p.pos.iter().cloned());
    }
    let mut steps = vec![Step::Umlkit(start)];
    if p.has("list") {
        steps.push(Step::Umlkit(umlkit(["lab", "status", &dir])));
    }
    Ok(Translation {
        steps,
        notes: notes(
            cmd,
            &p,
            "umlkit waits until every machine is up; consoles are `umlkit lab console`",
        ),
    })
}

/// `lrestart [lstart's options] [-q] [MACHINE...]` (Netkit): `lhalt` then
/// `lstart` with the same directory and machines; `-q` (lhalt's quick
/// halt) has no meaning here and is noted like lstart's ignored flags.
fn lrestart(args: &[String]) -> Result<Translation, Refused> {
    let (quick, rest): (Vec<String>, Vec<String>) = args
        .iter()
        .cloned()
        .partition(|a| a == "-q" || a == "--quick" || a == "--quiet");
    let mut t = lstart("lrestart", &rest)?;
    let Some(Step::Umlkit(start)) = t.steps.first() else {
        return Ok(t);
    };
    if start.iter().any(|a| a == "--help") {
        return Ok(t);
    }
    // `lab start DIR [-p N] [-- MACHINE...]`: stop the same lab and machines
    let dir = start[2].clone();
    let mut stop = umlkit(["lab", "stop", &dir]);
    if let Some(i) = start.iter().position(|a| a == "--") {
        stop.extend(start[i + 1..].iter().cloned());
    }
    t.steps.insert(0, Step::Umlkit(stop));
    if let Some(q) = quick.first() {
        t.notes.push(format!(
            "lrestart: ignoring {q} (umlkit always halts gracefully)"
        ));
    }
    Ok(t)
}

/// `lhalt [-d DIR] [-q] [MACHINE...]`: graceful stop.
fn lhalt(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "lhalt",
        &[
            HELP,
            DIR,
            VERBOSE,
            QUICK,
            FORCE_LAB,
            f("remove", &['r'], &["remove-fs"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "stop"]));
    }
    refuse_if(
        &p,
        "lhalt",
        "remove",
        "use lclean to remove the lab's files",
    )?;
    let mut v = umlkit(["lab", "stop", &dir_of(&p)]);
    v.extend(p.pos.iter().cloned());
    Ok(Translation {
        steps: vec![Step::Umlkit(v)],
        notes: notes("lhalt", &p, "no meaning for umlkit"),
    })
}

/// `lcrash [-d DIR] [-k] [-q] [MACHINE...]`: kill at once.
fn lcrash(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "lcrash",
        &[
            HELP,
            DIR,
            VERBOSE,
            QUICK,
            FORCE_LAB,
            f("ignore", &['k'], &["keep-fs"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "crash"]));
    }
    let mut v = umlkit(["lab", "crash", &dir_of(&p)]);
    v.extend(p.pos.iter().cloned());
    Ok(Translation {
        steps: vec![Step::Umlkit(v)],
        notes: notes(
            "lcrash",
            &p,
            "umlkit keeps the disks until lclean; no meaning otherwise",
        ),
    })
}

/// `lclean [-d DIR]`: kill and remove every file the lab made.
fn lclean(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "lclean",
        &[
            HELP,
            DIR,
            VERBOSE,
            FORCE_LAB,
            f("test", &['T'], &["remove-test"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "clean"]));
    }
    refuse_if(
        &p,
        "lclean",
        "test",
        "umlkit never removes files of the lab folder (remove _test/ yourself)",
    )?;
    no_machines(&p, "lclean", "umlkit cleans the whole lab")?;
    Ok(Translation {
        steps: vec![Step::Umlkit(umlkit(["lab", "clean", &dir_of(&p)]))],
        notes: notes("lclean", &p, "no meaning for umlkit"),
    })
}

/// `linfo [-d DIR] [-m FILE.svg]`: the lab's plan (and its map).
fn linfo(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "linfo",
        &[
            HELP,
            DIR,
            VERBOSE,
            FORCE_LAB,
            f("map", &['m'], &["map"], Val::Req),
            f("ignore", &['s'], &["summary"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "info"]));
    }
    no_machines(&p, "linfo", "it shows the whole lab")?;
    let dir = dir_of(&p);
    let mut steps = vec![Step::Umlkit(umlkit(["lab", "info", &dir]))];
    if let Some(map) = p.value("map") {
        if !map.ends_with(".svg") {
            return Err(Refused(format!(
                "linfo: -m {map}: umlkit draws maps as SVG only (name the file *.svg)"
            )));
        }
        steps.push(Step::Umlkit(umlkit(["lab", "graph", &dir, "--svg", map])));
    }
    Ok(Translation {
        steps,
        notes: notes("linfo", &p, "no meaning for umlkit"),
    })
}

/// `ltest [-d DIR] [-R]`: run the lab's checks (`-R`: write signatures).
fn ltest(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "ltest",
        &[
            HELP,
            DIR,
            VERBOSE,
            FORCE_LAB,
            f("rebuild", &['R'], &["rebuild-signature"], Val::No),
            f("script", &['S'], &["script-only"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "test"]));
    }
    refuse_if(
        &p,
        "ltest",
        "script",
        "umlkit runs the test scripts and compares in one step",
    )?;
    no_machines(&p, "ltest", "umlkit tests the whole running lab")?;
    let mut v = umlkit(["lab", "test", &dir_of(&p)]);
    if p.has("rebuild") {
        v.push("--write-signatures".into());
    }
    Ok(Translation {
        steps: vec![Step::Umlkit(v)],
        notes: notes("ltest", &p, "no meaning for umlkit"),
    })
}

/// A collision domain name usable as a directory name.
fn domain_ok(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 64
        && !d.starts_with('.')
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// The switch directory of a `vstart` collision domain.
pub fn domain_dir(state_root: &Path, domain: &str) -> PathBuf {
    state_root.join(".domains").join(domain)
}

/// `vstart [--ethN=DOMAIN...] [-M MEM] [-k KERNEL] [-f FS] [--hostlab=DIR]
/// [--append=ARGS] NAME`: boot one detached machine.
fn vstart(args: &[String], state_root: &Path) -> Result<Translation, Refused> {
    let p = parse(
        "vstart",
        &[
            HELP,
            VERBOSE,
            TERM,
            f("ignore", &[], &["quiet"], Val::No),
            f("eth", &[], &["ethN"], Val::Req),
            f("mem", &['M'], &["mem"], Val::Req),
            f("kernel", &['k'], &["kernel"], Val::Req),
            f("fs", &['f'], &["filesystem"], Val::Req),
            f("hostlab", &[], &["hostlab"], Val::Req),
            f("append", &[], &["append"], Val::Req),
            f("print", &['n'], &["print", "just-print"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["run"]));
    }
    let [name] = p.pos.as_slice() else {
        return Err(Refused(format!(
            "vstart: expected one machine name, got {}",
            if p.pos.is_empty() {
                "none".to_string()
            } else {
                p.pos.join(" ")
            }
        )));
    };
    let mut run = umlkit(["run", "--name", name]);
    let mut steps = Vec::new();
    // interfaces: --ethN=DOMAIN, numbered without gaps (umlkit numbers in order)
    let mut eths: Vec<(u32, &str)> = Vec::new();
    for (id, v, typed) in &p.flags {
        if *id != "eth" {
            continue;
        }
        let n: u32 = typed[5..]
            .parse()
            .map_err(|_| Refused(format!("vstart: {typed}: bad interface number")))?;
        let d = v.as_deref().unwrap_or_default();
        if !domain_ok(d) {
            return Err(Refused(format!(
                "vstart: {typed}={d}: a collision domain is a name of letters, digits, '_', '.', '-'"
            )));
        }
        if eths.iter().any(|(m, _)| *m == n) {
            return Err(Refused(format!("vstart: {typed} given twice")));
        }
        eths.push((n, d));
    }
    eths.sort();
    for (k, (n, d)) in eths.iter().enumerate() {
        if *n as usize != k {
            return Err(Refused(format!(
                "vstart: --eth{n} without --eth{k}: umlkit numbers interfaces in order, give eth0..eth{n}"
            )));
        }
        let sw = domain_dir(state_root, d);
        steps.push(Step::EnsureSwitch(sw.clone()));
        run.push("--net".into());
        run.push(sw.display().to_string());
    }
    if let Some(m) = p.value("mem") {
        let m = if m.bytes().all(|b| b.is_ascii_digit()) {
            format!("{m}M") // Netkit: megabytes
        } else {
            m.to_string()
        };
        run.extend(["--mem".to_string(), m]);
    }
    if let Some(k) = p.value("kernel") {
        run.extend(["--kernel".to_string(), k.to_string()]);
    }
    if let Some(fs) = p.value("fs") {
        run.extend(["--disk".to_string(), fs.to_string()]);
    }
    if let Some(h) = p.value("hostlab") {
        run.extend(["--hostfs".to_string(), h.to_string()]);
    }
    if p.has("print") {
        run.push("--dry-run".into());
        steps.clear();
    } else {
        run.extend(umlkit(["--detach", "--wait"]));
    }
    if let Some(a) = p.value("append") {
        run.push("--".into());
        run.extend(a.split_whitespace().map(str::to_string));
    }
    steps.push(Step::Umlkit(run));
    Ok(Translation {
        steps,
        notes: notes(
            "vstart",
            &p,
            "the console is a pty: `umlkit console NAME` attaches to it",
        ),
    })
}

/// `vlist`: the running machines.
fn vlist(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "vlist",
        &[
            HELP,
            VERBOSE,
            QUICK,
            f("user", &['u'], &["user"], Val::Req),
            f("ignore", &['n'], &["no-header"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["ps"]));
    }
    refuse_if(&p, "vlist", "user", "umlkit lists your own machines only")?;
    no_machines(&p, "vlist", "`umlkit ps` lists every machine")?;
    Ok(Translation {
        steps: vec![Step::Umlkit(umlkit(["ps"]))],
        notes: notes("vlist", &p, "no meaning for umlkit"),
    })
}

/// `vhalt [-r] NAME...`: clean stop (and `-r`: remove its files).
fn vhalt(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "vhalt",
        &[
            HELP,
            VERBOSE,
            QUICK,
            f("remove", &['r'], &["remove-fs"], Val::No),
            f("user", &['u'], &["user"], Val::Req),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["halt"]));
    }
    refuse_if(&p, "vhalt", "user", "umlkit halts your own machines only")?;
    if p.pos.is_empty() {
        return Err(Refused("vhalt: expected a machine name".into()));
    }
    let mut steps = Vec::new();
    for m in &p.pos {
        steps.push(Step::Umlkit(umlkit(["halt", m])));
        if p.has("remove") {
            steps.push(Step::Umlkit(umlkit(["rm", m])));
        }
    }
    Ok(Translation {
        steps,
        notes: notes("vhalt", &p, "no meaning for umlkit"),
    })
}

/// `vcrash NAME...`: kill at once; the machine's files stay (`umlkit rm`).
fn vcrash(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "vcrash",
        &[
            HELP,
            VERBOSE,
            QUICK,
            f("ignore", &['k'], &["keep-fs"], Val::No),
            f("user", &['u'], &["user"], Val::Req),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["kill"]));
    }
    refuse_if(&p, "vcrash", "user", "umlkit kills your own machines only")?;
    if p.pos.is_empty() {
        return Err(Refused("vcrash: expected a machine name".into()));
    }
    Ok(Translation {
        steps: p
            .pos
            .iter()
            .map(|m| Step::Umlkit(umlkit(["kill", m])))
            .collect(),
        notes: notes(
            "vcrash",
            &p,
            "umlkit keeps a crashed machine's files until `umlkit rm`",
        ),
    })
}

/// `kathara SUBCOMMAND ...`.
fn kathara(args: &[String]) -> Result<Translation, Refused> {
    let Some((sub, rest)) = args.split_first() else {
        return Err(Refused(
            "kathara: expected a command: lstart, lclean, lrestart, linfo, exec, connect, list, wipe"
                .into(),
        ));
    };
    match sub.as_str() {
        "lstart" => k_lstart("kathara lstart", rest, false),
        "lrestart" => k_lstart("kathara lrestart", rest, true),
        "lclean" => k_lclean(rest),
        "linfo" => k_linfo(rest),
        "exec" => k_exec(rest),
        "connect" => k_connect(rest),
        "list" => k_list(rest),
        "wipe" => Err(Refused(
            "kathara wipe is not supported: umlkit removes labs one at a time \
             (`kathara lclean -d DIR`) and machines with `umlkit rm`"
                .into(),
        )),
        "-h" | "--help" => Ok(help(&["lab"])),
        other => Err(Refused(format!(
            "kathara {other}: not supported by umlkit (supported: lstart, lclean, lrestart, linfo, exec, connect, list)"
        ))),
    }
}

fn k_lstart(cmd: &str, args: &[String], restart: bool) -> Result<Translation, Refused> {
    // --xterm takes a value in Kathará
    let p = parse(
        cmd,
        &[
            HELP,
            DIR,
            FORCE_LAB,
            f(
                "ignore",
                &['n', 't'],
                &["noterminals", "terminals"],
                Val::No,
            ),
            f("ignore", &[], &["xterm"], Val::Req),
            f("ignore", &[], &["shared", "no-hosthome"], Val::No),
            f("list", &['l'], &["list"], Val::No),
            f("pass", &['o'], &["pass"], Val::Req),
            f("privileged", &[], &["privileged"], Val::No),
            f("hosthome", &[], &["hosthome"], Val::No),
            f("noshared", &['S'], &["no-shared"], Val::No),
            f("ignore", &['H'], &[], Val::No),
            f("exclude", &[], &["exclude"], Val::Req),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "start"]));
    }
    refuse_if(&p, cmd, "pass", "machine options come from lab.conf")?;
    refuse_if(
        &p,
        cmd,
        "privileged",
        "UML machines have no privileged mode",
    )?;
    refuse_if(
        &p,
        cmd,
        "hosthome",
        "umlkit never mounts your home directory",
    )?;
    refuse_if(
        &p,
        cmd,
        "noshared",
        "umlkit always shares the lab's shared/ folder",
    )?;
    refuse_if(&p, cmd, "exclude", "name the machines to start instead")?;
    let dir = dir_of(&p);
    let mut steps = Vec::new();
    if restart {
        if !p.pos.is_empty() {
            return Err(Refused(format!(
                "{cmd}: machine names are not supported: umlkit restarts the whole lab \
                 (`umlkit lab restart DIR MACHINE...` restarts some)"
            )));
        }
        steps.push(Step::Umlkit(umlkit(["lab", "clean", &dir])));
    }
    let mut start = umlkit(["lab", "start", &dir]);
    if !p.pos.is_empty() {
        start.push("--".into());
        start.extend(p.pos.iter().cloned());
    }
    steps.push(Step::Umlkit(start));
    if p.has("list") {
        steps.push(Step::Umlkit(umlkit(["lab", "status", &dir])));
    }
    Ok(Translation {
        steps,
        notes: notes(
            cmd,
            &p,
            "machines have no terminal windows: `kathara connect MACHINE` opens a shell",
        ),
    })
}

fn k_lclean(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "kathara lclean",
        &[HELP, DIR, f("exclude", &[], &["exclude"], Val::Req)],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "clean"]));
    }
    refuse_if(
        &p,
        "kathara lclean",
        "exclude",
        "umlkit cleans the whole lab",
    )?;
    no_machines(
        &p,
        "kathara lclean",
        "umlkit cleans the whole lab (`umlkit lab crash DIR MACHINE...` kills some)",
    )?;
    Ok(Translation {
        steps: vec![Step::Umlkit(umlkit(["lab", "clean", &dir_of(&p)]))],
        notes: Vec::new(),
    })
}

fn k_linfo(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "kathara linfo",
        &[
            HELP,
            DIR,
            f("conf", &['c'], &["conf"], Val::No),
            f("watch", &['w'], &["watch"], Val::No),
            f("name", &['n'], &["name"], Val::Req),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "status"]));
    }
    refuse_if(
        &p,
        "kathara linfo",
        "watch",
        "run `watch umlkit lab status DIR`",
    )?;
    refuse_if(&p, "kathara linfo", "name", "umlkit shows the whole lab")?;
    no_machines(&p, "kathara linfo", "umlkit shows the whole lab")?;
    let what = if p.has("conf") { "info" } else { "status" };
    Ok(Translation {
        steps: vec![Step::Umlkit(umlkit(["lab", what, &dir_of(&p)]))],
        notes: Vec::new(),
    })
}

/// `kathara exec [-d DIR | -v] MACHINE COMMAND...`: one word with spaces
/// runs through `sh -c`, as Kathará splits it.
fn k_exec(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "kathara exec",
        &[
            HELP,
            DIR,
            f("vstart", &['v'], &["vstart"], Val::No),
            f("nostdout", &[], &["no-stdout"], Val::No),
            f("nostderr", &[], &["no-stderr"], Val::No),
            f("ignore", &[], &["wait", "no-wait"], Val::No),
        ],
        args,
        Some(1),
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "exec"]));
    }
    refuse_if(&p, "kathara exec", "nostdout", "redirect it: `> /dev/null`")?;
    refuse_if(
        &p,
        "kathara exec",
        "nostderr",
        "redirect it: `2> /dev/null`",
    )?;
    let Some((machine, cmd)) = p.pos.split_first() else {
        return Err(Refused("kathara exec: expected MACHINE COMMAND...".into()));
    };
    let cmd: Vec<String> = match cmd {
        [] => return Err(Refused("kathara exec: expected a command".into())),
        [one] if one.contains(char::is_whitespace) => {
            vec!["sh".into(), "-c".into(), one.clone()]
        }
        many => many.to_vec(),
    };
    let mut v = if p.has("vstart") {
        if p.has("dir") {
            return Err(Refused(
                "kathara exec: -d and -v are mutually exclusive".into(),
            ));
        }
        umlkit(["exec", machine])
    } else {
        umlkit(["lab", "exec", "-d", &dir_of(&p), machine])
    };
    v.push("--".into());
    v.extend(cmd);
    Ok(Translation {
        steps: vec![Step::Umlkit(v)],
        notes: notes("kathara exec", &p, "umlkit waits for the command"),
    })
}

fn k_connect(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "kathara connect",
        &[
            HELP,
            DIR,
            f("vstart", &['v'], &["vstart"], Val::No),
            f("ignore", &[], &["shell"], Val::Req),
            f("logs", &['l'], &["logs"], Val::No),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["lab", "console"]));
    }
    refuse_if(
        &p,
        "kathara connect",
        "logs",
        "run `umlkit lab logs -d DIR MACHINE`",
    )?;
    let [machine] = p.pos.as_slice() else {
        return Err(Refused("kathara connect: expected one machine name".into()));
    };
    let v = if p.has("vstart") {
        umlkit(["console", machine])
    } else {
        umlkit(["lab", "console", "-d", &dir_of(&p), machine])
    };
    Ok(Translation {
        steps: vec![Step::Umlkit(v)],
        notes: notes(
            "kathara connect",
            &p,
            "umlkit's console runs the machine's shell",
        ),
    })
}

fn k_list(args: &[String]) -> Result<Translation, Refused> {
    let p = parse(
        "kathara list",
        &[
            HELP,
            f("all", &['a'], &["all"], Val::No),
            f("watch", &['w'], &["watch"], Val::No),
            f("name", &['n'], &["name"], Val::Req),
        ],
        args,
        None,
    )?;
    if p.has("help") {
        return Ok(help(&["ps"]));
    }
    refuse_if(
        &p,
        "kathara list",
        "all",
        "umlkit lists your own machines only",
    )?;
    refuse_if(&p, "kathara list", "watch", "run `watch umlkit ps`")?;
    refuse_if(
        &p,
        "kathara list",
        "name",
        "`umlkit ps` lists every machine",
    )?;
    no_machines(&p, "kathara list", "`umlkit ps` lists every machine")?;
    Ok(Translation {
        steps: vec![Step::Umlkit(umlkit(["ps"]))],
        notes: Vec::new(),
    })
}

/// Run a translation: notes first, then each step through `umlkit` (the
/// callback runs `umlkit ARGS...` in this process and returns its exit
/// status); the first failing step ends the run with its status.
pub fn run(
    t: Translation,
    umlkit: &mut dyn FnMut(Vec<String>) -> std::process::ExitCode,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    for n in &t.notes {
        errln!("note: {n}");
    }
    let mut last = ExitCode::SUCCESS;
    for step in t.steps {
        match step {
            Step::Umlkit(argv) => {
                last = umlkit(argv);
                if last != ExitCode::SUCCESS {
                    return last;
                }
            }
            Step::EnsureSwitch(dir) => {
                if let Err(e) = ensure_switch(&dir) {
                    errln!("umlkit: {}", crate::cmd::error_chain(&e));
                    return ExitCode::from(1);
                }
            }
        }
    }
    last
}

/// Start the switch of a `vstart` collision domain unless one answers on
/// DIR/ctl: `umlkit switch -s DIR --daemon --pidfile DIR.pid` (the daemon
/// binds before it detaches, so DIR/ctl answers once the command returns).
fn ensure_switch(dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let ctl = dir.join("ctl");
    if std::os::unix::net::UnixStream::connect(&ctl).is_ok() {
        return Ok(());
    }
    let parent = dir.parent().context("collision domain dir has no parent")?;
    umlkit_sys::private::private_dir(parent, false)
        .with_context(|| format!("state folder {}", parent.display()))?;
    let exe = std::env::current_exe().context("cannot find the umlkit executable")?;
    let mut pid = dir.as_os_str().to_owned();
    pid.push(".pid");
    let st = std::process::Command::new(&exe)
        .arg0("umlkit")
        .arg("switch")
        .arg("-s")
        .arg(dir)
        .arg("--daemon")
        .arg("--pidfile")
        .arg(&pid)
        .status()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !st.success() {
        anyhow::bail!(
            "the switch of collision domain {} did not start ({st})",
            dir.display()
        );
    }
    std::os::unix::net::UnixStream::connect(&ctl)
        .with_context(|| format!("the switch started but {} does not answer", ctl.display()))?;
    Ok(())
}

/// `umlkit install-links [DIR]`: a symlink to this executable for every
/// multi-call name. An existing link to this executable is kept; another
/// symlink is replaced only with `force`; a file that is not a symlink is
/// never touched (reported, exit status 1).
pub fn install_links(dir: Option<PathBuf>, force: bool) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context;
    let dir = match dir {
        Some(d) => d,
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: name DIR")?)
            .join(".local/bin"),
    };
    let exe = std::env::current_exe().context("cannot find the umlkit executable")?;
    let exe_real = exe.canonicalize().unwrap_or(exe.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut failed = 0;
    let names = UML_NAMES.iter().chain(NETKIT_NAMES).chain([&KATHARA]);
    for name in names {
        let link = dir.join(name);
        match link.symlink_metadata() {
            Err(_) => {}
            Ok(m) if m.file_type().is_symlink() => {
                if link.canonicalize().is_ok_and(|t| t == exe_real) {
                    outln!("{} -> {} (already there)", link.display(), exe.display());
                    continue;
                }
                if !force {
                    errln!(
                        "umlkit: {} is a link to something else (use --force to replace it)",
                        link.display()
                    );
                    failed += 1;
                    continue;
                }
                std::fs::remove_file(&link)
                    .with_context(|| format!("cannot remove {}", link.display()))?;
            }
            Ok(_) => {
                errln!(
                    "umlkit: {} exists and is not a link: left alone (remove it yourself to link it)",
                    link.display()
                );
                failed += 1;
                continue;
            }
        }
        std::os::unix::fs::symlink(&exe, &link)
            .with_context(|| format!("cannot create link {}", link.display()))?;
        outln!("{} -> {}", link.display(), exe.display());
    }
    Ok(if failed == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(name: &str, args: &[&str]) -> Result<Translation, Refused> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match name {
            "vstart" => vstart(&args, Path::new("/run/u")),
            _ => translate(name, &args).expect("a compat name"),
        }
    }

    fn steps(name: &str, args: &[&str]) -> Vec<Vec<String>> {
        tr(name, args)
            .unwrap()
            .steps
            .into_iter()
            .map(|s| match s {
                Step::Umlkit(v) => v,
                Step::EnsureSwitch(d) => vec!["ensure".into(), d.display().to_string()],
            })
            .collect()
    }

    fn refused(name: &str, args: &[&str]) -> String {
        tr(name, args).unwrap_err().0
    }

    #[test]
    fn not_a_compat_name() {
        assert!(translate("umlkit", &[]).is_none());
        assert!(translate("lstartx", &[]).is_none());
    }

    #[test]
    fn lstart_flags() {
        assert_eq!(steps("lstart", &[]), [["lab", "start", "."]]);
        assert_eq!(
            steps("lstart", &["-d", "/l", "-p4", "pc1", "r1"]),
            [["lab", "start", "/l", "-p", "4", "--", "pc1", "r1"]]
        );
        assert_eq!(
            steps("lstart", &["-p", "2", "-d/l"]),
            [["lab", "start", "/l", "-p", "2"]]
        );
        // -p without a number then a machine name
        assert_eq!(
            steps("lstart", &["-p", "pc1"]),
            [["lab", "start", ".", "--", "pc1"]]
        );
        assert_eq!(steps("lstart", &["-s"]), [["lab", "start", ".", "-p", "1"]]);
        assert_eq!(
            steps("lstart", &["--directory=x", "-l"]),
            vec![
                umlkit(["lab", "start", "x"]),
                umlkit(["lab", "status", "x"])
            ]
        );
        let t = tr("lstart", &["-f", "--xterm=konsole", "-F"]).unwrap();
        assert_eq!(t.notes.len(), 1, "one note: {:?}", t.notes);
        assert!(t.notes[0].contains("-f, --xterm, -F"), "{:?}", t.notes);
    }

    #[test]
    fn refused_flags_are_named() {
        assert!(refused("lstart", &["-o", "mem=128"]).contains("lstart: -o"));
        assert!(refused("lstart", &["--bogus"]).contains("option --bogus is not supported"));
        assert!(refused("lstart", &["-Z"]).contains("option -Z"));
        assert!(refused("lstart", &["-d"]).contains("-d needs a value"));
        assert!(refused("lclean", &["pc1"]).contains("machine names (pc1)"));
        assert!(refused("lhalt", &["-r"]).contains("-r is not supported"));
        assert!(refused("linfo", &["-m", "map.ps"]).contains("SVG"));
        assert!(refused("kathara", &["wipe"]).contains("kathara wipe"));
        assert!(refused("kathara", &["lstart", "--privileged"]).contains("--privileged"));
        assert!(refused("kathara", &[]).contains("expected a command"));
        assert!(refused("vlist", &["-u", "bob"]).contains("-u"));
    }

    #[test]
    fn lrestart_is_lhalt_then_lstart_of_the_same_lab_and_machines() {
        assert_eq!(
            steps("lrestart", &[]),
            [umlkit(["lab", "stop", "."]), umlkit(["lab", "start", "."])]
        );
        assert_eq!(
            steps("lrestart", &["-d", "/l", "-q", "-p2", "pc1", "r1"]),
            [
                umlkit(["lab", "stop", "/l", "pc1", "r1"]),
                umlkit(["lab", "start", "/l", "-p", "2", "--", "pc1", "r1"])
            ]
        );
        let t = tr("lrestart", &["-q"]).unwrap();
        assert!(t.notes.iter().any(|n| n.contains("-q")), "{:?}", t.notes);
        assert!(refused("lrestart", &["-o", "mem=1"]).contains("lrestart: -o"));
        assert_eq!(steps("lrestart", &["-h"]), [["lab", "start", "--help"]]);
    }

    #[test]
    fn lab_commands() {
        assert_eq!(
            steps("lhalt", &["-d", "L", "-q", "pc1"]),
            [["lab", "stop", "L", "pc1"]]
        );
        assert_eq!(steps("lcrash", &["pc1"]), [["lab", "crash", ".", "pc1"]]);
        assert_eq!(steps("lclean", &["-d", "L"]), [["lab", "clean", "L"]]);
        assert_eq!(
            steps("linfo", &["-m", "m.svg"]),
            vec![
                umlkit(["lab", "info", "."]),
                umlkit(["lab", "graph", ".", "--svg", "m.svg"])
            ]
        );
        assert_eq!(
            steps("ltest", &["-R"]),
            [["lab", "test", ".", "--write-signatures"]]
        );
    }

    #[test]
    fn vstart_vlist_vhalt_vcrash() {
        assert_eq!(
            steps("vstart", &["pc1", "--eth0=A", "--eth1=B", "-M", "128"]),
            vec![
                umlkit(["ensure", "/run/u/.domains/A"]),
                umlkit(["ensure", "/run/u/.domains/B"]),
                umlkit([
                    "run",
                    "--name",
                    "pc1",
                    "--net",
                    "/run/u/.domains/A",
                    "--net",
                    "/run/u/.domains/B",
                    "--mem",
                    "128M",
                    "--detach",
                    "--wait"
                ])
            ]
        );
        assert!(refused("vstart", &["pc1", "--eth1=A"]).contains("--eth1 without --eth0"));
        assert!(refused("vstart", &["pc1", "--eth0=../x"]).contains("collision domain"));
        assert!(refused("vstart", &["pc1", "--eth0=.hidden"]).contains("collision domain"));
        assert!(refused("vstart", &[]).contains("expected one machine name"));
        assert_eq!(steps("vlist", &[]), [["ps"]]);
        assert_eq!(
            steps("vhalt", &["-r", "a"]),
            [umlkit(["halt", "a"]), umlkit(["rm", "a"])]
        );
        assert_eq!(steps("vcrash", &["a", "b"]), [["kill", "a"], ["kill", "b"]]);
    }

    #[test]
    fn kathara_commands() {
        assert_eq!(
            steps("kathara", &["lstart", "--noterminals", "-d", "L"]),
            [["lab", "start", "L"]]
        );
        assert_eq!(
            steps("kathara", &["lrestart", "-d", "L"]),
            [["lab", "clean", "L"], ["lab", "start", "L"]]
        );
        assert_eq!(
            steps("kathara", &["lclean", "-d", "L"]),
            [["lab", "clean", "L"]]
        );
        assert_eq!(steps("kathara", &["linfo"]), [["lab", "status", "."]]);
        assert_eq!(steps("kathara", &["linfo", "-c"]), [["lab", "info", "."]]);
        // the command's own flags are not kathara's
        assert_eq!(
            steps(
                "kathara",
                &["exec", "-d", "L", "pc1", "ping", "-c", "1", "x"]
            ),
            [["lab", "exec", "-d", "L", "pc1", "--", "ping", "-c", "1", "x"]]
        );
        assert_eq!(
            steps("kathara", &["exec", "pc1", "--", "ip", "-br", "a"]),
            [["lab", "exec", "-d", ".", "pc1", "--", "ip", "-br", "a"]]
        );
        assert_eq!(
            steps("kathara", &["exec", "pc1", "ip -br a"]),
            [["lab", "exec", "-d", ".", "pc1", "--", "sh", "-c", "ip -br a"]]
        );
        assert_eq!(
            steps("kathara", &["exec", "-v", "vm", "true"]),
            [["exec", "vm", "--", "true"]]
        );
        assert_eq!(
            steps("kathara", &["connect", "pc1"]),
            [["lab", "console", "-d", ".", "pc1"]]
        );
        assert_eq!(steps("kathara", &["list"]), [["ps"]]);
    }
}
