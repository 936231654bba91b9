"""The ``xbar`` parser and entry point: exit statuses, signals.

Layer: cosim.cli.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cosim.cli import cmd_arrays, cmd_calibrate, cmd_deploy, cmd_train
from models.errors import ParameterError, XbarError

__all__ = ["EXIT_USAGE", "Terminated", "build_parser", "main"]

EXIT_USAGE = 2



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xbar", description="Circuit-level SPICE co-simulation of "
                                     "analog in-memory computing crossbars (ngspice + exact fast solver).")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd_arrays.add_parsers(sub)
    cmd_train.add_parsers(sub)
    cmd_calibrate.add_parser(sub)
    cmd_deploy.add_parsers(sub)
    for p in sub.choices.values():
        p.formatter_class = DefaultsFormatter
    return parser


class DefaultsFormatter(argparse.HelpFormatter):
    """Help lines end with the option's default (``-h`` lists every option with its default),
    unless the help names it already or there is none to give (None, False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (action.option_strings and "default" not in text and not any(default is v for v in (None, False,
                argparse.SUPPRESS)) and not isinstance(action, argparse._HelpAction)):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            text = f"{text} (default: {shown})" if text else f"default: {shown}"
        return text


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every ``finally`` runs (ngspice children are
    killed, temporary decks removed) before ``xbar`` exits with 143."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


#: Subcommands whose ``--out`` is a folder (the others write one file).
FOLDER_OUT = ("calibrate", "train", "demo", "periphery", "device", "deploy", "export")


def _check_out_folder(args) -> None:
    out = getattr(args, "out", None)
    if args.command in FOLDER_OUT and out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ParameterError(f"--out {out} is a file: give a folder (xbar {args.command} writes several files "
                             "into it)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # SIGINT stops a run cleanly even where the launcher left it ignored (a background job of a
    # script, some test runners): an explicit signal is an explicit request
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_out_folder(args)
        return int(args.func(args) or 0)
    except XbarError as exc:
        text = str(exc)
        print(f"xbar {args.command}: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"xbar {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"xbar {args.command}: interrupted (SIGINT); ngspice stopped, nothing written was removed",
              file=sys.stderr)
        return 130
    except Terminated:
        print(f"xbar {args.command}: terminated (SIGTERM); ngspice stopped, nothing written was removed",
              file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
