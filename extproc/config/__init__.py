"""Gateway configuration: pydantic models, secrets, and the bootstrap reader."""
