#!/usr/bin/env python3
"""Package the built filter as an OCI image for Istio's WasmPlugin (`url: oci://...`), without
Docker: writes an OCI image layout directory (https://github.com/opencontainers/image-spec,
image-layout.md) that oras, crane or skopeo can push to any registry.

The image is the "compat" variant Istio pulls (istio pkg/wasm/imagefetcher.go, spec:
solo-io/wasm spec-compat.md): one layer, media type application/vnd.oci.image.layer.v1.tar+gzip,
holding the module as `plugin.wasm`. The build is reproducible: fixed timestamps, owners and
modes, so the same .wasm always gives the same manifest digest (the WasmPlugin `sha256`).

    scripts/build_oci.py [--wasm PATH] [--out DIR] [--tag TAG]

Prints the layout path, the tag and the manifest digest. Push, for example:
    oras cp --from-oci-layout target/oci/mcp-auth-filter:0.1.0 registry.example.com/mcp-auth-filter:0.1.0
    crane push target/oci/mcp-auth-filter registry.example.com/mcp-auth-filter:0.1.0
    skopeo copy oci:target/oci/mcp-auth-filter:0.1.0 docker://registry.example.com/mcp-auth-filter:0.1.0
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_auth_filter.wasm"
DEFAULT_OUT = REPO / "target" / "oci" / "mcp-auth-filter"

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
PLUGIN_FILE = "plugin.wasm"  # the name Istio looks for in the layer


def crate_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.MULTILINE)
    return match.group(1) if match else "0.0.0"


def canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def layer_tar(wasm: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(PLUGIN_FILE)
        info.size, info.mode, info.mtime, info.uid, info.gid = len(wasm), 0o644, 0, 0, 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buffer.getvalue()


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"

    def put(self, data: bytes, media_type: str, **extra: object) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}


def build(wasm_path: Path, out: Path, tag: str) -> dict[str, str]:
    wasm = wasm_path.read_bytes()
    if wasm[:4] != b"\0asm":
        raise SystemExit(f"{wasm_path} is not a WebAssembly module")
    if out.exists():
        shutil.rmtree(out)
    layout = Layout(out)
    layout.blobs.mkdir(parents=True)

    tar = layer_tar(wasm)
    # No title annotation on the layer: oras would then save the gzipped tar itself as a file.
    layer = layout.put(gzipped(tar), LAYER_TYPE)
    config = layout.put(canonical({
        "architecture": "wasm",
        "os": "wasip1",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(tar).hexdigest()}"]},
    }), CONFIG_TYPE)
    annotations = {
        "org.opencontainers.image.title": "mcp-auth-filter",
        "org.opencontainers.image.description": "proxy-wasm filter: MCP authentication (JWT, RFC 9728) and "
                                                "RFC 8693 token exchange, for Envoy and Istio",
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    manifest = layout.put(canonical({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config, "layers": [layer],
        "annotations": annotations,
    }), MANIFEST_TYPE, annotations={"org.opencontainers.image.ref.name": tag})
    (out / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(canonical({"schemaVersion": 2, "mediaType": INDEX_TYPE,
                                                "manifests": [manifest]}))
    return {"layout": str(out), "tag": tag, "manifest_digest": str(manifest["digest"]),
            "wasm_sha256": hashlib.sha256(wasm).hexdigest()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wasm", type=Path, default=DEFAULT_WASM)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tag", default=crate_version())
    args = parser.parse_args()
    if not args.wasm.is_file():
        print(f"build_oci: {args.wasm} is missing; run make build", file=sys.stderr)
        return 1
    result = build(args.wasm, args.out, args.tag)
    print(f"OCI image layout: {result['layout']}  (tag {result['tag']})")
    print(f"manifest digest:  {result['manifest_digest']}  (WasmPlugin spec.sha256: the hex part)")
    print(f"plugin.wasm:      sha256 {result['wasm_sha256']}")
    print(f"push:             oras cp --from-oci-layout {result['layout']}:{result['tag']} "
          f"REGISTRY/mcp-auth-filter:{result['tag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
