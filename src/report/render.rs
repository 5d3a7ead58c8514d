//! The review for people: a terminal table, and one self-contained HTML page (inline CSS and
//! SVG, no script, nothing fetched) with calls and denials over time per identity.

use std::fmt::Write as _;

use super::review::{PairRow, Review};
use crate::inventory::Series;

/// Identities drawn with their own chart on the page; the rest are in the table only.
const CHARTED: usize = 50;
/// Most bars in one chart.
const MAX_BARS: u64 = 240;

/// `2026-12-03 08:15Z` from Unix milliseconds.
pub fn when(ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64) else {
        return "-".into();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

fn opt_when(ms: Option<u64>) -> String {
    ms.filter(|&m| m > 0).map_or_else(|| "-".into(), when)
}

fn modes(app_only: u64, delegated: u64) -> &'static str {
    match (app_only > 0, delegated > 0) {
        (true, true) => "app-only, delegated",
        (false, true) => "delegated",
        (true, false) => "app-only",
        (false, false) => "-",
    }
}

fn grant_word(row: &PairRow) -> &'static str {
    match &row.grant {
        Some(g) if g.is_unconditional() => "granted",
        Some(_) => "conditional",
        None => "not granted",
    }
}

/// The lists at the end of a review: anchor, title, entries.
fn findings(r: &Review) -> [(&'static str, String, Vec<String>); 3] {
    [
        (
            "dormant",
            "Dormant: granted, no call in the window".into(),
            r.dormant.clone(),
        ),
        (
            "broad",
            format!(
                "Broad: app-only, granted more than {} resource types",
                r.max_services
            ),
            r.broad
                .iter()
                .map(|b| format!("{}: {}", b.principal, b.resource_types.join(", ")))
                .collect(),
        ),
        (
            "denied-only",
            "Only denied: every call refused".into(),
            r.denied_only.clone(),
        ),
    ]
}

/// Rows of cells as aligned columns, two spaces apart, with a header.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from("  ");
        for (cell, w) in cells.zip(&widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, &mut header.iter().copied());
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
}

