"""The agent REST API (/api/v1/...): one module per resource; a view parses, calls a service or selector,
serializes."""
