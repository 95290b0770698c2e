"""The parser builds only the named command's flags, and the same flags as when
every command is built."""

from __future__ import annotations

import argparse

import pytest

from entrypoint.parser import _COMMANDS, build_parser


def _flags(parser: argparse.ArgumentParser, command: str) -> list[tuple[str, ...]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [tuple(a.option_strings) or (a.dest,) for a in sub.choices[command]._actions]


@pytest.mark.parametrize("command", list(_COMMANDS))
def test_a_command_alone_has_the_flags_it_has_among_all(command: str) -> None:
    alone, every = build_parser(command), build_parser()
    assert _flags(alone, command) == _flags(every, command)
    assert len(_flags(alone, command)) > 1 or command == "cluster-token"
    others = [c for c in _COMMANDS if c != command]
    assert all(_flags(alone, other) == [("-h", "--help")] for other in others)


def test_every_command_is_listed_and_an_unknown_word_builds_all() -> None:
    parser = build_parser("no-such-command")
    assert all(len(_flags(parser, c)) > 1 for c in _COMMANDS if c != "cluster-token")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["no-such-command"])
    assert exit_info.value.code == 2


def test_the_plan_flags_parse_as_declared() -> None:
    args = build_parser("plan").parse_args(["plan", "--profile", "p", "--variant", "v", "--json"])
    assert (args.command, args.profile, args.variant, args.json) == ("plan", "p", "v", True)
