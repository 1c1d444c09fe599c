// The official MCP TypeScript SDK as a client of the rig (tests/harness/ts_client.py runs it).
//
//   node mcp_client.mjs <MCP URL>   with a plan as JSON on stdin:
//   {"headers": {"authorization": "Bearer ..."}, "steps": [{"op": "list_tools"},
//    {"op": "call_tool", "name": "query_users", "arguments": {}}, {"op": "list_prompts"},
//    {"op": "list_resources"}, {"op": "get_prompt", "name": "..."}, {"op": "read_resource", "uri": "..."}]}
//
// It connects (initialize, protocol 2025-11-25: the SDK's latest), runs the steps in order, and
// prints one JSON object: the negotiated protocol version, whether a session id was minted, every
// HTTP exchange the transport made ({method, jsonrpc, status, content_type, www_authenticate}) and
// one result per step: {"ok": true, "value": ...} or {"ok": false, "error": {"type", "code", "message"}}.
// The headers go on every request (a pre-obtained token: no OAuth provider, so a 403 is reported
// as the SDK raises it, without a retry).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const TIMEOUT_MS = 15000;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function describeError(e) {
  return { type: e?.constructor?.name ?? typeof e, code: e?.code ?? null, message: String(e?.message ?? e) };
}

const STEPS = {
  list_tools: async (client) => (await client.listTools(undefined, { timeout: TIMEOUT_MS })).tools.map((t) => t.name),
  list_prompts: async (client) => (await client.listPrompts(undefined, { timeout: TIMEOUT_MS })).prompts.map((p) => p.name),
  list_resources: async (client) =>
    (await client.listResources(undefined, { timeout: TIMEOUT_MS })).resources.map((r) => r.uri),
  call_tool: async (client, step) => {
    const result = await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined,
      { timeout: TIMEOUT_MS });
    return { structured: result.structuredContent ?? null, is_error: result.isError ?? false,
      text: (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text) };
  },
  get_prompt: async (client, step) =>
    (await client.getPrompt({ name: step.name, arguments: step.arguments ?? {} }, { timeout: TIMEOUT_MS })).messages,
  read_resource: async (client, step) =>
    (await client.readResource({ uri: step.uri }, { timeout: TIMEOUT_MS })).contents.map((c) => c.text ?? null),
};

async function main() {
  const url = new URL(process.argv[2]);
  const plan = await readStdin();
  const exchanges = [];
  // Records what each POST was and how it was answered (JSON or an SSE stream).
  const recordingFetch = async (input, init) => {
    const response = await fetch(input, init);
    let jsonrpc = null;
    if (typeof init?.body === 'string') {
      try {
        const body = JSON.parse(init.body);
        jsonrpc = Array.isArray(body) ? 'batch' : body.method ?? 'response';
      } catch {
        jsonrpc = null;
      }
    }
    exchanges.push({ method: init?.method ?? 'GET', jsonrpc, status: response.status,
      content_type: response.headers.get('content-type'),
      www_authenticate: response.headers.get('www-authenticate') });
    return response;
  };
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: plan.headers ?? {} },
    fetch: recordingFetch,
  });
  const client = new Client({ name: 'mcp-auth-filter-ts-test', version: '1.0.0' });
  const output = { protocol_version: null, session_id: false, connect_error: null, results: [], exchanges };
  try {
    await client.connect(transport, { timeout: TIMEOUT_MS });
    output.protocol_version = transport.protocolVersion ?? null;
    output.session_id = Boolean(transport.sessionId);
    for (const step of plan.steps ?? []) {
      const run = STEPS[step.op];
      if (!run) throw new Error(`unknown step ${step.op}`);
      try {
        output.results.push({ ok: true, value: await run(client, step) });
      } catch (e) {
        output.results.push({ ok: false, error: describeError(e) });
      }
    }
  } catch (e) {
    output.connect_error = describeError(e);
  } finally {
    await transport.terminateSession().catch(() => {});
    await client.close().catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(output)}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e?.stack ?? e}\n`);
  process.exit(2);
});
