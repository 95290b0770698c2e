"""spark-serve launcher: profile → resolved settings → vLLM command → exec."""

__version__ = "0.1.0"
