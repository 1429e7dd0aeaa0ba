//! The access package as one self-contained HTML page for people: what is held about them, in
//! tables, with every value escaped and no script or outside resource.

use serde_json::{Map, Value};
use tactful_domain::catalog::Catalog;

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A JSON value as readable text (strings without quotes).
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}\
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;font-size:.9rem}th,td{text-align:left;vertical-align:top;padding:.3rem .5rem;border-bottom:1px solid #eee}\
th{background:#f6f6f6}code{font-size:.85rem;word-break:break-all}.note{color:#555}";

pub(super) fn opening(catalog: &Catalog, head: &Map<String, Value>) -> String {
    let brand = &catalog.brand().name;
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>What {brand} holds about you</title><style>{STYLE}</style></head><body>\
         <h1>What {brand} holds about you</h1><p class=\"note\">Prepared on {generated} for request <code>{request}</code>. \
         Everything here is what we store today; a machine-readable copy is available in JSON.</p>",
        brand = escape(brand),
        generated = escape(&plain(&head["generated_at"])),
        request = escape(&plain(&head["request"])),
    );
    html.push_str("<h2>How we recognise you</h2><table><tr><th>Kind</th><th>Value</th></tr>");
    for identifier in head["identifiers"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td></tr>",
            escape(&plain(&identifier["kind"])),
            escape(&plain(&identifier["value"]))
        ));
    }
    html.push_str("</table><h2>Your profile</h2><table><tr><th>What</th><th>Value</th><th>Kind of data</th><th>Why we keep it</th><th>For how long</th></tr>");
    for item in head["profile"].as_array().into_iter().flatten() {
        let purposes: Vec<String> = item["purposes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|purpose| {
                let key = plain(purpose);
                catalog.purpose(&key).map_or(key, |purpose| purpose.name.clone())
            })
            .collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&item["path"])),
            escape(&plain(&item["value"])),
            escape(&plain(&item["category"])),
            escape(&purposes.join(", ")),
            escape(&plain(&item["retention"]))
        ));
    }
    html.push_str("</table><h2>Your choices (consent)</h2><table><tr><th>When</th><th>Purpose</th><th>Choice</th><th>How</th></tr>");
    for entry in head["consents"]["ledger"].as_array().into_iter().flatten() {
        let key = plain(&entry["purpose"]);
        let purpose = catalog.purpose(&key).map_or(key, |purpose| purpose.name.clone());
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&entry["at"])),
            escape(&purpose),
            escape(&plain(&entry["status"])),
            escape(&plain(&entry["method"]))
        ));
    }
    html.push_str("</table><h2>Who looked at your data, and why</h2><table><tr><th>When</th><th>What happened</th><th>Why</th><th>Kinds of data</th></tr>");
    for entry in head["access_log"].as_array().into_iter().flatten() {
        let why = plain(&entry["purpose"]);
        let why = catalog.purpose(&why).map_or(why, |purpose| purpose.name.clone());
        let categories: Vec<String> = entry["returned"].as_array().into_iter().flatten().map(plain).collect();
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&entry["at"])),
            escape(&plain(&entry["kind"])),
            escape(&why),
            escape(&categories.join(", "))
        ));
    }
    html.push_str(
        "</table><h2>Your requests</h2><table><tr><th>Received</th><th>Request</th><th>Status</th></tr>",
    );
    for request in head["requests"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&request["received_at"])),
            escape(&plain(&request["type"])),
            escape(&plain(&request["status"]))
        ));
    }
    html.push_str("</table><h2>What we would keep if you asked us to erase your data</h2><table><tr><th>What</th><th>Why</th><th>For how long</th></tr>");
    for item in head["kept_if_erased"].as_array().into_iter().flatten() {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&plain(&item["path"])),
            escape(&plain(&item["why"])),
            escape(&plain(&item["for"]))
        ));
    }
    html.push_str("</table><h2>What you did (events)</h2><table><tr><th>When</th><th>What</th><th>Details</th><th>Kinds of data</th></tr>");
    html
}

pub(super) fn event(html: &mut String, event: &Value) {
    let what = match plain(&event["event"]) {
        name if !name.is_empty() => name,
        _ => plain(&event["type"]),
    };
    let categories: Vec<String> = event["categories"].as_array().into_iter().flatten().map(plain).collect();
    html.push_str(&format!(
        "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
        escape(&plain(&event["timestamp"])),
        escape(&what),
        escape(&event["data"].to_string()),
        escape(&categories.join(", "))
    ));
}

pub(super) const CLOSING: &str = "</table></body></html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_what_people_typed() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
