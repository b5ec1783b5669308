"""The CLI documents itself: every option has help text, and README's CLI table lists exactly
the options each command takes."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from poserun.cli import build_parser
from poserun.services.validate import build_parser as validate_parser
from tests.conftest import ROOT


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, (validate_parser() if path == ("validate",) else parser)
    for action in subs:
        for name, sub in action.choices.items():
            yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def readme_rows() -> dict[tuple[str, ...], set[str]]:
    """README's CLI table: the command words of each row and the options it names."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## The CLI"):].split("\n## ")[0]
    rows: dict[tuple[str, ...], set[str]] = {}
    for cell in re.findall(r"^\| `(poserun [^`]+)` \|", table, re.M):
        words = tuple(w for w in cell.split()[1:3] if re.fullmatch(r"[a-z][a-z-]*", w))
        rows[words] = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][a-z0-9-]*)", cell))
    return rows


def test_every_command_and_option_has_help() -> None:
    missing = [f"poserun {' '.join(path)} {a.option_strings or a.dest}"
               for path, parser in commands(build_parser()) for a in options(parser)
               if not a.help or a.help == argparse.SUPPRESS]
    assert not missing, missing


def test_readme_lists_exactly_what_each_command_takes() -> None:
    rows = readme_rows()
    for path, parser in commands(build_parser()):
        key = next((k for k in rows if path[:len(k)] == k and len(k) == len(path)), None)
        assert key is not None, f"README's CLI table has no row for poserun {' '.join(path)}"
        flags = [a.option_strings for a in options(parser) if a.option_strings]
        listed = rows[key]
        unlisted = [f[-1] for f in flags if not listed & set(f)]
        unknown = sorted(listed - {o for f in flags for o in f})
        assert not unlisted and not unknown, (path, "README misses", unlisted, "and names", unknown)
    assert len(rows) == len(list(commands(build_parser())))


def test_signed_axes_are_values_not_options() -> None:
    from poserun.cli import join_signed_values

    args = build_parser().parse_args(join_signed_values(
        ["import", "trc", "in.trc", "-o", "x.mcap", "--forward", "-x", "--up", "+z"]))
    assert args.forward == "-x" and args.up == "+z"
    assert join_signed_values(["--forward", "-v"]) == ["--forward", "-v"]  # only axes are joined
