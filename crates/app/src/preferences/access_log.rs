//! The person's access log in words: who read or changed their data, what, why, and what came of it.

use super::*;

/// One line of the person's access log.
#[derive(Debug, Clone, Serialize)]
pub struct Access {
    pub at: String,
    /// `read`, `consent`, `request`, `preference_center`, …
    pub kind: String,
    /// Who, in words ("The email marketing team", "You").
    pub who: String,
    /// What, in words.
    pub what: String,
    /// Why: the purpose's name.
    pub why: String,
    /// What came of it.
    pub outcome: String,
}

/// Who accessed the person's data, and what happened to it, newest first.
pub async fn access_log(app: &App, subject: &str, limit: usize) -> Result<Vec<Access>, AppError> {
    let catalog = &app.catalog;
    let data =
        app.store.subject_summary(subject).await?.ok_or_else(|| AppError::new(ErrorCode::SessionExpired))?;
    let entries = crate::exports::package::access_log(app, &data).await?;
    let taxonomy = Taxonomy::builtin();
    let category_names = |list: Option<&Value>| -> String {
        let names: Vec<String> = list
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c.as_str().or_else(|| c.get("category").and_then(Value::as_str)))
                    .map(|c| taxonomy.plain_category_name(c))
                    .collect()
            })
            .unwrap_or_default();
        let mut names = names;
        names.dedup();
        names.join(", ")
    };
    let purpose_name = |key: &str| catalog.purpose(key).map_or_else(|| key.to_owned(), |p| p.name.clone());
    let text =
        |entry: &Value, name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut lines = Vec::new();
    for entry in entries.iter().take(limit) {
        let kind = text(entry, "kind");
        let at = text(entry, "at");
        let line = match kind.as_str() {
            "read" => {
                let role = text(entry, "role");
                let who = match role.as_str() {
                    "self" => "You".to_owned(),
                    "operator" => "Our staff, at the command line".to_owned(),
                    _ => catalog
                        .role(&role)
                        .and_then(|r| r.description.clone())
                        .unwrap_or_else(|| format!("The {role} team")),
                };
                let returned = category_names(entry.get("returned"));
                let withheld = category_names(entry.get("withheld"));
                let outcome = match text(entry, "decision").as_str() {
                    "permitted" if role == "self" => "Shown to you".to_owned(),
                    "permitted" => "Read".to_owned(),
                    "partial" => format!("Read; kept from them: {withheld}"),
                    _ => "Refused: nothing was shown".to_owned(),
                };
                Access {
                    at,
                    kind,
                    who,
                    what: if returned.is_empty() { withheld } else { returned },
                    why: purpose_name(&text(entry, "purpose")),
                    outcome,
                }
            }
            "consent" => {
                let method = text(entry, "method");
                let who = match method.as_str() {
                    "preference_center" | "explicit" => "You",
                    "gpc" => "Your browser (Global Privacy Control)",
                    "expired" => "Time",
                    _ => "We, recording what you told us",
                };
                Access {
                    at,
                    kind,
                    who: who.to_owned(),
                    what: "Your choice".into(),
                    why: purpose_name(&text(entry, "purpose")),
                    outcome: match text(entry, "change").as_str() {
                        "given" | "renewed" => "Switched on".into(),
                        "withdrawn" => "Switched off".into(),
                        "expired" => "Expired".into(),
                        other => other.to_owned(),
                    },
                }
            }
            "request" => Access {
                at,
                kind,
                who: "Our privacy team".into(),
                what: format!("Your request ({})", text(entry, "request_kind")),
                why: "Your rights".into(),
                outcome: text(entry, "note"),
            },
            "preference_center" => {
                let (who, what) = match text(entry, "action").as_str() {
                    "link_issued" => ("Us", "Sent you a link to these settings"),
                    "signed_in" => ("You", "Opened these settings"),
                    "signed_in_with_code" => ("You", "Opened these settings with a code"),
                    "interests_changed" => ("You", "Told us your interests"),
                    "signed_out_everywhere" => ("Us", "Signed you out everywhere"),
                    _ => ("You", "Used these settings"),
                };
                Access {
                    at,
                    kind,
                    who: who.into(),
                    what: what.into(),
                    why: "Your privacy settings".into(),
                    outcome: "Done".into(),
                }
            }
            _ => Access {
                at,
                kind: kind.clone(),
                who: "Us".into(),
                what: kind.replace('_', " "),
                why: String::new(),
                outcome: String::new(),
            },
        };
        lines.push(line);
    }
    Ok(lines)
}
