"""The clinician dashboard (Streamlit, multipage). Start it with `fervideo dashboard`."""
