//! `lab graph --svg` layouts checked on the SVG Graphviz writes: the test
//! parses it, computes the bounding boxes of node shapes and text labels,
//! and asserts that no two nodes overlap, no two labels overlap, no label
//! (an interface's text on its line) overlaps a node, and no interface
//! line passes through a node other than its own machine and domain — for the 9-router shape of Kathará's
//! bgp-ospf-rip interplay lab and generated ring, mesh and star labs of 3,
//! 20 and 50 machines. Needs Graphviz (`neato`).

use lab::model::LabFile;
use lab::plan::Plan;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn plan_of(name: &str, toml: &str) -> Plan {
    let dir = Path::new("/labs").join(name);
    let f = LabFile::from_toml(toml, &dir.join("lab.toml")).expect("lab.toml reads");
    lab::plan::plan(&f, &dir, Path::new("/st/x")).expect("plans")
}

/// A lab.toml from (machine, [(domain, address)]) lists.
fn lab_toml(machines: &[(String, Vec<(String, String)>)]) -> String {
    let mut s = String::new();
    for (m, ifs) in machines {
        s.push_str(&format!("[machines.{m}]\n"));
        for (d, a) in ifs {
            s.push_str(&format!(
                "[[machines.{m}.interfaces]]\ndomain = \"{d}\"\naddresses = [\"{a}\"]\n"
            ));
        }
    }
    s
}

/// Ring: machine i is on domains `ri` and `r(i+1 mod n)`.
fn ring(n: usize) -> String {
    let ms: Vec<_> = (0..n)
        .map(|i| {
            let j = (i + 1) % n;
            (
                format!("r{i}"),
                vec![
                    (format!("ring{i}"), format!("10.{i}.0.1/24")),
                    (format!("ring{j}"), format!("10.{j}.0.2/24")),
                ],
            )
        })
        .collect();
    lab_toml(&ms)
}

/// Mesh: machines on a grid, one point-to-point domain between grid
/// neighbours (3 machines: a triangle).
fn mesh(n: usize) -> String {
    let mut ifs: Vec<Vec<(String, String)>> = vec![Vec::new(); n];
    let mut link = |a: usize, b: usize, k: usize| {
        let d = format!("p{a}x{b}");
        ifs[a].push((d.clone(), format!("10.{}.{}.1/30", k / 250, k % 250)));
        ifs[b].push((d, format!("10.{}.{}.2/30", k / 250, k % 250)));
    };
    let mut k = 0;
    if n == 3 {
        for (a, b) in [(0, 1), (1, 2), (0, 2)] {
            link(a, b, k);
            k += 1;
        }
    } else {
        let w = (n as f64).sqrt().ceil() as usize;
        for i in 0..n {
            if (i + 1) % w != 0 && i + 1 < n {
                link(i, i + 1, k);
                k += 1;
            }
            if i + w < n {
                link(i, i + w, k);
                k += 1;
            }
        }
    }
    let ms: Vec<_> = ifs
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("m{i}"), v))
        .collect();
    lab_toml(&ms)
}

/// Star: a core router with a point-to-point domain to each of the other
/// machines, which also share one LAN.
fn star(n: usize) -> String {
    let mut ms = vec![("core".to_string(), Vec::new())];
    for i in 1..n {
        let d = format!("s{i}");
        ms[0].1.push((d.clone(), format!("10.1.{i}.1/24")));
        ms.push((
            format!("h{i}"),
            vec![
                (d, format!("10.1.{i}.2/24")),
                ("lan".to_string(), format!("10.2.0.{i}/16")),
            ],
        ));
    }
    lab_toml(&ms)
}

/// Helvetica advance widths (1/1000 em; Liberation Sans, which Graphviz
/// and browsers here use for "Helvetica,Arial", has the same metrics).
fn char_width(c: char) -> f64 {
    let w = match c {
        ' ' | '.' | ':' | '/' | ',' | 'f' | 't' | 'I' | '!' => 278,
        'i' | 'j' | 'l' => 222,
        'r' | '-' | '(' | ')' => 333,
        '0'..='9' | 'a' | 'b' | 'd' | 'e' | 'g' | 'h' | 'n' | 'o' | 'p' | 'q' | 'u' | '_' => 556,
        'c' | 'k' | 's' | 'v' | 'x' | 'y' | 'z' | 'J' => 500,
        'm' | 'M' => 833,
        'w' | 'C' | 'D' | 'H' | 'N' | 'R' | 'U' => 722,
        '%' => 889,
        '=' => 584,
        'F' | 'T' | 'Z' => 611,
        'G' | 'O' | 'Q' => 778,
        'L' => 556,
        'W' => 944,
        _ => 667,
    };
    f64::from(w) / 1000.0
}

