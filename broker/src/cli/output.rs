//! How the admin CLI prints: aligned plain-text tables for people, JSON for
//! scripts. No table crate: the columns are few and the rules are simple.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

/// A table of text cells, printed with each column padded to its widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print as empty, extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text: a header line, then one line per row, each ending in `\n`.
    /// Trailing spaces are trimmed so the output diffs cleanly.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|col| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(col))
                    .map(|cell| cell.chars().count())
                    .chain(std::iter::once(self.headers[col].len()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|h| h.to_uppercase()).collect();
        push_line(&mut out, &header, &widths);
        for row in &self.rows {
            push_line(&mut out, row, &widths);
        }
        out
    }

    /// Prints the table to stdout.
    pub fn print(&self) -> anyhow::Result<()> {
        print_text(&self.render())
    }
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize]) {
    let mut line = String::new();
    for (col, width) in widths.iter().enumerate() {
        let cell = cells.get(col).map(String::as_str).unwrap_or("");
        if col > 0 {
            line.push_str("  ");
        }
        // `{:<w$}` pads by chars, the unit `render` measured widths in.
        line.push_str(&format!("{cell:<width$}"));
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string(value).context("cannot encode JSON")?;
    print_text(&format!("{text}\n"))
}

/// Writes to stdout, turning a closed pipe (`warden user list | head`) into an
/// error instead of the panic `println!` would give.
pub fn print_text(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

/// `-` for an absent optional cell.
pub fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut table = Table::new(&["id", "name"]);
        table.row(vec!["1".into(), "alice".into()]);
        table.row(vec!["100".into(), "bo".into()]);
        assert_eq!(table.render(), "ID   NAME\n1    alice\n100  bo\n");
    }

    #[test]
    fn missing_cells_print_empty() {
        let mut table = Table::new(&["a", "b", "c"]);
        table.row(vec!["x".into()]);
        assert_eq!(table.render(), "A  B  C\nx\n");
    }

    #[test]
    fn opt_prints_a_dash_for_none() {
        assert_eq!(opt(None::<u8>), "-");
        assert_eq!(opt(Some(2)), "2");
    }
}
