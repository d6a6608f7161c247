//! What a run has spent, read from its output: Claude in its JSON output mode
//! (`--output-format stream-json`, or `json`) prints one JSON object per line, the
//! assistant's turns with their token counts and a final `result` with the totals and the
//! cost. An `--exec` command may print the same lines to report its own usage. The worker
//! sends the totals with its stream chunks, so the hub can stop a task past its budget
//! while it runs.

use serde_json::{json, Map, Value};

/// Reads output as it arrives, a line at a time.
#[derive(Debug, Default)]
pub struct UsageReader {
    /// Claude's output is JSON lines: show the assistant's text, not the JSON.
    claude: bool,
    partial: String,
    cost_usd: Option<f64>,
    tokens_in: i64,
    tokens_out: i64,
    /// The final answer of a Claude run (`result` of its last line).
    result: Option<String>,
}

/// What one piece of output gives the hub: the text to stream, and the usage so far when
/// the piece changed it.
#[derive(Debug, PartialEq)]
pub struct Piece {
    pub text: String,
    pub usage: Option<Value>,
}

impl UsageReader {
    pub fn new(claude: bool) -> Self {
        Self {
            claude,
            ..Self::default()
        }
    }

    /// Takes the next piece of output.
    pub fn feed(&mut self, chunk: &str) -> Piece {
        self.partial.push_str(chunk);
        let complete = self.partial.rfind('\n').map_or(0, |end| end + 1);
        let lines: String = self.partial.drain(..complete).collect();
        let mut changed = false;
        let mut shown = String::new();
        for line in lines.lines() {
            let Some(object) = json_object(line) else {
                continue;
            };
            changed |= self.count(&object);
            if self.claude {
                shown.push_str(&assistant_text(&object));
            }
        }
        Piece {
            text: if self.claude {
                shown
            } else {
                chunk.to_string()
            },
            usage: changed.then(|| self.totals()),
        }
    }

    /// The run's answer: a Claude run's final `result`, else everything it printed.
    pub fn answer(&self, stdout: String) -> String {
        match (&self.result, self.claude) {
            (Some(result), true) => result.clone(),
            _ => stdout,
        }
    }

    /// The totals as a report or a chunk carries them.
    pub fn totals(&self) -> Value {
        let mut usage = json!({
            "tokens_in": clamp(self.tokens_in),
            "tokens_out": clamp(self.tokens_out),
        });
        if let Some(cost) = self.cost_usd {
            usage["cost_usd"] = json!(cost);
        }
        usage
    }

    /// Counts one line; true when it changed the totals.
    fn count(&mut self, line: &Map<String, Value>) -> bool {
        let usage = match line.get("type").and_then(Value::as_str) {
            Some("assistant") => line.get("message").and_then(|m| m.get("usage")),
            Some("result") => line.get("usage"),
            _ => None,
        };
        let tokens = |name| usage.and_then(|u| u.get(name)).and_then(Value::as_i64);
        let before = (self.cost_usd, self.tokens_in, self.tokens_out);
        if line.get("type").and_then(Value::as_str) == Some("result") {
            // The result holds the run's totals: they replace what the turns added up to.
            self.tokens_in = tokens("input_tokens").unwrap_or(self.tokens_in);
            self.tokens_out = tokens("output_tokens").unwrap_or(self.tokens_out);
            let cost = ["total_cost_usd", "cost_usd"]
                .iter()
                .find_map(|name| line.get(*name).and_then(Value::as_f64));
            self.cost_usd = cost.or(self.cost_usd);
            if let Some(result) = line.get("result").and_then(Value::as_str) {
                self.result = Some(result.to_string());
            }
        } else {
            self.tokens_in += tokens("input_tokens").unwrap_or(0);
            self.tokens_out += tokens("output_tokens").unwrap_or(0);
        }
        before != (self.cost_usd, self.tokens_in, self.tokens_out)
    }
}

fn json_object(line: &str) -> Option<Map<String, Value>> {
    let line = line.trim();
    if !line.starts_with('{') {
        return None;
    }
    match serde_json::from_str(line) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The text blocks of an assistant turn.
fn assistant_text(line: &Map<String, Value>) -> String {
    if line.get("type").and_then(Value::as_str) != Some("assistant") {
        return String::new();
    }
    let blocks = line
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array);
    blocks
        .into_iter()
        .flatten()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(|text| format!("{text}\n"))
        .collect()
}

/// The hub takes tokens as 32-bit counts.
fn clamp(tokens: i64) -> i64 {
    tokens.clamp(0, i64::from(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_turns_add_up_and_the_result_sets_the_totals() {
        let mut reader = UsageReader::new(true);
        let turn = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking."}],"usage":{"input_tokens":100,"output_tokens":20}}}"#;
        let piece = reader.feed(&format!("{turn}\n{}", &turn[..10]));
        assert_eq!(piece.text, "Looking.\n");
        assert_eq!(
            piece.usage,
            Some(json!({ "tokens_in": 100, "tokens_out": 20 }))
        );
        // The rest of the split line completes the second turn.
        let piece = reader.feed(&format!("{}\n", &turn[10..]));
        assert_eq!(
            piece.usage,
            Some(json!({ "tokens_in": 200, "tokens_out": 40 }))
        );
        let result = r#"{"type":"result","result":"The answer.","total_cost_usd":0.25,"usage":{"input_tokens":150,"output_tokens":45}}"#;
        let piece = reader.feed(&format!("{result}\n"));
        assert_eq!(
            piece.usage,
            Some(json!({ "tokens_in": 150, "tokens_out": 45, "cost_usd": 0.25 }))
        );
        assert_eq!(reader.answer("raw json".into()), "The answer.");
    }

    #[test]
    fn plain_output_streams_as_it_is_and_lines_without_usage_change_nothing() {
        let mut reader = UsageReader::new(false);
        let piece = reader.feed("hello {not json}\n{\"type\":\"other\"}\n");
        assert_eq!(piece.text, "hello {not json}\n{\"type\":\"other\"}\n");
        assert_eq!(piece.usage, None);
        let piece = reader.feed("{\"type\":\"result\",\"cost_usd\":1.5}\n");
        assert_eq!(
            piece.usage,
            Some(json!({ "tokens_in": 0, "tokens_out": 0, "cost_usd": 1.5 }))
        );
        assert_eq!(reader.answer("all of it".into()), "all of it");
    }
}
