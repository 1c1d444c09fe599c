"""`make oci` (scripts/build_oci.py): the OCI image layout Istio's WasmPlugin pulls (`url: oci://`).

Checks the layout against the OCI image-layout rules (content-addressed blobs, index, manifest),
and reads it back the way Istio does (istio pkg/wasm/imagefetcher.go, "compat" variant: the
last layer is application/vnd.oci.image.layer.v1.tar+gzip and holds plugin.wasm), so the module
Istio would load is byte for byte the built one. The build is reproducible. If skopeo is
installed, it must read the layout too.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from harness.envoy import REPO, WASM_PATH

SCRIPT = REPO / "scripts" / "build_oci.py"


def build(out: Path, tag: str = "test") -> str:
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--tag", tag],
                            capture_output=True, text=True, timeout=60, check=True)
    return result.stdout


def blob(layout: Path, descriptor: dict[str, Any]) -> bytes:
    algorithm, digest = descriptor["digest"].split(":")
    data = (layout / "blobs" / algorithm / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest and len(data) == descriptor["size"], descriptor
    return data


def manifest_of(layout: Path, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    (descriptor,) = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag]
    assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    return descriptor, json.loads(blob(layout, descriptor))


def istio_extract(layout: Path, manifest: dict[str, Any]) -> bytes:
    """What Istio's extractOCIStandardImage does with the image."""
    layer = manifest["layers"][-1]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer)))) as tar:
        for member in tar:
            if Path(member.name).name == "plugin.wasm":
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
    raise AssertionError("plugin.wasm not in the layer")


def test_layout_holds_the_built_module_as_istio_reads_it(tmp_path: Path) -> None:
    layout = tmp_path / "oci"
    output = build(layout, "1.2.3")
    descriptor, manifest = manifest_of(layout, "1.2.3")
    assert descriptor["digest"] in output, "the digest for WasmPlugin.sha256 is printed"
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == descriptor["mediaType"]
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = json.loads(blob(layout, manifest["config"]))
    (layer,) = manifest["layers"]
    uncompressed = gzip.decompress(blob(layout, layer))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(uncompressed).hexdigest()}"]}
    assert istio_extract(layout, manifest) == WASM_PATH.read_bytes()
    files = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert files == {d["digest"].split(":")[1] for d in (descriptor, manifest["config"], layer)}


def test_build_is_reproducible(tmp_path: Path) -> None:
    build(tmp_path / "a")
    build(tmp_path / "b")
    assert manifest_of(tmp_path / "a", "test")[0] == manifest_of(tmp_path / "b", "test")[0]


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed (optional check)")
def test_skopeo_reads_the_layout(tmp_path: Path) -> None:
    build(tmp_path / "oci", "0.0.1")
    inspected = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{tmp_path / 'oci'}:0.0.1"], check=True,
                                          capture_output=True, text=True, timeout=60).stdout)
    descriptor, _ = manifest_of(tmp_path / "oci", "0.0.1")
    assert inspected["Digest"] == descriptor["digest"]
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{tmp_path / 'oci'}:0.0.1", f"dir:{tmp_path / 'copy'}"],
                   check=True, timeout=60)
