//! Output formats, as OpenIO's cliff-based CLI prints them: `table` (the
//! seed's boxes, numbers right-aligned, multi-line cells), `json`, `csv`,
//! `value` (values only, space-separated, one row per line) and `yaml`.

use serde_json::Value;

/// A cell: text, or a number (right-aligned in tables, unquoted in csv).
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Num(i64),
}

impl Cell {
    pub fn text(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Num(n) => n.to_string(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Cell::Text(s) => Value::String(s.clone()),
            Cell::Num(n) => Value::from(*n),
        }
    }
}

pub use crate::cli::Format;

pub fn render(format: Format, columns: &[&str], rows: &[Vec<Cell>]) -> String {
    match format {
        Format::Table => table(columns, rows),
        Format::Json => json(columns, rows),
        Format::Csv => csv(columns, rows),
        Format::Value => rows
            .iter()
            .map(|r| r.iter().map(Cell::text).collect::<Vec<_>>().join(" ") + "\n")
            .collect(),
        Format::Yaml => yaml(columns, rows),
    }
}

fn table(columns: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            for line in cell.text().lines() {
                widths[i] = widths[i].max(line.chars().count());
            }
        }
    }
    let sep: String = "+".to_string()
        + &widths
            .iter()
            .map(|w| "-".repeat(w + 2) + "+")
            .collect::<String>()
        + "\n";
    let mut out = sep.clone();
    out.push('|');
    for (c, w) in columns.iter().zip(&widths) {
        out.push_str(&format!(" {c:<w$} |"));
    }
    out.push('\n');
    out.push_str(&sep);
    for row in rows {
        let cells: Vec<Vec<String>> = row
            .iter()
            .map(|c| c.text().lines().map(String::from).collect())
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for line in 0..height {
            out.push('|');
            for (i, w) in widths.iter().enumerate() {
                let text = cells
                    .get(i)
                    .and_then(|c| c.get(line))
                    .map(String::as_str)
                    .unwrap_or("");
                match row.get(i) {
                    Some(Cell::Num(_)) => out.push_str(&format!(" {text:>w$} |")),
                    _ => out.push_str(&format!(" {text:<w$} |")),
                }
            }
            out.push('\n');
        }
    }
    out.push_str(&sep);
    out
}

fn json(columns: &[&str], rows: &[Vec<Cell>]) -> String {
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = serde_json::Map::new();
            for (c, cell) in columns.iter().zip(r) {
                m.insert((*c).to_string(), cell.json());
            }
            Value::Object(m)
        })
        .collect();
    serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
}

fn csv_field(cell: &Cell) -> String {
    match cell {
        Cell::Num(n) => n.to_string(),
        Cell::Text(s) => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

fn csv(columns: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut out = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for r in rows {
        out.push_str(&(r.iter().map(csv_field).collect::<Vec<_>>().join(",") + "\n"));
    }
    out
}

fn yaml_scalar(cell: &Cell) -> String {
    match cell {
        Cell::Num(n) => n.to_string(),
        Cell::Text(s) if s.contains('\n') => {
            let indented: Vec<String> = s.lines().map(|l| format!("    {l}")).collect();
            format!("|-\n{}", indented.join("\n"))
        }
        Cell::Text(s) => serde_json::to_string(s).unwrap_or_default(),
    }
}

fn yaml(columns: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut out = String::new();
    for r in rows {
        for (i, (c, cell)) in columns.iter().zip(r).enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            out.push_str(&format!("{lead}{c}: {}\n", yaml_scalar(cell)));
        }
    }
    if rows.is_empty() {
        out.push_str("[]\n");
    }
    out
}

/// JSON with 4-space indentation and sorted keys (the seed's Body column).
pub fn pretty_json(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // serde_json's Map is ordered by key: the output is sorted.
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_rows() -> Vec<Vec<Cell>> {
        vec![
            vec![
                Cell::Text("127.0.0.1:6015".into()),
                Cell::Num(500),
                Cell::Text(
                    "Election failed for 697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1.meta2".into(),
                ),
            ],
            vec![Cell::Text("127.0.0.1:6017".into()), Cell::Num(7), Cell::Text("Timeout".into())],
            vec![Cell::Text("127.0.0.1:6018".into()), Cell::Num(7), Cell::Text("Timeout".into())],
        ]
    }

    #[test]
    fn table_matches_the_seed_exactly() {
        let want = "\
+----------------+--------+----------------------------------------------------------------------------------------------+
| Id             | Status | Message                                                                                      |
+----------------+--------+----------------------------------------------------------------------------------------------+
| 127.0.0.1:6015 |    500 | Election failed for 697ECB056A5F9339B36C3B0A020B5AB17B4B0160FBEBEA203315EA1FC1B61605.1.meta2 |
| 127.0.0.1:6017 |      7 | Timeout                                                                                      |
| 127.0.0.1:6018 |      7 | Timeout                                                                                      |
+----------------+--------+----------------------------------------------------------------------------------------------+
";
        assert_eq!(
            render(Format::Table, &["Id", "Status", "Message"], &seed_rows()),
            want
        );
    }

    #[test]
    fn multi_line_body_cells() {
        let body = pretty_json(&serde_json::json!({"b": 1, "a": {"z": null, "y": [1]}}));
        assert_eq!(body, "{\n    \"a\": {\n        \"y\": [\n            1\n        ],\n        \"z\": null\n    },\n    \"b\": 1\n}");
        let rows = vec![vec![
            Cell::Text("p".into()),
            Cell::Num(200),
            Cell::Text(body),
        ]];
        let out = render(Format::Table, &["Id", "Status", "Body"], &rows);
        assert!(
            out.contains(
                "| p  |    200 | {                 |\n|    |        |     \"a\": {        |\n"
            ),
            "{out}"
        );
        assert_eq!(out.lines().count(), 3 + 9 + 1);
    }

    #[test]
    fn other_formats() {
        let cols = ["Id", "Status", "Message"];
        let rows = seed_rows();
        assert_eq!(
            render(Format::Value, &cols, &rows[1..]),
            "127.0.0.1:6017 7 Timeout\n127.0.0.1:6018 7 Timeout\n"
        );
        assert_eq!(
            render(Format::Csv, &cols, &rows[1..2]),
            "\"Id\",\"Status\",\"Message\"\n\"127.0.0.1:6017\",7,\"Timeout\"\n"
        );
        let json: Value =
            serde_json::from_str(&render(Format::Json, &cols, &rows)).expect("valid json");
        assert_eq!(
            json[1],
            serde_json::json!({"Id": "127.0.0.1:6017", "Status": 7, "Message": "Timeout"})
        );
        assert_eq!(
            render(Format::Yaml, &cols, &rows[1..2]),
            "- Id: \"127.0.0.1:6017\"\n  Status: 7\n  Message: \"Timeout\"\n"
        );
        assert_eq!(render(Format::Yaml, &cols, &[]), "[]\n");
    }
}
