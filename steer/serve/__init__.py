"""``steer serve``: an OpenAI-compatible HTTP server over a steer engine, or vLLM's own server."""
