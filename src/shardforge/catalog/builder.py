"""``shardforge build NAME``: build a card's dataset, its missing parents first, reusing builds.

For each card on the way from the requested dataset up to its source:

1. resolve the card: parameters with defaults, ``${VAR}`` expanded, secrets read;
   the *card hash* covers what decides the output (pipeline, parameters, formats, source
   kind and demo spec or parent name, secret fingerprints), not description, licence or
   citation, and not the source location;
2. resolve what it is built from (its *origin*): the parent's build (built first when
   missing), or the source location (``--source`` override, else the card's path);
3. compute the content digests of the files its parameters name (the pipeline's
   ``inputs``: an observer checkpoint, teacher weights, a recipe, a style directory; see
   :mod:`shardforge.build.inputs`);
4. reuse the latest catalog build with the same name, card hash and origin, the same input
   digests, and all files present with their recorded sizes and sha256 (re-hashed in full,
   so a same-size corruption is rebuilt, not reused); otherwise say what changed
   and run the pipeline into ``OUT_ROOT/datasets/NAME/KEY`` (``KEY`` from card hash,
   origin and input digests, so an interrupted build resumes in place and a changed input
   never reuses the old shards) and register the result with its input digests.

Ray starts (a private loopback runtime, unless ``ray_address``/``RAY_ADDRESS`` name a
cluster) only when something is actually built.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from shardforge.build.inputs import Input, changes, inputs_key, recorded
from shardforge.build.pipeline import BuildRequest, ParentDataset, Pipeline, TrainRecipe
from shardforge.build.secrets import Secrets
from shardforge.catalog.cards import Card, expand, find_cards_dir, load_cards
from shardforge.catalog.entry import Build
from shardforge.catalog.errors import (
    CardError,
    CatalogError,
    PipelineNotImplemented,
    UnknownDataset,
)
from shardforge.catalog.home import resolve_home
from shardforge.catalog.lookup import get
from shardforge.catalog.pipelines import get_pipeline
from shardforge.catalog.prepare import (
    demo_dir,
    hash_card,
    input_digests,
    located_params,
    materialise_demo,
    read_secrets,
    same_inputs,
)
from shardforge.catalog.register import register_build
from shardforge.catalog.store import Store
from shardforge.catalog.verifier import verify_build
from shardforge.names import did_you_mean


@dataclass(frozen=True)
class ResolvedCard:
    """A card ready to build (the builder's own record; the pipeline receives a
    :class:`~shardforge.build.pipeline.BuildRequest` made from it).

    ``params``: every parameter (defaults applied, ``${VAR}`` expanded). ``secrets``:
    secret values by name (``repr`` shows fingerprints only). ``source_url``: the location
    to read for ``path`` and ``demo`` sources, None for ``dataset`` sources (the parent
    build is passed separately). ``inputs``: content digests of the files the parameters
    name (:mod:`shardforge.build.inputs`).
    """

    card: Card
    params: dict
    secrets: Secrets
    source_url: str | None
    card_hash: str
    inputs: Mapping[str, Input] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.card.name


def build_dataset(name: str, *, home: str | os.PathLike | None = None,
                  cards_dir: str | os.PathLike | None = None,
                  sources: Mapping[str, str] | None = None, out_root: str | None = None,
                  ray_address: str | None = None, rebuild: bool = False,
                  dry_run: bool = False, log: TextIO | None = None,
                  train_recipe: TrainRecipe | None = None) -> Build | None:
    """Build (or reuse) the dataset of card ``name`` and return its catalog entry.

    ``sources`` maps card names to source locations, overriding their ``source.path``.
    ``out_root`` (default: the catalog home) receives ``datasets/NAME/KEY``. ``rebuild``
    runs the named card's pipeline even when a build can be reused (parents are still
    reused). ``dry_run`` builds nothing and returns the build that would be reused, or
    None when something would be built. Raises :class:`CardError`,
    :class:`PipelineNotImplemented` or :class:`UnknownDataset` before any work when the
    request cannot be served. ``train_recipe`` trains a ``recipe:CONFIG`` model a card
    names (see :class:`~shardforge.build.pipeline.BuildRequest`); the CLI passes training's.
    """
    cards = load_cards(find_cards_dir(cards_dir))
    sources = dict(sources or {})
    for card_name in sources:
        if card_name not in cards:
            raise UnknownDataset(f"--source {card_name}=...: no card {card_name!r}"
                                 f"{did_you_mean(card_name, cards)}")
        card = cards[card_name]
        if card.source_kind != "path":
            raise CardError(card.file, f"source.{card.source_kind}",
                            "is not a path, so --source cannot replace it",
                            "give --source only for cards with 'source: {path: ...}'")
    home_path = resolve_home(home)
    builder = _Builder(cards, home_path, sources, out_root or str(home_path), ray_address,
                       log if log is not None else sys.stderr)
    builder.dry_run = dry_run
    builder.train_recipe = train_recipe
    with builder.ray:
        return builder.ensure(name, (), top=True, dry=dry_run, rebuild=rebuild)


class _Builder:
    def __init__(self, cards: dict[str, Card], home: Path, sources: dict[str, str],
                 out_root: str, ray_address: str | None, log: TextIO) -> None:
        self.cards, self.home, self.sources = cards, home, sources
        self.out_root, self.ray_address, self.log = out_root, ray_address, log
        self.store = Store(home)
        self.ray = contextlib.ExitStack()
        self._ray_started = False
        self.dry_run = False
        self.train_recipe: TrainRecipe | None = None

    def ensure(self, name: str, chain: tuple[str, ...], *, top: bool, dry: bool,
               rebuild: bool = False) -> Build | None:
        """The build of card ``name``: reused, or built (None in ``dry`` mode when a build
        would be needed)."""
        if name in chain:
            raise CatalogError(f"cards form a cycle: {' -> '.join((*chain, name))}; "
                               "fix the source.dataset fields")
        card = self._card(name)
        pipeline = get_pipeline(card.pipeline)
        if pipeline.implemented:
            return self._ensure(card, pipeline, chain, top=top, dry=dry, rebuild=rebuild)
        try:
            return self._ensure(card, pipeline, chain, top=top, dry=True)
        except PipelineNotImplemented:
            raise
        except CatalogError:   # say first that it cannot be built: fixing this would not help
            return self._cannot_build(card, pipeline)

    def _ensure(self, card: Card, pipeline: Pipeline, chain: tuple[str, ...], *, top: bool,
                dry: bool, rebuild: bool = False) -> Build | None:
        name = card.name
        resolved_params = self._params(card, pipeline)
        secrets = read_secrets(card)
        card_hash = hash_card(card, resolved_params, secrets)
        located = self._located(resolved_params, pipeline)
        inputs = input_digests(card, pipeline, located)     # before building a parent
        parent: Build | None = None
        source_url: str | None = None
        if card.source_kind == "dataset":
            parent = self._parent(card, chain, dry)
            if parent is None:      # would be built first: we plan only
                return self._cannot_build(card, pipeline)
            origin = parent.ref
        elif card.source_kind == "demo":
            source_url = demo_dir(self.home, card.source)
            origin = source_url
        else:
            source_url = self._source_path(card, top)
            if source_url is None:  # unresolved parent source: use its latest build
                return self._latest_of_card(card, card_hash)
            origin = source_url
        candidates = self.store.find_card_builds(name, card_hash, origin)
        existing = next((b for b in candidates if same_inputs(b, inputs)), None)
        if existing is None and not rebuild:
            self._say_why(card, candidates, card_hash, origin, secrets, inputs)
        if existing is not None and not rebuild:
            # Re-hash in full: a same-size corruption (a bit flip) must not be reused.
            damage = verify_build(existing, rehash=True)
            if damage.ok:
                print(f"{name}: reusing {existing.ref} (built {existing.created}; same card "
                      f"and {'parent' if parent else 'source'}; {damage.checked} files, "
                      f"{damage.bytes:,} B re-hashed)", file=self.log)
                return existing
            first = damage.problems[0]
            print(f"{name}: {existing.ref} has {len(damage.problems)} missing or corrupt "
                  f"file(s) (first: {first.url}: {first.problem}); building again",
                  file=self.log)
        if dry:
            return self._cannot_build(card, pipeline)
        return self._run(card, pipeline, ResolvedCard(card, resolved_params, secrets,
                                                      source_url, card_hash, inputs),
                         parent, origin)

    # -- steps -------------------------------------------------------------------------

    def _card(self, name: str) -> Card:
        try:
            return self.cards[name]
        except KeyError:
            raise UnknownDataset(f"no dataset card {name!r}{did_you_mean(name, self.cards)} "
                                 "(`shardforge catalog cards` lists them)") from None

    def _params(self, card: Card, pipeline: Pipeline) -> dict:
        params = pipeline.with_defaults(card.params)
        return {k: expand(v, card.file, f"pipeline.params.{k}") if isinstance(v, str) else v
                for k, v in params.items()}

    def _located(self, params: dict, pipeline: Pipeline) -> dict:
        """``params`` with every dataset-naming parameter (``Param.dataset``) that holds a
        catalog name replaced by that dataset's location (what the pipeline reads)."""
        return located_params(params, pipeline, self.home)

    def _parent(self, card: Card, chain: tuple[str, ...], dry: bool) -> Build | None:
        ref = card.parent
        assert ref is not None
        if ref.version is not None:
            try:
                pinned = get(ref, self.home)
            except UnknownDataset as exc:
                raise UnknownDataset(f"{card.file}: source.dataset: {exc}") from None
            return _intact(pinned, f"build {ref.name} again (its card, or `shardforge ingest`) "
                                   f"and point {card.file} at the new version")
        if ref.name in self.cards:
            return self.ensure(ref.name, (*chain, card.name), top=False, dry=dry)
        latest = self.store.get(ref.name)
        if latest is None:
            raise CardError(card.file, "source.dataset", f"{ref.name!r} has neither a card "
                            f"nor a catalog build{did_you_mean(ref.name, self.cards)}",
                            f"add datasets/{ref.name}.yaml or ingest it with "
                            f"`shardforge ingest SRC --name {ref.name} --out URL`")
        return _intact(latest, f"ingest it again (`shardforge ingest SRC --name {ref.name} "
                               f"--out {latest.out}`)")

    def _source_path(self, card: Card, top: bool) -> str | None:
        """The source location of a ``path`` card, or None for a parent whose path is not
        given (the caller then uses the parent's latest build of this card)."""
        fix = f"pass --source {'' if top else card.name + '='}PATH to `shardforge build`"
        if card.name in self.sources:
            url = self.sources[card.name]
        elif card.source is None:
            if not top:
                return None
            raise CardError(card.file, "source.path", "is not set: this card's source is "
                            "given at build time", fix)
        else:
            try:
                url = expand(card.source, card.file, "source.path",
                             fix + " or export the variable")
            except CardError:
                if not top:
                    return None
                raise
        url = _normalise(url)
        from shardforge.storage import resolve

        try:
            exists = resolve(url).exists()
        except (ValueError, OSError) as exc:
            raise CardError(card.file, "source.path", f"{url!r} cannot be opened ({exc})",
                            fix) from None
        if not exists:
            raise CardError(card.file, "source.path", f"{url!r} does not exist", fix)
        return url

    def _latest_of_card(self, card: Card, card_hash: str) -> Build:
        found = self.store.find_card_build(card.name, card_hash, None)
        if found is None:
            raise CardError(card.file, "source.path", "is not given and no build of this card "
                            "exists yet", f"pass --source {card.name}=PATH to build it first")
        _intact(found, f"pass --source {card.name}=PATH to build it again")
        print(f"{card.name}: using {found.ref} (built from {found.source}; pass --source "
              f"{card.name}=PATH to build from another source)", file=self.log)
        return found

    def _say_why(self, card: Card, candidates: list[Build], card_hash: str, origin: str,
                 secrets: Secrets, inputs: Mapping[str, Input]) -> None:
        """Log why no earlier build of ``card`` can be reused (nothing when it has none)."""
        if candidates:       # same card and origin: an input's content changed
            latest = candidates[0]
            why = "; ".join(changes(latest.inputs, inputs))
            print(f"{card.name}: {why} since {latest.ref}: rebuilding", file=self.log)
            return
        latest = self.store.get(card.name)
        if latest is None:
            return
        reasons = [f"secret {n} changed (fingerprint {latest.secrets.get(n, 'none')} -> {fp})"
                   for n, fp in secrets.fingerprints().items() if latest.secrets.get(n) != fp]
        if latest.origin != origin:
            reasons.append(f"built from {origin} ({latest.ref}: from {latest.origin})")
        if not reasons:
            reasons.append(f"the card changed (card hash {latest.card_hash[:12]} -> "
                           f"{card_hash[:12]})" if latest.card_hash else
                           "it was not built from a card")
        print(f"{card.name}: {'; '.join(reasons)} (compared with {latest.ref}): building anew",
              file=self.log)

    def _cannot_build(self, card: Card, pipeline: Pipeline) -> None:
        """Planning only: raise for a pipeline that is not implemented, else report (in a
        dry run) that the card would be built."""
        if not pipeline.implemented:
            raise PipelineNotImplemented(
                f"{card.file}: pipeline {pipeline.name!r} is not implemented yet; it comes "
                f"with {pipeline.planned or 'a later release'}. {card.name} cannot be built "
                "until then; nothing was built")
        if self.dry_run:
            print(f"{card.name}: would build with pipeline {pipeline.name}", file=self.log)
        return None

    def _run(self, card: Card, pipeline: Pipeline, resolved: ResolvedCard,
             parent: Build | None, origin: str) -> Build:
        from shardforge.engine.cluster import ray_session
        from shardforge.storage import resolve

        ident = f"{resolved.card_hash}\0{origin}"
        if resolved.inputs:     # without inputs: the key of builds made before inputs existed
            ident += f"\0{inputs_key(resolved.inputs)}"
        key = hashlib.sha256(ident.encode()).hexdigest()[:12]
        out = resolve(self.out_root).join("datasets", card.name, key).url
        if card.source_kind == "demo":
            materialise_demo(resolved.source_url, card.source, self.log)
        if not self._ray_started:
            self.ray.enter_context(ray_session(self.ray_address))
            self._ray_started = True
        print(f"{card.name}: building with pipeline {pipeline.name} from {origin} -> {out}",
              file=self.log)
        assert pipeline.build is not None
        request = BuildRequest(
            name=card.name, params=self._located(resolved.params, pipeline), out=out,
            secrets=resolved.secrets, source_url=resolved.source_url,
            parent=None if parent is None else ParentDataset(parent.out, parent.ref,
                                                             tuple(parent.classes)),
            ray_address=self.ray_address, inputs=resolved.inputs,
            train_recipe=self.train_recipe)
        summary = pipeline.build(request)
        summary = _only_formats(card, summary)
        # A variant records what its card cannot say (e.g. a teacher's sha256): keep both.
        params = {**resolved.params, **summary.get("variant", {}).get("params", {})}
        build = register_build(self.home, card.name, summary, card_hash=resolved.card_hash,
                               parent=parent.ref if parent else None, pipeline=pipeline.name,
                               params=params, secret_params=resolved.secrets,
                               card=card.meta(),
                               source=summary.get("source") if parent else origin,
                               inputs=recorded(resolved.inputs))
        print(f"{card.name}: registered {build.ref} ({build.samples:,} samples)", file=self.log)
        return build


