"""Dataset cards: ``datasets/NAME.yaml``, one per named dataset, loaded and validated.

A card::

    name: demo-cuda                      # = the file name without .yaml
    description: What the dataset is, in a sentence or two.
    source: {dataset: demo}              # or {path: PATH_OR_URL} or {demo: {DemoSpec fields}}
    pipeline:
      name: unlearnable                  # ingest | unlearnable | reinforce | distill | stylize
      params: {method: cuda, blur: 0.3}  # checked against the pipeline's schema
      secrets:                           # secret parameters: where to read them, never values
        private_key: {env: SHARDFORGE_DEMO_CUDA_KEY}   # or {file: ~/keys/demo-cuda}
    formats: [wds, beton]                # default: every format the pipeline writes
    licence: ...
    citation: ...                        # optional (BibTeX or text)

``${VAR}`` in ``source.path`` and in string parameters is replaced, at build time, by the
environment variable ``VAR``; an unset or empty variable is an error (never an empty
string). ``source: {path: null}`` means the path must be given at build time
(``shardforge build NAME --source PATH``). Every validation error names the file, the
field and the fix.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from shardforge.catalog.entry import NAME_RE, Ref, parse_ref
from shardforge.catalog.errors import CardError, CatalogError
from shardforge.catalog.pipelines import get_pipeline, pipeline_names
from shardforge.names import did_you_mean

CARD_FIELDS = ("name", "description", "source", "pipeline", "formats", "licence", "citation")
REQUIRED_FIELDS = ("name", "description", "source", "pipeline", "licence")
SOURCE_KINDS = ("path", "dataset", "demo")
SECRET_SOURCES = ("env", "file")
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret parameter's value comes from: an environment variable or a file."""

    name: str
    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"


@dataclass(frozen=True)
class Card:
    """A validated card. ``source`` is the path template (``path``; None when it must be
    given at build time), the parent reference (``dataset``) or the DemoSpec fields
    (``demo``), as written."""

    name: str
    file: str
    description: str
    source_kind: str
    source: Any
    pipeline: str
    params: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)   # name -> SecretRef
    formats: tuple[str, ...] = ()
    licence: str = ""
    citation: str | None = None

    @property
    def parent(self) -> Ref | None:
        """The parent dataset reference of a ``dataset`` source, else None."""
        return parse_ref(self.source) if self.source_kind == "dataset" else None

    def meta(self) -> dict:
        """What the catalog stores about the card besides its hash."""
        return {"file": self.file, "description": self.description, "licence": self.licence,
                "citation": self.citation, "formats": list(self.formats)}


def load_card(path: str | os.PathLike) -> Card:
    """Read and validate one card file; :class:`CardError` names file, field and fix."""
    path = Path(path)
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CardError(file, "(file)", f"cannot read it ({exc.strerror})",
                        "check the path and permissions") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CardError(file, where, f"YAML syntax error: {problem}",
                        "fix the YAML syntax (quote strings containing ':' or '#')") from exc
    return _validate(file, path.stem, data)


def load_cards(directory: str | os.PathLike) -> dict[str, Card]:
    """Every ``*.yaml`` card in ``directory``, by name (validated; names unique)."""
    cards: dict[str, Card] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        card = load_card(path)
        cards[card.name] = card
    return dict(sorted(cards.items()))


def find_cards_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The cards directory: ``explicit``; else ``./datasets`` when it holds cards; else the
    ``datasets/`` of the shardforge checkout this code runs from."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise CatalogError(f"cards directory {str(path)!r} does not exist; pass --cards "
                               "DIR with the dataset cards (datasets/*.yaml)")
        return path
    for candidate in (Path.cwd() / "datasets", Path(__file__).resolve().parents[3] / "datasets"):
        if candidate.is_dir() and any(candidate.glob("*.yaml")):
            return candidate
    raise CatalogError("no dataset cards found in ./datasets; run from the shardforge "
                       "repository root or pass --cards DIR")


def expand(text: str, file: str, field_name: str, fix: str | None = None) -> str:
    """``text`` with each ``${VAR}`` replaced by the environment variable's value.

    CardError naming the variable when it is unset or empty."""
    def sub(match: re.Match) -> str:
        var = match.group(1)
        value = os.environ.get(var)
        if not value:
            raise CardError(file, field_name, f"${{{var}}} is not set",
                            fix or f"export {var}=VALUE before building")
        return value
    return VAR_RE.sub(sub, text)


# -- validation ------------------------------------------------------------------------