#[derive(Clone, Copy, Debug)]
struct BBox {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl BBox {
    fn empty() -> BBox {
        BBox {
            x0: f64::INFINITY,
            y0: f64::INFINITY,
            x1: f64::NEG_INFINITY,
            y1: f64::NEG_INFINITY,
        }
    }
    fn add(&mut self, x: f64, y: f64) {
        self.x0 = self.x0.min(x);
        self.y0 = self.y0.min(y);
        self.x1 = self.x1.max(x);
        self.y1 = self.y1.max(y);
    }
    fn union(&mut self, o: &BBox) {
        self.add(o.x0, o.y0);
        self.add(o.x1, o.y1);
    }
    fn overlaps(&self, o: &BBox) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    fn contains(&self, o: &BBox) -> bool {
        self.x0 <= o.x0 && self.y0 <= o.y0 && o.x1 <= self.x1 && o.y1 <= self.y1
    }
}

/// A node's shape: a box (machines) or an ellipse (domains).
#[derive(Clone, Copy, Debug)]
enum Shape {
    Rect(BBox),
    Ellipse { cx: f64, cy: f64, rx: f64, ry: f64 },
}

impl Shape {
    fn bbox(&self) -> BBox {
        match *self {
            Shape::Rect(b) => b,
            Shape::Ellipse { cx, cy, rx, ry } => BBox {
                x0: cx - rx,
                y0: cy - ry,
                x1: cx + rx,
                y1: cy + ry,
            },
        }
    }
    /// True when (x, y) is inside the shape by more than `margin`.
    fn strictly_inside(&self, x: f64, y: f64, margin: f64) -> bool {
        match *self {
            Shape::Rect(b) => {
                x > b.x0 + margin && x < b.x1 - margin && y > b.y0 + margin && y < b.y1 - margin
            }
            Shape::Ellipse { cx, cy, rx, ry } => {
                let (rx, ry) = (rx - margin, ry - margin);
                ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) < 1.0
            }
        }
    }
}

/// What the test reads from one SVG.
#[derive(Debug, Default)]
struct Picture {
    /// id -> shape, for machines and domains
    nodes: HashMap<String, Shape>,
    /// id -> text box of a machine's or domain's own name (inside its shape)
    node_texts: HashMap<String, BBox>,
    /// link id -> text box of its interface label
    labels: HashMap<String, BBox>,
    /// id -> sampled points of an interface line
    links: HashMap<String, Vec<(f64, f64)>>,
    /// every id in the document
    ids: Vec<String>,
    /// width and height of the picture (points)
    size: (f64, f64),
}

fn num(n: roxmltree::Node, a: &str) -> f64 {
    n.attribute(a)
        .unwrap_or_else(|| panic!("no {a} on {n:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{a} of {n:?} is not a number"))
}

/// The numbers of a path's `d` or a polygon's `points`.
fn numbers(s: &str) -> Vec<f64> {
    s.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse()
                .unwrap_or_else(|_| panic!("bad number {t:?} in {s:?}"))
        })
        .collect()
}

/// Points along a Graphviz edge path: `M x,y C x,y x,y x,y [x,y x,y x,y]...`
/// (cubic Bezier pieces), sampled 40 times per piece.
fn sample_path(d: &str) -> Vec<(f64, f64)> {
    assert!(
        d.starts_with('M') && d.contains('C'),
        "unexpected path {d:?}"
    );
    let v = numbers(d);
    let pts: Vec<(f64, f64)> = v.chunks(2).map(|p| (p[0], p[1])).collect();
    assert!(pts.len() >= 4 && (pts.len() - 1).is_multiple_of(3), "{d:?}");
    let mut out = Vec::new();
    for seg in pts.windows(4).step_by(3) {
        for k in 0..=40 {
            let t = f64::from(k) / 40.0;
            let u = 1.0 - t;
            let b = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
            let x = (0..4).map(|i| b[i] * seg[i].0).sum();
            let y = (0..4).map(|i| b[i] * seg[i].1).sum();
            out.push((x, y));
        }
    }
    out
}

