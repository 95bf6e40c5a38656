"""An MCP server over stdio that shows what credential its environment holds, for the gateway's
credential tests. The gateway spawns it (``python tests/gateway/env_upstream.py``).

Tool ``whoami`` (read-only) answers with a JSON object: ``set`` (whether ``VAULT_TOKEN`` is
set), ``sha256`` (of its value, never the value), ``pid`` (this process), ``claims`` (``task``
and ``lease`` of the value when it is a JWT, read without verifying) and ``leaked`` (names of
variables holding the agent's task token, recognised by its Tribune audience: none expected).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

VARIABLE = "VAULT_TOKEN"
server = MCPServer("env-upstream", version="1.0")


def _claims(value: str) -> dict[str, Any]:
    parts = value.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


@server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
def whoami() -> str:
    """What credential this process was started with."""
    value = os.environ.get(VARIABLE)
    claims = _claims(value or "")
    leaked = [
        name
        for name, text in os.environ.items()
        if str(_claims(text).get("aud", "")).endswith("/tribune")
    ]
    return json.dumps(
        {
            "set": value is not None,
            "sha256": hashlib.sha256(value.encode()).hexdigest() if value else None,
            "pid": os.getpid(),
            "claims": {k: claims.get(k) for k in ("task", "lease", "aud")},
            "leaked": leaked,
        }
    )


if __name__ == "__main__":
    server.run()
