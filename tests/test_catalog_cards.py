"""Dataset cards: the repository's cards validate; invalid cards name file, field and fix."""

from __future__ import annotations

import textwrap

import pytest

from shardforge.catalog.builder import build_dataset
from shardforge.catalog.cards import expand, find_cards_dir, load_card, load_cards
from shardforge.catalog.errors import CardError, CatalogError, PipelineNotImplemented
from shardforge.catalog.pipelines import get_pipeline, pipeline_names
from shardforge.catalog.store import Store
from shardforge.cli import main

REPO_CARDS = {"demo", "demo-64", "demo-plus", "demo-stylized", "demo-rded-ipc10", "demo-cuda",
              "imagenet", "imagenet-rn18", "imagenet-256", "imagenet-plus",
              "stylized-imagenet", "imagenet-rded-ipc10", "imagenet100-cuda"}
INGEST_CARDS = {"demo", "imagenet", "imagenet-rn18", "imagenet-256"}

GOOD = """\
name: {name}
description: A test card.
source: {{dataset: demo}}
pipeline:
  name: ingest
  params: {{max_res: 64}}
formats: [wds, beton]
licence: CC0
"""


def _card(tmp_path, text: str, name: str = "card") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_repository_cards_validate():
    cards = load_cards(find_cards_dir(None))
    assert set(cards) == REPO_CARDS
    assert {c.pipeline for c in cards.values()} == set(pipeline_names())
    assert cards["imagenet"].source_kind == "path"
    assert cards["imagenet"].source == "${IMAGENET_DIR}"
    assert cards["demo"].source_kind == "demo"
    for name in REPO_CARDS - INGEST_CARDS:
        assert cards[name].parent is not None
    assert set(cards["imagenet100-cuda"].secrets) == {"private_key"}
    assert all(c.licence and c.description for c in cards.values())


def test_every_builtin_pipeline_is_implemented():
    assert set(pipeline_names()) == {"ingest", "unlearnable", "reinforce", "distill", "stylize"}
    for name in pipeline_names():
        assert get_pipeline(name).implemented, name
    with pytest.raises(CatalogError, match="did you mean: distill"):
        get_pipeline("distil")


def test_good_card_loads(tmp_path):
    card = load_card(_card(tmp_path, GOOD.format(name="card")))
    assert (card.name, card.pipeline, card.params, card.formats) == (
        "card", "ingest", {"max_res": 64}, ("wds", "beton"))
    assert str(card.parent) == "demo"


@pytest.mark.parametrize("edit, field, fix", [
    (lambda t: t.replace("name: card", "name: other"), "name", "rename the file"),
    (lambda t: t.replace("licence: CC0\n", ""), "licence", "add 'licence:'"),
    (lambda t: t.replace("licence:", "license:"), "license", "did you mean: licence"),
    (lambda t: t.replace("max_res: 64", "max_ress: 64"), "pipeline.params.max_ress",
     "did you mean: max_res"),
    (lambda t: t.replace("max_res: 64", "max_res: big"), "pipeline.params.max_res",
     "use int or null (default 256"),
    (lambda t: t.replace("max_res: 64", "write_mode: png"), "pipeline.params.write_mode",
     "jpg"),
    (lambda t: t.replace("max_res: 64", "write_mode: smart"), "pipeline.params",
     "fix the parameter"),
    (lambda t: t.replace("name: ingest", "name: stylise"), "pipeline.name", "stylize"),
    (lambda t: t.replace("{dataset: demo}", "{url: s3://x}"), "source.url", "path"),
    (lambda t: t.replace("{dataset: demo}", "{dataset: card}"), "source.dataset",
     "parent dataset"),
    (lambda t: t.replace("{dataset: demo}", "{path: $HOME/x}"), "source.path", "${VAR}"),
    (lambda t: t.replace("{dataset: demo}", "{demo: {num_classes: 99}}"), "source.demo",
     "DemoSpec"),
    (lambda t: t.replace("[wds, beton]", "[tfrecord]"), "formats", "wds, beton"),
    (lambda t: t.replace("description: A test card.", "description: {a: 1}"),
     "description", "description: TEXT"),
    (lambda t: t + "pipeline: [\n", "line", "YAML syntax"),
])
def test_invalid_cards_name_file_field_and_fix(tmp_path, edit, field, fix):
    path = _card(tmp_path, edit(GOOD.format(name="card")))
    with pytest.raises(CardError) as info:
        load_card(path)
    err = info.value
    assert err.file == path
    assert err.field.startswith(field), str(err)
    assert fix in err.fix, str(err)
    assert str(err).startswith(f"{path}: {err.field}: ") and "\n" not in str(err)


UNLEARNABLE = """\
name: card
description: Unlearnable test card.
source: {dataset: demo}
pipeline:
  name: unlearnable
  params: {method: cuda}
  secrets:
    private_key: {env: TEST_SHARDFORGE_KEY}
licence: CC0
"""


