//! Topology pictures: DOT text ([`dot`], pure) and an SVG laid out by
//! Graphviz's `neato` from that DOT ([`svg`], through [`crate::graphviz`]).
//!
//! The picture: each machine a box, each collision domain a small ellipse,
//! one line per interface from its machine to its domain, with the
//! interface's label (name, addresses, MAC, link settings, capture) on it.
//! For the layout each label is a text node of its own, so the engine keeps
//! labels off nodes and each other.
//!
//! Element ids of the SVG (a contract: the web view finds elements by
//! them): `machine-NAME` on each machine's `<g>` (class `machine`),
//! `domain-NAME` on each domain's `<g>` (class `domain`),
//! `link-MACHINE-IFNAME` on each interface's `<g>` (class `link`: its line
//! and its label's text). A NAME is written by [`id_part`]: itself when it
//! is made of ASCII letters, digits, `_`, `-` and `.` (every valid machine
//! name), otherwise with every other byte as `%XX`.

use crate::plan::Plan;
/// `s` as the inside of a DOT quoted string: quotes and backslashes escaped,
/// control characters written out as visible `\xNN` text, so a name from the lab
/// file can neither end the string (and inject DOT) nor carry a raw escape.
fn dot_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            // Graphviz reads `&name;` in any string as an entity
            '&' => o.push_str("&amp;"),
            c if c.is_control() => o.push_str(&format!("\\\\x{:02x}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// The link settings a domain's switch applies to every port (canonical).
fn domain_link(sw: &crate::plan::SwitchPlan) -> Option<String> {
    let spec = sw.link.as_ref()?.spec().ok()?;
    Some(spec.to_string()).filter(|s| s != "none")
}

/// The link settings of the frames an interface sends (canonical).
fn iface_link(i: &crate::plan::IfacePlan) -> Option<String> {
    let spec = i.link.as_ref()?.spec().ok()?;
    Some(spec.to_string()).filter(|s| s != "none")
}

/// True when an interface's own capture runs with the lab.
fn captured(plan: &Plan, machine: &str, ifname: &str) -> bool {
    let name = format!("{machine}:{ifname}");
    plan.captures.iter().any(|c| c.name == name)
}

/// A name as part of an element id: ASCII letters, digits, `_`, `-` and
/// `.` as themselves, every other byte as `%XX` (so no name can carry markup
/// into the SVG or make two elements share an id, except that `-` also
/// separates a link's machine from its interface name).
pub fn id_part(name: &str) -> String {
    let mut o = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The SVG element id of a machine's `<g>`.
pub fn machine_id(machine: &str) -> String {
    format!("machine-{}", id_part(machine))
}

/// The SVG element id of a collision domain's `<g>`.
pub fn domain_id(domain: &str) -> String {
    format!("domain-{}", id_part(domain))
}

/// The SVG element id of an interface's line (machine to domain).
pub fn link_id(machine: &str, ifname: &str) -> String {
    format!("link-{}-{}", id_part(machine), id_part(ifname))
}

/// The id of an interface's label node in [`dot`]'s text (in the SVG of
/// [`svg`] the label is part of the [`link_id`] element).
pub fn iface_id(machine: &str, ifname: &str) -> String {
    format!("iface-{}-{}", id_part(machine), id_part(ifname))
}

/// The layout engine [`svg`] runs (twice: see [`svg`]).
pub const ENGINE: &str = "neato";

/// Positions by element id from an engine's `-Tjson` output
/// ([`positions`]), in points (Graphviz's y-up coordinates): one point for a
/// node, the Bezier control points of a routed line.
pub type Positions = std::collections::HashMap<String, Vec<(f64, f64)>>;

/// Which DOT to write.
enum Pass<'a> {
    /// The whole picture in one engine run (`lab graph`'s DOT): interface
    /// labels as text nodes, lines routed orthogonally around all nodes.
    Whole,
    /// Placement only, by this engine: as [`Pass::Whole`] without routing
    /// lines.
    Place(&'a str),
    /// Routing only (`neato -n2`): machines and domains (and, with
    /// `labels`, the interface label nodes) at their placed positions, lines
    /// routed around them with `splines`.
    Route {
        pos: &'a Positions,
        labels: bool,
        splines: &'a str,
    },
    /// Drawing only (`neato -n2`): nodes and lines where placed and routed,
    /// each interface label on its line at its label node's placed position.
    Draw(&'a Positions),
}

const FONT: &str = "Helvetica,Arial,sans-serif";

/// Graphviz DOT for the lab, ready for [`ENGINE`] (`neato`; other engines
/// read it too): the whole picture in one run. Every name is quoted and
/// escaped ([`dot_str`]); element ids are [`machine_id`], [`domain_id`],
/// [`link_id`] and [`iface_id`].
pub fn dot(plan: &Plan) -> String {
    write_dot(plan, &Pass::Whole)
}

/// The DOT of [`svg`]'s first pass: nodes and interface labels placed
/// without overlaps (`overlap=prism`, `sep`), lines not routed.
pub fn placement_dot(plan: &Plan) -> String {
    write_dot(plan, &Pass::Place(ENGINE))
}

/// The DOT of [`svg`]'s second pass (`neato -n2`): machines and domains
/// (with `labels`, the interface label nodes too) at their placed `pos`,
/// lines routed orthogonally around them.
pub fn routing_dot(plan: &Plan, placed: &Positions, labels: bool) -> String {
    write_dot(
        plan,
        &Pass::Route {
            pos: placed,
            labels,
            splines: "ortho",
        },
    )
}

/// The DOT of [`svg`]'s last pass (`neato -n2`): every node and line at its
/// `pos`, the interface labels on their lines at their label nodes' `pos`.
pub fn drawing_dot(plan: &Plan, pos: &Positions) -> String {
    write_dot(plan, &Pass::Draw(pos))
}

/// Graphviz's `pos` text of the element `id`: `x,y x,y ...`.
fn pos_text(pos: &Positions, id: &str) -> Option<String> {
    let pts = pos.get(id)?;
    Some(
        pts.iter()
            .map(|(x, y)| format!("{x:.2},{y:.2}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// `, pos="..."` of the element `id` in the passes after placement.
fn pos_attr(pass: &Pass, id: &str) -> String {
    match pass {
        Pass::Route { pos: p, .. } | Pass::Draw(p) => match pos_text(p, id) {
            Some(t) => format!(", pos=\"{t}\""),
            None => String::new(),
        },
        _ => String::new(),
    }
}

fn write_dot(plan: &Plan, pass: &Pass) -> String {
    let graph = match pass {
        Pass::Whole => "overlap=prism, overlap_scaling=-4, sep=\"+12\", esep=\"+5\", splines=ortho",
        Pass::Place(_) => {
            "overlap=prism, overlap_scaling=-4, sep=\"+12\", esep=\"+5\", splines=false"
        }
        Pass::Route { splines, .. } => &format!("splines={splines}"),
        Pass::Draw(_) => "splines=ortho",
    };
    let engine = match pass {
        Pass::Place(e) => e,
        _ => ENGINE,
    };
    let mut s = format!(
        "graph \"{}\" {{\n  graph [layout={engine}, {graph}, outputorder=edgesfirst, pad=0.2, fontname=\"{FONT}\"];\n  node [fontname=\"{FONT}\", fontsize=12];\n  edge [color=\"#555555\", fontname=\"{FONT}\", fontsize=9];\n",
        dot_str(&plan.name)
    );
    for m in &plan.machines {
        let id = machine_id(&m.name);
        s.push_str(&format!(
            "  \"m:{0}\" [id=\"{id}\", class=\"machine\", label=\"{0}\", shape=box, style=\"rounded,filled\", fillcolor=\"#e6f4e6\"{1}];\n",
            dot_str(&m.name),
            pos_attr(pass, &id)
        ));
    }
    for sw in &plan.switches {
        let kind = if sw.hub { "hub" } else { "switch" };
        let fill = if sw.hub { "#fde2b3" } else { "#cfe3fb" };
        let mut extra = String::new();
        if let Some(l) = domain_link(sw) {
            extra.push_str(&format!("\\nout: {}", dot_str(&l)));
        }
        if sw.capture {
            extra.push_str("\\ncaptured");
        }
        let color = if extra.is_empty() {
            ""
        } else {
            ", color=\"#c0392b\", fontcolor=\"#c0392b\""
        };
        let id = domain_id(&sw.domain);
        s.push_str(&format!(
            "  \"d:{0}\" [id=\"{id}\", class=\"domain\", label=\"{0}\\n({kind}){extra}\", shape=ellipse, style=filled, fillcolor=\"{fill}\", fontsize=10, margin=\"0.02,0.01\", width=0.3, height=0.2{color}{1}];\n",
            dot_str(&sw.domain),
            pos_attr(pass, &id)
        ));
    }
    for m in &plan.machines {
        for i in &m.interfaces {
            let mut label = dot_str(&i.name);
            for a in &i.addresses {
                label.push_str(&format!("\\n{}", dot_str(a)));
            }
            label.push_str(&format!("\\n{}", dot_str(&i.mac)));
            let mut style = String::new();
            if let Some(l) = iface_link(i) {
                label.push_str(&format!("\\nsends: {}", dot_str(&l)));
                style.push_str(", color=\"#c0392b\", fontcolor=\"#c0392b\"");
            }
            if captured(plan, &m.name, &i.name) {
                label.push_str("\\ncaptured");
            }
            let (mn, dn, inn) = (dot_str(&m.name), dot_str(&i.domain), dot_str(&i.name));
            let (link, iface) = (link_id(&m.name, &i.name), iface_id(&m.name, &i.name));
            if let Pass::Route { labels, .. } = pass {
                s.push_str(&format!(
                    "  \"m:{mn}\" -- \"d:{dn}\" [id=\"{link}\", class=\"link\"];\n"
                ));
                if *labels {
                    // an obstacle where the label will be
                    s.push_str(&format!(
                        "  \"i:{mn}:{inn}\" [id=\"{iface}\", class=\"iface\", label=\"{label}\", shape=plaintext, fontsize=9, width=0, height=0, margin=\"0.02,0.01\"{}];\n",
                        pos_attr(pass, &iface)
                    ));
                }
                continue;
            }
            if let Pass::Draw(p) = pass {
                // the label on the line, where the first pass put its node
                let lp = match pos_text(p, &iface) {
                    Some(t) => format!(", lp=\"{t}\""),
                    None => String::new(),
                };
                s.push_str(&format!(
                    "  \"m:{mn}\" -- \"d:{dn}\" [id=\"{link}\", class=\"link\", label=\"{label}\"{lp}{}{style}];\n",
                    pos_attr(pass, &link)
                ));
                continue;
            }
            s.push_str(&format!(
                "  \"m:{mn}\" -- \"d:{dn}\" [id=\"{link}\", class=\"link\"{style}];\n"
            ));
            // the label: a text node held between its machine and domain by
            // invisible edges, so the layout places it like a node
            s.push_str(&format!(
                "  \"i:{mn}:{inn}\" [id=\"{iface}\", class=\"iface\", label=\"{label}\", shape=plaintext, fontsize=9, width=0, height=0, margin=\"0.02,0.01\"{style}];\n  \"m:{mn}\" -- \"i:{mn}:{inn}\" [style=invis, len=0.6];\n  \"i:{mn}:{inn}\" -- \"d:{dn}\" [style=invis, len=0.6];\n"
            ));
        }
    }
    s.push_str("}\n");
    s
}

/// Labels are obstacles for routing when no machine or domain has more
/// lines than this: Graphviz 2.42's orthogonal router takes seconds around
/// many labels at one node (a 49-port LAN: 5 s, without labels 1 s).
pub const LABEL_OBSTACLES_MAX_DEGREE: usize = 24;

/// How long routing around labels may take before it is given up for
/// routing around machines and domains only.
pub const LABEL_ROUTING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The second pass: lines routed orthogonally around machines, domains and,
/// when the picture has no busy node ([`LABEL_OBSTACLES_MAX_DEGREE`]), the
/// labels (so that no line crosses a label). Falls back to routing without
/// labels when that fails or takes longer than [`LABEL_ROUTING_TIMEOUT`]
/// (Graphviz 2.42's orthogonal router can fail an assertion), and to
/// spline routing (`splines=true`) when orthogonal routing fails.
fn route(plan: &Plan, placed: &Positions) -> crate::Result<Positions> {
    use crate::graphviz::{render, TIMEOUT};
    let mut degree: std::collections::HashMap<&str, usize> = Default::default();
    let mut busiest = 0;
    for m in &plan.machines {
        busiest = busiest.max(m.interfaces.len());
        for i in &m.interfaces {
            let d = degree.entry(i.domain.as_str()).or_default();
            *d += 1;
            busiest = busiest.max(*d);
        }
    }
    let run = |labels: bool, splines: &str, timeout| {
        let dot = write_dot(
            plan,
            &Pass::Route {
                pos: placed,
                labels,
                splines,
            },
        );
        positions(&render(ENGINE, &["-n2", "-Tjson"], &dot, timeout)?)
    };
    let with_labels = if busiest <= LABEL_OBSTACLES_MAX_DEGREE {
        run(true, "ortho", LABEL_ROUTING_TIMEOUT).ok()
    } else {
        None
    };
    match with_labels {
        Some(p) => Ok(p),
        None => run(false, "ortho", TIMEOUT).or_else(|_| run(false, "true", TIMEOUT)),
    }
}

/// The node positions in an engine's `-Tjson` output, by element id.
pub fn positions(json: &str) -> crate::Result<Positions> {
    let bad = |what: &str| crate::LabError::Layout {
        what: format!("the Graphviz layout engine {ENGINE} wrote unexpected JSON: {what}"),
        source: None,
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    let mut out = Positions::new();
    let objects = v["objects"].as_array().ok_or_else(|| bad("no objects"))?;
    let edges = v["edges"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for o in objects.iter().chain(edges) {
        let (Some(id), Some(pos)) = (o["id"].as_str(), o["pos"].as_str()) else {
            continue;
        };
        let pts = pos
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',')?;
                Some((x.parse().ok()?, y.parse().ok()?))
            })
            .collect::<Option<Vec<(f64, f64)>>>()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(&format!("pos {pos:?} of {id}")))?;
        out.insert(id.to_string(), pts);
    }
    Ok(out)
}

/// The lab's topology as an SVG document (from `<svg` on, no XML prolog),
/// with the element ids and classes described at the top of this module.
///
/// Three runs of [`ENGINE`]: [`placement_dot`] places machines, domains and
/// interface labels (as text nodes, so that no two overlap); [`routing_dot`]
/// keeps machines and domains there and routes the lines around them;
/// [`drawing_dot`] draws it all with each label on its line where its node
/// was placed. (One run with labels as nodes routes around them too, which
/// takes Graphviz 2.42 tens of seconds at 50 machines; Graphviz honours a
/// given label position only on a line whose route is given too.) Fails (naming
/// the package `graphviz`) when the engine is missing, fails or takes
/// longer than [`crate::graphviz::TIMEOUT`].
pub fn svg(plan: &Plan) -> crate::Result<String> {
    svg_placed_by(plan, ENGINE)
}

/// [`svg`] with the placement pass run by `engine` (`neato`, `fdp`,
/// `sfdp`, `dot`: the engines compared in docs/labs.md); routing and
/// drawing are `neato -n2` passes.
pub fn svg_placed_by(plan: &Plan, engine: &str) -> crate::Result<String> {
    use crate::graphviz::{render, svg_document, TIMEOUT};
    let place = write_dot(plan, &Pass::Place(engine));
    let placed = render(engine, &["-Tjson"], &place, TIMEOUT)?;
    let placed = positions(&placed)?;
    let mut pos = route(plan, &placed)?;
    // routing moves the drawing to the origin: the labels move with it
    let (dx, dy) = plan
        .machines
        .first()
        .map(|m| machine_id(&m.name))
        .and_then(|id| Some((placed.get(&id)?.first()?, pos.get(&id)?.first()?)))
        .map_or((0.0, 0.0), |(a, b)| (b.0 - a.0, b.1 - a.1));
    for (id, pts) in &placed {
        if id.starts_with("iface-") {
            let moved = pts.iter().map(|(x, y)| (x + dx, y + dy)).collect();
            pos.insert(id.clone(), moved);
        }
    }
    let out = render(ENGINE, &["-n2", "-Tsvg"], &drawing_dot(plan, &pos), TIMEOUT)?;
    svg_document(ENGINE, &out)
}

#[cfg(test)]
mod tests {
    use super::dot_str;

    #[test]
    fn dot_strings_cannot_end_early() {
        assert_eq!(dot_str("A"), "A");
        assert_eq!(dot_str("a\"];x[label=\"y"), "a\\\"];x[label=\\\"y");
        assert_eq!(dot_str("back\\"), "back\\\\");
        assert_eq!(dot_str("e\x1b[2J"), "e\\\\x1b[2J");
    }
}
