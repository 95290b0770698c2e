"""Several models planned together: the division of the KV room, against hand sums."""

from __future__ import annotations

from typing import Any

from entrypoint.meta import WeightSizes
from entrypoint.plan.hardware import GB, GIB
from entrypoint.plan.joint import Member, divide, plan_joint
from entrypoint.plan.memory import plan_memory, start_utilization
from tests.plan.test_memory import GB10, inputs, llama_8b, qwen3_4b, qwen3_5_27b


def member(name: str, config: dict[str, Any], weights_gb: float, **over: Any) -> Member:
    share, floor = over.pop("kv_share", None), over.pop("min_seqs", None)
    given = inputs(config, WeightSizes(int(weights_gb * GB)), **over)
    return Member(name, given, plan_memory(GB10, given), share, floor)


def test_the_room_is_shared_so_each_model_holds_as_many_sequences() -> None:
    coder = member("coder", qwen3_5_27b(), 18, max_num_seqs=256)
    chat = member("chat", qwen3_4b(), 2.9, max_num_seqs=256)
    joint = plan_joint(GB10, [coder, chat])
    assert joint.fits
    (_, a), (_, b) = joint.members
    budget = GB10.total_bytes - 8 * GIB
    fixed = coder.fixed_bytes + chat.fixed_bytes
    assert joint.budget_bytes == budget
    # all of the room, within the rounding of each share to a byte
    assert budget - fixed - 2 <= a.kv_cache_bytes + b.kv_cache_bytes <= budget - fixed
    assert abs(a.max_concurrent_sequences - b.max_concurrent_sequences) <= 1
    assert a.explicit_kv and b.explicit_kv and a.weights_bytes == coder.alone.weights_bytes


def test_a_model_capped_by_its_max_num_seqs_leaves_the_rest_to_the_others() -> None:
    small = member("small", qwen3_4b(), 2.9, max_num_seqs=2, max_model_len=4096)
    big = member("big", llama_8b(), 5, max_num_seqs=1024)
    kv = divide(100 * GIB, [small, big])
    assert kv is not None
    assert kv[0] == small.demand_bytes == 2 * small.sequence_bytes
    assert kv[1] == 100 * GIB - kv[0]


def test_a_share_and_a_floor_are_kept() -> None:
    a = member("a", llama_8b(), 5, kv_share=0.25, max_num_seqs=1024)
    b = member("b", qwen3_4b(), 2.9, min_seqs=3, max_num_seqs=1024)
    room = 40 * GIB
    kv = divide(room, [a, b])
    assert kv is not None and kv[0] == int(0.25 * room) and kv[1] == room - kv[0]
    assert kv[1] >= 3 * b.sequence_bytes
    assert divide(3 * b.sequence_bytes - 1, [b]) is None  # its floor does not fit


def test_each_engines_utilization_is_what_it_would_see_after_the_ones_before() -> None:
    a = member("a", llama_8b(), 5, max_num_seqs=4)
    b = member("b", qwen3_4b(), 2.9, max_num_seqs=4)
    joint = plan_joint(GB10, [a, b])
    (_, first), (_, second) = joint.members
    held = first.weights_bytes + first.allowance_bytes + first.kv_cache_bytes
    total = GB10.total_bytes
    assert first.gpu_memory_utilization == start_utilization(joint.budget_bytes, first.precheck_bytes, total)
    assert second.gpu_memory_utilization == start_utilization(
        joint.budget_bytes - held, second.precheck_bytes, total
    )


def test_a_set_that_does_not_fit_says_so_per_model_and_what_would() -> None:
    a = member("coder", llama_8b(), 60, max_model_len=131072, kv_cache_dtype="auto")
    b = member("chat", qwen3_4b(), 40, max_model_len=32768)
    joint = plan_joint(GB10, [a, b])
    assert not joint.fits and joint.members == ()
    assert joint.needed_bytes == a.fixed_bytes + b.fixed_bytes + a.sequence_bytes + b.sequence_bytes
    assert [line.split(":")[0] for line in joint.lines] == ["coder", "chat"]
    assert "dropping coder" in joint.ideas and "dropping chat" in joint.ideas
    # each suggestion is planned again: dropping one of them fits
    assert plan_joint(GB10, [b]).fits and plan_joint(GB10, [a]).fits