def test_secret_cards(tmp_path):
    card = load_card(_card(tmp_path, UNLEARNABLE))
    assert card.secrets["private_key"].env == "TEST_SHARDFORGE_KEY"
    leaked = UNLEARNABLE.replace("{method: cuda}", "{method: cuda, private_key: abc}")
    with pytest.raises(CardError, match="pipeline.params.private_key: is a secret") as info:
        load_card(_card(tmp_path, leaked))
    assert "secrets:" in info.value.fix
    missing = UNLEARNABLE.replace("  secrets:\n    private_key: {env: TEST_SHARDFORGE_KEY}\n", "")
    with pytest.raises(CardError, match="pipeline.secrets.private_key: is missing"):
        load_card(_card(tmp_path, missing))
    valued = UNLEARNABLE.replace("{env: TEST_SHARDFORGE_KEY}", "0123456789abcdef")
    with pytest.raises(CardError, match=r"must be \{env: VAR\} or \{file: PATH\}"):
        load_card(_card(tmp_path, valued))


def test_expand_requires_set_variables(monkeypatch):
    monkeypatch.setenv("SF_TEST_DIR", "/data/x")
    assert expand("${SF_TEST_DIR}/train", "f.yaml", "source.path") == "/data/x/train"
    monkeypatch.delenv("SF_TEST_DIR")
    with pytest.raises(CardError, match=r"f.yaml: source.path: \$\{SF_TEST_DIR\} is not set"):
        expand("${SF_TEST_DIR}/train", "f.yaml", "source.path")
    monkeypatch.setenv("SF_TEST_DIR", "")
    with pytest.raises(CardError, match="is not set"):
        expand("${SF_TEST_DIR}", "f.yaml", "source.path")


def test_build_imagenet_without_source_names_card_field_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    with pytest.raises(CardError) as info:
        build_dataset("imagenet", home=tmp_path)
    assert info.value.file.endswith("imagenet.yaml") and info.value.field == "source.path"
    assert "--source" in info.value.fix
    with pytest.raises(CardError, match="does not exist"):
        build_dataset("imagenet", home=tmp_path, sources={"imagenet": str(tmp_path / "nope")})
    with pytest.raises(CardError, match="demo.yaml: source.demo: is not a path"):
        build_dataset("demo", home=tmp_path, sources={"demo": str(tmp_path)})
    assert Store(tmp_path).names() == []


def test_build_of_a_planned_pipeline_fails_naming_it(tmp_path, monkeypatch):
    """A pipeline declared without a build function validates cards but refuses to build,
    before any parent is built."""
    from shardforge.build import pipeline as registry
    from shardforge.catalog import pipelines

    planned = pipelines.Pipeline(name="future", summary="a later variant", planned="v2")
    pipelines.pipeline_names()                      # load the built-ins first
    monkeypatch.setitem(registry._REGISTRY, "future", planned)
    cards = tmp_path / "cards"
    cards.mkdir()
    _card(cards, GOOD.format(name="fut").replace("name: ingest", "name: future")
          .replace("params: {max_res: 64}", "params: {}"), name="fut")
    with pytest.raises(PipelineNotImplemented, match="pipeline 'future' is not implemented"):
        build_dataset("fut", home=tmp_path, cards_dir=str(cards))
    assert Store(tmp_path).names() == []       # nothing built, parents included


def test_cli_cards_and_build_errors(tmp_path, capsys, monkeypatch):
    assert main(["catalog", "cards", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "imagenet100-cuda" in out and f"{len(REPO_CARDS)} cards" in out
    bad = tmp_path / "cards"
    bad.mkdir()
    _card(bad, GOOD.format(name="card").replace("max_res: 64", "max_ress: 64"))
    assert main(["catalog", "cards", "--cards", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "card.yaml: pipeline.params.max_ress" in err[0]
    monkeypatch.delenv("SHARDFORGE_DEMO_CUDA_KEY", raising=False)
    assert main(["build", "demo-cuda", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SHARDFORGE_DEMO_CUDA_KEY is not set" in err[0]
    assert main(["build", "imagnet", "--home", str(tmp_path)]) == 2
    assert "did you mean: imagenet" in capsys.readouterr().err
    monkeypatch.delenv("IMAGENET_DIR", raising=False)
    assert main(["build", "imagenet", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "imagenet.yaml: source.path" in err and "--source" in err


def test_source_overrides_parse():
    from shardforge.cli.catalog import parse_sources

    url = "s3://bucket/imagenet?endpoint_override=127.0.0.1:9000&scheme=http"
    assert parse_sources("imagenet", ["/data/in"]) == {"imagenet": "/data/in"}
    assert parse_sources("imagenet-plus", ["imagenet=/data/in"]) == {"imagenet": "/data/in"}
    assert parse_sources("imagenet", [url]) == {"imagenet": url}
    assert parse_sources("x", [f"imagenet={url}"]) == {"imagenet": url}
    with pytest.raises(CatalogError, match="twice"):
        parse_sources("imagenet", ["/a", "imagenet=/b"])
    with pytest.raises(CatalogError, match="no path"):
        parse_sources("imagenet", ["imagenet="])
