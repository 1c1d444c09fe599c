"""Metrics people can graph: /stats/prometheus of Envoy 1.40 (--concurrency 2) running
envoy/okta-same-idp.yaml as shipped (its plugin configuration, `mcp` rules and stats_config;
token exchange at the test STS), scraped and parsed.

Checked: the per-reason and per-rule counters are labels of one metric each
(mcp_auth_denied{reason="token_expired"}, mcp_auth_mcp_allowed{rule="read"}) with the right
values, no reason or rule is left in a metric name, and every series matches its /stats counter;
every shipped Envoy configuration carries the same stats_config (and the Istio bootstrap override
of docs/observability.md the same tags); that page's tables list exactly the metrics and reasons
Envoy exposes, its alert rules name only series and reasons that exist, and its header-based
access-log format names the verified caller and the MCP operation.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import yaml

from harness import Envoy, IdentityProvider, SecurityTokenService
from harness.checks import bearer, new_marker
from harness.envoy import REPO, example_hcm, load_example
from harness.exchange import OKTA, ExchangeProfile
from harness.mcp_policy import BQ_READ, MCP_CALL, modern_post, post_headers, request, tool_call
from harness.net import wait_until
from harness.prometheus import Exposition, scrape

pytestmark = pytest.mark.usefixtures("vm_never_fails")

DOC = REPO / "docs" / "observability.md"
FAMILY = re.compile(r"\bmcp_auth_[a-z_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
STS_LATENCY = "mcp_auth_exchange_sts_latency_ms"
WASM_TYPE = "envoy.extensions.filters.http.wasm.v3.Wasm"  # a file with it carries the filter
# Seconds: Envoy buffers access-log lines and writes them from a thread of its own (seen: 3.4 s
# late on this loaded 2-core machine).
ACCESS_LOG_WAIT = 15


def doc_block(marker: str) -> str:
    """The fenced code block after `<!-- marker -->` in docs/observability.md, unindented."""
    text = DOC.read_text()
    start = text.index(f"<!-- {marker} -->")
    match = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.S | re.M).search(text, start)
    assert match is not None, f"no yaml block after the {marker} marker"
    indent = match.group(1)
    return "".join(line.removeprefix(indent) for line in match.group(2).splitlines(keepends=True))


def doc_table_column(header: str) -> set[str]:
    """The backquoted first cells of the docs table whose header row starts with `header`."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    cells = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        first = line.split("|")[1].strip()
        cells.add(re.sub(r"^`([^`]+)`.*", r"\1", first))
    return cells


# ---- the stack --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exchange() -> ExchangeProfile:
    return OKTA


@pytest.fixture(scope="module")
def envoy_options(sts: SecurityTokenService, sts_secret: str) -> dict[str, Any]:
    """envoy/okta-same-idp.yaml with the docs' header-based access log added."""
    access_log = yaml.safe_load(doc_block("access-log-headers"))["access_log"]

    def add_access_log(config: dict[str, Any]) -> None:
        example_hcm(config).setdefault("access_log", []).extend(access_log)

    return {**OKTA.envoy_options(sts.port, sts_secret), "config_patch": add_access_log}


def mcp_token(idp: IdentityProvider, envoy: Envoy, sub: str) -> str:
    """An analyst: mcp:tools:call and bigquery:read, not in the dba group (fresh jti: tokens are
    exchange-cache keys)."""
    return idp.mint(sub=sub, aud=f"{envoy.url}/mcp", jti=new_marker(), scp=[MCP_CALL, BQ_READ], groups=["analysts"])


def post(envoy: Envoy, body: bytes, headers: dict[str, str]) -> int:
    return httpx.post(f"{envoy.url}/mcp", content=body, headers=headers, timeout=10).status_code


def settled(envoy: Envoy, check: Callable[[Exposition], bool]) -> Exposition:
    """The first scrape that passes `check` (counters are live; histograms wait for a flush)."""
    def passing() -> Exposition | None:
        exposition = scrape(envoy.admin_url)
        return exposition if check(exposition) else None

    return wait_until(passing, 10, what="a scrape showing the requests just made")


def access_lines(envoy: Envoy) -> list[dict[str, Any]]:
    """The docs' access-log lines Envoy wrote (stderr, like its own log)."""
    lines = []
    for line in envoy.log_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("access") == "mcp":
                lines.append(entry)
    return lines


# ---- every shipped configuration ----------------------------------------------------------

def shipped_envoy_configs() -> dict[str, dict[str, Any]]:
    """Every shipped Envoy bootstrap that carries the filter, by path."""
    configs = {}
    for path in [*sorted((REPO / "envoy").glob("*.yaml")), REPO / "deploy" / "compose" / "envoy.yaml"]:
        if WASM_TYPE in path.read_text():
            configs[str(path.relative_to(REPO))] = load_example(path)
    configmap = yaml.safe_load((REPO / "deploy" / "kubernetes" / "envoy-configmap.yaml").read_text())
    configs["deploy/kubernetes/envoy-configmap.yaml"] = yaml.safe_load(configmap["data"]["envoy.yaml"])
    return configs


