"""Calculator: an MCP tool environment (arithmetic tasks solved with tool calls)."""
