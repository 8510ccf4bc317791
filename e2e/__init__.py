"""End-to-end tests: drive the sandbox only as a user would (kubectl and the API)."""
