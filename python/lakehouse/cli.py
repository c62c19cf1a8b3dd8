"""The ``lakehouse`` command.

Each subcommand lives in the module that owns its behaviour and exposes ``main(argv)``;
this file only maps names to those functions, so adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError

#: name -> ("module:function", one-line help). The function takes the remaining argv.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("lakehouse.cli:serve_main", "run one daemon in the foreground"),
    "up": ("lakehouse.stack:main", "run the whole stack (or --only some daemons) until Ctrl-C"),
    "doctor": ("lakehouse.doctor:main", "show what is configured and what is reachable"),
    "config": ("lakehouse.configfile:main", "print the effective configuration (--example: defaults)"),
    "gen-roster": ("lakehouse.roster:main", "write a synthetic staffing roster as CSV"),
    "corpus": ("lakehouse.matrix.cli:main", "build a vector corpus from SQL, with progress (through the gateway)"),
    "demo": ("lakehouse.demo:main", "the whole loop as a short story (starts its own stack, or --url)"),
    "fake-ollama": ("lakehouse.fakes.ollama:main", "a fake Ollama server for tests and demos"),
    "fake-openai": ("lakehouse.fakes.openai:main", "a fake OpenAI-compatible chat server"),
    "calibrate": ("lakehouse.matrix.calibration:main", "the playbook thresholds matrixd derives for a model, and why"),
    "reality": ("lakehouse.reality:main", "reality harnesses against a stack (playbook-lift, multi-coord, multitier), with reports"),
    "parity": ("lakehouse.parity:main", "send the HTTP parity fixtures to two runtimes and compare"),
    "mcp": ("lakehouse.services.mcpd:stdio_main", "the MCP server on stdio, for desktop MCP clients"),
    "distill": ("lakehouse.distill.cli:main", "evidence, scoring, exports, replay, audit, drift, promote"),
}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="lakehouse.toml (default: ./lakehouse.toml if present)")
    parser.add_argument("--data-dir", help="data directory (default: ./lakehouse-data)")


def serve_main(argv: list[str]) -> int:
    from .config import load_config
    from .services import DAEMONS, app_factory
    from .web import run_app, setup_logging

    parser = argparse.ArgumentParser(prog="lakehouse serve", description="run one daemon")
    parser.add_argument("name", choices=sorted(DAEMONS), help="the daemon")
    add_common_args(parser)
    parser.add_argument("--host", help="bind address (default: the config's, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: the config's)")
    args = parser.parse_args(argv)

    config = load_config(args.config, data_dir=args.data_dir)
    changes = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    if changes:
        config = config.replace(args.name, **changes)
    setup_logging(args.name)
    section = config.section(args.name)
    module = importlib.import_module(DAEMONS[args.name].module)
    if hasattr(module, "serve"):  # not an aiohttp app (mcpd: the MCP SDK's ASGI app)
        module.serve(config)
        return 0
    factory = app_factory(args.name)
    workers = section.worker_count() if hasattr(section, "worker_count") else 1
    run_app(lambda: factory(config), section.host, section.port, config.auth, workers=workers)
    return 0


def dispatch(
    table: dict[str, tuple[str, str]], argv: list[str], *, prog: str, noun: str, plural: str, footer: str
) -> int:
    """Run ``argv[0]`` of ``table`` (name -> ("module:function", help)) on ``argv[1:]``.

    No name or ``--help`` prints the table; an unknown name is exit 2 with a message.
    """
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} {noun.upper()} [args]\n\n{plural}:")
        width = max(map(len, table)) + 2
        for name, (_, text) in table.items():
            print(f"  {name:<{width}} {text}")
        print(f"\n{footer}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in table:
        print(f"{prog}: unknown {noun} {name!r} (try '{prog} --help')", file=sys.stderr)
        return 2
    module_name, func_name = table[name][0].split(":")
    return int(getattr(importlib.import_module(module_name), func_name)(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(
            COMMANDS, argv, prog="lakehouse", noun="command", plural="commands", footer="'lakehouse COMMAND --help' for a command's options."
        )
    except ConfigError as exc:
        print(f"lakehouse {argv[0]}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
