//! The configurations the documentation shows load as shown: every ```json block of the README
//! and docs/ that is a whole plugin configuration (it has `resource` and `providers`) is read
//! by the real config reader. Fragments (a provider, a `token_exchange` block) are checked by
//! being part of such a whole somewhere, not here.

use std::path::{Path, PathBuf};

use mcp_auth_core::config::Config;

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files
}

fn json_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```json") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_whole_configuration_in_the_docs_loads() {
    // Secrets named in the docs resolve to a placeholder, as an operator's VM would provide.
    let env = |_: &str| Some("documented-secret".to_string());
    let mut checked = 0;
    for file in documents() {
        let text = std::fs::read_to_string(&file).unwrap();
        for block in json_blocks(&text) {
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&block) else {
                continue;
            };
            if doc.get("resource").is_none() || doc.get("providers").is_none() {
                continue;
            }
            if let Err(e) = Config::from_json_with_env(block.as_bytes(), &env) {
                panic!(
                    "{}: a documented configuration does not load: {e:?}\n{block}",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "only {checked} whole configurations found in the docs"
    );
}
