"""The web app: routes, query parsing, and the error pages.

Pages (all ``GET``; the app never writes)::

    /                                       the catalog: every build, lineage graph
    /d/REF                                  a dataset (REF = NAME or NAME@vN); ?split=
    /d/REF/grid                             class grid; ?split= &page= &n= &seed= &cls=
    /d/REF/sample/SPLIT/KEY                 one sample and the same key in related builds
    /img/REF/SPLIT/KEY                      the stored image; ?size=N: a JPEG thumbnail
    /aug/REF/KEY/A                          stored augmentation A of a reinforced sample
    /diff/REF/SPLIT/KEY?against=REF2        heat map of where REF2's pixels differ

Unknown datasets, versions, splits, classes, keys, pages and paths give a 404 page naming
close matches; an unreadable sample gives a placeholder image (and its reason on the page);
any other fault a one-line 500 page, never a traceback.
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from shardforge.variants.stylize.styles import StyleSetError
from shardforge.view import extras, pages
from shardforge.view.datasets import find_position, images_of, split_index
from shardforge.view.errors import NotFound, close_matches
from shardforge.view.images import (
    MAX_THUMB,
    MIN_THUMB,
    READ_FAULTS,
    Encoded,
    image_or_placeholder,
    placeholder,
)
from shardforge.view.model import Home, all_builds, find_build

TEMPLATES = Path(__file__).parent / "templates"
#: Samples per class a grid may ask for.
MAX_PER_CLASS = 64
_CACHE = {"Cache-Control": "max-age=3600"}    # registered builds never change
log = logging.getLogger("shardforge.view")


def _int(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an int in ``[lo, hi]``; :class:`NotFound` otherwise."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise NotFound(f"{name}={text!r} is not a whole number in {lo} to {hi}")
    return value


def create_app(home: Home = None) -> Starlette:
    """The read-only web app over the catalog at ``home`` (default ``$SHARDFORGE_HOME``,
    else ``~/.shardforge``)."""
    from shardforge.catalog.home import resolve_home

    home = resolve_home(home)
    templates = Jinja2Templates(directory=str(TEMPLATES))

    def render(request: Request, name: str, context: dict, status: int = 200) -> Response:
        return templates.TemplateResponse(request, name, {"home": str(home), **context},
                                          status_code=status)

    def catalog(request: Request) -> Response:
        return render(request, "catalog.html", pages.catalog_page(home))

    def dataset(request: Request) -> Response:
        ref = request.path_params["ref"]
        return render(request, "dataset.html",
                      pages.dataset_page(home, ref, request.query_params.get("split")))

    def grid(request: Request) -> Response:
        context = pages.grid_page(
            home, request.path_params["ref"], request.query_params.get("split"),
            _int(request, "page", 0, 0, 10**9), _int(request, "n", 8, 1, MAX_PER_CLASS),
            _int(request, "seed", 0, 0, 2**32 - 1), request.query_params.get("cls"))
        return render(request, "grid.html", context)

    def sample(request: Request) -> Response:
        p = request.path_params
        return render(request, "sample.html", pages.sample_page(home, p["ref"], p["split"],
                                                                p["key"]))

    def _send(image: Encoded, reason: str | None, status: int = 200) -> Response:
        headers = dict(_CACHE) if reason is None else {"X-Shardforge-Error": _header(reason)}
        return Response(image.data, status_code=status, media_type=image.mime,
                        headers=headers)

    def image(request: Request) -> Response:
        p = request.path_params
        size = _int(request, "size", 0, 0, MAX_THUMB)
        if size:
            size = max(size, MIN_THUMB)
        try:
            build = find_build(home, p["ref"])
            split_index(images_of(build.out), p["split"], build.ref)
            find_position(build.out, p["split"], p["key"], build.ref)
        except NotFound as exc:
            return _send(placeholder(size or 128, exc.message), exc.message, 404)
        return _send(*image_or_placeholder(build.out, p["split"], p["key"], size))

    def _derived(make, missing: tuple[type[Exception], ...] = ()) -> Response:
        """The image ``make()`` returns, or a placeholder with the reason: 404 for an
        unknown name (and the ``missing`` exceptions), 200 for a read fault."""
        try:
            return _send(make(), None)
        except NotFound as exc:
            return _send(placeholder(128, exc.message), exc.message, 404)
        except (*missing, *READ_FAULTS) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            return _send(placeholder(128, reason), reason, 404 if isinstance(exc, missing)
                         else 200)

    def augmentation(request: Request) -> Response:
        p = request.path_params
        return _derived(lambda: extras.replayed_view(find_build(home, p["ref"]).out, p["key"],
                                                     int(p["aug"])))

    def diff(request: Request) -> Response:
        p = request.path_params
        against = request.query_params.get("against", "")
        return _derived(lambda: extras.difference(find_build(home, p["ref"]).out,
                                                  find_build(home, against).out,
                                                  p["split"], p["key"]))

    def style(request: Request) -> Response:
        key = request.query_params.get("key", "")
        return _derived(lambda: extras.style_png(
            find_build(home, request.path_params["ref"]).out, key), (KeyError, StyleSetError))

    def not_found(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NotFound):
            message, suggestions = exc.message, exc.suggestions
        else:
            message, suggestions = _unknown_path(home, request.url.path)
        return render(request, "error.html", {"title": "Not found", "message": message,
                                              "suggestions": suggestions}, 404)

    def server_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        message = (f"{type(exc).__name__}: {exc}. The catalog or a dataset file could not be "
                   "read as expected; `shardforge catalog verify NAME` checks a build's files")
        return render(request, "error.html", {"title": "Error", "message": message,
                                              "suggestions": [("catalog", "/")]}, 500)

    routes = [
        Route("/", catalog), Route("/d/{ref}", dataset), Route("/d/{ref}/grid", grid),
        Route("/d/{ref}/sample/{split}/{key}", sample),
        Route("/img/{ref}/{split}/{key}", image), Route("/aug/{ref}/{key}/{aug:int}", augmentation),
        Route("/diff/{ref}/{split}/{key}", diff), Route("/style/{ref}", style),
    ]
    handlers = {NotFound: not_found, 404: not_found, Exception: server_error}
    return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]


def _header(reason: str) -> str:
    """``reason`` as one latin-1 line for a response header."""
    return reason.replace("\n", " ")[:500].encode("latin-1", "replace").decode("latin-1")


_PAGES = ("d", "img", "aug", "diff")


def _unknown_path(home: Home, path: str) -> tuple[str, list[tuple[str, str]]]:
    """The message and suggestions of a path no route matches: datasets whose names are
    close to its first part (``/tiny`` -> ``/d/tiny``), else the pages there are."""
    first = path.strip("/").split("/", 1)[0]
    names = sorted({b.name for b in all_builds(home)})
    suggestions = [(f"/d/{n}", f"/d/{n}") for n in close_matches(first, names)] if first else []
    if first in _PAGES or first in names:
        suggestions = suggestions or [(f"/d/{n}", f"/d/{n}") for n in names[:5]]
    message = (f"no page {path!r}: pages are / (the catalog), /d/NAME (a dataset), "
               "/d/NAME/grid (its class grid), /d/NAME/sample/SPLIT/KEY (a sample)")
    suggestions.append(("the catalog", "/"))
    return message, suggestions
