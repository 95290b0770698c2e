"""Which repo files serving needs (pure)."""

from __future__ import annotations

from dataclasses import dataclass

BASE_ALLOW = (
    "config.json",
    "generation_config.json",
    "hf_quant_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab*",
    "merges.txt",
    "*.tiktoken",
    "chat_template.jinja",
    "chat_template.json",
)
PROCESSOR_ALLOW = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
REMOTE_CODE_ALLOW = ("*.py",)
BASE_IGNORE = ("original/*", "*.pth", "*.gguf", "*.pt", "*.msgpack", "*.h5", "onnx/*")


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (non-LFS files)

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


def allow_patterns(custom: list[str] | None, *, multimodal: bool, remote_code: bool) -> list[str]:
    if custom is not None:
        return list(custom)
    patterns = list(BASE_ALLOW)
    if multimodal:
        patterns += PROCESSOR_ALLOW
    if remote_code:
        patterns += REMOTE_CODE_ALLOW
    return patterns


def select_files(files: list[RepoFile], allow: list[str], extra_ignore: list[str]) -> list[RepoFile]:
    """The files to fetch: allowed, not ignored, and no *.bin where safetensors exist."""
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    ignore = [*BASE_IGNORE, *extra_ignore]
    if any(f.path.endswith(".safetensors") for f in files):
        ignore.append("*.bin")
    return list(
        filter_repo_objects(files, allow_patterns=allow, ignore_patterns=ignore, key=lambda f: f.path)
    )