/// The box of a `<text>`: Helvetica widths, baseline `y`, ascent 0.8 em,
/// descent 0.25 em.
fn text_box(t: roxmltree::Node) -> BBox {
    let size = num(t, "font-size");
    let s = t.text().unwrap_or("");
    let w: f64 = s.chars().map(char_width).sum::<f64>() * size;
    let (x, y) = (num(t, "x"), num(t, "y"));
    let x0 = match t.attribute("text-anchor") {
        Some("middle") => x - w / 2.0,
        Some("end") => x - w,
        _ => x,
    };
    BBox {
        x0,
        y0: y - 0.8 * size,
        x1: x0 + w,
        y1: y + 0.25 * size,
    }
}

fn parse(svg: &str) -> Picture {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let mut p = Picture::default();
    let vb = numbers(doc.root_element().attribute("viewBox").unwrap_or("0 0 0 0"));
    p.size = (vb[2], vb[3]);
    for g in doc.descendants().filter(|n| n.has_tag_name("g")) {
        let Some(id) = g.attribute("id") else {
            continue;
        };
        p.ids.push(id.to_string());
        let class = g.attribute("class").unwrap_or("");
        let kids: Vec<_> = g.children().filter(|n| n.is_element()).collect();
        let mut texts = BBox::empty();
        for t in kids.iter().filter(|n| n.has_tag_name("text")) {
            texts.union(&text_box(*t));
        }
        match class {
            "node machine" => {
                let path = kids
                    .iter()
                    .find(|n| n.has_tag_name("path") || n.has_tag_name("polygon"))
                    .expect("a machine has a box");
                let v = numbers(path.attribute("d").or(path.attribute("points")).unwrap());
                let mut b = BBox::empty();
                for c in v.chunks(2) {
                    b.add(c[0], c[1]);
                }
                p.nodes.insert(id.to_string(), Shape::Rect(b));
                p.node_texts.insert(id.to_string(), texts);
            }
            "node domain" => {
                let e = kids
                    .iter()
                    .find(|n| n.has_tag_name("ellipse"))
                    .expect("a domain has an ellipse");
                p.nodes.insert(
                    id.to_string(),
                    Shape::Ellipse {
                        cx: num(*e, "cx"),
                        cy: num(*e, "cy"),
                        rx: num(*e, "rx"),
                        ry: num(*e, "ry"),
                    },
                );
                p.node_texts.insert(id.to_string(), texts);
            }
            "edge link" => {
                assert!(texts.x0.is_finite(), "{id} has no label");
                p.labels.insert(id.to_string(), texts);
                let path = kids
                    .iter()
                    .find(|n| n.has_tag_name("path"))
                    .unwrap_or_else(|| panic!("{id} has no path"));
                p.links
                    .insert(id.to_string(), sample_path(path.attribute("d").unwrap()));
            }
            _ => {}
        }
    }
    p
}

/// Every rule of a readable picture, with the names of what breaks it.
fn check(plan: &Plan, svg: &str) -> Picture {
    let p = parse(svg);
    // one element per machine, domain, interface line and label
    for m in &plan.machines {
        assert!(
            p.nodes.contains_key(&lab::graph::machine_id(&m.name)),
            "{}",
            m.name
        );
        for i in &m.interfaces {
            assert!(p.links.contains_key(&lab::graph::link_id(&m.name, &i.name)));
        }
    }
    for sw in &plan.switches {
        assert!(p.nodes.contains_key(&lab::graph::domain_id(&sw.domain)));
    }
    let mut seen = std::collections::HashSet::new();
    for id in &p.ids {
        assert!(seen.insert(id), "id {id} twice");
    }
    let nodes: Vec<_> = p.nodes.iter().collect();
    let labels: Vec<_> = p.labels.iter().collect();
    // no two nodes overlap (their bounding boxes, stricter than the shapes)
    for (i, (a, sa)) in nodes.iter().enumerate() {
        for (b, sb) in &nodes[i + 1..] {
            assert!(!sa.bbox().overlaps(&sb.bbox()), "nodes {a} and {b} overlap");
        }
        // a node's own name fits in its box / around its ellipse's centre
        let t = p.node_texts[*a];
        match sa {
            Shape::Rect(b) => assert!(b.contains(&t), "{a}: name outside its box"),
            Shape::Ellipse { .. } => {
                let b = sa.bbox();
                assert!(
                    t.x0 >= b.x0 - 1.0 && t.x1 <= b.x1 + 1.0,
                    "{a}: name wider than its ellipse"
                );
            }
        }
    }
    // no two labels overlap; no label overlaps a node or a node's name
    for (i, (a, la)) in labels.iter().enumerate() {
        for (b, lb) in &labels[i + 1..] {
            assert!(!la.overlaps(lb), "labels {a} and {b} overlap");
        }
        for (n, s) in &nodes {
            assert!(!la.overlaps(&s.bbox()), "label {a} overlaps node {n}");
            assert!(
                !la.overlaps(&p.node_texts[*n]),
                "label {a} overlaps {n}'s name"
            );
        }
    }
    // each interface line passes through no node but its own two
    for m in &plan.machines {
        for i in &m.interfaces {
            let id = lab::graph::link_id(&m.name, &i.name);
            let own = [
                lab::graph::machine_id(&m.name),
                lab::graph::domain_id(&i.domain),
            ];
            for (n, s) in nodes.iter().filter(|(n, _)| !own.contains(n)) {
                if let Some(pt) = p.links[&id]
                    .iter()
                    .find(|(x, y)| s.strictly_inside(*x, *y, 0.5))
                {
                    panic!("line {id} passes through node {n} at {pt:?}");
                }
            }
        }
    }
    p
}

