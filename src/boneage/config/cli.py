"""What every `python -m boneage.<command>` shares: the packaged configs, and overrides
that Hydra cannot read answered with the form it can.

The configs live in the package (`boneage.conf`), so the console scripts and `python -m`
work from any folder, installed from a wheel or from the checkout; a user's own config
folder joins them with `--config-dir`.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.errors import HydraException
from omegaconf import DictConfig

from boneage.config.renamed import RENAMED_KEYS
from boneage.config.resolvers import register_resolvers

CONFIG_PATH = "pkg://boneage.conf"


def hydra_command(
    config_name: str, checks: Sequence[Callable[[Sequence[str]], None]] = ()
) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """Decorator: `task(cfg)` becomes a command composing `config_name` from boneage's configs.
    `checks` look at the command line before Hydra does (and before it creates a run folder).

    The command is its process's last act: what it leaves is then frozen out of the garbage
    collector, so the interpreter's exit does not spend seconds collecting torch's and
    Lightning's objects. Python promises no finalisers for objects alive at exit; loggers are closed
    by Lightning and by `logging`'s own exit handler, loader workers by `workers.py`."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        register_resolvers()  # before Hydra composes: configs use ${boneage.*:} resolvers
        register_search_sweeper()
        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)(task)

        @functools.wraps(task)
        def main() -> Any:
            sys.argv[1:] = with_current_key_names(sys.argv[1:])
            for check in (check_override_syntax, *checks):
                check(sys.argv[1:])
            try:
                return hydra_main()
            finally:
                gc.freeze()

        return main

    return decorate


def register_search_sweeper() -> None:
    """Make boneage's Optuna sweeper known to Hydra (`hydra/sweeper=boneage_optuna`). Hydra finds
    plugins by listing the `hydra_plugins` package, which misses one an editable install maps
    (setuptools' editable finder cannot list its packages); registering it here works for both."""
    from hydra_plugins.boneage_optuna_sweeper.boneage_optuna_sweeper import BoneageOptunaSweeper

    Plugins.instance().register(BoneageOptunaSweeper)


def with_current_key_names(arguments: Sequence[str]) -> list[str]:
    """The command line with keys of an earlier name under their current one (and a note of it),
    so that a command written for an earlier version runs as it did."""
    current = []
    for argument in arguments:
        key, equals, value = argument.partition("=")
        if equals and key in RENAMED_KEYS:
            print(f"boneage: {key} is now called {RENAMED_KEYS[key]}; taken as {RENAMED_KEYS[key]}={value}",
                  file=sys.stderr)  # fmt: skip
            argument = f"{RENAMED_KEYS[key]}={value}"
        current.append(argument)
    return current


def check_override_syntax(arguments: Sequence[str]) -> None:
    """Stop with the quoted form of an override whose value Hydra's grammar rejects.

    Hydra reads `Age(years)` as a function call and cannot read CJK letters unquoted; a value
    in quotes is taken as it is written.
    """
    parser = OverridesParser.create()
    for argument in arguments:
        if argument.startswith("-") or "=" not in argument:
            continue
        try:
            parser.parse_override(argument)
        except HydraException as error:
            raise SystemExit(unreadable_override_message(argument, error)) from None


def unreadable_override_message(argument: str, error: Exception) -> str:
    key, _, value = argument.partition("=")
    quoted = f"{key}={quoted_for_hydra(value)}"
    shell_quote = '"' if "'" in quoted else "'"
    reason = str(error).strip().splitlines()[0]
    return (
        f"boneage: the override {argument!r} cannot be read as it is ({reason}).\n"
        f"A value with parentheses, spaces, commas, '=' or non-Latin letters (a column name such as "
        f"Age(years) or 年龄(岁), an override in a list) must be quoted for Hydra, and the quotes kept "
        f"from the shell:\n"
        f"    {shell_quote}{quoted}{shell_quote}"
        + ("" if value.startswith("[") else f"\nIn a YAML data config, write the name as it is: `age: {value}`.")
    )


def quoted_for_hydra(value: str) -> str:
    """`value` in quotes, so Hydra takes it as written; in a list, each item in its own, so it stays a list."""
    if value.startswith("[") and value.endswith("]"):
        return "[" + ",".join(quoted_for_hydra(item.strip()) for item in value[1:-1].split(",")) + "]"
    if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
        return value
    quote = "'" if '"' in value else '"'
    return f"{quote}{value}{quote}"
