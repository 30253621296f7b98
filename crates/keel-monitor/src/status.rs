//! The status page: a JSON document for embedding and the same rendered as one HTML page with
//! no external assets (inline CSS and SVG), light and dark (`prefers-color-scheme`), readable
//! on a phone. Every string that came from config, probes or incidents is escaped.

use serde::{Deserialize, Serialize};

use crate::clock::{Millis, rfc3339};
use crate::db::Incident;

/// State of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    /// Working.
    Operational,
    /// No data yet.
    Unknown,
    /// Under maintenance.
    Maintenance,
    /// Working with problems.
    Degraded,
    /// Not working.
    Outage,
}

impl ComponentState {
    fn label(self) -> &'static str {
        match self {
            Self::Operational => "Operational",
            Self::Unknown => "No data",
            Self::Maintenance => "Maintenance",
            Self::Degraded => "Degraded",
            Self::Outage => "Outage",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Self::Operational => "ok",
            Self::Unknown => "na",
            Self::Maintenance => "mt",
            Self::Degraded => "dg",
            Self::Outage => "out",
        }
    }
}

/// One day's uptime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Up fraction, `None` without data.
    pub uptime: Option<f64>,
}

/// One component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Id (`chain:devnet`, `http:api`).
    pub id: String,
    /// Shown name.
    pub name: String,
    /// State now.
    pub state: ComponentState,
    /// Why, when not operational.
    pub detail: Option<String>,
    /// Uptime over the 90 days shown.
    pub uptime_90d: Option<f64>,
    /// The last 90 days, oldest first.
    pub days: Vec<Day>,
}

/// The whole status document (`/status.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// Page title.
    pub title: String,
    /// Worst component state.
    pub state: ComponentState,
    /// When computed (RFC 3339).
    pub updated_at: String,
    /// Components.
    pub components: Vec<Component>,
    /// Maintenance windows in force.
    pub maintenance: Vec<String>,
    /// Open incidents and those of the last 14 days.
    pub incidents: Vec<Incident>,
}

impl StatusDoc {
    /// An empty document (before the first evaluation).
    pub fn empty(title: &str, now: Millis) -> Self {
        Self {
            title: title.to_owned(),
            state: ComponentState::Unknown,
            updated_at: rfc3339(now),
            components: Vec::new(),
            maintenance: Vec::new(),
            incidents: Vec::new(),
        }
    }
}

