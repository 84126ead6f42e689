"""The coding server: ``CodingEnvironment`` and its FastAPI app."""
