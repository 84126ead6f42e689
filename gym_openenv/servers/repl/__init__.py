"""REPL: a persistent, sandboxed Python interpreter per session."""
