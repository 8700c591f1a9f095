"""What the CLI prints of logs: on a terminal, a model's output cannot send it escape sequences."""

from __future__ import annotations

import io

import pytest

from modelhost.cli.platform import for_terminal


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_control_characters_are_replaced_but_tabs_and_newlines_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stdout", Terminal())
    shown = for_terminal("ok\tcolumn\n\x1b[2J\x1b]0;title\x07cleared?\r\n\x9b31m")
    assert shown == "ok\tcolumn\n\ufffd[2J\ufffd]0;title\ufffdcleared?\ufffd\n\ufffd31m"


def test_into_a_pipe_or_a_file_the_log_is_passed_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert for_terminal("\x1b[31mred\x1b[0m\r\n") == "\x1b[31mred\x1b[0m\r\n"
