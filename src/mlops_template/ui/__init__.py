"""The Streamlit front end: an HTTP client of the service (pages built from GET /model), no model code."""
