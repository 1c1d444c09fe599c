// Validates Istio custom resources against the CRD schemas of @kubernetes-models/istio.
//
// stdin: a JSON array of manifests (parsed from YAML by the caller). stdout: a JSON array with,
// for each manifest in order, {"kind", "name", "schema": true|false, "errors": [...]}: schema
// false when the package has no model for that apiVersion and kind, errors empty when it is valid.
// Used by tests/integration/test_manifest_schemas.py.
import { readFileSync } from "node:fs";

const manifests = JSON.parse(readFileSync(0, "utf8"));

async function modelFor(apiVersion, kind) {
  const [group, version] = String(apiVersion).split("/");
  if (!group.endsWith(".istio.io") || !version) return null;
  try {
    const module = await import(`@kubernetes-models/istio/${group}/${version}/${kind}`);
    return module[kind] ?? null;
  } catch (error) {
    if (error.code === "ERR_MODULE_NOT_FOUND" || error.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
    throw error;
  }
}

function messages(error) {
  // The package's ValidationError carries ajv's error objects; fall back to the message.
  const details = Array.isArray(error.errors) ? error.errors : [];
  if (details.length === 0) return [String(error.message ?? error)];
  return details.map((e) => `${e.instancePath || "/"} ${e.message}${e.params ? " " + JSON.stringify(e.params) : ""}`);
}

const results = [];
for (const manifest of manifests) {
  const Model = await modelFor(manifest.apiVersion, manifest.kind);
  const result = { kind: manifest.kind, name: manifest.metadata?.name ?? null, schema: Model !== null, errors: [] };
  if (Model !== null) {
    try {
      new Model(manifest).validate();
    } catch (error) {
      result.errors = messages(error);
    }
  }
  results.push(result);
}
process.stdout.write(JSON.stringify(results));