def test_every_shipped_config_has_the_same_stats_config() -> None:
    configs = shipped_envoy_configs()
    assert len(configs) >= 6, sorted(configs)
    reference = configs["envoy/envoy.yaml"]["stats_config"]
    assert {t["tag_name"] for t in reference["stats_tags"]} == {"reason", "rule"}
    differing = [path for path, config in configs.items() if config.get("stats_config") != reference]
    assert not differing, f"stats_config differs from envoy/envoy.yaml's in {differing}"

    # The docs show the block as shipped, and Istio's bootstrap override carries the same tags.
    documented = re.search(r"```yaml\n(stats_config:\n.*?)```", DOC.read_text(), re.S)
    assert documented is not None and yaml.safe_load(documented.group(1))["stats_config"] == reference
    override = yaml.safe_load(doc_block("istio-bootstrap-override"))
    assert override["kind"] == "ConfigMap"
    assert json.loads(override["data"]["custom_bootstrap.json"]) == {"stats_config": reference}


# ---- labelled series ------------------------------------------------------------------------

def test_token_denials_are_one_metric_labelled_by_reason(envoy: Envoy, idp: IdentityProvider) -> None:
    before = scrape(envoy.admin_url)
    now = int(time.time())
    expired = idp.mint(sub="expired", exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    no_scope = idp.mint(sub="no-scope", scp=["other"])
    with httpx.Client(base_url=envoy.url, timeout=10) as client:
        assert client.get("/echo", headers=bearer(idp.mint(sub="allowed", jti=new_marker()))).status_code == 200
        assert client.get("/echo").status_code == 401
        assert client.get("/echo", headers=bearer(expired)).status_code == 401
        assert client.get("/echo", headers=bearer(no_scope)).status_code == 403

    def denials(exposition: Exposition) -> float:
        return sum(exposition.label_values("mcp_auth_denied", "reason").values())

    after = settled(envoy, lambda s: denials(s) >= denials(before) + 3)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert after.types["mcp_auth_denied"] == "counter"
    assert {r: delta("mcp_auth_denied", reason=r) for r in ("missing_token", "token_expired", "insufficient_scope")} \
        == {"missing_token": 1, "token_expired": 1, "insufficient_scope": 1}
    # No separate total: every refusal has a reason, so summing over reasons counts each once.
    assert denials(after) - denials(before) == 3
    assert ("mcp_auth_denied", frozenset()) not in after.samples, "an unlabelled total would be counted twice"
    assert delta("mcp_auth_allowed") == 1
    assert delta("mcp_auth_exchange_cache_miss") == 1

    leftover = sorted(n for n in after.names() if n.startswith("mcp_auth_denied_"))
    assert not leftover, f"reasons left in metric names: {leftover}"
    # Every per-reason counter of /stats is exactly one labelled series, with its value.
    stats = envoy.stats()
    by_reason = {name.removeprefix("mcp_auth.denied."): value for name, value in stats.items()
                 if name.startswith("mcp_auth.denied.")}
    assert len(by_reason) >= 27
    assert after.label_values("mcp_auth_denied", "reason") == pytest.approx(by_reason)
    assert "mcp_auth.denied" not in stats


def test_mcp_rules_are_one_metric_labelled_by_rule(envoy: Envoy, idp: IdentityProvider) -> None:
    token = mcp_token(idp, envoy, "rule-counter")
    before = scrape(envoy.admin_url)
    calls = {"read": tool_call("query_users", request_id=1), "default": tool_call("whoami", request_id=2),
             "admins-only": tool_call("drop_table", {"table": "t"}, request_id=3),
             "no-secrets": request("resources/read", {"uri": "file:///etc/passwd"}, request_id=4)}
    statuses = {rule: post(envoy, *modern_post(token, message)) for rule, message in calls.items()}
    assert statuses == {"read": 200, "default": 200, "admins-only": 403, "no-secrets": 403}

    after = settled(envoy, lambda s: s.value("mcp_auth_mcp_denied", rule="no-secrets")
                    > before.value("mcp_auth_mcp_denied", rule="no-secrets"))

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert (after.types["mcp_auth_mcp_allowed"], after.types["mcp_auth_mcp_denied"]) == ("counter", "counter")
    assert (delta("mcp_auth_mcp_allowed", rule="read"), delta("mcp_auth_mcp_allowed", rule="default")) == (1, 1)
    assert (delta("mcp_auth_mcp_denied", rule="admins-only"), delta("mcp_auth_mcp_denied", rule="no-secrets")) == (1, 1)
    assert delta("mcp_auth_mcp_allowed", rule="admins-only") == delta("mcp_auth_mcp_denied", rule="read") == 0
    # The gate's refusals are denials too, under their own reasons.
    assert delta("mcp_auth_denied", reason="mcp_forbidden") == 2
    assert sum(after.label_values("mcp_auth_denied", "reason").values()) \
        - sum(before.label_values("mcp_auth_denied", "reason").values()) == 2

    rules = set(after.label_values("mcp_auth_mcp_allowed", "rule"))
    assert rules == set(after.label_values("mcp_auth_mcp_denied", "rule")) == {
        "read", "admins-only", "no-secrets", "default"}
    leftover = sorted(n for n in after.names() if re.match(r"mcp_auth_mcp_(allowed|denied)_", n))
    assert not leftover, f"rules left in metric names: {leftover}"
    stats = envoy.stats()
    for kind in ("allowed", "denied"):
        assert after.label_values(f"mcp_auth_mcp_{kind}", "rule") == pytest.approx(
            {rule: stats[f"mcp_auth.mcp.{kind}.{rule}"] for rule in rules})


def test_sts_latency_is_a_histogram(envoy: Envoy, idp: IdentityProvider) -> None:
    before = scrape(envoy.admin_url)
    token = mcp_token(idp, envoy, "latency")
    assert post(envoy, *modern_post(token, tool_call("whoami"))) == 200  # a new token: one STS call

    after = settled(envoy, lambda s: s.value(f"{STS_LATENCY}_count") > before.value(f"{STS_LATENCY}_count"))
    assert after.types[STS_LATENCY] == "histogram"
    buckets = after.label_values(f"{STS_LATENCY}_bucket", "le")
    assert buckets["+Inf"] == after.value(f"{STS_LATENCY}_count")
    counts = [count for _, count in sorted((float(le), count) for le, count in buckets.items())]
    assert counts == sorted(counts), "bucket counts must be cumulative"
    assert after.value(f"{STS_LATENCY}_sum") >= before.value(f"{STS_LATENCY}_sum")


# ---- the docs against the scrape ----------------------------------------------------------

def test_the_docs_list_every_metric_and_reason(envoy: Envoy) -> None:
    exposed = scrape(envoy.admin_url)
    ours = {name for name in exposed.types if name.startswith("mcp_auth_")}
    documented = {re.sub(r"[{ (].*", "", cell) for cell in doc_table_column("Prometheus series")}
    assert documented == ours
    assert doc_table_column("`reason`") == set(exposed.label_values("mcp_auth_denied", "reason"))


def test_the_alert_rules_use_series_envoy_exposes(envoy: Envoy) -> None:
    exposed = scrape(envoy.admin_url)
    reasons = set(exposed.label_values("mcp_auth_denied", "reason"))
    rules = yaml.safe_load(doc_block("alert-rules"))["groups"][0]["rules"]
    assert len(rules) >= 5
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
        named = set(FAMILY.findall(rule["expr"]))
        assert named, rule["alert"]
        for name in named:
            base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            assert name in exposed.names() or exposed.types.get(base) == "histogram", f"{rule['alert']}: {name}"
        for matcher in re.findall(r'reason=~?"([^"]+)"', rule["expr"]):
            assert set(matcher.split("|")) <= reasons, f"{rule['alert']}: unknown reason in {matcher}"


# ---- the access log ---------------------------------------------------------------------------

def test_header_access_log_names_the_caller_and_the_operation(envoy: Envoy, idp: IdentityProvider) -> None:
    user = f"logged-{new_marker()}"
    token = mcp_token(idp, envoy, user)
    forged = f"forged-{new_marker()}"
    # A legacy client sends no Mcp-Method / Mcp-Name: the filter sets them from the body, and
    # replaces the caller header this one forged. (The SDK server answers 400 to a legacy call
    # outside a session; the filter let it through.)
    legacy = json.dumps(tool_call("query_users", request_id=8, modern=False)).encode()
    legacy_status = post(envoy, legacy, post_headers(token, **{"x-mcp-user-sub": forged}))
    assert httpx.get(f"{envoy.url}/echo", headers={"x-mcp-user-sub": forged}, timeout=10).status_code == 401

    allowed = wait_until(lambda: next((a for a in access_lines(envoy) if a["user"] == user), None), ACCESS_LOG_WAIT,
                         what="the access-log line of the allowed call")
    assert (allowed["status"], allowed["method"], allowed["path"]) == (legacy_status, "POST", "/mcp")
    assert (allowed["mcp_method"], allowed["mcp_name"]) == ("tools/call", "query_users")
    assert allowed["upstream"], allowed
    audit = envoy.wait_for_audit(lambda a: a.get("user") == user)
    assert (audit["outcome"], audit["rule"], audit["status"]) == ("allow", "read", legacy_status)
    # A refused request keeps the client's headers: the docs say to trust `user` only with an upstream.
    refused = wait_until(lambda: next((a for a in access_lines(envoy) if a["user"] == forged), None), ACCESS_LOG_WAIT,
                         what="the access-log line of the refused request")
    assert (refused["status"], refused["upstream"]) == (401, None), refused
    assert token not in envoy.log_text()
