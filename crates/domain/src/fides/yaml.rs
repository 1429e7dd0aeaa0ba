//! A small YAML writer for the export: block mappings and sequences, every string double-quoted
//! with JSON escapes (valid YAML 1.2), so the same catalog always gives the same bytes and no value
//! can be misread as a number, a boolean or a comment.

/// A YAML value as the export builds it.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Str(String),
    Bool(bool),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    pub(super) fn str(text: impl Into<String>) -> Node {
        Node::Str(text.into())
    }

    pub(super) fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Node {
        Node::List(items.into_iter().map(|item| Node::str(item.as_ref())).collect())
    }

    fn is_block(&self) -> bool {
        match self {
            Node::List(items) => items.iter().any(|item| matches!(item, Node::List(_) | Node::Map(_))),
            Node::Map(entries) => !entries.is_empty(),
            _ => false,
        }
    }
}

/// Writes a mapping at the top level of a document.
pub(super) fn render(entries: &[(String, Node)]) -> String {
    let mut out = String::new();
    write_map(&mut out, entries, 0, false);
    out
}

fn write_map(out: &mut String, entries: &[(String, Node)], indent: usize, mut first_inline: bool) {
    for (key, value) in entries {
        if !first_inline {
            out.push_str(&" ".repeat(indent));
        }
        first_inline = false;
        out.push_str(&key_text(key));
        out.push(':');
        if value.is_block() {
            out.push('\n');
            match value {
                Node::Map(inner) => write_map(out, inner, indent + 2, false),
                Node::List(items) => write_list(out, items, indent),
                _ => unreachable!("only lists and maps are blocks"),
            }
        } else {
            out.push(' ');
            out.push_str(&flow(value));
            out.push('\n');
        }
    }
}

fn write_list(out: &mut String, items: &[Node], indent: usize) {
    for item in items {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Node::Map(entries) if !entries.is_empty() => write_map(out, entries, indent + 2, true),
            Node::List(inner) if item.is_block() => {
                out.push('\n');
                write_list(out, inner, indent + 2);
            }
            _ => {
                out.push_str(&flow(item));
                out.push('\n');
            }
        }
    }
}

/// A scalar, or a list of scalars, on one line.
fn flow(node: &Node) -> String {
    match node {
        Node::Str(text) => quoted(text),
        Node::Bool(value) => value.to_string(),
        Node::List(items) => format!("[{}]", items.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Node::Map(_) => "{}".to_owned(),
    }
}

fn key_text(key: &str) -> String {
    let plain = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { key.to_owned() } else { quoted(key) }
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_block_maps_and_lists_with_quoted_strings() {
        let document = vec![(
            "system".to_owned(),
            Node::List(vec![Node::Map(vec![
                ("fides_key".to_owned(), Node::str("shop")),
                ("uses".to_owned(), Node::strs(["a", "b: #c"])),
                ("flag".to_owned(), Node::Bool(true)),
                ("meta".to_owned(), Node::Map(vec![("traits.email".to_owned(), Node::str("3y"))])),
            ])]),
        )];
        assert_eq!(
            render(&document),
            "system:\n- fides_key: \"shop\"\n  uses: [\"a\", \"b: #c\"]\n  flag: true\n  meta:\n    \"traits.email\": \"3y\"\n"
        );
    }
}
