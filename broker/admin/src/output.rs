//! How reports reach the operator: aligned plain-text tables, or JSON with `--json`.
//!
//! Every command returns a report that is both `Serialize` (the JSON form, stable field names in
//! snake_case) and [`Report`] (the human form). Tables are plain text with two spaces between
//! columns and numbers right-aligned, like Kafka's own tools, so `column`, `awk` and eyes all work.

use serde::Serialize;

/// A command's result, printable for people or machines.
pub trait Report: Serialize {
    /// The human-readable form, ending with a newline.
    fn human(&self) -> String;
}

/// The report as the operator asked for it.
pub fn render<R: Report>(report: &R, json: bool) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(report)
            .expect("reports are plain data and always serialize");
        s.push('\n');
        s
    } else {
        report.human()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table with a header row; cells are padded to the widest value in their column.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(
            cells.len(),
            self.columns.len(),
            "row {cells:?} does not match the table's columns"
        );
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header and rows, each line ending in a newline and without trailing spaces.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.columns[i].0.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        let mut out = String::new();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `label: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (label, value) in pairs {
        let pad = width - label.chars().count();
        out.push_str(label);
        out.push(':');
        out.extend(std::iter::repeat_n(' ', pad + 1));
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// A number that may be absent (Kafka's -1), as a table cell.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_numbers() {
        let mut t = Table::new(&[
            ("TOPIC", Align::Left),
            ("PARTITIONS", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["orders".into(), "12".into(), "".into()]);
        t.row(vec!["a".into(), "3".into(), "ünïcode".into()]);
        assert_eq!(
            t.render(),
            "TOPIC   PARTITIONS  NOTE\n\
             orders          12\n\
             a                3  ünïcode\n"
        );
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = Table::new(&[("GROUP", Align::Left), ("STATE", Align::Left)]);
        assert!(t.is_empty());
        assert_eq!(t.render(), "GROUP  STATE\n");
    }

    #[test]
    #[should_panic(expected = "does not match")]
    fn a_short_row_is_a_bug() {
        Table::new(&[("A", Align::Left), ("B", Align::Left)]).row(vec!["x".into()]);
    }

    #[test]
    fn fields_align_values() {
        assert_eq!(
            fields(&[("Topic", "t".into()), ("Partitions", "3".into())]),
            "Topic:      t\nPartitions: 3\n"
        );
    }

    #[test]
    fn json_and_human_forms() {
        #[derive(Serialize)]
        struct R {
            name: String,
        }
        impl Report for R {
            fn human(&self) -> String {
                format!("{}\n", self.name)
            }
        }
        let r = R { name: "x".into() };
        assert_eq!(render(&r, false), "x\n");
        let v: serde_json::Value = serde_json::from_str(&render(&r, true)).unwrap();
        assert_eq!(v["name"], "x");
    }
}
