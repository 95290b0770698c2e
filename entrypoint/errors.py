"""Typed launcher errors.

Every failure a user can cause is one of these. Each carries the file, field or
variable it is about, renders as one line that says how to fix it, and maps to
its own process exit code (documented in README.md and AGENTS.md).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a check found problems (spark-serve check)
    USAGE = 2  # bad command line (argparse's own code)
    UNKNOWN_PROFILE = 10  # profile or variant name not found
    PROFILE_SYNTAX = 11  # profile file is not valid YAML / cannot be read
    PROFILE_INVALID = 12  # profile breaks the schema (unknown field, type, range)
    SETTING_INVALID = 13  # an environment variable or CLI value is invalid
    CONFLICT = 14  # settings contradict each other
    CHECKPOINT_MISMATCH = 15  # checkpoint does not match the profile / variant
    MODEL_UNAVAILABLE = 16  # checkpoint is neither local nor in the Hub cache
    ENGINE_NOT_FOUND = 17  # the engine command cannot be executed
    STATE_UNWRITABLE = 18  # the state directory cannot be written
    MEMORY_TOO_SMALL = 19  # the model does not fit the hardware's memory budget
    HUB_AUTH = 20  # gated or private repo: token missing, wrong or licence not accepted
    HUB_NOT_FOUND = 21  # repo, revision or file not on the Hub
    HUB_UNREACHABLE = 22  # connection errors, timeouts or 5xx after retries
    DISK_FULL = 23  # not enough free space on the cache volume
    SNAPSHOT_INCOMPLETE = 24  # offline and the cached snapshot is incomplete
    INTEGRITY = 25  # a file keeps failing size / sha256 verification
    HARDWARE_UNSUPPORTED = 26  # the GPU is below the profile's minimum compute capability
    ARCHITECTURE_UNSUPPORTED = 27  # vLLM has no implementation of the checkpoint's architecture
    CHECKPOINT_UNREADABLE = 28  # not a model checkpoint: no config.json, or malformed JSON
    DATA_MISSING = 29  # a table spark-serve ships (configs/, monitoring/) is missing: incomplete install
    SIDECAR_BIND = 30  # the sidecar cannot listen on its port
    BENCH_ENDPOINT_DOWN = 31  # bench: the OpenAI endpoint does not answer
    BENCH_UNAUTHORIZED = 32  # bench: the endpoint refused the API key
    BENCH_MODEL_NOT_SERVED = 33  # bench: the model asked for is not served
    BENCH_FAILED = 34  # bench: llama-benchy is missing, the wrong version, or failed
    BENCH_RESULT_INVALID = 35  # bench: the --compare file is not a bench result
    CLUSTER_INTERFACE = 40  # cluster: no single fabric interface for CLUSTER_HEAD, or CLUSTER_INTERFACE wrong
    CLUSTER_JOIN_TIMEOUT = 41  # cluster: workers did not join the head in CLUSTER_JOIN_TIMEOUT_S
    CLUSTER_MISMATCH = 42  # cluster: a worker holds another checkpoint or revision than the head
    CLUSTER_RAY = 43  # cluster: Ray is missing, or its head cannot be started or reached
    CLUSTER_TOKEN = 44  # cluster: no Ray token file, or an unreadable or empty one
    SECRET_UNREADABLE = 45  # a *_FILE secret (API_KEY_FILE, HF_TOKEN_FILE) cannot be read or is empty
    SECRET_EXPOSED = 46  # a secret flag in the extra arguments: on a command line, or in Helm values
    STACK_INVALID = 47  # MODELS or its stack file names no valid set of models
    STACK_TOO_SMALL = 48  # the models of MODELS do not fit the device's memory together
    CACHE_UNWRITABLE = 50  # a cache directory (a volume) cannot be written by this user
    PORT_IN_USE = 51  # MODELS: a port the router or an engine is to listen on is taken


class SparkServeError(Exception):
    """Base class: a one-line message plus the fix, and an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


class UnknownProfileError(SparkServeError, LookupError):
    exit_code = ExitCode.UNKNOWN_PROFILE

    def __init__(self, kind: str, name: str, known: list[str], *, where: str, suggestion: str | None) -> None:
        self.kind, self.name, self.known, self.where = kind, name, known, where
        hint = f"did you mean '{suggestion}'? " if suggestion else ""
        listing = ", ".join(known) if known else "none defined"
        super().__init__(
            f"{where}: unknown {kind} '{name}'",
            fix=f"{hint}choose one of: {listing}",
        )


