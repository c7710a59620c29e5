//! How a sibling is shown as JSON, the same way by the HTTP API and by
//! `norn --json`: its value as text when it is UTF-8, as hex otherwise, or
//! that it is a tombstone.

use norn_clock::Sibling;
use serde::Serialize;

/// One sibling, for JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SiblingView {
    /// A tombstone (a delete concurrent with the other siblings); left out
    /// when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The value, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value as hex, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_hex: Option<String>,
}

impl SiblingView {
    pub fn of(sibling: &Sibling) -> SiblingView {
        match sibling {
            Sibling::Tombstone => SiblingView {
                deleted: true,
                value: None,
                value_hex: None,
            },
            Sibling::Value(bytes) => SiblingView::of_value(bytes),
        }
    }

    pub fn of_value(bytes: &[u8]) -> SiblingView {
        match std::str::from_utf8(bytes) {
            Ok(text) => SiblingView {
                deleted: false,
                value: Some(text.to_string()),
                value_hex: None,
            },
            Err(_) => SiblingView {
                deleted: false,
                value: None,
                value_hex: Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_hex_and_tombstones_render_as_documented() {
        let text = serde_json::to_string(&SiblingView::of_value(b"milk")).expect("json");
        assert_eq!(text, r#"{"value":"milk"}"#);
        let hex = serde_json::to_string(&SiblingView::of_value(&[0xff, 0x01])).expect("json");
        assert_eq!(hex, r#"{"value_hex":"ff01"}"#);
        let gone = serde_json::to_string(&SiblingView::of(&Sibling::Tombstone)).expect("json");
        assert_eq!(gone, r#"{"deleted":true}"#);
    }
}
