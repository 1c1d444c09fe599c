#!/bin/sh
# Claude Code: register the MCP server behind Envoy + mcp-auth-filter (streamable HTTP). Pick the
# line for your setup; the URL must be exactly the filter's `resource`. Then, in Claude Code, run
# /mcp and choose the server to log in (Claude Code follows the 401 -> metadata -> OAuth flow).

# `python tests/demo.py --keep-running` (local processes, logs in as alice):
claude mcp add --transport http mcp-auth-demo http://127.0.0.1:10000/mcp

# `docker compose up` (same topology in containers):
# claude mcp add --transport http mcp-auth-compose http://localhost:10000/mcp

# Production (Istio or plain Envoy in Kubernetes, Okta), for every project of this user:
# claude mcp add --scope user --transport http example-mcp https://mcp.example.com/mcp

# Without OAuth in the client (a token obtained elsewhere; it is not refreshed):
# claude mcp add --transport http mcp-auth-demo http://127.0.0.1:10000/mcp --header "Authorization: Bearer $TOKEN"