/// The review as text for a terminal.
pub fn text(r: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Access review: {} records from {} to {}{}",
        r.records,
        opt_when(Some(r.first_ms)),
        opt_when(Some(r.last_ms)),
        if r.corrupt > 0 {
            format!(
                "; {} corrupt lines skipped (first at {})",
                r.corrupt,
                r.corrupt_at.join(", ")
            )
        } else {
            String::new()
        }
    );
    if r.outside_window > 0 {
        let _ = writeln!(out, "  ({} records outside the window)", r.outside_window);
    }

    let _ = writeln!(out, "\nInventory ({} identities)", r.inventory.len());
    let rows: Vec<Vec<String>> = r
        .inventory
        .iter()
        .map(|i| {
            let s = &i.seen;
            vec![
                i.principal.clone(),
                i.seen.kind.to_string(),
                i.owner.clone().unwrap_or_else(|| "-".into()),
                if i.groups.is_empty() {
                    "-".into()
                } else {
                    i.groups.join(",")
                },
                s.calls.to_string(),
                if s.denials.is_empty() {
                    "0".into()
                } else {
                    s.denials
                        .iter()
                        .map(|(k, v)| format!("{v} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                modes(s.app_only, s.delegated).into(),
                format!(
                    "{}{}",
                    s.users.len(),
                    if s.users_saturated { "+" } else { "" }
                ),
                opt_when(Some(s.first_seen_ms)),
                opt_when(Some(s.last_seen_ms)),
                s.expiry_ms
                    .map_or_else(|| "-".into(), |e| when(e.max(0) as u64)),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "IDENTITY",
            "KIND",
            "OWNER",
            "GROUPS",
            "CALLS",
            "DENIED",
            "MODES",
            "USERS",
            "FIRST SEEN",
            "LAST SEEN",
            "CREDENTIAL EXPIRES",
        ],
        &rows,
    );

    let unused: Vec<Vec<String>> = r
        .least_privilege
        .iter()
        .flat_map(|p| {
            p.pairs.iter().filter(|row| row.unused()).map(|row| {
                vec![
                    p.principal.clone(),
                    format!("{} on {}", row.action, row.resource_type),
                    grant_word(row).into(),
                    row.grant
                        .as_ref()
                        .map(|g| g.policies().join(", "))
                        .unwrap_or_default(),
                    row.locations.join(", "),
                ]
            })
        })
        .collect();
    let _ = writeln!(
        out,
        "\nGranted, never used in the window ({}): candidates to remove",
        unused.len()
    );
    if !unused.is_empty() {
        table(
            &mut out,
            &["IDENTITY", "PERMISSION", "GRANT", "POLICY", "WHERE"],
            &unused,
        );
    }

    let never: Vec<&str> = r
        .policies
        .iter()
        .filter(|p| p.determined == 0)
        .map(|p| p.id.as_str())
        .collect();
    let _ = writeln!(
        out,
        "\nPolicies ({}; {} determined no decision)",
        r.policies.len(),
        never.len()
    );
    let rows: Vec<Vec<String>> = r
        .policies
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.effect.into(),
                p.determined.to_string(),
                p.location.clone(),
            ]
        })
        .collect();
    table(
        &mut out,
        &["POLICY", "EFFECT", "DETERMINED", "WHERE"],
        &rows,
    );

    for (_, title, items) in findings(r) {
        let _ = writeln!(out, "\n{title} ({})", items.len());
        for item in items {
            let _ = writeln!(out, "  {item}");
        }
    }
    if !r.unverified.is_empty() {
        let _ = writeln!(
            out,
            "\nUnverified callers: {}",
            r.unverified
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Bars of calls (grey) with denials (red) over them, per bucket from `start` to `end`.
fn chart(
    bucket_ms: u64,
    series: &[&Series],
    (start, end): (u64, u64),
    (width, height): (u32, u32),
) -> String {
    // At most MAX_BARS bars, each as many buckets as it takes: identities' series each fit
    // the summary's bucket count, but together they may span anything (a wild timestamp).
    let span = end.saturating_sub(start).saturating_add(1);
    let per_bar = span.div_ceil(MAX_BARS).max(1);
    let buckets = span.div_ceil(per_bar).max(1);
    let mut totals = vec![(0u64, 0u64); usize::try_from(buckets).unwrap_or(1)];
    for s in series {
        for (index, calls, denials) in s.buckets().filter(|b| (start..=end).contains(&b.0)) {
            if let Some(slot) =
                totals.get_mut(usize::try_from((index - start) / per_bar).unwrap_or(0))
            {
                slot.0 += calls;
                slot.1 += denials;
            }
        }
    }
    let peak = totals.iter().map(|t| t.0).max().unwrap_or(0).max(1);
    let bar = f64::from(width) / buckets as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">"#
    );
    for (i, (calls, denials)) in totals.iter().enumerate() {
        if *calls == 0 {
            continue;
        }
        let x = i as f64 * bar;
        let h = |n: u64| (n as f64 / peak as f64) * f64::from(height);
        let _ = write!(
            svg,
            r#"<rect class="calls" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {calls} calls, {denials} denied</title></rect>"#,
            f64::from(height) - h(*calls),
            (bar - 0.5).max(0.5),
            h(*calls),
            when((start + i as u64 * per_bar).saturating_mul(bucket_ms)),
        );
        if *denials > 0 {
            let _ = write!(
                svg,
                r#"<rect class="denials" x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
                f64::from(height) - h(*denials),
                (bar - 0.5).max(0.5),
                h(*denials),
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The review as one self-contained HTML page.
pub fn html(r: &Review) -> String {
    let all: Vec<&Series> = r
        .inventory
        .iter()
        .map(|i| &i.seen.series)
        .chain([&r.unverified_series])
        .collect();
    let (start, end) = {
        let keys = all.iter().flat_map(|s| s.buckets().map(|b| b.0));
        let (mut lo, mut hi) = (u64::MAX, 0);
        for k in keys {
            lo = lo.min(k);
            hi = hi.max(k);
        }
        if lo > hi { (0, 0) } else { (lo, hi) }
    };
    let mut page = String::with_capacity(64 * 1024);
    page.push_str(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Tollgate access review</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1d2330}h1{font-size:22px}h2{font-size:17px;margin-top:2em;border-bottom:1px solid #d0d5dd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}th{background:#f4f6f9}
td.n{text-align:right;font-variant-numeric:tabular-nums}.calls{fill:#8da2c0}.denials{fill:#d64545}.tag{padding:1px 6px;border-radius:8px;font-size:12px}
.granted{background:#fde2e1}.conditional{background:#fff3cd}.muted{color:#6b7280}code{font-size:13px}.legend span{margin-right:1.5em}
</style></head><body>"#,
    );
    let _ = write!(
        page,
        "<h1>Tollgate access review</h1><p>{} records from {} to {}; {} identities; {} policies.",
        r.records,
        esc(&opt_when(Some(r.first_ms))),
        esc(&opt_when(Some(r.last_ms))),
        r.inventory.len(),
        r.policies.len()
    );
    if r.corrupt > 0 {
        let _ = write!(
            page,
            " {} corrupt lines skipped (first at {}).",
            r.corrupt,
            esc(&r.corrupt_at.join(", "))
        );
    }
    page.push_str("</p>");
    let _ = write!(
        page,
        r#"<h2 id="activity">Calls and denials over time</h2><p class="legend"><span><svg width="10" height="10"><rect class="calls" width="10" height="10"/></svg> calls</span><span><svg width="10" height="10"><rect class="denials" width="10" height="10"/></svg> denied</span><span class="muted">one bar = {} min</span></p>{}"#,
        r.bucket_ms / 60_000,
        chart(r.bucket_ms, &all, (start, end), (900, 120))
    );

    let _ = write!(
        page,
        r#"<h2 id="inventory">Inventory</h2><table><tr><th>Identity</th><th>Kind</th><th>Owner</th><th>Groups</th><th>Calls</th><th>Denied</th><th>Modes</th><th>Users</th><th>First seen</th><th>Last seen</th><th>Credential expires</th><th>Activity</th></tr>"#
    );
    let mut by_calls: Vec<&str> = r
        .inventory
        .iter()
        .filter(|i| i.seen.calls > 0)
        .map(|i| i.principal.as_str())
        .collect();
    by_calls.sort_by_key(|p| {
        std::cmp::Reverse(
            r.inventory
                .iter()
                .find(|i| i.principal == *p)
                .map_or(0, |i| i.seen.calls),
        )
    });
    let charted: std::collections::HashSet<&str> = by_calls.into_iter().take(CHARTED).collect();
    for i in &r.inventory {
        let s = &i.seen;
        let denied = s
            .denials
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ");
        let spark = if charted.contains(i.principal.as_str()) {
            chart(r.bucket_ms, &[&s.series], (start, end), (240, 28))
        } else {
            String::new()
        };
        let _ = write!(
            page,
            r#"<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td>{}</td><td>{}</td><td class="n">{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&i.principal),
            esc(i.seen.kind.as_str()),
            esc(i.owner.as_deref().unwrap_or("-")),
            esc(&i.groups.join(", ")),
            s.calls,
            esc(&denied),
            modes(s.app_only, s.delegated),
            s.users.len(),
            if s.users_saturated { "+" } else { "" },
            esc(&opt_when(Some(s.first_seen_ms))),
            esc(&opt_when(Some(s.last_seen_ms))),
            esc(&s
                .expiry_ms
                .map_or_else(|| "-".into(), |e| when(e.max(0) as u64))),
            spark
        );
    }
    page.push_str("</table>");

    page.push_str(r#"<h2 id="unused">Granted, never used</h2><p>Permissions the policies grant that were not asked for in the window: candidates to remove, with the policy to change. <span class="tag granted">granted</span> holds for every resource of the type and any context; <span class="tag conditional">conditional</span> holds only under the policy's conditions.</p><table><tr><th>Identity</th><th>Permission</th><th>Grant</th><th>Policy</th><th>Where</th></tr>"#);
    let mut unused = 0;
    for p in &r.least_privilege {
        for row in p.pairs.iter().filter(|row| row.unused()) {
            unused += 1;
            let word = grant_word(row);
            let _ = write!(
                page,
                r#"<tr><td><code>{}</code></td><td><code>{}</code> on <code>{}</code></td><td><span class="tag {word}">{word}</span></td><td><code>{}</code></td><td>{}</td></tr>"#,
                esc(&p.principal),
                esc(&row.action),
                esc(&row.resource_type),
                esc(&row
                    .grant
                    .as_ref()
                    .map(|g| g.policies().join(", "))
                    .unwrap_or_default()),
                esc(&row.locations.join(", ")),
            );
        }
    }
    if unused == 0 {
        page.push_str(r#"<tr><td colspan="5" class="muted">none</td></tr>"#);
    }
    page.push_str("</table>");

    page.push_str(r#"<h2 id="used">What each identity asked for, and the grant it used</h2><table><tr><th>Identity</th><th>Permission</th><th>Grant</th><th>Calls</th><th>Allowed</th><th>Last</th></tr>"#);
    for p in &r.least_privilege {
        for row in p.pairs.iter().filter(|row| row.used.is_some()) {
            let used = row.used.unwrap_or_default();
            let _ = write!(
                page,
                r#"<tr><td><code>{}</code></td><td><code>{}</code> on <code>{}</code></td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                esc(&p.principal),
                esc(&row.action),
                esc(&row.resource_type),
                grant_word(row),
                used.calls,
                used.allowed,
                esc(&when(used.last_ms)),
            );
        }
    }
    page.push_str("</table>");

    page.push_str(r#"<h2 id="policies">Policies</h2><table><tr><th>Policy</th><th>Effect</th><th>Determined</th><th>Where</th></tr>"#);
    for p in &r.policies {
        let _ = write!(
            page,
            r#"<tr><td><code>{}</code></td><td>{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            esc(&p.id),
            p.effect,
            if p.determined == 0 {
                r#"<span class="muted">0 (never)</span>"#.to_owned()
            } else {
                p.determined.to_string()
            },
            esc(&p.location)
        );
    }
    page.push_str("</table>");

    for (id, title, items) in findings(r) {
        let _ = write!(page, r#"<h2 id="{id}">{title} ({})</h2><ul>"#, items.len());
        for item in &items {
            let _ = write!(page, "<li><code>{}</code></li>", esc(item));
        }
        if items.is_empty() {
            page.push_str(r#"<li class="muted">none</li>"#);
        }
        page.push_str("</ul>");
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{Observation, Summary};
    use crate::report::read::ReadNotes;
    use crate::report::review::{Thresholds, review};

    /// Review finding: the page's chart took one slot per bucket across every identity's
    /// span, so one record with a wild timestamp (microseconds, a clock at 1970) asked for
    /// billions of slots.
    #[test]
    fn a_wild_timestamp_cannot_blow_up_the_chart() {
        let mut summary = Summary::default();
        for (who, time_ms) in [("a", 1_790_000_000_000), ("b", 1_790_000_000_000_000)] {
            let o = Observation {
                time_ms,
                principal: Some(who),
                allowed: true,
                reason: "allowed",
                ..Default::default()
            };
            summary.observe(&o, &[]);
        }
        let (_, snapshot) = crate::config::load(&crate::config::ConfigSource::Embedded, 1).unwrap();
        let r = review(
            &summary,
            &ReadNotes::default(),
            &snapshot.policies,
            &snapshot.routes,
            (None, None),
            Thresholds::default(),
        );
        let page = html(&r);
        assert!(page.len() < 200_000, "{} bytes", page.len());
    }
}
