//! Topology pictures: DOT text and a self-drawn SVG (machines on an outer
//! circle, collision domains on an inner circle, one line per interface).

use crate::plan::Plan;

/// XML text: markup characters as entities; control characters (invalid in
/// XML 1.0) written out as visible `\xNN` text.
fn esc(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_control() {
                format!("\\x{:02x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect();
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `s` as the inside of a DOT quoted string: quotes and backslashes escaped,
/// control characters written out as visible `\xNN` text, so a name from the lab
/// file can neither end the string (and inject DOT) nor carry a raw escape.
fn dot_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
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

/// Graphviz DOT. Every name is quoted and escaped ([`dot_str`]).
pub fn dot(plan: &Plan) -> String {
    let mut s = format!(
        "graph \"{}\" {{\n  layout=neato; overlap=false;\n",
        dot_str(&plan.name)
    );
    for m in &plan.machines {
        s.push_str(&format!(
            "  \"m:{0}\" [label=\"{0}\", shape=box];\n",
            dot_str(&m.name)
        ));
    }
    for sw in &plan.switches {
        let kind = if sw.hub { "hub" } else { "switch" };
        let mut extra = String::new();
        if let Some(l) = domain_link(sw) {
            extra.push_str(&format!("\\nout: {}", dot_str(&l)));
        }
        if sw.capture {
            extra.push_str("\\ncaptured");
        }
        s.push_str(&format!(
            "  \"d:{0}\" [label=\"{0}\\n({kind}){extra}\", shape=ellipse];\n",
            dot_str(&sw.domain)
        ));
    }
    for m in &plan.machines {
        for i in &m.interfaces {
            let mut label = dot_str(&i.name);
            if let Some(a) = i.addresses.first() {
                label.push_str(&format!("\\n{}", dot_str(a)));
            }
            let mut style = String::new();
            if let Some(l) = iface_link(i) {
                label.push_str(&format!("\\nsends: {}", dot_str(&l)));
                style.push_str(", color=\"#c0392b\", fontcolor=\"#c0392b\"");
            }
            if captured(plan, &m.name, &i.name) {
                label.push_str("\\ncaptured");
            }
            s.push_str(&format!(
                "  \"m:{}\" -- \"d:{}\" [label=\"{label}\"{style}];\n",
                dot_str(&m.name),
                dot_str(&i.domain)
            ));
        }
    }
    s.push_str("}\n");
    s
}

/// An SVG picture of the topology.
pub fn svg(plan: &Plan) -> String {
    let nm = plan.machines.len().max(1) as f64;
    let nd = plan.switches.len().max(1) as f64;
    let r_out = (120.0 + nm * 18.0).min(600.0);
    let r_in = if plan.switches.len() <= 1 {
        0.0
    } else {
        r_out * 0.45
    };
    let size = 2.0 * r_out + 200.0;
    let c = size / 2.0;
    let pos = |i: usize, n: f64, r: f64| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (c + r * a.cos(), c + r * a.sin())
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size:.0}\" height=\"{size:.0}\" viewBox=\"0 0 {size:.0} {size:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n<title>{}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        esc(&plan.name)
    );
    // Interface labels go on top of everything, with a white halo, so that
    // neither the machine boxes nor the lines hide them.
    let mut labels = String::new();
    for (mi, m) in plan.machines.iter().enumerate() {
        let (x1, y1) = pos(mi, nm, r_out);
        for i in &m.interfaces {
            let (x2, y2) = pos(i.switch, nd, r_in);
            let link = iface_link(i);
            let stroke = if link.is_some() { "#c0392b" } else { "#555" };
            s.push_str(&format!(
                "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\"/>\n"
            ));
            let (lx, ly) = (x1 + (x2 - x1) * 0.45, y1 + (y2 - y1) * 0.45);
            let label = match i.addresses.first() {
                Some(a) => format!("{} {a}", i.name),
                None => i.name.clone(),
            };
            labels.push_str(&format!(
                "<text x=\"{lx:.1}\" y=\"{ly:.1}\" fill=\"#333\" font-size=\"10\" text-anchor=\"middle\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>\n",
                esc(&label)
            ));
            let mut more = Vec::new();
            if let Some(l) = link {
                more.push(format!("sends: {l}"));
            }
            if captured(plan, &m.name, &i.name) {
                more.push("captured".to_string());
            }
            if !more.is_empty() {
                labels.push_str(&format!(
                    "<text x=\"{lx:.1}\" y=\"{:.1}\" fill=\"#c0392b\" font-size=\"10\" text-anchor=\"middle\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>\n",
                    ly + 12.0,
                    esc(&more.join(", "))
                ));
            }
        }
    }
    for (di, sw) in plan.switches.iter().enumerate() {
        let (x, y) = pos(di, nd, r_in);
        let fill = if sw.hub { "#fde2b3" } else { "#cfe3fb" };
        s.push_str(&format!(
            "<ellipse cx=\"{x:.1}\" cy=\"{y:.1}\" rx=\"40\" ry=\"18\" fill=\"{fill}\" stroke=\"#333\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            y + 4.0,
            esc(&sw.domain)
        ));
        let mut more = Vec::new();
        if let Some(l) = domain_link(sw) {
            more.push(format!("out: {l}"));
        }
        if sw.capture {
            more.push("captured".to_string());
        }
        if !more.is_empty() {
            labels.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" fill=\"#c0392b\" font-size=\"10\" text-anchor=\"middle\" stroke=\"white\" stroke-width=\"3\" paint-order=\"stroke\">{}</text>\n",
                y + 30.0,
                esc(&more.join(", "))
            ));
        }
    }
    for (mi, m) in plan.machines.iter().enumerate() {
        let (x, y) = pos(mi, nm, r_out);
        s.push_str(&format!(
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"80\" height=\"26\" rx=\"4\" fill=\"#e6f4e6\" stroke=\"#333\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x - 40.0,
            y - 13.0,
            y + 4.0,
            esc(&m.name)
        ));
    }
    s.push_str(&labels);
    s.push_str("</svg>\n");
    s
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
