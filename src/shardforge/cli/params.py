"""Job flags from a pipeline's parameters: one declaration (the spec's ``PARAMS``) serves
the catalog card, the Ray job's command line and validation.

``kernel_size`` becomes ``--kernel-size``, with the Param's type, choices, default and
help; a list parameter takes comma-separated values; a bool parameter is
``--NAME`` / ``--no-NAME``; a required parameter is a required flag.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Collection, Mapping
from typing import Any

from shardforge.build.pipeline import Param

#: What ``params_from_args`` leaves to the fallback: the flag was not given.
UNSET: Any = argparse.SUPPRESS


def add_param_flags(parser: argparse.ArgumentParser, params: Mapping[str, Param], *,
                    skip: Collection[str] = (), fallbacks: Mapping[str, Any] | None = None
                    ) -> None:
    """Add one flag per parameter in ``params`` (except ``skip``). ``fallbacks``: defaults
    that differ from the Param's for this job (shown in the help); a flag not given
    takes the fallback, else the Param's default (see :func:`params_from_args`)."""
    fallbacks = dict(fallbacks or {})
    for name, param in params.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        default = fallbacks.get(name, param.default)
        shown = "required" if param.required and name not in fallbacks else \
            f"default {json.dumps(default)}"
        help_text = f"{param.help} ({shown})" if param.help else f"({shown})"
        kind = param.types[0]
        kw: dict[str, Any] = {"dest": name, "default": UNSET, "help": help_text}
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if kind is list:
            kw["type"] = _comma_list
            kw["metavar"] = "A,B,..."
        else:
            kw["type"] = kind
        if param.choices is not None:
            kw["choices"] = param.choices
        if param.required and name not in fallbacks:
            kw["required"] = True
        parser.add_argument(flag, **kw)


def params_from_args(args: argparse.Namespace, params: Mapping[str, Param], *,
                     skip: Collection[str] = (),
                     fallbacks: Mapping[str, Any] | None = None) -> dict:
    """The parameters the flags give: each given flag's value, else its fallback, else the
    Param's default (required ones are required flags)."""
    fallbacks = dict(fallbacks or {})
    out = {}
    for name, param in params.items():
        if name in skip:
            continue
        if hasattr(args, name):
            out[name] = getattr(args, name)
        elif name in fallbacks:
            out[name] = fallbacks[name]
        elif not param.required:
            out[name] = param.default
    return out


def _comma_list(text: str) -> list[str]:
    return [part for part in text.split(",") if part]
