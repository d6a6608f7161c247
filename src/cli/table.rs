//! Aligned text for people: tables with a header row, and `key: value` blocks. Every
//! value the hub sends is shown through [`cell`] or [`block`], which drop control
//! characters, so a task title cannot move the cursor or recolour an operator's terminal.

use serde_json::Value;

/// Columns separated by two spaces, each as wide as its widest cell.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `headers`.
    pub fn new(headers: &[&str]) -> Self {
        let mut table = Self::default();
        table.row(headers.iter().map(|h| h.to_string()).collect());
        table
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key:  value` lines, the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let mut table = Table::default();
    for (key, value) in pairs {
        table.row(vec![format!("{key}:"), value.clone()]);
    }
    table.render()
}

/// One JSON value as a single line: `-` for nothing, lists joined with commas.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => one_line(s),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => one_line(&other.to_string()),
    }
}

/// `cell`, cut to `max` characters with an ellipsis.
pub fn short(value: &Value, max: usize) -> String {
    let text = cell(value);
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A multi-line text (a prompt, an output) indented under a heading, control characters
/// other than line breaks and tabs dropped.
pub fn block(heading: &str, value: &Value) -> String {
    let Some(text) = value.as_str() else {
        return String::new();
    };
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect();
    let mut out = format!("\n{heading}:\n");
    for line in clean.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Control characters (line breaks included) become spaces, so a row stays one row.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_and_rows_end_without_spaces() {
        let mut table = Table::new(&["ID", "TITLE"]);
        table.row(vec!["12".into(), "a".into()]);
        table.row(vec!["7".into(), "-".into()]);
        assert_eq!(table.render(), "ID  TITLE\n12  a\n7   -\n");
    }

    #[test]
    fn values_from_the_hub_cannot_drive_the_terminal() {
        assert_eq!(cell(&json!("a\u{1b}[31mred\nx")), "a [31mred x");
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["git", "research"])), "git, research");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(short(&json!("abcdef"), 4), "abc…");
        assert_eq!(
            block("prompt", &json!("one\n\u{7}two")),
            "\nprompt:\n  one\n  two\n"
        );
    }

    #[test]
    fn fields_align_their_values() {
        assert_eq!(
            fields(&[("id", "1".into()), ("status", "queued".into())]),
            "id:      1\nstatus:  queued\n"
        );
    }
}
