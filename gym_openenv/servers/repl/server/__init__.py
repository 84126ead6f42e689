"""The REPL server: ``ReplEnvironment`` and its FastAPI app."""