class UnknownVariantError(UnknownProfileError):
    def __init__(
        self, profile: str, name: str, known: list[str], *, where: str, suggestion: str | None
    ) -> None:
        self.kind, self.name, self.known, self.where, self.profile = "variant", name, known, where, profile
        hint = f"did you mean '{suggestion}'? " if suggestion else ""
        listing = ", ".join(known) if known else "it has none (unset VARIANT)"
        SparkServeError.__init__(
            self,
            f"{where}: profile '{profile}' has no variant '{name}'",
            fix=f"{hint}choose one of: {listing}",
        )


class ProfileSyntaxError(SparkServeError, ValueError):
    exit_code = ExitCode.PROFILE_SYNTAX

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"{path}: {detail}", fix="fix the YAML syntax of this file")


class DataMissingError(SparkServeError, FileNotFoundError):
    """A table that ships with spark-serve is not where the one data rule puts it."""

    exit_code = ExitCode.DATA_MISSING

    def __init__(self, path: str, what: str) -> None:
        self.path, self.what = path, what
        super().__init__(
            f"{path}: not found (the {what} shipped with spark-serve)",
            fix="reinstall spark-serve (`pip install .` copies configs/ and monitoring/ into the package), "
            "or rebuild the image",
        )


class CacheUnwritableError(SparkServeError, PermissionError):
    """A cache directory, usually a named volume, that this user cannot write."""

    exit_code = ExitCode.CACHE_UNWRITABLE

    def __init__(self, variable: str, path: str, detail: str, fix: str) -> None:
        self.variable, self.path = variable, path
        super().__init__(f"{variable}={path}: {detail}", fix=fix)


class ProfileInvalidError(SparkServeError, ValueError):
    exit_code = ExitCode.PROFILE_INVALID

    def __init__(self, path: str, field: str, detail: str, fix: str) -> None:
        self.path, self.field = path, field
        super().__init__(f"{path}: field '{field}': {detail}", fix=fix)


class SettingError(SparkServeError, ValueError):
    """A value given through an environment variable or a CLI flag is invalid."""

    exit_code = ExitCode.SETTING_INVALID

    def __init__(self, source: str, detail: str, fix: str) -> None:
        self.source = source
        super().__init__(f"{source}: {detail}", fix=fix)


class ConflictError(SparkServeError, ValueError):
    exit_code = ExitCode.CONFLICT

    def __init__(self, fields: list[str], detail: str, fix: str) -> None:
        self.fields = fields
        super().__init__(detail, fix=fix)


class CheckpointMismatchError(SparkServeError, ValueError):
    exit_code = ExitCode.CHECKPOINT_MISMATCH

    def __init__(self, checkpoint: str, detail: str, fix: str) -> None:
        self.checkpoint = checkpoint
        super().__init__(f"checkpoint {checkpoint}: {detail}", fix=fix)


class CheckpointUnreadableError(CheckpointMismatchError):
    """Not a model checkpoint at all: config.json missing, or a JSON file malformed."""

    exit_code = ExitCode.CHECKPOINT_UNREADABLE


class ArchitectureUnsupportedError(SparkServeError, NotImplementedError):
    exit_code = ExitCode.ARCHITECTURE_UNSUPPORTED

    def __init__(self, checkpoint: str, architecture: str, vllm_version: str, fix: str) -> None:
        self.checkpoint, self.architecture, self.vllm_version = checkpoint, architecture, vllm_version
        super().__init__(
            f"checkpoint {checkpoint}: architecture {architecture} is not one vLLM {vllm_version} implements",
            fix=fix,
        )


class ModelUnavailableError(SparkServeError, FileNotFoundError):
    exit_code = ExitCode.MODEL_UNAVAILABLE

    def __init__(self, model: str, detail: str, fix: str) -> None:
        self.model = model
        super().__init__(f"model {model}: {detail}", fix=fix)


