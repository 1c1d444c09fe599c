//! `mcp`: authorization per MCP operation (the tool, prompt or resource a request names),
//! with per-tool step-up scopes, claim conditions, per-tool backend scopes and list filtering.

use std::time::Duration;

use serde_json::Value;

use super::duration::duration_at_least;
use super::error::{err, ConfigError};
use super::grammar::{check_scope_token, is_visible_ascii};
use super::reader::Obj;
use crate::mcp::glob::Glob;

/// The methods whose requests name an operation, and the `params` member naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedMethod {
    ToolsCall,
    PromptsGet,
    ResourcesRead,
}

impl NamedMethod {
    pub const ALL: [NamedMethod; 3] = [
        NamedMethod::ToolsCall,
        NamedMethod::PromptsGet,
        NamedMethod::ResourcesRead,
    ];

    pub fn from_method(method: &str) -> Option<NamedMethod> {
        match method {
            "tools/call" => Some(NamedMethod::ToolsCall),
            "prompts/get" => Some(NamedMethod::PromptsGet),
            "resources/read" => Some(NamedMethod::ResourcesRead),
            _ => None,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            NamedMethod::ToolsCall => "tools/call",
            NamedMethod::PromptsGet => "prompts/get",
            NamedMethod::ResourcesRead => "resources/read",
        }
    }

