"""Helpers of the Streamlit app: the model choices (``models``), uploads with size limits (``uploads``) and the
page furniture shared by the pages (``ui``, the only module that imports Streamlit)."""