class EngineNotFoundError(SparkServeError, FileNotFoundError):
    exit_code = ExitCode.ENGINE_NOT_FOUND

    def __init__(self, command: str, variable: str = "ENGINE_COMMAND", what: str = "vLLM") -> None:
        self.command, self.variable = command, variable
        super().__init__(
            f"{variable}: cannot execute '{command}'",
            fix=f"install {what} in this environment or set {variable} to a working command",
        )


class StateUnwritableError(SparkServeError, OSError):
    exit_code = ExitCode.STATE_UNWRITABLE

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(
            f"STATE_DIR: cannot write {path}: {detail}",
            fix="point STATE_DIR at a writable directory (a state volume an older image left root-owned: "
            "docker compose run --rm --user 0 --entrypoint chown vllm -R 990:990 /run/spark-serve)",
        )


class MemoryTooSmallError(SparkServeError, MemoryError):
    exit_code = ExitCode.MEMORY_TOO_SMALL

    def __init__(self, what: str, needed: int, budget: int, basis: str, ideas: list[str]) -> None:
        self.needed, self.budget, self.ideas = needed, budget, ideas
        super().__init__(
            f"{what} does not fit: needs {_gb(needed)} (weights + one sequence at MAX_MODEL_LEN + "
            f"runtime allowance), the budget is {_gb(budget)} ({basis}); nothing was downloaded",
            fix="try " + ", or ".join(ideas),
        )


class StackInvalidError(SparkServeError, ValueError):
    exit_code = ExitCode.STACK_INVALID

    def __init__(self, where: str, detail: str, fix: str) -> None:
        self.where, self.detail = where, detail
        super().__init__(f"{where}: {detail}", fix=fix)


class PortInUseError(SparkServeError, OSError):
    exit_code = ExitCode.PORT_IN_USE

    def __init__(self, variable: str, what: str, address: str, detail: str, fix: str) -> None:
        self.variable, self.address = variable, address
        super().__init__(f"{variable}: {what} cannot listen on {address}: {detail}; nothing was started",
                         fix=fix)  # fmt: skip


class StackTooSmallError(SparkServeError, MemoryError):
    """A set of models that does not fit together: a line per model follows the first."""

    exit_code = ExitCode.STACK_TOO_SMALL

    def __init__(self, needed: int, budget: int, basis: str, lines: list[str], ideas: list[str]) -> None:
        self.needed, self.budget, self.lines, self.ideas = needed, budget, lines, ideas
        per_model = "".join(f"\n  {line}" for line in lines)
        super().__init__(
            f"MODELS do not fit together: they need {needed / 2**30:.2f} GiB (each one's weights, allowance "
            f"and its floor of sequences), the budget is {budget / 2**30:.2f} GiB ({basis}); nothing was "
            "downloaded" + per_model,
            fix="try " + ", or ".join(ideas),
        )

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.fix}"


class HardwareUnsupportedError(SparkServeError, RuntimeError):
    exit_code = ExitCode.HARDWARE_UNSUPPORTED

    def __init__(self, where: str, device: str, found: float, needed: float) -> None:
        self.device, self.found, self.needed = device, found, needed
        super().__init__(
            f"{where}: {device} has compute capability {found:g}, below the profile's minimum {needed:g}",
            fix="use newer hardware, or a profile whose hardware.min_compute_capability it meets",
        )


class HubAuthError(SparkServeError, PermissionError):
    exit_code = ExitCode.HUB_AUTH

    def __init__(self, repo: str, status: int | None) -> None:
        self.repo, self.status = repo, status
        code = f" (HTTP {status})" if status else ""
        super().__init__(
            f"Hub refused access to {repo}{code}: the repo is gated, private or does not exist",
            fix=f"check the repo id; for a gated or private repo set HF_TOKEN to a token with access "
            f"and accept the licence on the model's page ({repo})",
        )


class HubNotFoundError(SparkServeError, LookupError):
    exit_code = ExitCode.HUB_NOT_FOUND

    def __init__(self, repo: str, what: str, fix: str) -> None:
        self.repo = repo
        super().__init__(f"{repo}: {what} not found on the Hub", fix=fix)


class HubUnreachableError(SparkServeError, ConnectionError):
    exit_code = ExitCode.HUB_UNREACHABLE

    def __init__(self, repo: str, detail: str, *, offline_ready: bool) -> None:
        self.repo, self.detail, self.offline_ready = repo, detail, offline_ready
        fix = (
            "a complete snapshot is cached: set HF_HUB_OFFLINE=1 to serve it without the Hub"
            if offline_ready
            else "check the network or HF_ENDPOINT and start again; the download resumes where it stopped"
        )
        super().__init__(f"cannot reach the Hub for {repo}: {detail}", fix=fix)


