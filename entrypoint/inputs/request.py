"""What to ask the Hub for: the download request of a plan, or of a bare model
reference before any profile is known (the metadata a derivation reads)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..hub.patterns import allow_patterns
from ..meta import DownloadRequest
from ..plan.options import BY_NAME, option_value
from ..plan.resolve import ModelRef, Plan


def download_request(plan: Plan, *, offline: bool) -> DownloadRequest:
    assert plan.model.repo is not None
    custom = plan.profile.profile.download if plan.profile is not None else None
    return DownloadRequest(
        repo=plan.model.repo,
        revision=plan.value("revision"),
        token=plan.value("hf_token") or None,
        allow=allow_patterns(
            custom.allow_patterns if custom else None,
            multimodal=not plan.value("language_model_only"),
            remote_code=bool(plan.value("trust_remote_code")),
        ),
        ignore=list(custom.ignore_patterns) if custom else [],
        offline=offline,
        interval=float(plan.value("progress_interval")),
    )


def bare_request(
    model: ModelRef, env: Mapping[str, str], cli: Mapping[str, Any], *, offline: bool
) -> DownloadRequest:
    """A Hub repo no profile names: the request from the options alone (revision,
    token), as the plan resolved from the derived profile will have them."""
    assert model.repo is not None

    def value(name: str) -> Any:
        return option_value(BY_NAME[name], env, cli)

    return DownloadRequest(
        repo=model.repo,
        revision=value("revision"),
        token=value("hf_token") or None,
        allow=allow_patterns(None, multimodal=True, remote_code=False),
        ignore=[],
        offline=offline,
        interval=float(value("progress_interval")),
    )
