//! The hub's route table as `src/api/mod.rs` writes it, for the tests that must cover
//! every route (the role matrix, the OpenAPI document).

/// `(METHOD, path)` of every route, and the `.route(` calls that could not be read.
pub fn route_table() -> (Vec<(String, String)>, Vec<String>) {
    routes_in_source(include_str!("../../../src/api/mod.rs"))
}

/// `(METHOD, path)` of every `.route("<path>", web::<method>()` in the source, each under
/// the `web::scope("<prefix>")` before it; and the `.route(` calls that could not be read.
fn routes_in_source(source: &str) -> (Vec<(String, String)>, Vec<String>) {
    let scopes: Vec<(usize, String)> = source
        .match_indices("web::scope(")
        .filter_map(|(at, m)| Some((at, string_literal(&source[at + m.len()..])?.0)))
        .collect();
    let mut routes = Vec::new();
    let mut unreadable = Vec::new();
    for (at, m) in source.match_indices(".route(") {
        let rest = &source[at + m.len()..];
        let parsed = string_literal(rest).and_then(|(path, rest)| {
            let rest = rest.trim_start().strip_prefix(',')?.trim_start();
            let rest = rest.strip_prefix("web::")?;
            let method: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            rest[method.len()..]
                .starts_with('(')
                .then_some((path, method))
        });
        match parsed {
            Some((path, method)) => {
                let prefix = scopes
                    .iter()
                    .rev()
                    .find(|(s, _)| *s < at)
                    .map_or("", |(_, p)| p.as_str());
                routes.push((method.to_ascii_uppercase(), format!("{prefix}{path}")));
            }
            None => unreadable.push(rest.chars().take(80).collect()),
        }
    }
    (routes, unreadable)
}

/// The string literal at the start of `text` (after whitespace), and what follows it.
fn string_literal(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start().strip_prefix('"')?;
    let end = text.find('"')?;
    Some((text[..end].to_string(), &text[end + 1..]))
}
