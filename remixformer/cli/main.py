"""Entry point of the ``remixformer`` command.

Each command group lives in its own module of this package and exposes ``add_parser(subparsers)``,
which adds its sub-command(s) and sets ``func`` (a callable taking the parsed args and returning an
exit code). Modules import heavy libraries inside ``func`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# Command modules in the order --help lists them; a module that does not exist (yet) is skipped.
COMMAND_MODULES = (
    "demo",
    "synth",
    "data",
    "train",
    "cv",
    "compare",
    "evaluate",
    "pretrain",
    "explain",
    "analyze",
    "predict",
    "milk10k",
    "serve",
    "export",
    "readers",
    "bench",
    "models",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="remixformer",
        description="RemixFormer++: skin tumour diagnosis from a clinical photo, dermoscopy and metadata.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"remixformer.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"remixformer.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    if verbose < 2:  # third-party chatter
        for name in ("PIL", "matplotlib", "urllib3", "fsspec", "httpx", "onnx_ir", "onnxscript"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    setup_logging(args.verbose, args.quiet)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away is seen here, not at exit
        return code
    except BrokenPipeError:
        # `remixformer predict ... | head`: the reader has what it wanted. Send what is still buffered
        # nowhere, so that the interpreter's last flush does not print a traceback either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # as a process ended by SIGPIPE, which Python ignores
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError) as e:
        # User errors: config keys, data layout, bad files. The message says what was wrong.
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
