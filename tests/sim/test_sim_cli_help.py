"""``mw-sim --help``: plain text (no reST markup) and a help line for every argument of every command."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from simulations.cli import main


def parser_of(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The parser ``main`` builds, caught as it parses ``--help``."""
    seen: list[argparse.ArgumentParser] = []
    parse = argparse.ArgumentParser.parse_args

    def spy(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        seen.append(self)
        return parse(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", spy)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    return seen[0]


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {"mw-sim": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({f"mw-sim {name}": sub for name, sub in action.choices.items()})
    return found


def test_every_argument_has_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in _commands(parser_of(monkeypatch)).items()
        for action in command._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert missing == []


def test_help_has_no_rst_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, command in _commands(parser_of(monkeypatch)).items():
        text = command.format_help()
        assert "``" not in text, f"{name} --help shows reST markup:\n{text}"
        assert command.description, f"{name} has no description"
