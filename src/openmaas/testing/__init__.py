"""Real servers for tests and benchmarks: upstream apps that speak the OpenAI
and Anthropic wire formats on loopback, and a helper to serve any ASGI app."""
