"""Every Kubernetes and Istio manifest under deploy/ against its schema, without a cluster.

- Kubernetes' own kinds (Namespace, Secret, ConfigMap, Deployment, Service): the OpenAPI
  schemas of Kubernetes 1.37 (PyPI kubernetes-validate), strict: an unknown field is an error.
- Istio's kinds (WasmPlugin, EnvoyFilter, ServiceEntry, DestinationRule, Gateway,
  VirtualService): the JSON schemas of Istio's CRDs (npm @kubernetes-models/istio, installed in
  tests/schemas/ by scripts/setup.sh; tests/schemas/validate_istio.mjs runs them). These schemas,
  like the CRDs, accept unknown fields, and the free-form parts (an EnvoyFilter patch's value, a
  WasmPlugin's pluginConfig) are not checked here: Envoy loads those (test_shipped_configs.py).
  Istio's CEL rules and istiod's validation webhook are not run.
Every manifest must be covered by one of the two: a kind neither knows fails the test. Each
validator is also shown a broken manifest, so a green run means it looked.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import ValidationError, validate

from harness.envoy import REPO

DEPLOY = REPO / "deploy"
SCHEMAS = REPO / "tests" / "schemas"
ISTIO_VALIDATOR = SCHEMAS / "validate_istio.mjs"
KUBERNETES_VERSION = "1.37.0"


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file, document) of every Kubernetes object under deploy/ (Envoy's own YAML files are not)."""
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                found.append((str(path.relative_to(REPO)), document))
    return found


def is_istio(document: dict[str, Any]) -> bool:
    return str(document["apiVersion"]).split("/")[0].endswith(".istio.io")


def label(file: str, document: dict[str, Any]) -> str:
    return f"{file}#{document['kind']}/{document['metadata']['name']}"


MANIFESTS = manifests()
CORE = [(f, d) for f, d in MANIFESTS if not is_istio(d)]
ISTIO = [(f, d) for f, d in MANIFESTS if is_istio(d)]


def validate_istio(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Istio validator's verdict on each document, in order."""
    if not (SCHEMAS / "node_modules" / "@kubernetes-models" / "istio").is_dir():
        pytest.fail("tests/schemas/node_modules is missing: run scripts/setup.sh")
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: run scripts/setup.sh"
    result = subprocess.run([node, str(ISTIO_VALIDATOR)], input=json.dumps(documents), capture_output=True,
                            text=True, timeout=60, cwd=SCHEMAS, check=True)
    verdicts: list[dict[str, Any]] = json.loads(result.stdout)
    assert len(verdicts) == len(documents)
    return verdicts


def core_errors(document: dict[str, Any]) -> str | None:
    """The first schema violation; a kind without a schema raises SchemaNotFoundError."""
    try:
        validate(document, KUBERNETES_VERSION, strict=True)
    except ValidationError as e:
        return str(e.message)
    return None


def test_every_manifest_is_covered() -> None:
    kinds = {d["kind"] for _, d in MANIFESTS}
    assert kinds >= {"Namespace", "Secret", "ConfigMap", "Deployment", "Service", "WasmPlugin", "EnvoyFilter",
                     "ServiceEntry", "DestinationRule", "Gateway", "VirtualService"}, kinds
    for (file, document), verdict in zip(ISTIO, validate_istio([d for _, d in ISTIO]), strict=True):
        assert verdict["schema"], f"no Istio schema for {label(file, document)}"
    # A core kind without a schema raises SchemaNotFoundError in test_kubernetes_manifests_match_their_schemas.


@pytest.mark.parametrize(("file", "document"), CORE, ids=[label(f, d) for f, d in CORE])
def test_kubernetes_manifests_match_their_schemas(file: str, document: dict[str, Any]) -> None:
    assert core_errors(document) is None


def test_istio_manifests_match_their_crd_schemas() -> None:
    verdicts = validate_istio([d for _, d in ISTIO])
    failed = {label(f, d): v["errors"] for (f, d), v in zip(ISTIO, verdicts, strict=True) if v["errors"]}
    assert failed == {}


def test_the_validators_reject_broken_manifests() -> None:
    (_, deployment) = next((f, d) for f, d in CORE if d["kind"] == "Deployment")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["replica"] = 2
    assert core_errors(wrong_type) is not None and core_errors(unknown_field) is not None

    (_, plugin) = next((f, d) for f, d in ISTIO if d["kind"] == "WasmPlugin")
    (_, envoy_filter) = next((f, d) for f, d in ISTIO if d["kind"] == "EnvoyFilter")
    bad_phase = copy.deepcopy(plugin)
    bad_phase["spec"]["phase"] = "BEFORE_EVERYTHING"
    bad_patch = copy.deepcopy(envoy_filter)
    bad_patch["spec"]["configPatches"][0]["applyTo"] = "WASM"
    assert all(v["errors"] for v in validate_istio([bad_phase, bad_patch]))


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_under_deploy_is_a_manifest_or_an_envoy_config(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document is not None:
            assert ("apiVersion" in document and "kind" in document) or "static_resources" in document, path
