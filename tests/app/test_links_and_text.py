"""Deep-link query parameters (crystalframer.app.links) and the Markdown helpers (crystalframer.app.text)."""

from __future__ import annotations

import math

import pytest

from crystalframer.app.links import DeepLink, example_from_slug, example_slug, from_params, to_params
from crystalframer.app.text import bold, finetune_summary, number_with_unit
from crystalframer.examples import list_examples


def test_example_slugs_are_unique_and_resolve():
    slugs = [example_slug(n) for n in list_examples()]
    assert len(set(slugs)) == len(slugs)
    assert slugs[:4] == ["SrTiO3", "TiO2", "MgAl2O4", "ZnS"]
    for name, slug in zip(list_examples(), slugs):
        assert example_from_slug(slug) == name
        assert example_from_slug(slug.lower()) == name
        assert example_from_slug(name) == name
    assert example_from_slug("Unobtainium") is None and example_from_slug("") is None


@pytest.mark.parametrize("link", [
    DeepLink(),
    DeepLink(example="ZnS (zincblende)"),
    DeepLink(model="mp-eform-max", example="TiO2 (rutile)", conventional=True),
    DeepLink(example="SrTiO3 (cubic perovskite)", layer=0, head=3, atom=1, view="e1"),
    DeepLink(layer=3, head="mean", atom=0, view="c"),
])
def test_round_trip(link):
    params = to_params(link)
    assert all(isinstance(v, str) for v in params.values())
    assert from_params(params) == link
    # st.query_params.get_all gives lists: those read the same.
    assert from_params({k: [v] for k, v in params.items()}) == link


def test_url_conventions_and_junk():
    params = to_params(DeepLink(example="SrTiO3 (cubic perovskite)", layer=0, head=2, atom=1))
    assert params == {"example": "SrTiO3", "layer": "1", "head": "2", "atom": "1"}  # layers 1-based in the URL
    assert "view" not in to_params(DeepLink(view="oblique"))
    junk = from_params({"example": "Kryptonite", "layer": "0", "head": "two", "atom": "-1", "view": "sideways",
                        "model": "<script>", "conventional": "maybe"})
    assert junk == DeepLink() and junk.is_empty()


def test_bold_never_leaves_a_space_inside_the_markers():
    assert bold("0.2792 ") == "**0.2792**"
    assert bold(" 0.2792 eV/atom ") == "**0.2792 eV/atom**"
    assert bold("") == ""
    assert bold("a*b_c") == r"**a\*b\_c**"
    assert number_with_unit(0.279234, "") == "0.2792"
    assert number_with_unit(0.279234, None) == "0.2792"
    assert number_with_unit(0.279234, "eV/atom") == "0.2792 eV/atom"
    assert number_with_unit(math.nan, "eV") == "n/a"


@pytest.mark.parametrize("unit", ["", " ", None, "eV/atom"])
def test_finetune_summary_markdown(unit):
    text = finetune_summary(0.279234, 0.5312, unit, 3, 38, 10)
    shown = "0.2792" + (" eV/atom" if unit == "eV/atom" else "")
    assert text.startswith(f"Validation MAE **{shown}** after 3 epoch(s)")
    assert " **" not in text.replace("MAE **", "") and "** " in text  # closing marker right after the number
    assert "from 0.5312" in text and "38 train / 10 validation" in text
    assert "n/a before training" in finetune_summary(0.3, math.nan, unit, 1, 1, 1)
