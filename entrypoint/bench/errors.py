"""What a user can get wrong when benchmarking: one line, a fix, an exit code each."""

from __future__ import annotations

from ..errors import ExitCode, SparkServeError


class BenchEndpointError(SparkServeError, ConnectionError):
    exit_code = ExitCode.BENCH_ENDPOINT_DOWN

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(
            f"--url: the OpenAI endpoint {url} does not answer ({detail})",
            fix="start the stack (docker compose up -d) or pass --url http://HOST:8000",
        )


class BenchAuthError(SparkServeError, PermissionError):
    exit_code = ExitCode.BENCH_UNAUTHORIZED

    def __init__(self, url: str, status: int) -> None:
        self.url, self.status = url, status
        super().__init__(
            f"API_KEY: {url} refused the key (HTTP {status})",
            fix="set API_KEY (or --api-key) to the stack's API_KEY",
        )


class BenchModelError(SparkServeError, LookupError):
    exit_code = ExitCode.BENCH_MODEL_NOT_SERVED

    def __init__(self, model: str, served: list[str]) -> None:
        self.model, self.served = model, served
        listing = ", ".join(served) or "none"
        super().__init__(
            f"--model: '{model}' is not served by the endpoint", fix=f"use one it serves: {listing}"
        )


class BenchToolError(SparkServeError, RuntimeError):
    exit_code = ExitCode.BENCH_FAILED

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"llama-benchy: {detail}", fix=fix)


class BenchResultError(SparkServeError, ValueError):
    exit_code = ExitCode.BENCH_RESULT_INVALID

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"--compare {path}: {detail}", fix="pass a results.json written by spark-serve bench"
        )
