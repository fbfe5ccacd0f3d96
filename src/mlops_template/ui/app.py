"""The Streamlit entry point (`make ui`, `python -m mlops_template ui`): page set-up and navigation."""

import streamlit as st

from mlops_template.ui import pages

st.set_page_config(page_title="Model front end", page_icon="📈", layout="wide")
navigation = st.navigation(
    [
        st.Page(pages.guarded(pages.predict_page), title="Predict", default=True),
        st.Page(pages.guarded(pages.batch_page), title="Batch", url_path="batch"),
        st.Page(pages.guarded(pages.model_page), title="Model", url_path="model"),
        st.Page(pages.guarded(pages.monitoring_page), title="Monitoring", url_path="monitoring"),
    ]
)
navigation.run()
