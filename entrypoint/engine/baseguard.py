"""Build-time guard: what the image adds never changes what the base image has.

``python3 -m entrypoint.engine.baseguard PIP_INSTALL_ARGS...`` (in the Dockerfile):

1. reads every installed distribution of the base (its ``pip freeze``, taken from
   the installed metadata) and writes it as a constraints file;
2. asks pip, without installing, what the requested install would change, and
   fails with one line naming each base package that would change version;
3. installs under those constraints;
4. compares again and fails with one line naming each base package that changed
   version or disappeared.

Exit 0, or 1 with ``spark-serve: build error: ...`` on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path

from packaging.utils import canonicalize_name

Freeze = dict[str, str]


def freeze() -> Freeze:
    """{canonical name: version} of every installed distribution."""
    found: Freeze = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def changes(before: Freeze, after: Freeze) -> list[str]:
    """Each base package whose version changed or that disappeared, as ``name A -> B``."""
    out = []
    for name, version in sorted(before.items()):
        now = after.get(name)
        if now != version:
            out.append(f"{name} {version} -> {now or 'removed'}")
    return out


def planned(report: dict[str, object]) -> Freeze:
    """{name: version} that a pip ``--report`` would install."""
    items = report.get("install", [])
    assert isinstance(items, list)
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def _fail(what: str, lines: list[str]) -> int:
    print(
        f"spark-serve: build error: {what} would change the base image: {'; '.join(lines)}; "
        "pin a version that the base's packages satisfy, or change BASE_IMAGE",
        file=sys.stderr,
    )
    return 1


def main(args: list[str]) -> int:
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    base = freeze()
    with tempfile.TemporaryDirectory() as tmp:
        constraints, report = Path(tmp) / "base.txt", Path(tmp) / "report.json"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(base.items())))
        dry = subprocess.run([*pip, "--dry-run", "--quiet", "--report", str(report), *args], text=True)
        if dry.returncode != 0:
            print(f"spark-serve: build error: pip cannot resolve {' '.join(args)}", file=sys.stderr)
            return 1
        would = {n: v for n, v in planned(json.loads(report.read_text())).items() if n in base}
        if found := changes({n: base[n] for n in would}, would):
            return _fail("installing " + " ".join(args), found)
        if subprocess.run([*pip, "--quiet", "-c", str(constraints), *args]).returncode != 0:
            print(f"spark-serve: build error: pip failed to install {' '.join(args)}", file=sys.stderr)
            return 1
    after = freeze()
    if found := changes(base, after):
        return _fail("the install", found)
    print(f"spark-serve: added {len(set(after) - set(base))} packages; the base's {len(base)} are unchanged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
