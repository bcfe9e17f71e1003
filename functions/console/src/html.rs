//! The few pieces every page is made of: escaping, the layout with its navigation, tables,
//! forms carrying the CSRF value, and bar charts as inline SVG. Every piece of data goes
//! through [`esc`] on its way into a page; the markup around it is fixed text.

use chrono::{DateTime, Utc};
use std::fmt::Write;

/// Text made safe for an HTML element's content or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A value for a URL's query, escaped for HTML too.
pub fn query_value(s: &str) -> String {
    esc(&form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>())
}

/// The pages in the navigation, path and title.
pub const NAV: [(&str, &str); 6] = [
    ("/", "Buyers"),
    ("/dead-letters", "Dead letters"),
    ("/audit", "Audit"),
    ("/catalog", "Catalog"),
    ("/activity", "Activity"),
    ("/setup", "Setup"),
];

/// A whole page: `current` is the navigation path to mark, `source` says where data comes from.
pub fn page(title: &str, current: &str, source: &str, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in NAV {
        let aria = if path == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<li><a href=\"{path}\"{aria}>{name}</a></li>");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · enroll console</title><link rel=\"stylesheet\" href=\"/assets/console.css\">\
         </head><body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><p class=\"brand\">enroll console</p><nav aria-label=\"Pages\"><ul>{nav}</ul></nav>\
         <p class=\"source\">{s}</p></header>\
         <main id=\"main\"><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title),
        s = esc(source),
    )
}

/// A page without navigation, for refusals.
pub fn bare_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body>\
         <main id=\"main\"><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// A table with a caption; `rows` hold escaped cell markup.
pub fn table(caption: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return format!(
            "<p class=\"empty\"><strong>{}</strong>: none.</p>",
            esc(caption)
        );
    }
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in headers {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A POST form to `action` carrying the CSRF value and `hidden` fields; `inner` is more
/// markup (inputs, the button).
pub fn post_form(action: &str, csrf: &str, hidden: &[(&str, &str)], inner: &str) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(action),
        esc(csrf)
    );
    for (k, v) in hidden {
        let _ = write!(
            out,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    out.push_str(inner);
    out.push_str("</form>");
    out
}

/// A message box: `kind` is `ok`, `warn` or `error`.
pub fn notice(kind: &str, text: &str) -> String {
    let role = if kind == "error" { "alert" } else { "status" };
    format!(
        "<p class=\"notice {}\" role=\"{role}\">{}</p>",
        esc(kind),
        esc(text)
    )
}

pub fn time(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            esc(&t.to_rfc3339()),
            esc(&t.format("%Y-%m-%d %H:%M UTC").to_string())
        ),
        None => "—".into(),
    }
}

/// `3 d 4 h`, `12 min`, `40 s`.
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A bar chart per day as inline SVG with a text alternative and a data table beside it, so
/// the figures are there for a screen reader and without the picture.
pub fn bars(title: &str, unit: &str, points: &[(String, f64)]) -> String {
    if points.is_empty() {
        return format!("<h2>{}</h2><p class=\"empty\">No data yet.</p>", esc(title));
    }
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let (w, h, gap) = (28.0, 120.0, 6.0);
    let width = points.len() as f64 * (w + gap) + gap;
    let mut svg = format!(
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {width} {}\" width=\"{width}\" height=\"{}\">",
        esc(&format!("{title}, per day")),
        h + 20.0,
        h + 20.0
    );
    for (i, (day, v)) in points.iter().enumerate() {
        let bh = (v / max * h).max(if *v > 0.0 { 2.0 } else { 0.0 });
        let x = gap + i as f64 * (w + gap);
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"{bh}\"><title>{}: {} {}</title></rect>",
            h - bh,
            esc(day),
            esc(&fmt_num(*v)),
            esc(unit)
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" class=\"label\">{}</text>",
            x + w / 2.0,
            h + 14.0,
            esc(day.get(8..).unwrap_or(day))
        );
    }
    svg.push_str("</svg>");
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|(d, v)| vec![esc(d), esc(&fmt_num(*v))])
        .collect();
    format!(
        "<section class=\"chart-block\"><h2>{}</h2>{svg}<details><summary>Figures</summary>{}</details></section>",
        esc(title),
        table(title, &["Day", unit], &rows)
    )
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(esc("ada@example.com"), "ada@example.com");
        assert_eq!(query_value("a+b@x.com&q=<"), "a%2Bb%40x.com%26q%3D%3C");
    }

    #[test]
    fn data_in_tables_forms_and_pages_is_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let t = table(evil, &["h"], &[vec![esc(evil)]]);
        assert!(!t.contains("<img"), "{t}");
        let f = post_form("/x", "c\"", &[("k", evil)], "");
        assert!(
            !f.contains("<img") && f.contains("value=\"c&quot;\""),
            "{f}"
        );
        let p = page(evil, "/", evil, "");
        assert!(!p.contains("<img"), "{p}");
        let b = bars(evil, "n", &[(evil.to_owned(), 1.0)]);
        assert!(!b.contains("<img"), "{b}");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(40), "40 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(3 * 3600), "3 h");
        assert_eq!(age(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }
}