class DiskFullError(SparkServeError, OSError):
    exit_code = ExitCode.DISK_FULL

    def __init__(self, path: str, needed: int | None, available: int) -> None:
        self.path, self.needed, self.available = path, needed, available
        what = (
            f"not enough disk on {path}: need {_gb(needed)}, {_gb(available)} free"
            if needed is not None
            else f"disk full on {path} during the download ({_gb(available)} free); "
            "partial files are kept and the next start resumes them"
        )
        super().__init__(what, fix="free space on the HF_HOME volume or point HF_HOME at a larger one")


class SnapshotIncompleteError(SparkServeError, FileNotFoundError):
    exit_code = ExitCode.SNAPSHOT_INCOMPLETE

    def __init__(self, repo: str, missing: list[str]) -> None:
        self.repo, self.missing = repo, missing
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        what = (
            f"cached snapshot of {repo} is incomplete (missing or corrupt: {shown})"
            if missing
            else (f"no snapshot of {repo} is in the Hugging Face cache (HF_HOME)")
        )
        super().__init__(what, fix="unset HF_HUB_OFFLINE so spark-serve can download it")


class IntegrityError(SparkServeError, ValueError):
    exit_code = ExitCode.INTEGRITY

    def __init__(self, repo: str, path: str, detail: str) -> None:
        self.repo, self.path = repo, path
        super().__init__(
            f"{repo}: {path} failed verification twice ({detail})",
            fix="check the network path (proxy, mirror) to the Hub, then start again",
        )


class ListingInvalidError(IntegrityError):
    """The Hub's file listing names an LFS file with a sha256 that is not 64 hex digits
    (it names a file on disk, so it is never used unchecked)."""

    def __init__(self, repo: str, path: str, value: str) -> None:
        self.repo, self.path = repo, path
        shown = value if len(value) <= 80 else value[:77] + "..."
        SparkServeError.__init__(
            self,
            f"{repo}: the Hub listed {path} with an invalid sha256 {shown!r}",
            fix="check the network path (proxy, mirror) to the Hub, then start again",
        )


class ClusterError(SparkServeError):
    """A multi-Spark cluster cannot form or keep going; the subclass gives the exit code."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail, fix=fix)


class ClusterInterfaceError(ClusterError, LookupError):
    exit_code = ExitCode.CLUSTER_INTERFACE


class ClusterJoinTimeoutError(ClusterError, TimeoutError):
    exit_code = ExitCode.CLUSTER_JOIN_TIMEOUT


class ClusterMismatchError(ClusterError, ValueError):
    exit_code = ExitCode.CLUSTER_MISMATCH

    def __init__(self, node: str, detail: str, fix: str) -> None:
        self.node = node
        super().__init__(f"worker {node}: {detail}", fix)


class ClusterRayError(ClusterError, RuntimeError):
    exit_code = ExitCode.CLUSTER_RAY


class ClusterTokenError(ClusterError, PermissionError):
    exit_code = ExitCode.CLUSTER_TOKEN

    def __init__(self, path: str, detail: str, fix: str) -> None:
        self.path = path
        super().__init__(f"CLUSTER_TOKEN_FILE={path}: {detail}", fix)


class SecretUnreadableError(SparkServeError, PermissionError):
    """A secret named by a ``*_FILE`` variable cannot be read, or the file is empty."""

    exit_code = ExitCode.SECRET_UNREADABLE

    def __init__(self, variable: str, path: str, detail: str) -> None:
        self.variable, self.path, self.detail = variable, path, detail
        super().__init__(
            f"{variable}={path}: {detail}",
            fix=f"point {variable} at a readable file holding the secret on one line, or unset it",
        )


class SecretExposedError(SparkServeError, ValueError):
    """A secret would be put where others can read it: a command line, Helm values."""

    exit_code = ExitCode.SECRET_EXPOSED

    def __init__(self, where: str, flag: str, detail: str, fix: str) -> None:
        self.where, self.flag = where, flag
        super().__init__(f"{where} carries {flag}: {detail}", fix=fix)


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"
