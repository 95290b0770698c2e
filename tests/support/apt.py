"""Install a Debian package the tests need, when it is missing and this is root."""

from __future__ import annotations

import os
import shutil
import subprocess


def apt_install(package: str, command: str) -> str | None:
    """Path of ``command``, installing Debian's ``package`` first if needed; None if it cannot be had."""
    if shutil.which(command) is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    return shutil.which(command)
