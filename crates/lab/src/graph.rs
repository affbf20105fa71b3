//! Topology pictures: DOT text ([`dot`], pure) and an SVG laid out by
//! Graphviz's `neato` from that DOT ([`svg`], through [`crate::graphviz`]).
//!
//! The picture: each machine a box, each collision domain a small ellipse,
//! one line per interface from its machine to its domain, and next to it the
//! interface's label (name, addresses, MAC, link settings, capture) as a
//! text node of its own, so the layout engine keeps labels off nodes, lines
//! and each other.
//!
//! Element ids of the SVG (a contract: the web view finds elements by
//! them): `machine-NAME` on each machine's `<g>` (class `machine`),
//! `domain-NAME` on each domain's `<g>` (class `domain`),
//! `link-MACHINE-IFNAME` on each interface's line `<g>` (class `link`) and
//! `iface-MACHINE-IFNAME` on its label's `<g>` (class `iface`). A NAME is
//! written by [`id_part`]: itself when it is made of ASCII letters, digits,
//! `_`, `-` and `.` (every valid machine name), otherwise with every other
//! byte as `%XX`.

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

/// The SVG element id of an interface's label.
pub fn iface_id(machine: &str, ifname: &str) -> String {
    format!("iface-{}-{}", id_part(machine), id_part(ifname))
}

/// The layout engine [`svg`] runs on [`dot`]'s text.
pub const ENGINE: &str = "neato";

/// Graphviz DOT for the lab, ready for [`ENGINE`] (`neato`; other engines
/// read it too). Every name is quoted and escaped ([`dot_str`]); element ids
/// are [`machine_id`], [`domain_id`], [`link_id`] and [`iface_id`].
pub fn dot(plan: &Plan) -> String {
    let mut s = format!(
        "graph \"{}\" {{\n  graph [layout={ENGINE}, overlap=prism, overlap_scaling=-4, sep=\"+12\", esep=\"+5\", splines=true, outputorder=edgesfirst, pad=0.2, fontname=\"Helvetica,Arial,sans-serif\"];\n  node [fontname=\"Helvetica,Arial,sans-serif\", fontsize=12];\n  edge [color=\"#555555\"];\n",
        dot_str(&plan.name)
    );
    for m in &plan.machines {
        s.push_str(&format!(
            "  \"m:{0}\" [id=\"{1}\", class=\"machine\", label=\"{0}\", shape=box, style=\"rounded,filled\", fillcolor=\"#e6f4e6\"];\n",
            dot_str(&m.name),
            machine_id(&m.name)
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
        s.push_str(&format!(
            "  \"d:{0}\" [id=\"{1}\", class=\"domain\", label=\"{0}\\n({kind}){extra}\", shape=ellipse, style=filled, fillcolor=\"{fill}\", fontsize=10, margin=\"0.02,0.01\", width=0.3, height=0.2{color}];\n",
            dot_str(&sw.domain),
            domain_id(&sw.domain)
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
            s.push_str(&format!(
                "  \"m:{mn}\" -- \"d:{dn}\" [id=\"{}\", class=\"link\"{style}];\n",
                link_id(&m.name, &i.name)
            ));
            // the label: a text node held between its machine and domain by
            // invisible edges, so the layout places it like a node
            s.push_str(&format!(
                "  \"i:{mn}:{inn}\" [id=\"{}\", class=\"iface\", label=\"{label}\", shape=plaintext, fontsize=9, width=0, height=0, margin=\"0.02,0.01\"{style}];\n  \"m:{mn}\" -- \"i:{mn}:{inn}\" [style=invis, len=0.6];\n  \"i:{mn}:{inn}\" -- \"d:{dn}\" [style=invis, len=0.6];\n",
                iface_id(&m.name, &i.name)
            ));
        }
    }
    s.push_str("}\n");
    s
}

/// The lab's topology as an SVG document (from `<svg` on, no XML prolog),
/// laid out by [`ENGINE`] from [`dot`]'s text, with the element ids and
/// classes described at the top of this module. Fails (naming the package
/// `graphviz`) when the engine is missing, fails or takes longer than
/// [`crate::graphviz::TIMEOUT`].
pub fn svg(plan: &Plan) -> crate::Result<String> {
    crate::graphviz::render(ENGINE, &dot(plan), crate::graphviz::TIMEOUT)
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
