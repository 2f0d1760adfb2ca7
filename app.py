"""CrystalFramer app: ``streamlit run app.py``.

Pages: Home (choose a model and a structure, see the prediction), Attention & frames, Compare frames, Perturbation,
Fine-tune. Checkpoints are looked up in ``$CRYSTALFRAMER_CHECKPOINTS`` (folders of ``<name>/model.safetensors``),
else in the shipped ``checkpoints/`` folder; without any, a fresh untrained model (labelled as such) is offered.
The app never needs the network: 3D views use 3Dmol.js from static/3dmol (scripts/fetch_3dmol.sh), else the CDN,
and the Plotly renderer works fully offline.

URLs: ``/`` (Home, also ``/home``), ``/attention``, ``/compare``, ``/perturbation``, ``/finetune``; the state is
in the query parameters (see :mod:`crystalframer.app.links`), e.g. ``/attention?example=ZnS&layer=2&atom=1``, and
``/?page=compare&…`` opens that page.
"""

from __future__ import annotations

import streamlit as st

# The page scripts live in app_pages/, not pages/: Streamlit also auto-discovers a pages/ folder, and on a server's
# first session that older page list answered a deep link such as /attention with "Page not found".
# The default page is served at "/" and Streamlit ignores its url_path, so "/home" gets its own (hidden) page that
# forwards to it with the query parameters intact.
HOME = st.Page("app_pages/0_Home.py", title="Home", default=True)
PAGES = [
    HOME,
    st.Page("app_pages/1_Attention_and_frames.py", title="Attention & frames", url_path="attention"),
    st.Page("app_pages/2_Compare_frames.py", title="Compare frames", url_path="compare"),
    st.Page("app_pages/3_Perturbation.py", title="Perturbation", url_path="perturbation"),
    st.Page("app_pages/4_Fine-tune.py", title="Fine-tune", url_path="finetune"),
]
BY_PATH = {"home": HOME, **{p.url_path: p for p in PAGES[1:]}}


def _params_without_page() -> dict[str, list[str]]:
    return {k: st.query_params.get_all(k) for k in st.query_params.keys() if k != "page"}


def home_alias() -> None:
    st.switch_page(HOME, query_params=_params_without_page())


page = st.navigation(PAGES + [st.Page(home_alias, title="Home", url_path="home", visibility="hidden")])
wanted = st.query_params.get("page")
if wanted is not None and wanted in BY_PATH and BY_PATH[wanted].url_path != page.url_path:
    st.switch_page(BY_PATH[wanted], query_params=_params_without_page())
page.run()
