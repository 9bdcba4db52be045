"""The clinician dashboard: every page through streamlit's AppTest on a seeded database, the
security rules (loopback, logins, read-only store) and the audit rows."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st
from dashboard_apptest import (
    APP,
    SERVER_ADDRESS,
    TIMEOUT,
    chart_titles,
    charts,
    metrics,
    no_images,
    rendered_text,
    run_page,
    serve_from,
)
from dashboard_seed import HEAD_METRICS, seed_database
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from apps.dashboard import compute, data, gate
from fervideo.cli import app
from fervideo.dashboard_auth import (
    LOGIN_COOKIE,
    USERS_ENV,
    AuthConfigError,
    AuthSetup,
    add_user,
    check_credentials,
    check_listen_allowed,
    hash_password,
    is_loopback,
    issue_login_token,
    load_users,
    login_secret,
    resolve_auth,
    verify_login_token,
    verify_password,
)
from fervideo.store import AuditEvent, SessionFeatures, open_database

server_address = SERVER_ADDRESS


@pytest.fixture
def seeded(db_url, tmp_path, monkeypatch, server_address) -> dict[str, int]:
    ids = seed_database(db_url)
    serve_from(db_url, tmp_path, monkeypatch)
    yield ids
    st.cache_resource.clear()


def audit_rows(db_url: str) -> list[AuditEvent]:
    with open_database(db_url)() as db:
        return list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def stored_features(session_id: int) -> dict:
    """The feature values the seed stored (computed from its frames by fervideo.features)."""
    with open_database(data.database_url())() as db:
        return db.get(SessionFeatures, session_id).values


# ------------------------------------------------------------------------------------------- overview
def test_overview_lists_sessions_with_estimates_and_flags(seeded):
    at = run_page()
    assert at.title[0].value == "Sessions"
    assert metrics(at) == {"Subjects": "3", "Sessions": "5", "Flagged sessions": "2"}
    table = at.dataframe[0].value
    assert list(table["session_id"]) == [1, 2, 3, 4, 5]
    assert list(table["phq_estimate"]) == ["14.2", "11.0", "7.5", "–", "–"]
    assert list(table["band"]) == ["moderate", "moderate", "mild", "no estimate", "no estimate"]
    assert table.loc[0, "face_coverage"] == pytest.approx(550 / 600)
    assert table.loc[3, "flags"] == "no features yet"
    assert "subject_id" not in table
    assert no_images(at)


def test_overview_filters_by_band_subject_and_flags(seeded):
    at = run_page()
    at.multiselect[1].select("mild").run()
    assert list(at.dataframe[0].value["session_id"]) == [3]
    at.multiselect[1].unselect("mild").run()
    at.multiselect[0].select("S-002").run()
    assert list(at.dataframe[0].value["session_id"]) == [4]
    at.multiselect[0].unselect("S-002").run()
    at.selectbox[0].select("reliable only").run()
    assert list(at.dataframe[0].value["session_id"]) == [1, 2, 3]


def test_overview_opens_a_session(seeded):
    at = run_page()
    at.selectbox[1].select(2).run()
    at.button[0].click().run()  # the sidebar's logout button is absent on loopback without auth
    assert not at.exception
    assert at.title[0].value == "Session 2"


# -------------------------------------------------------------------------------------------- session
def test_session_page_shows_timeline_phq_features_quality_and_provenance(seeded):
    at = run_page("session", session=str(seeded["session0"]))
    assert at.title[0].value == "Session 1"
    assert chart_titles(at) == ["Emotion probabilities", "Dominant emotion", "Face coverage",
                                "Valence and arousal (derived)", "Dominant-emotion transitions"]
    shown = metrics(at)
    assert shown["Face coverage"] == "92%"  # 10 s of 120 s without a face
    assert shown["Frames with a face"] == "550"
    assert shown["PHQ-8 estimate"] == "14.2"
    stored = stored_features(seeded["session0"])
    assert shown["expressivity \\(0 to 1\\)"] == f"{stored['expressivity']:.3g}"  # labels are escaped Markdown
    assert shown["mean entropy \\(bits\\)"] == f"{stored['entropy_mean']:.3g}"
    markdown = " ".join(m.value for m in at.markdown)
    assert "90% interval:** 10.0 – 18.4" in markdown and "moderate" in markdown
    caveats = " ".join(i.value for i in at.info)
    assert "not a diagnosis" in caveats and "Item 9" in caveats
    warnings = " ".join(w.value for w in at.warning)
    assert "Unreliable" not in warnings  # 92% coverage: the computed features are reliable
    captions = " ".join(c.value for c in at.caption)
    assert "1 - mean P(neutral) over face frames." in captions  # the expressivity card's one-line meaning
    provenance = at.json[0].value
    assert '"classifier_name": "vit-tiny-fer"' in provenance and '"threshold": 0.8' in provenance
    assert [b.label for b in at.get("download_button")] == [label for label, _, _ in data.DOWNLOADS.values()]
    assert no_images(at)


def test_unreliable_session_says_why(seeded):
    at = run_page("session", session=str(seeded["session4"]))
    warnings = " ".join(rendered_text(w.value) for w in at.warning)
    assert "Unreliable features: a face in only 15% of sampled frames (at least 20% needed)" in warnings
    assert metrics(at)["Face coverage"] == "15%"


def test_session_timeline_is_downsampled_and_gaps_show(seeded):
    at = run_page("session", session=str(seeded["session0"]))
    bins = data.session_timeline(data.database_url(), seeded["session0"],
                                 data.session_meta(data.database_url(), seeded["session0"])["updated_at"],
                                 2.0, 0.0, 120.0)
    assert len(bins) <= compute.MAX_DISPLAY_POINTS
    gap = bins[(bins["start"] >= 20.5) & (bins["end"] <= 29.5)]
    assert (gap["coverage"] == 0).all() and (gap["dominant"] == compute.NO_FACE).all()
    assert (gap[list(compute.CANONICAL_LABELS)] == 0).all().all()  # the stacked area drops to nothing
    face = bins[bins["coverage"] == 1]
    assert face[list(compute.CANONICAL_LABELS)].sum(axis=1).round(6).eq(1).all()
    assert at.get("vega_lite_chart")


def test_time_range_recomputes_the_summary(seeded):
    at = run_page("session", session=str(seeded["session0"]))
    at.slider(key="time_range").set_value((60, 120)).run()
    assert not at.exception
    assert any(h.value == "Summary for 60–120 s" for h in at.subheader)
    assert metrics(at)["Dominant emotion"] == "happiness" and metrics(at)["Face coverage"] == "100%"
    at.slider(key="time_range").set_value((0, 50)).run()
    assert metrics(at)["Dominant emotion"] == "sadness"
    assert metrics(at)["Frames with a face"] == str(50 * 5 + 1 - 50)  # [0, 50] inclusive, minus the 10 s gap


def test_smoothing_window_changes_the_timeline(seeded):
    at = run_page("session", session=str(seeded["session0"]))
    at.select_slider(key="smoothing").set_value(30).run()
    assert not at.exception and at.select_slider(key="smoothing").value == 30


def test_session_without_features_or_estimate_shows_plain_notes(seeded):
    at = run_page("session", session=str(seeded["session3"]))
    notes = " ".join(i.value for i in at.info)
    assert "No PHQ estimate for this session yet" in notes
    assert "Features have not been computed for this session yet" in notes
    assert chart_titles(at)[:4] == ["Emotion probabilities", "Dominant emotion", "Face coverage",
                                    "Valence and arousal (derived)"]


def test_session_page_without_a_session_offers_a_choice(seeded):
    at = run_page("session")
    assert at.title[0].value == "Session" and at.selectbox


# -------------------------------------------------------------------------------------------- subject
def test_subject_page_shows_estimates_recorded_scores_and_change(seeded):
    at = run_page("subject", subject=str(seeded["S-001"]))
    assert at.selectbox[0].value == seeded["S-001"]
    titles = chart_titles(at)
    assert "PHQ estimate with interval (line) and recorded PHQ (red diamonds)" in titles
    sessions = at.dataframe[0].value
    assert list(sessions["phq_estimate"]) == ["14.2", "11.0", "7.5"]
    assert list(sessions["recorded_total"]) == ["15", "10", "6"]
    change = at.dataframe[1].value.set_index("measure")
    assert change.loc["PHQ estimate", "change since first"] == pytest.approx(-6.7)
    assert change.loc["PHQ estimate", "change since previous"] == pytest.approx(-3.5)
    first, last = stored_features(seeded["session0"]), stored_features(seeded["session2"])
    assert change.loc["mean valence (-1 to 1)", "change since first"] == pytest.approx(
        last["valence_mean"] - first["valence_mean"], abs=1e-6)
    assert any(spec.get("facet") for spec in charts(at))  # the feature trends


def test_subject_without_estimates_has_plain_notes(seeded):
    at = run_page("subject", subject=str(seeded["S-002"]))
    notes = " ".join(i.value for i in at.info)
    assert "No PHQ estimates or recorded PHQ scores" in notes and "Features have not been computed" in notes


# --------------------------------------------------------------------------------------------- cohort
def test_cohort_page_compares_estimates_with_recorded_scores(seeded):
    at = run_page("cohort")
    shown = metrics(at)
    table = at.dataframe[0].value.set_index("metric")  # the table `fervideo phq evaluate` prints
    assert table.loc["mae", "model"] == "3.100" and table.loc["mae", "model 95% CI"] == "2.500 to 3.800"
    assert table.loc["mae", "mean baseline"] == "4.600" and table.loc["pearson_r", "baseline 95% CI"] == (
        "- (1000 of 1000 resamples undefined)")
    assert "{" not in " ".join(table.to_numpy().ravel())  # no raw JSON
    assert shown["Labelled sessions"] == "3"
    assert shown["MAE in this database"] == "1.10"  # (0.8 + 1.0 + 1.5) / 3
    assert shown["Recorded inside interval"] == "100%"
    assert "Estimated against recorded PHQ" in chart_titles(at)
    assert not at.json and HEAD_METRICS["cv"] in " ".join(rendered_text(c.value) for c in at.caption)


def test_pages_work_on_an_empty_database(db_url, tmp_path, monkeypatch, server_address):
    open_database(db_url)
    serve_from(db_url, tmp_path, monkeypatch)
    for page in (None, "session", "subject", "cohort"):
        at = run_page(page)
        assert at.info, page


def test_missing_database_is_a_plain_error_and_is_not_created(tmp_path, monkeypatch, server_address):
    missing = tmp_path / "absent.sqlite"
    monkeypatch.setenv("FERVIDEO_DB", f"sqlite:///{missing}")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert "no database at" in at.error[0].value and not missing.exists()


# ---------------------------------------------------------------------------------------------- audit
def test_views_and_downloads_are_audited_once_with_ids_only(seeded, db_url):
    at = run_page("session", session=str(seeded["session0"]))
    at.slider(key="time_range").set_value((10, 100)).run()  # a rerun is not a second view
    rows = audit_rows(db_url)
    assert [(r.user, r.action, r.session_id, r.subject_id) for r in rows] == [
        ("local", "view_overview", None, None), ("local", "view_session", seeded["session0"], seeded["S-001"])]
    payload = data.audited_download(db_url, seeded["session0"], seeded["S-001"], "frames_csv", "local")
    frames = pd.read_csv(pd.io.common.BytesIO(payload))
    assert len(frames) == 600 and {"t", "face_found", "sadness"} <= set(frames.columns)
    summary = json.loads(data.audited_download(db_url, seeded["session0"], seeded["S-001"], "summary_json", "local"))
    assert summary["session"]["id"] == seeded["session0"]
    rows = audit_rows(db_url)
    assert [r.action for r in rows[2:]] == ["download_frames_csv", "download_summary_json"]
    assert all("S-00" not in json.dumps(r.detail) for r in rows)  # never a subject code
    assert rows[-1].at is not None


def test_every_download_kind_builds(seeded, db_url):
    for kind in data.DOWNLOADS:
        assert data.download_bytes(db_url, seeded["session1"], kind)


def test_reads_cannot_write(seeded, db_url):
    with data.reader(db_url)() as db, pytest.raises(OperationalError, match="readonly|read-only|query_only"):
        db.execute(text("DELETE FROM frames"))


# ------------------------------------------------------------------------------------------- security
def test_app_refuses_a_non_loopback_address_without_authentication(seeded, db_url, server_address):
    for address in ("0.0.0.0", None):
        server_address(address)
        at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
        assert "Refusing to serve" in at.error[0].value
        assert not at.dataframe and not at.metric and not at.get("vega_lite_chart")
    assert audit_rows(db_url) == []


def test_password_login_shows_nothing_else_until_logged_in(seeded, db_url, tmp_path, monkeypatch, server_address):
    users = tmp_path / "users.json"
    add_user("dr.lee", "correct horse battery", users)
    monkeypatch.setenv(USERS_ENV, str(users))
    server_address("0.0.0.0")  # allowed, because logins are configured
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert [t.label for t in at.text_input] == ["Username", "Password"]
    assert not at.dataframe and not at.metric
    at.text_input[0].input("dr.lee")
    at.text_input[1].input("wrong password!")
    at.button[0].click().run()
    assert "Wrong username or password" in at.error[0].value and not at.dataframe
    at.text_input[1].input("correct horse battery")
    at.button[0].click().run()
    assert not at.exception and at.title[0].value == "Sessions" and at.dataframe
    rows = audit_rows(db_url)
    assert [(r.user, r.action) for r in rows] == [
        ("dr.lee", "login_failed"), ("dr.lee", "login"), ("dr.lee", "view_overview")]


def test_login_token_is_signed_expiring_and_revocable(tmp_path):
    users_path = add_user("dr.lee", "correct horse battery", tmp_path / "users.json")
    users, key = load_users(users_path), login_secret(users_path)
    assert login_secret(users_path) == key and stat.S_IMODE(os.stat(f"{users_path}.secret").st_mode) == 0o600
    token = issue_login_token("dr.lee", users, key, now=1000.0, ttl_s=60)
    assert verify_login_token(token, users, key, now=1059.0) == "dr.lee"
    assert verify_login_token(token, users, key, now=1060.0) is None  # expired
    assert verify_login_token(token, users, b"k" * 32, now=1001.0) is None  # another key
    payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps(["dr.lee", 10**12, "x"]).encode()).decode() + "." + signature
    assert verify_login_token(forged, users, key, now=1001.0) is None
    for junk in (None, "", "a.b.c", "!!!.???", token + "x"):
        assert verify_login_token(junk, users, key, now=1001.0) is None
    add_user("dr.lee", "a new long passphrase", users_path)  # a changed password revokes old tokens
    assert verify_login_token(token, load_users(users_path), key, now=1001.0) is None
    assert verify_login_token(token, {}, key, now=1001.0) is None  # so does removing the user


def test_a_reload_keeps_the_login_until_logout(seeded, db_url, tmp_path, monkeypatch, server_address):
    """A reload is a new Streamlit session: the login comes back from the signed cookie it sends."""
    users_path = tmp_path / "users.json"
    add_user("dr.lee", "correct horse battery", users_path)
    monkeypatch.setenv(USERS_ENV, str(users_path))
    server_address("0.0.0.0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    at.text_input[0].input("dr.lee")
    at.text_input[1].input("correct horse battery")
    at.button[0].click().run()
    assert at.title[0].value == "Sessions"
    assert any(LOGIN_COOKIE in str(element.proto) for element in at.get("iframe"))  # the cookie is set
    token = issue_login_token("dr.lee", load_users(users_path), login_secret(users_path), time.time())
    monkeypatch.setattr(gate, "_request_cookie", lambda: token)
    reloaded = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    assert not reloaded.exception and reloaded.title[0].value == "Sessions" and not reloaded.text_input
    assert [r.action for r in audit_rows(db_url)][-2:] == ["login_resumed", "view_overview"]
    reloaded.button[0].click().run()  # "Log out"
    assert [t.label for t in reloaded.text_input] == ["Username", "Password"]  # the cookie no longer counts
    monkeypatch.setattr(gate, "_request_cookie", lambda: token.replace(".", ".x"))
    assert [t.label for t in AppTest.from_file(str(APP), default_timeout=TIMEOUT).run().text_input] == [
        "Username", "Password"]


def test_oidc_login_gate(seeded, db_url, server_address):
    server_address("0.0.0.0")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "https://dash.example.org/oauth2callback", "cookie_secret": "x" * 40,
                          "client_id": "fervideo", "client_secret": "s",
                          "server_metadata_url": "https://id.example.org/.well-known/openid-configuration"}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button] == ["Log in"] and not at.dataframe
    at.user = {"is_logged_in": True, "email": "dr.lee@example.org"}
    at.run()
    assert not at.exception and at.dataframe
    assert audit_rows(db_url)[-1].user == "dr.lee@example.org"


def test_password_hashes_are_salted_scrypt_and_never_plain(tmp_path):
    first, second = hash_password("a long passphrase"), hash_password("a long passphrase")
    assert first != second and first.startswith("scrypt$")  # a fresh salt each time
    assert verify_password("a long passphrase", first) and not verify_password("a long passphrasE", first)
    path = add_user("alice", "a long passphrase", tmp_path / "users.json")
    assert "a long passphrase" not in path.read_text()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    users = load_users(path)
    assert check_credentials("alice", "a long passphrase", users)
    assert not check_credentials("mallory", "a long passphrase", users)
    with pytest.raises(Exception, match="at least"):
        add_user("bob", "short", path)


def test_loopback_rules():
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"))
    assert not any(is_loopback(a) for a in ("0.0.0.0", "", None, "192.168.1.5", "::", "example.org"))
    with pytest.raises(AuthConfigError, match="refusing"):
        check_listen_allowed("0.0.0.0", AuthSetup("none", Path("x")))
    check_listen_allowed("0.0.0.0", AuthSetup("password", Path("x")))
    check_listen_allowed("127.0.0.1", AuthSetup("none", Path("x")))
    incomplete = {"redirect_uri": "https://x/oauth2callback"}
    assert resolve_auth(incomplete, Path("/nonexistent/users.json")).mode == "none"


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def no_server(monkeypatch):
    calls: list[tuple[list[str], dict]] = []

    def fake_call(command, env=None):
        calls.append((command, env))
        return 0

    monkeypatch.setattr("fervideo.cli.commands_dashboard.run_server", fake_call)
    monkeypatch.chdir(Path(__file__).parent)  # no .streamlit/secrets.toml here
    return calls


def test_cli_refuses_non_local_address_without_authentication(seeded, db_url, no_server):
    result = CliRunner().invoke(app, ["dashboard", "--db", db_url, "--address", "0.0.0.0"])
    assert result.exit_code != 0 and isinstance(result.exception, AuthConfigError)
    assert "refusing to listen on 0.0.0.0" in str(result.exception)
    assert no_server == []


def test_cli_starts_streamlit_on_loopback_by_default(seeded, db_url, no_server):
    result = CliRunner().invoke(app, ["dashboard", "--db", db_url, "--port", "8765"])
    assert result.exit_code == 0, result.output
    (command, env), = no_server
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("apps/dashboard/app.py")
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8765"
    assert command[command.index("--browser.gatherUsageStats") + 1] == "false"
    assert env["FERVIDEO_DB"] == db_url


def test_cli_allows_other_addresses_once_a_login_exists(seeded, db_url, tmp_path, no_server):
    users = tmp_path / "users.json"
    result = CliRunner().invoke(app, ["dashboard", "add-user", "dr.lee", "--users", str(users)],
                                input="correct horse battery\ncorrect horse battery\n")
    assert result.exit_code == 0, result.output and "dr.lee" in load_users(users)
    result = CliRunner().invoke(app, ["dashboard", "--db", db_url, "--address", "0.0.0.0", "--users", str(users)])
    assert result.exit_code == 0, result.output
    assert no_server[0][1][USERS_ENV] == str(users)


def test_cli_does_not_create_a_missing_database(tmp_path, no_server):
    result = CliRunner().invoke(app, ["dashboard", "--db", str(tmp_path / "absent.sqlite")])
    assert result.exit_code != 0 and "no database at" in str(result.exception)
    assert not (tmp_path / "absent.sqlite").exists() and no_server == []