/// Lay out, check, and return the time the layout took.
fn laid_out(name: &str, toml: &str) -> Duration {
    let plan = plan_of(name, toml);
    if let Some(dir) = std::env::var_os("UMLKIT_GRAPH_OUT") {
        let dir = Path::new(&dir);
        std::fs::write(dir.join(format!("{name}.dot")), lab::graph::dot(&plan)).unwrap();
        let place = lab::graph::placement_dot(&plan);
        std::fs::write(dir.join(format!("{name}.1.dot")), &place).unwrap();
        let t = lab::graphviz::TIMEOUT;
        let json = lab::graphviz::render("neato", &["-Tjson"], &place, t).unwrap();
        let route = lab::graph::routing_dot(&plan, &lab::graph::positions(&json).unwrap(), true);
        std::fs::write(dir.join(format!("{name}.2.dot")), route).unwrap();
    }
    let t = Instant::now();
    let svg = lab::graph::svg(&plan).expect("graphviz lays it out");
    let took = t.elapsed();
    if let Some(dir) = std::env::var_os("UMLKIT_GRAPH_OUT") {
        std::fs::write(Path::new(&dir).join(format!("{name}.svg")), &svg).unwrap();
    }
    check(&plan, &svg);
    eprintln!(
        "{name}: {} machines, {} domains: layout {:.0} ms",
        plan.machines.len(),
        plan.switches.len(),
        took.as_secs_f64() * 1000.0
    );
    took
}

/// The bug: on this lab the old two-ring SVG overlapped domain ellipses,
/// crossed lines through nodes and collided interface labels.
#[test]
fn graph_bgp_ospf_rip_9_routers_no_overlaps() {
    let toml = include_str!("graph/bgp-ospf-rip.toml");
    assert_eq!(plan_of("x", toml).machines.len(), 9);
    laid_out("bgp-ospf-rip", toml);
}

#[test]
fn graph_3_machines_no_overlaps() {
    laid_out("ring3", &ring(3));
    laid_out("mesh3", &mesh(3));
    laid_out("star3", &star(3));
}

#[test]
fn graph_20_machines_no_overlaps() {
    laid_out("ring20", &ring(20));
    laid_out("mesh20", &mesh(20));
    laid_out("star20", &star(20));
}

#[test]
fn graph_50_machines_no_overlaps() {
    laid_out("ring50", &ring(50));
    laid_out("mesh50", &mesh(50));
    laid_out("star50", &star(50));
}

