//! What a benchmark prints: Markdown tables and lines, on stdout as they come and, at the end,
//! in `.local/bench-<name>.md`. Progress goes to stderr ([`say`]), so stdout is the report.

use std::path::PathBuf;

use anyhow::Context;

/// Progress, on stderr.
pub fn say(message: impl AsRef<str>) {
    eprintln!("==> {}", message.as_ref());
}

pub struct Report {
    path: PathBuf,
    text: String,
}

impl Report {
    pub fn new(name: &str) -> Self {
        Self {
            path: super::repo_root().join(".local").join(format!("bench-{name}.md")),
            text: String::new(),
        }
    }

    pub fn line(&mut self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    pub fn blank(&mut self) {
        self.line("");
    }

    pub fn table(&mut self, table: &Table) {
        for line in table.lines() {
            self.line(line);
        }
    }

    /// Writes the report to `.local/bench-<name>.md`.
    pub fn save(&self) -> anyhow::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&self.path, &self.text).with_context(|| format!("writing {}", self.path.display()))?;
        say(format!("report written to {}", self.path.display()));
        Ok(())
    }
}

/// A Markdown table; columns are left-aligned (text) or right-aligned (numbers).
pub struct Table {
    header: Vec<String>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns by header; a header starting with `>` is a numeric column (right-aligned), the
    /// `>` not shown.
    pub fn new(columns: &[&str]) -> Self {
        Self {
            header: columns.iter().map(|c| c.trim_start_matches('>').to_string()).collect(),
            numeric: columns.iter().map(|c| c.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.header.len(),
            "a row of {} cells in a table of {} columns",
            cells.len(),
            self.header.len()
        );
        self.rows.push(cells);
    }

    fn lines(&self) -> Vec<String> {
        let rule: Vec<&str> = self.numeric.iter().map(|n| if *n { "---:" } else { "---" }).collect();
        let mut lines = vec![
            format!("| {} |", self.header.join(" | ")),
            format!("|{}|", rule.join("|")),
        ];
        lines.extend(self.rows.iter().map(|row| format!("| {} |", row.join(" | "))));
        lines
    }
}

/// "met" or "NOT met", as every target line says it.
pub fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_renders_as_markdown_with_numbers_right_aligned() {
        let mut table = Table::new(&["name", ">ms"]);
        table.row(vec!["login".into(), "1.5".into()]);
        assert_eq!(table.lines(), ["| name | ms |", "|---|---:|", "| login | 1.5 |"]);
    }
}
