"""What the installed vLLM implements, accepts and is pinned to."""