/// Lab names are untrusted: markup in machine, domain and interface names
/// stays text (the SVG parses, has no element but Graphviz's own, and shows
/// the names as written) and ids stay plain ASCII.
#[test]
fn graph_svg_names_cannot_inject_markup() {
    let mut plan = plan_of("inj", &ring(3));
    let evil_m = "<script>alert(1)</script>";
    let evil_d = "d\"/><script>x</script>&amp;&#0;'\u{1b}\\n\\N é";
    plan.machines[0].name = evil_m.to_string();
    plan.switches[0].domain = evil_d.to_string();
    for m in &mut plan.machines {
        for i in &mut m.interfaces {
            if i.switch == 0 {
                i.domain = evil_d.to_string();
            }
        }
    }
    let svg = lab::graph::svg(&plan).expect("graphviz lays it out");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
    let tags: std::collections::BTreeSet<_> = doc
        .descendants()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name().to_string())
        .collect();
    let allowed = ["svg", "g", "title", "text", "path", "polygon", "ellipse"];
    assert!(
        tags.iter().all(|t| allowed.contains(&t.as_str())),
        "{tags:?}"
    );
    let by_id = |id: &str| {
        doc.descendants()
            .find(|n| n.attribute("id") == Some(id))
            .unwrap_or_else(|| panic!("no element {id}: {svg}"))
    };
    let m = by_id(&lab::graph::machine_id(evil_m));
    assert_eq!(
        m.attribute("id"),
        Some("machine-%3Cscript%3Ealert%281%29%3C%2Fscript%3E")
    );
    let text = |n: roxmltree::Node| -> String {
        n.descendants()
            .filter(|t| t.has_tag_name("text"))
            .filter_map(|t| t.text())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(text(m), evil_m);
    let d = by_id(&lab::graph::domain_id(evil_d));
    // the control character is shown as visible text, the rest as written
    assert!(
        text(d).starts_with("d\"/><script>x</script>&amp;&#0;'\\x1b\\n\\N é\n(switch)"),
        "{}",
        text(d)
    );
    check(&plan, &svg);
}

/// Which engine places best: every fixture placed by neato, fdp, sfdp and
/// dot, checked the same way; prints time and result per engine (the
/// numbers in docs/labs.md). Run with
/// `cargo test -p lab --test graph_layout -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn graph_engines_compared() {
    let labs = [
        (
            "bgp-ospf-rip",
            include_str!("graph/bgp-ospf-rip.toml").to_string(),
        ),
        ("ring20", ring(20)),
        ("mesh20", mesh(20)),
        ("star20", star(20)),
        ("ring50", ring(50)),
        ("mesh50", mesh(50)),
        ("star50", star(50)),
    ];
    std::panic::set_hook(Box::new(|_| {}));
    for engine in ["neato", "fdp", "sfdp", "dot"] {
        for (name, toml) in &labs {
            let plan = plan_of(name, toml);
            let t = Instant::now();
            let svg = lab::graph::svg_placed_by(&plan, engine);
            let took = t.elapsed().as_secs_f64() * 1000.0;
            if let (Some(dir), Ok(svg)) = (std::env::var_os("UMLKIT_GRAPH_OUT"), &svg) {
                std::fs::write(Path::new(&dir).join(format!("{engine}-{name}.svg")), svg).unwrap();
            }
            let verdict = match svg {
                Err(e) => format!("error: {e}"),
                Ok(svg) => match std::panic::catch_unwind(|| check(&plan, &svg)) {
                    Ok(p) => format!(
                        "ok, {} line/label crossings, label to its line {:.0} pt (median), {:.0}x{:.0} pt",
                        crossings(&p),
                        label_distance(&p),
                        p.size.0,
                        p.size.1
                    ),
                    Err(e) => format!(
                        "FAILS: {}",
                        e.downcast_ref::<String>().cloned().unwrap_or_default()
                    ),
                },
            };
            eprintln!("{engine:5} {name:12} {took:6.0} ms  {verdict}");
        }
    }
    let _ = std::panic::take_hook();
}

/// How many (line, label) pairs cross: a line through an interface label
/// other than its own (not a rule; reported by the measurement).
fn crossings(p: &Picture) -> usize {
    let mut n = 0;
    for (id, pts) in &p.links {
        for (l, b) in &p.labels {
            if l != id
                && pts
                    .iter()
                    .any(|(x, y)| *x > b.x0 && *x < b.x1 && *y > b.y0 && *y < b.y1)
            {
                n += 1;
            }
        }
    }
    n
}

/// The median distance from an interface label's box to its own line
/// (0 when the line touches it): how clearly a label belongs to its line.
fn label_distance(p: &Picture) -> f64 {
    let mut d: Vec<f64> = p
        .labels
        .iter()
        .map(|(id, b)| {
            p.links[id]
                .iter()
                .map(|(x, y)| {
                    let dx = (b.x0 - x).max(x - b.x1).max(0.0);
                    let dy = (b.y0 - y).max(y - b.y1).max(0.0);
                    dx.hypot(dy)
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied().unwrap_or(0.0)
}
