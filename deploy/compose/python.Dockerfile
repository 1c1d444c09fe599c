# The MCP server (official MCP SDK) and the backend API of the demo, from tests/harness/.
# Built by docker-compose.yml with the repository root as context.
FROM python:3.11-slim
# The versions of tests/requirements.txt (the Envoy wheel and the test tools are not needed here).
RUN pip install --no-cache-dir mcp==2.3.0 PyJWT==2.15.1 cryptography==50.0.2 httpx==0.28.1 PyYAML==6.0.3
WORKDIR /app
COPY tests/harness /app/harness
ENV PYTHONUNBUFFERED=1
USER 65534
