"""What the dashboard tests share: the server-address fixture, running a page in AppTest, and readers
of what a page shows (metrics, charts, every string Streamlit renders as Markdown)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from streamlit import config as streamlit_config
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "apps" / "dashboard" / "app.py"
TIMEOUT = 60
# Element kinds whose text Streamlit renders as Markdown (labels of metrics and expanders too).
MARKDOWN_VALUES = ("title", "header", "subheader", "caption", "markdown", "info", "warning", "error", "success")
MARKDOWN_LABELS = ("metric", "expander", "checkbox", "button")


def serve_from(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the app at `db_url`, with no dashboard users (local, no login) and empty Streamlit caches, so
    a page run next reads this database and nothing cached from another test."""
    import streamlit as st

    from fervideo.dashboard_auth import USERS_ENV

    monkeypatch.setenv("FERVIDEO_DB", db_url)
    monkeypatch.setenv(USERS_ENV, str(tmp_path / "no_users.json"))
    st.cache_data.clear()
    st.cache_resource.clear()


def _server_address():
    """AppTest runs in-process: the app reads server.address from Streamlit's config, like a real server."""
    before = streamlit_config.get_option("server.address")

    def set_address(address: str | None) -> None:
        streamlit_config.set_option("server.address", address)

    set_address("127.0.0.1")
    yield set_address
    set_address(before)


# Test modules bind it under its name: `server_address = SERVER_ADDRESS` (an imported fixture would shadow
# every test argument of the same name, which linters flag).
SERVER_ADDRESS = pytest.fixture(_server_address, name="server_address")


def run_page(page: str | None = None, **params: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.query_params.update(params)
        at.switch_page(f"views/{page}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def chart_titles(at: AppTest) -> list[str]:
    return [spec.get("title", {}).get("text") if isinstance(spec.get("title"), dict) else spec.get("title")
            for spec in charts(at)]


def markdown_texts(at: AppTest) -> list[str]:
    """Every string on the page that Streamlit passes through its Markdown renderer."""
    texts = [element.value for kind in MARKDOWN_VALUES for element in at.get(kind)]
    texts += [element.label for kind in MARKDOWN_LABELS for element in at.get(kind) if hasattr(element, "label")]
    texts += [element.proto.label for element in at.get("page_link")]
    return [str(text) for text in texts]


MARKDOWN = MarkdownIt("commonmark").enable("table").enable("strikethrough")


def rendered_text(value: str) -> str:
    """What a reader sees of a Markdown string (tags dropped, entities decoded, lines joined)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", MARKDOWN.render(value))).split())


def no_images(at: AppTest) -> bool:
    return not at.get("imgs") and not at.get("image")
