//! A minimal column-aligned table for terminal output, also renderable as Markdown.

/// Column alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Rows of cells under headers.
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Self {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self
            .headers
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < w.len() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
        }
        w
    }

    fn line(cells: &[String], widths: &[usize], aligns: &[Align]) -> String {
        let mut out = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.get(i).map(String::as_str).unwrap_or("");
            let pad = width.saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            match aligns[i] {
                Align::Left => {
                    out.push_str(cell);
                    if i + 1 < widths.len() {
                        out.push_str(&" ".repeat(pad));
                    }
                }
                Align::Right => {
                    out.push_str(&" ".repeat(pad));
                    out.push_str(cell);
                }
            }
        }
        out.trim_end().to_string()
    }

    /// Plain text: header, a rule of `=`, rows.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let aligns: Vec<Align> = self.headers.iter().map(|(_, a)| *a).collect();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        let total = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        let mut out = Self::line(&header, &widths, &aligns);
        out.push('\n');
        out.push_str(&"=".repeat(total));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&Self::line(r, &widths, &aligns));
            out.push('\n');
        }
        out.push_str(&"=".repeat(total));
        out.push('\n');
        out
    }

    /// A GitHub-flavoured Markdown table.
    pub fn render_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("|");
        for (h, _) in &self.headers {
            out.push_str(&format!(" {} |", esc(h)));
        }
        out.push_str("\n|");
        for (_, a) in &self.headers {
            out.push_str(match a {
                Align::Left => "---|",
                Align::Right => "---:|",
            });
        }
        out.push('\n');
        for r in &self.rows {
            out.push('|');
            for i in 0..self.headers.len() {
                out.push_str(&format!(
                    " {} |",
                    esc(r.get(i).map(String::as_str).unwrap_or(""))
                ));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["a".into(), "1,000".into()]);
        t.row(vec!["longer".into(), "7".into()]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "name        n");
        assert_eq!(lines[2], "a       1,000");
        assert_eq!(lines[3], "longer      7");
        let md = t.render_markdown();
        assert!(md.starts_with("| name | n |\n|---|---:|\n| a | 1,000 |"));
    }
}