def _validate(file: str, stem: str, data: Any) -> Card:
    if not isinstance(data, dict):
        raise CardError(file, "(card)", "is not a mapping of fields",
                        f"write 'name: {stem}', 'description: ...', 'source: ...', "
                        "'pipeline: ...' and 'licence: ...' at the top level")
    _unknown_keys(file, "", data, CARD_FIELDS)
    for key in REQUIRED_FIELDS:
        if data.get(key) in (None, ""):
            raise CardError(file, key, "is missing", f"add '{key}:' ({_FIELD_HINTS[key]})")
    name = _string(file, "name", data["name"])
    if not NAME_RE.match(name):
        raise CardError(file, "name", f"{name!r} is not letters, digits, '_' and '-'",
                        "rename the dataset (it becomes part of shard file names)")
    if name != stem:
        raise CardError(file, "name", f"{name!r} differs from the file name {stem!r}",
                        f"rename the file to {name}.yaml or set 'name: {stem}'")
    description = _string(file, "description", data["description"])
    licence = _string(file, "licence", data["licence"])
    citation = data.get("citation")
    if citation is not None:
        citation = _string(file, "citation", citation)
    pipeline_def = data["pipeline"]
    if isinstance(pipeline_def, str):
        pipeline_def = {"name": pipeline_def}
    if not isinstance(pipeline_def, dict):
        raise CardError(file, "pipeline", "is not a mapping",
                        "write 'pipeline: {name: ingest, params: {...}}'")
    _unknown_keys(file, "pipeline.", pipeline_def, ("name", "params", "secrets"))
    pname = _string(file, "pipeline.name", pipeline_def.get("name"))
    try:
        pipeline = get_pipeline(pname)
    except CatalogError as exc:
        raise CardError(file, "pipeline.name", str(exc),
                        f"use one of {', '.join(pipeline_names())}") from None
    source_kind, source = _source(file, name, data["source"], pipeline.sources, pname)
    params = _params(file, pipeline, pipeline_def.get("params") or {})
    secrets = _secrets(file, pipeline, pipeline_def.get("secrets") or {})
    formats = _formats(file, pipeline, data.get("formats"))
    return Card(name=name, file=file, description=description, source_kind=source_kind,
                source=source, pipeline=pname, params=params, secrets=secrets,
                formats=formats, licence=licence, citation=citation)


_FIELD_HINTS = {
    "name": "the dataset name, equal to the file name",
    "description": "what the dataset is, in a sentence or two",
    "source": "{path: PATH_OR_URL}, {dataset: PARENT} or {demo: {...}}",
    "pipeline": "{name: ingest, params: {...}}",
    "licence": "the licence or terms of use of the data",
}


