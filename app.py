"""CrystalFramer app: ``streamlit run app.py``.

Pages: Home (choose a model and a structure, see the prediction), Attention & frames, Compare frames, Perturbation,
Fine-tune. Checkpoints are looked up in ``$CRYSTALFRAMER_CHECKPOINTS`` (folders of ``<name>/model.safetensors``),
else in the shipped ``checkpoints/`` folder; without any, a fresh untrained model (labelled as such) is offered.
The app never needs the network: 3D views use 3Dmol.js from static/3dmol (scripts/fetch_3dmol.sh), else the CDN,
and the Plotly renderer works fully offline.
"""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("pages/0_Home.py", title="Home", url_path="home", default=True),
    st.Page("pages/1_Attention_and_frames.py", title="Attention & frames", url_path="attention"),
    st.Page("pages/2_Compare_frames.py", title="Compare frames", url_path="compare"),
    st.Page("pages/3_Perturbation.py", title="Perturbation", url_path="perturbation"),
    st.Page("pages/4_Fine-tune.py", title="Fine-tune", url_path="finetune"),
]

st.navigation(PAGES).run()
