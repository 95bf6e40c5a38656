"""What the gateway answers the agent itself (not relayed from an upstream)."""

from __future__ import annotations

import mcp.types as types


def refusal(text: str) -> types.CallToolResult:
    """A tool error the model can read; every text the gateway writes starts `Tribune:`."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"Tribune: {text}")], is_error=True
    )