/// `YYYY-MM-DD` of a day number (days since the epoch).
pub fn date_of(day: i64) -> String {
    rfc3339(day * 86_400_000)[..10].to_owned()
}

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "
:root{--bg:#f7f8fa;--fg:#1c2330;--muted:#5d6675;--card:#fff;--line:#e2e6ec;--ok:#2f9e5b;--dg:#d9a016;--out:#d1342f;--mt:#3b7dd8;--na:#b8bfca}
@media (prefers-color-scheme:dark){:root{--bg:#10141a;--fg:#e6e9ee;--muted:#9aa3b1;--card:#181e26;--line:#2a323e;--na:#3a4350}}
*{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
main{max-width:880px;margin:0 auto;padding:24px 16px}h1{font-size:1.5rem;margin:0 0 16px}h2{font-size:1.1rem;margin:28px 0 10px}
.banner{padding:14px 16px;border-radius:8px;color:#fff;font-weight:600;margin-bottom:20px}
.banner.ok{background:var(--ok)}.banner.dg{background:var(--dg)}.banner.out{background:var(--out)}.banner.mt{background:var(--mt)}.banner.na{background:var(--na)}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:12px}
.row{display:flex;justify-content:space-between;align-items:baseline;gap:8px;flex-wrap:wrap}
.name{font-weight:600}.st{font-size:.9rem;font-weight:600}.st.ok{color:var(--ok)}.st.dg{color:var(--dg)}.st.out{color:var(--out)}.st.mt{color:var(--mt)}.st.na{color:var(--muted)}
.muted{color:var(--muted);font-size:.85rem}svg.bars{width:100%;height:34px;margin-top:8px;display:block}
.b-ok{fill:var(--ok)}.b-dg{fill:var(--dg)}.b-out{fill:var(--out)}.b-na{fill:var(--na)}
.tl{border-left:2px solid var(--line);margin:8px 0 0 4px;padding-left:12px}.tl p{margin:4px 0}
footer{margin-top:32px;color:var(--muted);font-size:.8rem}
";

fn bar_class(u: Option<f64>) -> &'static str {
    match u {
        None => "b-na",
        Some(u) if u >= 0.999 => "b-ok",
        Some(u) if u >= 0.99 => "b-dg",
        Some(_) => "b-out",
    }
}

/// Renders the document as HTML.
pub fn render_html(doc: &StatusDoc) -> String {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    h.push_str("<meta name=\"color-scheme\" content=\"light dark\">");
    h.push_str(&format!(
        "<title>{}</title><style>{CSS}</style></head><body><main>",
        esc(&doc.title)
    ));
    h.push_str(&format!("<h1>{}</h1>", esc(&doc.title)));
    let banner = match doc.state {
        ComponentState::Operational => "All systems operational",
        ComponentState::Degraded => "Some systems are degraded",
        ComponentState::Outage => "Some systems are down",
        ComponentState::Maintenance => "Maintenance in progress",
        ComponentState::Unknown => "Waiting for the first checks",
    };
    h.push_str(&format!(
        "<div class=\"banner {}\" id=\"overall\">{banner}</div>",
        doc.state.class()
    ));
    for m in &doc.maintenance {
        h.push_str(&format!(
            "<div class=\"card\"><span class=\"st mt\">Maintenance</span> {}</div>",
            esc(m)
        ));
    }
    h.push_str("<h2>Components</h2>");
    for c in &doc.components {
        h.push_str("<div class=\"card component\">");
        h.push_str(&format!(
            "<div class=\"row\"><span class=\"name\">{}</span><span class=\"st {}\">{}</span></div>",
            esc(&c.name),
            c.state.class(),
            c.state.label()
        ));
        if let Some(d) = &c.detail {
            h.push_str(&format!("<div class=\"muted\">{}</div>", esc(d)));
        }
        let n = c.days.len().max(1);
        h.push_str(&format!(
            "<svg class=\"bars\" viewBox=\"0 0 {} 34\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"uptime, last {} days\">",
            n * 4,
            c.days.len()
        ));
        for (i, d) in c.days.iter().enumerate() {
            let tip = match d.uptime {
                Some(u) => format!("{}: {:.2} %", d.date, u * 100.0),
                None => format!("{}: no data", d.date),
            };
            h.push_str(&format!(
                "<rect x=\"{}\" y=\"0\" width=\"3\" height=\"34\" rx=\"1\" class=\"{}\"><title>{}</title></rect>",
                i * 4,
                bar_class(d.uptime),
                esc(&tip)
            ));
        }
        h.push_str("</svg>");
        let up = c.uptime_90d.map_or_else(
            || "no data".to_owned(),
            |u| format!("{:.3} % uptime", u * 100.0),
        );
        h.push_str(&format!("<div class=\"row muted\"><span>{} days ago</span><span>{up}</span><span>today</span></div></div>", c.days.len()));
    }
    h.push_str("<h2>Incidents</h2>");
    if doc.incidents.is_empty() {
        h.push_str("<p class=\"muted\">No incidents in the last 14 days.</p>");
    }
    for i in &doc.incidents {
        h.push_str("<div class=\"card incident\">");
        h.push_str(&format!(
            "<div class=\"row\"><span class=\"name\">{}</span><span class=\"st {}\">{}</span></div>",
            esc(&i.title),
            if i.status == "resolved" { "ok" } else { "out" },
            esc(&i.status)
        ));
        h.push_str(&format!(
            "<div class=\"muted\">impact {} · {} · since {}</div><div class=\"tl\">",
            esc(&i.impact),
            esc(&i.components.join(", ")),
            esc(&rfc3339(i.created_at))
        ));
        for u in i.updates.iter().rev() {
            h.push_str(&format!(
                "<p><b>{}</b> <span class=\"muted\">{}</span><br>{}</p>",
                esc(&u.status),
                esc(&rfc3339(u.at)),
                esc(&u.message)
            ));
        }
        h.push_str("</div></div>");
    }
    h.push_str(&format!(
        "<footer>Updated {} · <a href=\"status.json\">JSON</a></footer></main></body></html>",
        esc(&doc.updated_at)
    ));
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_outside_is_escaped() {
        let mut doc = StatusDoc::empty("<script>alert(1)</script>", 0);
        doc.components.push(Component {
            id: "http:x".into(),
            name: "\"><img src=x onerror=alert(1)>".into(),
            state: ComponentState::Outage,
            detail: Some("<b>".into()),
            uptime_90d: Some(0.5),
            days: vec![Day {
                date: "2026-01-01".into(),
                uptime: Some(0.5),
            }],
        });
        let html = render_html(&doc);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("&quot;&gt;&lt;img"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external asset"
        );
        assert!(html.contains("prefers-color-scheme:dark"));
        assert_eq!(date_of(20_000), "2024-10-04");
    }
}
