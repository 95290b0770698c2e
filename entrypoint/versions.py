"""Build-time guard: the engine versions this project was tested against.

``python3 -m entrypoint.versions vllm==0.32.0 flashinfer-python==0.7.0.post1``
reads installed distribution metadata (imports neither package) and exits
non-zero with one line per mismatch.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version


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


def main(argv: list[str]) -> int:
    problems = mismatches(argv)
    for line in problems:
        print(
            f"spark-serve: build error: {line}; set BASE_IMAGE to an image with the tested versions",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