    /// `params.name`, or `params.uri` for `resources/read` (what `Mcp-Name` mirrors).
    pub fn name_member(self) -> &'static str {
        match self {
            NamedMethod::ResourcesRead => "uri",
            NamedMethod::ToolsCall | NamedMethod::PromptsGet => "name",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimTest {
    /// The claim equals this JSON value.
    Equals(Value),
    /// The claim is an array holding this string, or a space-separated string with this word.
    Contains(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimCondition {
    /// Dotted path into the claims (`groups`, `realm_access.roles`).
    pub claim_path: Vec<String>,
    pub test: ClaimTest,
}

/// Backend-token parameters for the calls a rule allows: least privilege per tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeOverride {
    /// Replace `token_exchange.scopes` (`None`: keep them).
    pub scopes: Option<Vec<String>>,
    /// Replace `token_exchange.audience` (`None`: keep it).
    pub audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpRule {
    pub name: String,
    pub methods: Vec<NamedMethod>,
    pub names: Vec<Glob>,
    pub required_scopes: Vec<String>,
    pub claims: Vec<ClaimCondition>,
    pub action: RuleAction,
    pub exchange: Option<ExchangeOverride>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpConfig {
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive before the request is refused.
    pub body_timeout: Duration,
    pub default_action: RuleAction,
    pub filter_lists: bool,
    /// Accept JSON-RPC batches (MCP 2025-03-26; later revisions have none). Off by default:
    /// a batch is one request for Envoy's rate limiters, however many calls it holds.
    pub allow_batches: bool,
    /// A broader scope implies narrower ones (MCP 2026-07-28: servers MUST account for scope
    /// hierarchies): closed transitively at load.
    pub scope_implies: Vec<(String, Vec<String>)>,
    pub rules: Vec<McpRule>,
}

/// Half of Envoy's default buffer limit (1 MiB per connection): the filter must refuse an
/// over-long body itself, with its JSON-RPC answer, before Envoy's own 413 races it.
const DEFAULT_MAX_BODY_BYTES: u64 = 512 * 1024;
const MAX_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The name `default_action` decisions are counted and audited under.
pub const DEFAULT_RULE: &str = "default";

pub(super) fn read_mcp(mut o: Obj) -> Result<McpConfig, ConfigError> {
    let max_body_bytes = o.number("max_body_bytes")?;
    let body_timeout = duration_at_least(
        &mut o,
        "body_timeout",
        DEFAULT_BODY_TIMEOUT,
        Duration::from_millis(100),
    )?;
    let default_action = o.string("default_action")?;
    let filter_lists = o.boolean("filter_lists")?.unwrap_or(false);
    let allow_batches = o.boolean("allow_batches")?.unwrap_or(false);
    let scope_implies = o.string_list_entries("scope_implies")?;
    let rules = o.objects("rules")?;
    o.finish()?;

    let max_body_bytes = max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1024..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
        return Err(err(
            o.at("max_body_bytes"),
            format!("must be between 1024 and {MAX_MAX_BODY_BYTES}"),
        ));
    }
    let default_action = match default_action.as_deref() {
        None => RuleAction::Allow,
        Some(a) => action(&o.at("default_action"), a)?,
    };
    for (scope, implied) in &scope_implies {
        let path = format!("{}.{scope}", o.at("scope_implies"));
        check_scope_token(&path, scope)?;
        for (i, s) in implied.iter().enumerate() {
            check_scope_token(&format!("{path}[{i}]"), s)?;
        }
    }
    let mut read = Vec::with_capacity(rules.len());
    for rule in rules {
        let rule = read_rule(rule)?;
        read.push(rule);
    }
    check_rules(&o.at("rules"), &read)?;
    Ok(McpConfig {
        allow_batches,
        max_body_bytes: max_body_bytes as usize,
        body_timeout,
        default_action,
        filter_lists,
        scope_implies,
        rules: read,
    })
}

fn action(path: &str, value: &str) -> Result<RuleAction, ConfigError> {
    match value {
        "allow" => Ok(RuleAction::Allow),
        "deny" => Ok(RuleAction::Deny),
        _ => Err(err(path, "allow or deny")),
    }
}

fn read_rule(mut o: Obj) -> Result<McpRule, ConfigError> {
    let name = o.string("name")?;
    let methods = o.strings("methods")?;
    let names = o.strings("names")?;
    let required_scopes = o.strings("required_scopes")?.unwrap_or_default();
    let claims = o.objects("claims")?;
    let rule_action = o.string("action")?;
    let exchange = o.object("exchange")?;
    o.finish()?;

    let name = name.ok_or_else(|| err(o.at("name"), "required"))?;
    if !is_visible_ascii(&name) || name.len() > 64 || name.contains('.') {
        return Err(err(
            o.at("name"),
            "1 to 64 printable ASCII characters without space or '.' (it names a counter)",
        ));
    }
    let methods = match methods {
        None => NamedMethod::ALL.to_vec(),
        Some(list) if list.is_empty() => return Err(err(o.at("methods"), "must not be empty")),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, m)| {
                NamedMethod::from_method(m).ok_or_else(|| {
                    err(
                        format!("{}[{i}]", o.at("methods")),
                        "tools/call, prompts/get or resources/read",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let names = names.ok_or_else(|| err(o.at("names"), "required (\"*\" matches every name)"))?;
    if names.is_empty() {
        return Err(err(o.at("names"), "must not be empty"));
    }
    for (i, pattern) in names.iter().enumerate() {
        // Nothing the server reads as a name is empty or holds control characters.
        if pattern.is_empty() || pattern.len() > 1024 || pattern.chars().any(char::is_control) {
            return Err(err(
                format!("{}[{i}]", o.at("names")),
                "a pattern that can never match (empty, over 1024 bytes or control characters)",
            ));
        }
    }
    for (i, s) in required_scopes.iter().enumerate() {
        check_scope_token(&format!("{}[{i}]", o.at("required_scopes")), s)?;
    }
    let claims = claims
        .into_iter()
        .map(read_claim_condition)
        .collect::<Result<_, _>>()?;
    let rule_action = match rule_action.as_deref() {
        None => RuleAction::Allow,
        Some(a) => action(&o.at("action"), a)?,
    };
    let exchange = exchange.map(read_exchange_override).transpose()?;
    if exchange.is_some() && rule_action == RuleAction::Deny {
        return Err(err(o.at("exchange"), "a deny rule exchanges nothing"));
    }
    Ok(McpRule {
        name,
        methods,
        names: names.iter().map(|p| Glob::new(p)).collect(),
        required_scopes,
        claims,
        action: rule_action,
        exchange,
    })
}

fn read_claim_condition(mut o: Obj) -> Result<ClaimCondition, ConfigError> {
    let claim = o.string("claim")?;
    let equals = o.value("equals").cloned();
    let contains = o.string("contains")?;
    o.finish()?;
    let claim = claim.ok_or_else(|| err(o.at("claim"), "required"))?;
    let claim_path: Vec<String> = claim.split('.').map(str::to_string).collect();
    if claim_path.iter().any(String::is_empty) {
        return Err(err(o.at("claim"), "empty claim name or path segment"));
    }
    let test = match (equals, contains) {
        (Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))), None) => {
            ClaimTest::Equals(v)
        }
        (Some(_), None) => return Err(err(o.at("equals"), "a string, number or boolean")),
        (None, Some(word)) if !word.is_empty() => ClaimTest::Contains(word),
        (None, Some(_)) => return Err(err(o.at("contains"), "must not be empty")),
        _ => return Err(err(o.path(), "give exactly one of equals or contains")),
    };
    Ok(ClaimCondition { claim_path, test })
}

fn read_exchange_override(mut o: Obj) -> Result<ExchangeOverride, ConfigError> {
    let scopes = o.strings("scopes")?;
    let audience = o.string("audience")?;
    o.finish()?;
    if let Some(list) = &scopes {
        for (i, s) in list.iter().enumerate() {
            check_scope_token(&format!("{}[{i}]", o.at("scopes")), s)?;
        }
    }
    if let Some(a) = &audience {
        if !is_visible_ascii(a) {
            return Err(err(o.at("audience"), "must be non-empty printable ASCII"));
        }
    }
    if scopes.is_none() && audience.is_none() {
        return Err(err(o.path(), "give scopes, audience or both"));
    }
    Ok(ExchangeOverride { scopes, audience })
}

/// Refuses duplicate rule names and rules that an earlier catch-all makes unreachable.
fn check_rules(path: &str, rules: &[McpRule]) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{path}[{i}].name");
        if rule.name == DEFAULT_RULE {
            return Err(err(here, "\"default\" names the default_action"));
        }
        if rules.iter().take(i).any(|r| r.name == rule.name) {
            return Err(err(here, "another rule has the same name"));
        }
        let shadowed = rule.methods.iter().all(|m| {
            rules.iter().take(i).any(|earlier| {
                earlier.methods.contains(m) && earlier.names.iter().any(Glob::matches_everything)
            })
        });
        if shadowed {
            return Err(err(
                format!("{path}[{i}]"),
                "can never match: an earlier rule matches every name of its methods",
            ));
        }
    }
    Ok(())
}

/// Check that an exchange override is only given when token exchange is configured.
pub(super) fn check_exchange_use(
    path: &str,
    mcp: &McpConfig,
    exchange_configured: bool,
) -> Result<(), ConfigError> {
    if exchange_configured {
        return Ok(());
    }
    match mcp.rules.iter().position(|r| r.exchange.is_some()) {
        Some(i) => Err(err(
            format!("{path}.rules[{i}].exchange"),
            "needs token_exchange to be configured",
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, load};
    use super::*;
    use serde_json::json;

    fn with_mcp(mcp: Value) -> Value {
        let mut v = base();
        v["mcp"] = mcp;
        v
    }

    fn the_issue_example() -> Value {
        json!({
            "max_body_bytes": 1048576,
            "default_action": "allow",
            "filter_lists": true,
            "scope_implies": {"mcp:admin": ["mcp:tools:call", "bigquery:write"]},
            "rules": [
                {"name": "read", "methods": ["tools/call"], "names": ["query_*", "list_datasets"],
                 "required_scopes": ["bigquery:read"], "action": "allow"},
                {"name": "admins-only", "methods": ["tools/call"], "names": ["drop_*"],
                 "claims": [{"claim": "groups", "contains": "dba"}],
                 "required_scopes": ["bigquery:write"], "action": "allow"},
                {"name": "no-secrets", "methods": ["resources/read"], "names": ["file:///etc/*"],
                 "action": "deny"}
            ]
        })
    }

    #[test]
    fn the_documented_example_loads() {
        let c = load(&with_mcp(the_issue_example())).unwrap();
        let mcp = c.mcp.unwrap();
        assert_eq!(mcp.max_body_bytes, 1_048_576);
        assert!(mcp.filter_lists);
        assert_eq!(mcp.rules.len(), 3);
        assert_eq!(mcp.rules[0].methods, [NamedMethod::ToolsCall]);
        assert!(mcp.rules[0].names[0].matches("query_users"));
        assert_eq!(
            mcp.rules[1].claims[0].test,
            ClaimTest::Contains("dba".into())
        );
        assert_eq!(mcp.rules[2].action, RuleAction::Deny);
    }

    #[test]
    fn methods_default_to_the_three_named_ones() {
        let c = load(&with_mcp(json!({"rules": [{"name": "r", "names": ["*"]}]}))).unwrap();
        assert_eq!(c.mcp.unwrap().rules[0].methods, NamedMethod::ALL);
    }

    #[test]
    fn invalid_rules_are_refused_with_their_path() {
        let cases = [
            (
                json!({"rules": [{"name": "r", "names": []}]}),
                "mcp.rules[0].names",
            ),
            (
                json!({"rules": [{"name": "r", "names": [""]}]}),
                "mcp.rules[0].names[0]",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["a\u{1}"]}]}),
                "mcp.rules[0].names[0]",
            ),
            (json!({"rules": [{"name": "r"}]}), "mcp.rules[0].names"),
            (
                json!({"rules": [{"name": "r", "methods": ["tools/list"], "names": ["*"]}]}),
                "mcp.rules[0].methods[0]",
            ),
            (
                json!({"rules": [{"name": "r", "methods": [], "names": ["*"]}]}),
                "mcp.rules[0].methods",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["a"]}, {"name": "r", "names": ["b"]}]}),
                "mcp.rules[1].name",
            ),
            (
                json!({"rules": [{"name": "all", "names": ["*"]}, {"name": "late", "names": ["x"]}]}),
                "mcp.rules[1]",
            ),
            (
                json!({"rules": [{"name": "default", "names": ["x"]}]}),
                "mcp.rules[0].name",
            ),
            (
                json!({"rules": [{"name": "a.b", "names": ["x"]}]}),
                "mcp.rules[0].name",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["x"], "action": "maybe"}]}),
                "mcp.rules[0].action",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["x"], "claims": [{"claim": "g"}]}]}),
                "mcp.rules[0].claims[0]",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["x"],
                                  "claims": [{"claim": "g", "equals": "a", "contains": "b"}]}]}),
                "mcp.rules[0].claims[0]",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["x"], "required_scopes": ["a b"]}]}),
                "mcp.rules[0].required_scopes[0]",
            ),
            (
                json!({"rules": [{"name": "r", "names": ["x"], "exchange": {}}]}),
                "mcp.rules[0].exchange",
            ),
            (
                json!({"scope_implies": {"a": ["b c"]}}),
                "mcp.scope_implies.a[0]",
            ),
            (json!({"default_action": "block"}), "mcp.default_action"),
            (json!({"max_body_bytes": 10}), "mcp.max_body_bytes"),
            (
                json!({"rules": [{"name": "r", "names": ["x"], "nmes": []}]}),
                "mcp.rules[0].nmes",
            ),
        ];
        for (mcp, path) in cases {
            let e = load(&with_mcp(mcp.clone())).unwrap_err();
            assert_eq!(e.path, path, "{mcp}: {e}");
        }
    }

    #[test]
    fn an_exchange_override_needs_token_exchange() {
        let mcp = json!({"rules": [{"name": "r", "names": ["x"],
                                    "exchange": {"scopes": ["backend:read"]}}]});
        let e = load(&with_mcp(mcp)).unwrap_err();
        assert_eq!(e.path, "mcp.rules[0].exchange");
    }
}