# -- helpers ---------------------------------------------------------------------------

def _intact(build: Build, fix: str) -> Build:
    """``build`` when every file re-hashes to its record; else CatalogError naming the
    first damaged file, ``shardforge catalog verify`` and ``fix`` (a build that cannot be
    rebuilt here is never used damaged)."""
    report = verify_build(build, rehash=True)
    if report.ok:
        return build
    first = report.problems[0]
    raise CatalogError(f"{build.ref} has {len(report.problems)} missing or corrupt file(s) "
                       f"(first: {first.url}: {first.problem}); `shardforge catalog verify "
                       f"{build.ref}` lists them; {fix}")


def _only_formats(card: Card, summary: dict) -> dict:
    formats = summary.get("formats") or {}
    missing = [f for f in card.formats if not formats.get(f)]
    if missing:
        raise CatalogError(f"pipeline {card.pipeline} wrote no {', '.join(missing)} files for "
                           f"{card.name}, which its card lists ({card.file}: formats)")
    kept = {f: formats[f] for f in card.formats}
    if "wds" in kept and formats.get("wids"):   # the tars' wids index goes with them
        kept["wids"] = formats["wids"]
    return {**summary, "formats": kept}


def _normalise(url: str) -> str:
    return url if "://" in url else os.path.abspath(os.path.expanduser(url))


