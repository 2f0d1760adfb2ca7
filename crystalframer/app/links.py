"""Deep links: the page's state (model, example structure, layer, head, atom, view) as URL query parameters.

Plain functions (no Streamlit): :func:`to_params` writes a :class:`DeepLink` as ``{name: str}``, :func:`from_params`
reads one back, tolerating junk (unknown examples, non-numbers) by dropping it. Examples are named by short slugs
(``SrTiO3``, ``ZnS``, ``C3N4``, …; the full names are accepted too). Layers are 1-based, as the app shows them.

    /attention?example=ZnS&layer=2&head=3&atom=1        ZnS, layer 2, head 3, atom 1 as the target
    /compare?example=SrTiO3&atom=1&head=0                Ti in SrTiO3 as the centre atom
    /?example=TiO2&conventional=1&model=mp-eform-max     the Home page with rutile's conventional cell
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Mapping

from crystalframer.examples import EXAMPLES, list_examples

__all__ = ["DeepLink", "example_slug", "example_from_slug", "to_params", "from_params", "PAGE_PATHS"]

# The app's pages by URL path (app.py registers them; "" is Home, also reachable as /home).
PAGE_PATHS = {"home": "", "attention": "attention", "compare": "compare", "perturbation": "perturbation",
              "finetune": "finetune"}


def example_slug(name: str) -> str:
    """Short URL name of a built-in example: its formula (``"SrTiO3 (cubic perovskite)"`` → ``"SrTiO3"``)."""
    return re.split(r"\s|\(", name.strip(), maxsplit=1)[0]


def example_from_slug(slug: str) -> str | None:
    """The example named by ``slug`` (a short slug or the full name, case-insensitive), or None."""
    if not slug:
        return None
    wanted = slug.strip().lower()
    for name in list_examples():
        if wanted in (name.lower(), example_slug(name).lower()):
            return name
    return None


@dataclass
class DeepLink:
    model: str | None = None  # a checkpoint name, e.g. "mp-eform-max"
    example: str | None = None  # full example name (EXAMPLES key)
    conventional: bool = False
    layer: int | None = None  # 0-based (1-based in the URL)
    head: int | str | None = None  # an int, or "mean"
    atom: int | None = None
    view: str | None = None  # "oblique", "a", "b", "c", "e1"

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) in (None, False) for f in fields(self))


def _int(value: str | None, low: int = 0) -> int | None:
    try:
        v = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return v if v >= low else None


def _first(params: Mapping[str, object], key: str) -> str | None:
    value = params.get(key)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value)


def from_params(params: Mapping[str, object]) -> DeepLink:
    """Read query parameters (``st.query_params`` or a dict of str / lists of str); invalid values are dropped."""
    from crystalframer.viz.scene import VIEWS

    link = DeepLink()
    model = _first(params, "model")
    link.model = model.strip() if model and re.fullmatch(r"[\w.\-:/]+", model.strip()) else None
    link.example = example_from_slug(_first(params, "example") or "")
    link.conventional = (_first(params, "conventional") or "").lower() in ("1", "true", "yes")
    layer = _int(_first(params, "layer"), low=1)
    link.layer = None if layer is None else layer - 1
    head = (_first(params, "head") or "").strip().lower()
    link.head = "mean" if head == "mean" else _int(head)
    link.atom = _int(_first(params, "atom"))
    view = (_first(params, "view") or "").strip()
    link.view = view if view in VIEWS else None
    return link


def to_params(link: DeepLink) -> dict[str, str]:
    """The query parameters of ``link`` (only the fields that are set), in a stable order."""
    out: dict[str, str] = {}
    if link.model:
        out["model"] = link.model
    if link.example and link.example in EXAMPLES:
        out["example"] = example_slug(link.example)
        if link.conventional:
            out["conventional"] = "1"
    if link.layer is not None:
        out["layer"] = str(int(link.layer) + 1)
    if link.head is not None:
        out["head"] = "mean" if link.head == "mean" else str(int(link.head))
    if link.atom is not None:
        out["atom"] = str(int(link.atom))
    if link.view and link.view != "oblique":
        out["view"] = link.view
    return out
