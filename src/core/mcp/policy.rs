//! The decision for one MCP operation: the first rule whose methods and names match decides;
//! its claim conditions must all hold and the caller must have every scope the operation needs
//! (the top-level `required_scopes` and the rule's), else the answer is a step-up challenge
//! naming all of them; `default_action` applies when no rule matches.

use serde_json::Value;

use crate::config::{
    ClaimCondition, ClaimTest, ExchangeOverride, McpConfig, McpRule, NamedMethod, RuleAction,
    DEFAULT_RULE,
};
use crate::mcp::message::Operation;
use crate::token_cache::Identity;

/// Which rule decided: one of the configuration's, or `default_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleId {
    Rule(usize),
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    Allow {
        rule: RuleId,
        /// The rule's backend-token parameters for this call.
        exchange: Option<&'a ExchangeOverride>,
    },
    /// The caller lacks scopes: these are all the operation needs (for one 403 challenge).
    StepUp { rule: RuleId, scopes: Vec<String> },
    /// Refused by the rule's action or its claim conditions: no scope would help.
    Deny { rule: RuleId },
}

impl Verdict<'_> {
    pub fn rule(&self) -> RuleId {
        match self {
            Verdict::Allow { rule, .. } | Verdict::StepUp { rule, .. } | Verdict::Deny { rule } => {
                *rule
            }
        }
    }
}

pub struct Policy {
    rules: Vec<McpRule>,
    default_action: RuleAction,
    /// The top-level `required_scopes`, needed by every operation too.
    required_scopes: Vec<String>,
}

impl Policy {
    pub fn new(mcp: &McpConfig, required_scopes: &[String]) -> Policy {
        Policy {
            rules: mcp.rules.clone(),
            default_action: mcp.default_action,
            required_scopes: required_scopes.to_vec(),
        }
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.name.as_str())
            .chain(std::iter::once(DEFAULT_RULE))
    }

    pub fn rule_name(&self, rule: RuleId) -> &str {
        match rule {
            RuleId::Rule(i) => self.rules.get(i).map_or(DEFAULT_RULE, |r| r.name.as_str()),
            RuleId::Default => DEFAULT_RULE,
        }
    }

    pub fn judge(&self, operation: &Operation, caller: &Identity) -> Verdict<'_> {
        let matched = self.rules.iter().enumerate().find(|(_, rule)| {
            rule.methods.contains(&operation.method)
                && rule.names.iter().any(|g| g.matches(&operation.name))
        });
        let Some((index, rule)) = matched else {
            return match self.default_action {
                RuleAction::Allow => self.with_scopes(RuleId::Default, &[], caller, None),
                RuleAction::Deny => Verdict::Deny {
                    rule: RuleId::Default,
                },
            };
        };
        let id = RuleId::Rule(index);
        if rule.action == RuleAction::Deny || !rule.claims.iter().all(|c| holds(c, caller)) {
            return Verdict::Deny { rule: id };
        }
        self.with_scopes(id, &rule.required_scopes, caller, rule.exchange.as_ref())
    }

    /// Allowed if the caller has every scope needed; else a step-up naming them all.
    fn with_scopes<'a>(
        &'a self,
        rule: RuleId,
        rule_scopes: &[String],
        caller: &Identity,
        exchange: Option<&'a ExchangeOverride>,
    ) -> Verdict<'a> {
        let needed: Vec<String> =
            self.required_scopes
                .iter()
                .chain(rule_scopes)
                .fold(Vec::new(), |mut all, s| {
                    if !all.contains(s) {
                        all.push(s.clone());
                    }
                    all
                });
        if needed.iter().all(|s| caller.scopes.contains(s)) {
            Verdict::Allow { rule, exchange }
        } else {
            Verdict::StepUp {
                rule,
                scopes: needed,
            }
        }
    }

    /// Whether a list may show this entry: the call it leads to would be allowed as it is.
    pub fn shows(&self, method: NamedMethod, name: &str, caller: &Identity) -> bool {
        let operation = Operation {
            method,
            name: name.to_string(),
        };
        matches!(self.judge(&operation, caller), Verdict::Allow { .. })
    }

    /// The dotted claim paths the rules look at (kept with a verified identity).
    pub fn claim_paths(mcp: &McpConfig) -> Vec<Vec<String>> {
        let mut paths: Vec<Vec<String>> = Vec::new();
        for condition in mcp.rules.iter().flat_map(|r| &r.claims) {
            if !paths.contains(&condition.claim_path) {
                paths.push(condition.claim_path.clone());
            }
        }
        paths
    }
}

