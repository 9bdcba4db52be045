"""How fast the dashboard's session page renders for a one-hour session sampled at 5 fps (18,000 frames).

Seeds a temporary SQLite database, then times (1) the data functions cold and warm (st.cache_data) and
(2) a full AppTest run of the session page, first visit and a rerun. Prints a table. Target: < 2 s.

    .venv/bin/python benchmarks/bench_dashboard.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import streamlit as st  # noqa: E402
from dashboard_seed import seed_database  # noqa: E402
from streamlit import config as streamlit_config  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from apps.dashboard import data  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fervideo-bench-"))
    db_url = f"sqlite:///{folder / 'bench.sqlite'}"
    seed_start = time.perf_counter()
    ids = seed_database(db_url, duration_s=args.minutes * 60)
    seed_s = time.perf_counter() - seed_start
    os.environ["FERVIDEO_DB"] = db_url
    os.environ["FERVIDEO_DASHBOARD_USERS"] = str(folder / "no_users.json")
    streamlit_config.set_option("server.address", "127.0.0.1")
    session_id = ids["session0"]
    meta = data.session_meta(db_url, session_id)
    stamp, t1 = meta["updated_at"], args.minutes * 60
    rows: list[tuple[str, float]] = []
    for label in ("cold", "warm"):
        rows.append((f"session_frames ({label})", timed(lambda: data.session_frames(db_url, session_id, stamp))))
        rows.append((f"session_timeline ({label})",
                     timed(lambda: data.session_timeline(db_url, session_id, stamp, 2.0, 0.0, t1))))
        rows.append((f"session_range_summary ({label})",
                     timed(lambda: data.session_range_summary(db_url, session_id, stamp, 0.0, t1))))
    st.cache_data.clear()
    at = AppTest.from_file(str(ROOT / "apps" / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.query_params["session"] = str(session_id)
    at.switch_page("views/session.py")
    rows.append(("session page, first visit (cold cache)", timed(at.run)))
    assert not at.exception, [e.value for e in at.exception]
    rows.append(("session page, rerun (warm cache)", timed(at.run)))
    at.slider(key="time_range").set_value((600, 1200))
    rows.append(("session page, new time range", timed(at.run)))
    at.select_slider(key="smoothing").set_value(10)
    rows.append(("session page, new smoothing window", timed(at.run)))
    frames = data.session_frames(db_url, session_id, stamp)
    bins = data.session_timeline(db_url, session_id, stamp, 2.0, 0.0, t1)
    print(f"session: {len(frames):,} frames ({args.minutes:g} min at 5 fps) -> {len(bins):,} display bins; "
          f"seeding took {seed_s:.1f} s")
    print(f"{'step':<42}{'seconds':>10}")
    for name, seconds in rows:
        print(f"{name:<42}{seconds:>10.3f}")


if __name__ == "__main__":
    main()
