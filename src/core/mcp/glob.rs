//! Name patterns of MCP rules: `*` matches any run of characters (none included); every other
//! character matches itself. Compared on the name as the server reads it (JSON-unescaped).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The literal pieces between the `*`s; the pattern is `pieces.join("*")`.
    pieces: Vec<String>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pieces: pattern.split('*').map(str::to_string).collect(),
        }
    }

    /// Whether the pattern matches every name (`*`, `**`, …).
    pub fn matches_everything(&self) -> bool {
        self.pieces.iter().all(String::is_empty)
    }

    pub fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return name.is_empty(),
        };
        let Some(mut remaining) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            // No `*`: the whole name is the literal.
            return remaining.is_empty();
        };
        // Each middle piece at its first occurrence (leftmost is always best for `*` only).
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = remaining.get(at + piece.len()..).unwrap_or_default(),
                None => return false,
            }
        }
        remaining.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_match_any_run() {
        let cases = [
            ("query_*", "query_users", true),
            ("query_*", "query_", true),
            ("query_*", "xquery_users", false),
            ("*_table", "drop_table", true),
            ("drop_*_table", "drop_big_table", true),
            ("drop_*_table", "drop_table", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "acb", false),
            ("list_datasets", "list_datasets", true),
            ("list_datasets", "list_datasets2", false),
            ("file:///etc/*", "file:///etc/passwd", true),
            ("file:///etc/*", "file:///etcetera", false),
            ("*", "", true),
            ("ab*ab", "ab", false),
            ("ab*ab", "abab", true),
            ("grüße*", "grüße-welt", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(name),
                expected,
                "{pattern} {name}"
            );
        }
        assert!(Glob::new("**").matches_everything());
        assert!(!Glob::new("a*").matches_everything());
    }
}
