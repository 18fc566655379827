//! What `keygate api-spec check FILE` prints for a good document: the route
//! table (who may call each route) and the scope catalogue, aligned.

use std::fmt::Write;

use super::ApiSpec;

impl ApiSpec {
    /// The route table and the catalogue as people read them; plain ASCII
    /// layout, one line a route or a scope, no trailing spaces.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let base = if self.base_path.is_empty() { "(none)" } else { &self.base_path };
        let _ = writeln!(out, "{} {} (OpenAPI {})", self.title, self.version, self.openapi);
        let _ = writeln!(out, "Base path: {base}");
        let _ = writeln!(out, "Scheme:    {}", self.scheme);
        let _ = writeln!(out);

        let _ = writeln!(out, "Routes ({}):", self.operations.len());
        let rows: Vec<[String; 4]> = self
            .operations
            .iter()
            .map(|op| {
                [
                    op.method.clone(),
                    op.path.clone(),
                    op.access.to_string(),
                    op.operation_id.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        let header = ["METHOD", "PATH", "WHO MAY CALL", "OPERATION"].map(str::to_owned);
        table(&mut out, &header, &rows);
        let _ = writeln!(out);

        if self.catalogue.is_empty() {
            let _ = writeln!(out, "Scopes: none (no route needs more than a valid token)");
            return out;
        }
        let _ = writeln!(out, "Scopes ({}):", self.catalogue.len());
        let rows: Vec<[String; 2]> =
            self.catalogue.iter().map(|entry| [entry.name.clone(), one_line(&entry.description)]).collect();
        table(&mut out, &["SCOPE", "DESCRIPTION"].map(str::to_owned), &rows);
        out
    }
}

/// A description on one line: YAML block text keeps its line breaks.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "-".to_owned()
    } else {
        joined
    }
}

fn table<const N: usize>(out: &mut String, header: &[String; N], rows: &[[String; N]]) {
    let mut widths = header.each_ref().map(|cell| cell.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "  {cell:<width$}");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