def _string(file: str, field_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CardError(file, field_name, f"{value!r} is not a non-empty string",
                        f"write '{field_name.rsplit('.', 1)[-1]}: TEXT'")
    return value.strip()


def _unknown_keys(file: str, prefix: str, data: dict, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed).lstrip("; ")
            raise CardError(file, f"{prefix}{key}", "is not a known field",
                            (hint + " " if hint else "") + f"allowed: {', '.join(allowed)}")


def _source(file: str, name: str, value: Any, accepted: tuple[str, ...],
            pipeline: str) -> tuple[str, Any]:
    if not isinstance(value, dict) or len(value) != 1:
        raise CardError(file, "source", "must be a mapping with exactly one of "
                        f"{', '.join(SOURCE_KINDS)}",
                        "write 'source: {path: PATH_OR_URL}', 'source: {dataset: PARENT}' "
                        "or 'source: {demo: {}}'")
    ((kind, spec),) = value.items()
    if kind not in SOURCE_KINDS:
        hint = did_you_mean(str(kind), SOURCE_KINDS).lstrip("; ")
        raise CardError(file, f"source.{kind}", "is not a source kind",
                        (hint + " " if hint else "") + "use path (a local path or URL), "
                        "dataset (a parent catalog dataset) or demo (the built-in generator)")
    if kind not in accepted:
        raise CardError(file, f"source.{kind}", f"pipeline {pipeline} does not take a {kind} "
                        "source", f"give it one of: {', '.join(accepted)}")
    if kind == "path":
        if spec is None:
            return kind, None
        text = _string(file, "source.path", spec)
        _check_vars(file, "source.path", text)
        return kind, text
    if kind == "dataset":
        text = _string(file, "source.dataset", spec)
        try:
            ref = parse_ref(text)
        except CatalogError as exc:
            raise CardError(file, "source.dataset", str(exc), "write NAME or NAME@vN") from None
        if ref.name == name:
            raise CardError(file, "source.dataset", "names the card itself",
                            "name the parent dataset it is built from")
        return kind, str(ref)
    return kind, _demo_spec(file, spec)


def _demo_spec(file: str, spec: Any) -> dict:
    from shardforge.sources.demo import DemoSpec

    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        raise CardError(file, "source.demo", "is not a mapping",
                        "write 'source: {demo: {num_classes: 10, ...}}' (DemoSpec fields)")
    allowed = tuple(f.name for f in fields(DemoSpec))
    _unknown_keys(file, "source.demo.", spec, allowed)
    try:
        full = DemoSpec(**spec)
    except (TypeError, ValueError) as exc:
        raise CardError(file, "source.demo", str(exc), "fix the DemoSpec values") from None
    return {f.name: getattr(full, f.name) for f in fields(DemoSpec)}


def _params(file: str, pipeline, params: Any) -> dict:
    if not isinstance(params, dict):
        raise CardError(file, "pipeline.params", "is not a mapping",
                        "write 'params: {NAME: VALUE, ...}'")
    for key, value in params.items():
        where = f"pipeline.params.{key}"
        if key in pipeline.secrets:
            raise CardError(file, where, "is a secret parameter and must not be written in a "
                            "card", f"remove it and add 'secrets: {{{key}: {{env: VAR}}}}' "
                            "under pipeline (the value is read at build time, never stored)")
        if key not in pipeline.params:
            hint = did_you_mean(str(key), pipeline.params).lstrip("; ")
            known = ", ".join(pipeline.params) or "none"
            raise CardError(file, where, f"is not a parameter of pipeline {pipeline.name}",
                            (hint + " " if hint else "") + f"parameters: {known}")
        spec = pipeline.params[key]
        if isinstance(value, str) and VAR_RE.search(value) and spec.choices is None:
            _check_vars(file, where, value)
            continue
        problem = spec.problem(value)
        if problem:
            raise CardError(file, where, problem, f"use {spec.describe()}")
    missing = [k for k, spec in pipeline.params.items() if spec.required and k not in params]
    if missing:
        key = missing[0]
        raise CardError(file, f"pipeline.params.{key}", "is missing (required by pipeline "
                        f"{pipeline.name})", f"add it: {pipeline.params[key].describe()}")
    if pipeline.check is not None:
        full = pipeline.with_defaults(params)
        if not any(isinstance(v, str) and VAR_RE.search(v) for v in full.values()):
            try:
                pipeline.check(full)
            except ValueError as exc:
                raise CardError(file, "pipeline.params", str(exc),
                                "fix the parameter values") from None
    return dict(params)


def _secrets(file: str, pipeline, secrets: Any) -> dict[str, SecretRef]:
    if not isinstance(secrets, dict):
        raise CardError(file, "pipeline.secrets", "is not a mapping",
                        "write 'secrets: {NAME: {env: VAR}}'")
    refs = {}
    for key, how in secrets.items():
        where = f"pipeline.secrets.{key}"
        if key not in pipeline.secrets:
            allowed = ", ".join(pipeline.secrets) or "none"
            raise CardError(file, where, f"is not a secret parameter of pipeline "
                            f"{pipeline.name}", f"secret parameters: {allowed}")
        if not isinstance(how, dict) or len(how) != 1 or next(iter(how)) not in SECRET_SOURCES:
            raise CardError(file, where, "must be {env: VAR} or {file: PATH}",
                            f"write '{key}: {{env: VAR}}' (never the secret value itself)")
        ((kind, ref),) = how.items()
        ref = _string(file, f"{where}.{kind}", ref)
        refs[key] = SecretRef(key, env=ref if kind == "env" else None,
                              file=ref if kind == "file" else None)
    missing = [k for k in pipeline.secrets if k not in refs]
    if missing:
        raise CardError(file, f"pipeline.secrets.{missing[0]}", "is missing (required by "
                        f"pipeline {pipeline.name})",
                        f"add '{missing[0]}: {{env: VAR}}' under pipeline.secrets")
    return dict(sorted(refs.items()))


def _formats(file: str, pipeline, value: Any) -> tuple[str, ...]:
    if value is None:
        return tuple(pipeline.formats)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise CardError(file, "formats", f"{value!r} is not a non-empty list",
                        f"write 'formats: [{', '.join(pipeline.formats)}]'")
    for fmt in value:
        if fmt not in pipeline.formats:
            raise CardError(file, "formats", f"{fmt!r} is not a format pipeline "
                            f"{pipeline.name} writes", f"use {', '.join(pipeline.formats)}")
    if len(set(value)) != len(value):
        raise CardError(file, "formats", "lists a format twice", "list each format once")
    return tuple(value)


def _check_vars(file: str, field_name: str, text: str) -> None:
    """Reject ``$`` that is not part of a well-formed ``${VAR}``."""
    if "$" in VAR_RE.sub("", text):
        raise CardError(file, field_name, f"{text!r} has a '$' that is not ${{VAR}}",
                        "write environment variables as ${VAR} (letters, digits, '_')")