fn holds(condition: &ClaimCondition, caller: &Identity) -> bool {
    let Some(value) = caller.claim(&condition.claim_path) else {
        return false;
    };
    match &condition.test {
        ClaimTest::Equals(expected) => value == expected,
        ClaimTest::Contains(word) => match value {
            Value::Array(items) => items.iter().any(|i| i.as_str() == Some(word.as_str())),
            Value::String(s) => s.split(' ').any(|w| w == word),
            _ => false,
        },
    }
}

/// Every scope a token's scopes imply, transitively (MCP 2026-07-28: servers MUST account for
/// scope hierarchies). The result keeps the token's own scopes first.
pub fn effective_scopes(scopes: &[String], implies: &[(String, Vec<String>)]) -> Vec<String> {
    let mut all = scopes.to_vec();
    let mut i = 0;
    while let Some(scope) = all.get(i).cloned() {
        for (broad, narrower) in implies {
            if *broad == scope {
                for s in narrower {
                    if !all.contains(s) {
                        all.push(s.clone());
                    }
                }
            }
        }
        i += 1;
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ProviderId};
    use crate::time::UnixSeconds;
    use serde_json::json;

    fn policy(mcp: Value, required: &[&str]) -> (Policy, McpConfig) {
        let doc = json!({
            "resource": "https://mcp.example.com/mcp",
            "scopes_supported": ["mcp:tools:call", "bigquery:read", "bigquery:write"],
            "required_scopes": required,
            "providers": {"p": {"issuer": "https://idp",
                "remote_jwks": {"http_uri": {"uri": "https://idp/jwks", "cluster": "idp"}}}},
            "mcp": mcp,
        });
        let config = Config::from_json(doc.to_string().as_bytes()).unwrap();
        let mcp = config.mcp.clone().unwrap();
        (Policy::new(&mcp, &config.required_scopes), mcp)
    }

    fn caller(scopes: &[&str], claims: Value) -> Identity {
        let claims = claims
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (vec![k.clone()], v.clone()))
            .collect();
        Identity {
            provider: ProviderId(0),
            issuer: "https://idp".into(),
            subject: Some("alice".into()),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: UnixSeconds(0),
            headers: Vec::new(),
            claims,
        }
    }

    fn call(name: &str) -> Operation {
        Operation {
            method: NamedMethod::ToolsCall,
            name: name.into(),
        }
    }

    fn bigquery() -> Value {
        json!({
            "default_action": "deny",
            "scope_implies": {"mcp:admin": ["mcp:tools:call", "bigquery:write"]},
            "rules": [
                {"name": "read", "methods": ["tools/call"], "names": ["query_*", "list_datasets"],
                 "required_scopes": ["bigquery:read"]},
                {"name": "admins-only", "methods": ["tools/call"], "names": ["drop_*"],
                 "claims": [{"claim": "groups", "contains": "dba"}],
                 "required_scopes": ["bigquery:write"]},
                {"name": "no-secrets", "methods": ["resources/read"], "names": ["file:///etc/*"],
                 "action": "deny"}
            ]
        })
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let (p, _) = policy(bigquery(), &["mcp:tools:call"]);
        let reader = caller(
            &["mcp:tools:call", "bigquery:read"],
            json!({"groups": ["eng"]}),
        );
        assert_eq!(
            p.judge(&call("query_users"), &reader),
            Verdict::Allow {
                rule: RuleId::Rule(0),
                exchange: None
            }
        );
        assert_eq!(
            p.judge(&call("unknown_tool"), &reader),
            Verdict::Deny {
                rule: RuleId::Default
            }
        );
        let secrets = Operation {
            method: NamedMethod::ResourcesRead,
            name: "file:///etc/passwd".into(),
        };
        assert_eq!(
            p.judge(&secrets, &reader),
            Verdict::Deny {
                rule: RuleId::Rule(2)
            }
        );
        assert_eq!(p.rule_name(RuleId::Rule(1)), "admins-only");
    }

    #[test]
    fn missing_scopes_step_up_with_every_scope_needed() {
        let (p, _) = policy(bigquery(), &["mcp:tools:call"]);
        let dba_without_write = caller(
            &["mcp:tools:call", "bigquery:read"],
            json!({"groups": ["dba"]}),
        );
        assert_eq!(
            p.judge(&call("drop_table"), &dba_without_write),
            Verdict::StepUp {
                rule: RuleId::Rule(1),
                scopes: vec!["mcp:tools:call".into(), "bigquery:write".into()]
            }
        );
    }

    #[test]
    fn failed_claim_conditions_deny_without_step_up() {
        let (p, _) = policy(bigquery(), &[]);
        let not_dba = caller(&["bigquery:write"], json!({"groups": "eng ops"}));
        assert_eq!(
            p.judge(&call("drop_table"), &not_dba),
            Verdict::Deny {
                rule: RuleId::Rule(1)
            }
        );
        let dba_in_a_string = caller(&["bigquery:write"], json!({"groups": "eng dba"}));
        assert!(matches!(
            p.judge(&call("drop_table"), &dba_in_a_string),
            Verdict::Allow { .. }
        ));
        let no_claim = caller(&["bigquery:write"], json!({}));
        assert!(matches!(
            p.judge(&call("drop_table"), &no_claim),
            Verdict::Deny { .. }
        ));
    }

    #[test]
    fn equals_compares_json_values() {
        let (p, _) = policy(
            json!({"rules": [{"name": "tenant", "names": ["*"],
                              "claims": [{"claim": "tenant", "equals": "acme"}]}]}),
            &[],
        );
        assert!(matches!(
            p.judge(&call("x"), &caller(&[], json!({"tenant": "acme"}))),
            Verdict::Allow { .. }
        ));
        assert!(matches!(
            p.judge(&call("x"), &caller(&[], json!({"tenant": ["acme"]}))),
            Verdict::Deny { .. }
        ));
    }

    #[test]
    fn scope_hierarchies_are_closed_transitively() {
        let implies = vec![
            ("mcp:admin".to_string(), vec!["bigquery:admin".to_string()]),
            (
                "bigquery:admin".to_string(),
                vec!["bigquery:write".to_string()],
            ),
        ];
        assert_eq!(
            effective_scopes(&["mcp:admin".into()], &implies),
            ["mcp:admin", "bigquery:admin", "bigquery:write"]
        );
        assert_eq!(effective_scopes(&["other".into()], &implies), ["other"]);
    }

    #[test]
    fn lists_show_only_what_a_call_would_allow() {
        let (p, mcp) = policy(bigquery(), &[]);
        let reader = caller(&["bigquery:read"], json!({"groups": ["dba"]}));
        assert!(p.shows(NamedMethod::ToolsCall, "query_users", &reader));
        assert!(
            !p.shows(NamedMethod::ToolsCall, "drop_table", &reader),
            "needs step-up"
        );
        assert!(!p.shows(NamedMethod::ToolsCall, "anything_else", &reader));
        assert_eq!(Policy::claim_paths(&mcp), vec![vec!["groups".to_string()]]);
        let names: Vec<&str> = p.rule_names().collect();
        assert_eq!(names, ["read", "admins-only", "no-secrets", "default"]);
    }
}
