from __future__ import annotations

from entrypoint.hub.patterns import RepoFile, allow_patterns, select_files


def files(*names: str) -> list[RepoFile]:
    return [RepoFile(n, 1, None, None) for n in names]


REPO = files(
    "config.json",
    "model-00001-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "preprocessor_config.json",
    "modeling_x.py",
    "pytorch_model.bin",
    "original/consolidated.00.pth",
    "model.gguf",
    "README.md",
)


def names(selected: list[RepoFile]) -> set[str]:
    return {f.path for f in selected}


def test_defaults_fetch_what_serving_needs() -> None:
    chosen = names(select_files(REPO, allow_patterns(None, multimodal=False, remote_code=False), []))
    assert chosen == {
        "config.json",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "generation_config.json",
    }


def test_processor_files_only_for_multimodal_and_code_only_with_remote_code() -> None:
    chosen = names(select_files(REPO, allow_patterns(None, multimodal=True, remote_code=True), []))
    assert {"preprocessor_config.json", "modeling_x.py"} <= chosen


def test_bin_weights_are_kept_when_there_are_no_safetensors() -> None:
    only_bin = files("config.json", "pytorch_model.bin")
    assert names(select_files(only_bin, ["*"], [])) == {"config.json", "pytorch_model.bin"}
    assert "pytorch_model.bin" not in names(select_files(REPO, ["*"], []))


def test_profile_patterns_replace_allow_and_extend_ignore() -> None:
    chosen = names(
        select_files(
            REPO, allow_patterns(["*.json"], multimodal=True, remote_code=True), ["preprocessor_config.json"]
        )
    )
    assert "preprocessor_config.json" not in chosen and "config.json" in chosen
    assert not any(n.endswith(".safetensors") for n in chosen)
