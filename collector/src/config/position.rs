//! Where each YAML node sits in the file, so errors can name a line.
//!
//! `serde_yaml_ng` gives us a tree without positions; this walks the same text with
//! `yaml-rust2`'s event parser and records, for every mapping key and sequence item, its dotted
//! path (`processors.batch/x.timeout`, `service.pipelines.traces.receivers[1]`) and line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Dotted YAML path → 1-based line number.
#[derive(Debug, Default, Clone)]
pub struct PositionIndex {
    lines: HashMap<String, usize>,
}

impl PositionIndex {
    /// Indexes `text`. A text that does not parse yields an empty index (the parse error is
    /// reported by the main parser, with its own position).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut walker, false);
        Self {
            lines: walker.lines,
        }
    }

    /// The line of exactly `path`, if it is in the file.
    pub fn exact(&self, path: &str) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// The line of `path`, or of its nearest ancestor that is in the file.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Walker {
    /// Handles a node (scalar, alias, or collection start) and returns its path if it is a
    /// value (not a key).
    fn node(&mut self, scalar: Option<&str>, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => match key.take() {
                None => {
                    // This node is a key.
                    let k = scalar.unwrap_or("?").to_string();
                    let full = join(path, &k);
                    self.lines.entry(full).or_insert(line);
                    *key = Some(k);
                    None
                }
                Some(k) => Some(join(path, &k)),
            },
            Some(Frame::Seq { path, next }) => {
                let full = format!("{path}[{next}]");
                *next += 1;
                self.lines.entry(full.clone()).or_insert(line);
                Some(full)
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                self.node(Some(&value), line);
            }
            Event::Alias(_) => {
                self.node(None, line);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.node(None, line) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A complex key: keep the stack balanced with an anonymous frame.
                    self.stack.push(Frame::Map {
                        path: "?".into(),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.node(None, line).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_items_and_ancestors() {
        let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp, foo]\n      exporters:\n        - nop\n";
        let idx = PositionIndex::build(text);
        assert_eq!(idx.line_of("receivers"), Some(1));
        assert_eq!(idx.line_of("receivers.otlp.protocols.grpc"), Some(4));
        assert_eq!(
            idx.line_of("service.pipelines.traces.receivers[1]"),
            Some(8)
        );
        assert_eq!(
            idx.line_of("service.pipelines.traces.exporters[0]"),
            Some(10)
        );
        // Not in the file: nearest ancestor.
        assert_eq!(
            idx.line_of("receivers.otlp.protocols.http.endpoint"),
            Some(3)
        );
        assert_eq!(idx.line_of("nothing"), None);
    }
}
