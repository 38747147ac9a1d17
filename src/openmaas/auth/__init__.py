"""API keys: generation, hashing, and the cached lookup that authenticates each request."""
