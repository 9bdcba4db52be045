"""PHQ labels: which label belongs to which session (window, undated labels), held-out split files,
label-import checks (conflicts, subject codes, separators, bounded error lists) and training messages.
Issue 9 items 8, 9, 11, 12 and issue 12 items 8 (labels) and 12."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from phq_cohort import add_session, feature_names, make_cohort
from sqlalchemy import func, select
from typer.testing import CliRunner

from fervideo.cli import app, main
from fervideo.errors import DataFileError, InvalidArgumentError, LabelFileError
from fervideo.phq import build_dataset, import_labels, read_split_file
from fervideo.phq.matching import (
    OUTSIDE_WINDOW,
    PHQ9_WITHOUT_ITEMS,
    SESSION_UNDATED,
    match_label,
    recorded_labels,
)
from fervideo.store import PhqHead, PhqLabel, Subject, open_database

DAY = dt.datetime(2024, 6, 1, 15, 30)
NINE_ITEMS = {"interest": 1, "depressed": 1, "sleep": 1, "tired": 1, "appetite": 1, "failure": 1,
              "concentrating": 1, "moving": 1, "self_harm": 2}


@pytest.fixture
def db_url(any_db_url):
    """Every test of this module runs on SQLite and on PostgreSQL."""
    return any_db_url


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def label(id, total, when=None, session_id=None, instrument="PHQ-8", items=None):
    return SimpleNamespace(id=id, total=total, administered_at=when, session_id=session_id, instrument=instrument,
                           items=items)


def session(recorded_at=DAY, id=1):
    return SimpleNamespace(id=id, recorded_at=recorded_at)


def count_labels(factory) -> int:
    with factory() as db:
        return db.scalar(select(func.count(PhqLabel.id)))


# ------------------------------------------------------------------ 9.8: the window and undated labels
def test_dated_label_matches_within_the_window_only():
    near, far = label(1, 7, DAY - dt.timedelta(days=14)), label(2, 20, DAY - dt.timedelta(days=15))
    assert match_label([near], session()).total == 7
    missed = match_label([far], session())
    assert not missed and missed.reason == OUTSIDE_WINDOW
    assert match_label([far], session(), window_days=15).total == 20


def test_window_counts_calendar_days_not_hours():
    # administered at midnight on day 0, recorded late on day 14: 14 calendar days, inside.
    match = match_label([label(1, 9, dt.datetime(2024, 3, 1))], session(dt.datetime(2024, 3, 15, 23, 59)))
    assert match.total == 9 and match.days_apart == 14


def test_undated_label_never_hides_the_dates_of_others():
    # Old rule: one undated label made every date ignored and the latest import won (the undated 3).
    dated, undated = label(1, 18, DAY - dt.timedelta(days=2)), label(2, 3)
    match = match_label([dated, undated], session())
    assert match.total == 18 and match.set_aside == (2,)
    # A dated label far away is not replaced by the undated one either: no label, and it says why.
    stale = match_label([label(1, 18, DAY - dt.timedelta(days=200)), undated], session())
    assert not stale and stale.reason == OUTSIDE_WINDOW and stale.set_aside == (2,)


def test_undated_labels_match_any_session_when_the_subject_has_no_dated_label():
    assert match_label([label(1, 11)], session()).total == 11  # DAIC-WOZ: one label per participant
    assert match_label([label(1, 11)], session(recorded_at=None)).total == 11


def test_undated_session_cannot_take_a_dated_subject_level_label():
    match = match_label([label(1, 11, DAY)], session(recorded_at=None))
    assert not match and match.reason == SESSION_UNDATED
    # ...but a label linked to that very session still belongs to it.
    assert match_label([label(1, 11, DAY, session_id=1)], session(recorded_at=None)).total == 11


def test_linked_label_wins_and_labels_of_other_sessions_never_belong():
    closer, linked = label(1, 5, DAY), label(2, 16, DAY - dt.timedelta(days=10), session_id=1)
    assert match_label([closer, linked], session()).total == 16
    other = label(3, 22, DAY, session_id=99)
    assert match_label([other], session()).reason == "no label"
    # A linked label administered far from the recording is outside the window like any other.
    assert match_label([label(4, 16, DAY - dt.timedelta(days=60), session_id=1)], session()).reason == OUTSIDE_WINDOW


def test_closest_label_wins_and_ties_prefer_the_instrument_itself():
    labels = [label(1, 4, DAY - dt.timedelta(days=9)), label(2, 13, DAY + dt.timedelta(days=3))]
    assert match_label(labels, session()).total == 13
    phq9 = label(3, 12, DAY, instrument="PHQ-9", items=NINE_ITEMS)
    phq8 = label(4, 10, DAY)
    assert match_label([phq8, phq9], session(), "PHQ-8").label.id == 4
    assert match_label([phq9], session(), "PHQ-8").total == 10  # item 9 dropped
    no_items = match_label([label(5, 12, DAY, instrument="PHQ-9")], session(), "PHQ-8")
    assert not no_items and no_items.reason == PHQ9_WITHOUT_ITEMS


def test_timezone_aware_dates_compare_with_naive_ones():
    aware = label(1, 6, dt.datetime(2024, 6, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))))
    assert match_label([aware], session(dt.datetime(2024, 6, 16, 0, 0))).days_apart == 14  # 2 June UTC


def _subject(db, code: str) -> Subject:
    subject = Subject(code=code)
    db.add(subject)
    db.flush()
    return subject


def _dated_session(db, subject, when):
    row = add_session(db, subject, dict.fromkeys(feature_names(), 0.5))
    row.recorded_at = when
    return row


def test_build_dataset_applies_the_window_and_counts_every_drop(factory):
    make_cohort(factory, n_subjects=10)  # undated labels, undated sessions: all used
    with factory.begin() as db:
        late = _subject(db, "late")
        _dated_session(db, late, DAY)
        db.add(PhqLabel(subject_id=late.id, instrument="PHQ-8", total=20, administered_at=DAY - dt.timedelta(days=90)))
        db.add(PhqLabel(subject_id=late.id, instrument="PHQ-8", total=2))  # undated: set aside, not used
        undated = _subject(db, "undated")
        _dated_session(db, undated, None)
        db.add(PhqLabel(subject_id=undated.id, instrument="PHQ-8", total=9, administered_at=DAY))
    data = build_dataset(factory)
    assert "late" not in set(data.groups) and "undated" not in set(data.groups)
    assert data.skipped[OUTSIDE_WINDOW] == 1 and data.skipped[SESSION_UNDATED] == 1
    assert data.label_window_days == 14 and data.undated_labels_set_aside == 1
    wide = build_dataset(factory, window_days=100)
    assert list(wide.y[wide.groups == "late"]) == [20.0] and wide.skipped[OUTSIDE_WINDOW] == 0


@pytest.mark.parametrize("window", [-1, 1.5, True])
def test_window_must_be_whole_days(factory, window):
    with pytest.raises(InvalidArgumentError, match="--label-window-days"):
        build_dataset(factory, window_days=window)


# ---------------------------------------------------------------------- 9.12: messages name the cause
def _cohort_with_phq9_totals(factory, n: int, items=None) -> None:
    with factory.begin() as db:
        for k in range(n):
            subject = _subject(db, f"N{k}")
            add_session(db, subject, dict.fromkeys(feature_names(), float(k)))
            db.add(PhqLabel(subject_id=subject.id, instrument="PHQ-9", total=k + 3, items=items))


def test_phq9_totals_without_items_say_so_and_how_to_fix(factory):
    _cohort_with_phq9_totals(factory, 12)
    with pytest.raises(DataFileError, match=r"PHQ-9 totals without item scores.*--instrument PHQ-9"):
        build_dataset(factory)
    assert len(build_dataset(factory, "PHQ-9").y) == 12


def test_too_few_subjects_states_the_minimum(factory):
    make_cohort(factory, n_subjects=4)
    with pytest.raises(DataFileError, match=r"only 4 subjects.*at least 10 subjects"):
        build_dataset(factory)
    _cohort_with_phq9_totals(factory, 8)  # the cause of the shortfall is named, with its fix
    with pytest.raises(DataFileError, match=r"only 4 subjects.*8 with PHQ-9 totals.*--instrument PHQ-9"):
        build_dataset(factory)


def test_no_usable_session_lists_the_reasons(factory):
    with factory.begin() as db:
        for k in range(3):
            subject = _subject(db, f"W{k}")
            _dated_session(db, subject, DAY)
            db.add(PhqLabel(subject_id=subject.id, instrument="PHQ-8", total=5, administered_at=DAY.replace(year=2020)))
    with pytest.raises(DataFileError, match=r"3 with labels outside the \+/- 14-day window.*--label-window-days"):
        build_dataset(factory)


# ------------------------------------------------------------------------ 9.9: split ids are text
def test_split_file_keeps_ids_as_text(tmp_path):
    path = write(tmp_path, "dev.csv", "Participant_ID,PHQ8_Score\n007,3\n7.0,4\n")
    assert read_split_file(path) == {"007", "7.0"}


def test_split_holds_out_exactly_the_listed_subject(factory, tmp_path):
    from fervideo.phq.splits import held_out_subjects

    make_cohort(factory, n_subjects=10)
    with factory.begin() as db:
        for code in ("007", "7"):
            add_session(db, _subject(db, code), dict.fromkeys(feature_names(), 1.0))
            db.add(PhqLabel(subject_id=db.scalar(select(Subject.id).where(Subject.code == code)),
                            instrument="PHQ-8", total=4))
    groups = build_dataset(factory).groups
    path = write(tmp_path, "dev.csv", "subject\n007\nS001\n")
    assert held_out_subjects(path, groups) == {"007", "S001"}


def test_unmatched_split_ids_are_an_error_unless_ignored(tmp_path):
    from fervideo.phq.splits import held_out_subjects

    groups = __import__("numpy").array(["007", "S1", "S2"])
    path = write(tmp_path, "dev.csv", "subject,split\n7,test\n007,test\nS9,train\nS1,train\n")
    with pytest.raises(DataFileError, match=r"2 id\(s\).*'7', 'S9'.*exactly as text.*--ignore-unmatched"):
        held_out_subjects(path, groups)
    assert held_out_subjects(path, groups, ignore_unmatched=True) == {"007"}


def test_split_file_with_an_id_on_both_sides_or_no_id_column(tmp_path):
    from fervideo.phq.splits import held_out_subjects

    both = write(tmp_path, "both.csv", "subject,split\nS1,test\nS1,train\n")
    with pytest.raises(DataFileError, match="'S1' is listed as both"):
        held_out_subjects(both, __import__("numpy").array(["S1", "S2"]))
    with pytest.raises(DataFileError, match="Participant_ID or subject column"):
        read_split_file(write(tmp_path, "none.csv", "name\nS1\n"))
    with pytest.raises(DataFileError, match="line 3: empty subject id"):
        read_split_file(write(tmp_path, "empty.csv", "subject,split\nS1,test\n,test\n"))


def test_cli_train_refuses_unmatched_split_ids(db_url, tmp_path):
    make_cohort(open_database(db_url), n_subjects=12)
    split = write(tmp_path, "dev.csv", "subject\nS001\nS002\nS999\n")
    args = ["phq", "train", "--name", "h", "--cv", "split", str(split), "--db", db_url]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code != 0 and "S999" in str(refused.exception)
    trained = CliRunner().invoke(app, [*args, "--ignore-unmatched", "--label-window-days", "7"])
    assert trained.exit_code == 0, trained.output
    assert "2 subjects" in trained.output  # the two matched held-out subjects
    assert "label window: +/- 7 days; sessions left out: none" in trained.output
    shown = CliRunner().invoke(app, ["phq", "evaluate", "h", "--db", db_url])
    assert shown.exit_code == 0 and "label window: +/- 7 days" in shown.output


# ----------------------------------------------------- 12.12, 12.8, 9.12: what a label import refuses
def _import_cli(db_url: str, path: Path, monkeypatch, capsys) -> tuple[int, str]:
    """Run `fervideo phq labels import` through the console entry point: (exit code, stdout + stderr)."""
    monkeypatch.setattr(sys, "argv", ["fervideo", "phq", "labels", "import", str(path), "--db", db_url])
    with pytest.raises(SystemExit) as done:
        main()
    captured = capsys.readouterr()
    return done.value.code, captured.out + captured.err


def test_conflicting_duplicates_in_the_file_are_refused(factory, tmp_path):
    text = ("subject,instrument,total,administered_at\n"
            "A,PHQ-8,5,2024-03-01\n"
            "A,PHQ-8,17,2024-03-01T18:00\n"  # same day, same instrument, another total
            "A,PHQ-8,5,2024-03-01\n"  # an exact repeat: imported once
            "A,PHQ-9,17,2024-03-01\n"  # another instrument: not a conflict
            "B,PHQ-8,4,\nB,PHQ-8,9,\n")  # undated subject-level: one questionnaire, two totals
    with pytest.raises(LabelFileError) as caught:
        import_labels(factory, write(tmp_path, "dup.csv", text))
    assert caught.value.problems == [
        "line 3: conflicts with line 2 (subject 'A', same session, date and PHQ-8, total 17 vs 5)",
        "line 7: conflicts with line 6 (subject 'B', same session, date and PHQ-8, total 9 vs 4)"]
    assert count_labels(factory) == 0
    ok = import_labels(factory, write(tmp_path, "ok.csv", "\n".join(text.splitlines()[:2] + text.splitlines()[3:5])))
    assert (ok.imported, ok.duplicate_rows, ok.rows) == (2, 1, 3)


def test_conflicts_with_stored_labels_are_refused(factory, tmp_path):
    import_labels(factory, write(tmp_path, "first.csv", "Participant_ID,PHQ8_Score\n303,5\n304,9\n"))
    again = import_labels(factory, write(tmp_path, "again.csv", "Participant_ID,PHQ8_Score\n303,5\n"))
    assert (again.imported, again.already_present) == (0, 1)
    with pytest.raises(LabelFileError, match=r"line 3: conflicts with a stored PHQ-8 label of subject '304' "
                                             r"\(total 17 vs 9, from 'first.csv'\)"):
        import_labels(factory, write(tmp_path, "later.csv", "Participant_ID,PHQ8_Score\n305,1\n304,17\n"))
    assert count_labels(factory) == 2


def test_daic_ids_stay_text(factory, tmp_path):
    import_labels(factory, write(tmp_path, "d.csv", "Participant_ID,PHQ8_Score\n007,5\n7,6\n"))
    with factory() as db:
        assert sorted(db.scalars(select(Subject.code))) == ["007", "7"]


@pytest.mark.parametrize("code, reason", [
    ("", "empty"), (".", "names a folder"), ("..", "names a folder"), ("a\x1b[31mred", "U+001B"),
    ("rtl\u202eevil", "U+202E"), ("x" * 129, "longer than 128")])
def test_bad_subject_codes_are_bad_rows(factory, tmp_path, code, reason):
    path = tmp_path / "codes.csv"
    path.write_text(f"subject,instrument,total\nfine,PHQ-8,3\n\"{code}\",PHQ-8,4\n", encoding="utf-8")
    with pytest.raises(LabelFileError) as caught:
        import_labels(factory, path)
    (problem,) = caught.value.problems
    assert problem.startswith("line 3: ") and reason in problem and "\x1b" not in problem and "\u202e" not in problem
    assert count_labels(factory) == 0


def test_markup_in_codes_is_printed_verbatim(db_url, tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "m.csv",
                 "subject,instrument,total\n[bold red]PWN[/bold red],PHQ-8,3\nclose[/x]tag,PHQ-8,99\n")
    code, output = _import_cli(db_url, path, monkeypatch, capsys)
    assert code == 2 and "line 3: total 99 outside PHQ-8's range 0-24" in output
    fine = write(tmp_path, "fine.csv", "subject,instrument,total\n[bold red]PWN[/bold red],PHQ-8,3\n")
    assert _import_cli(db_url, fine, monkeypatch, capsys)[0] == 0
    with open_database(db_url)() as db:
        assert db.scalar(select(Subject.code)) == "[bold red]PWN[/bold red]"


def test_a_large_bad_file_prints_fifty_rows_and_a_count(db_url, tmp_path, monkeypatch, capsys):
    rows = "".join(f"S{k},PHQ-8,{30 + k % 5}\n" for k in range(5000))
    code, output = _import_cli(db_url, write(tmp_path, "big.csv", "subject,instrument,total\n" + rows),
                               monkeypatch, capsys)
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 52, lines[-3:]
    assert lines[0].strip().startswith("line 2:") and lines[49].strip().startswith("line 51:")
    assert lines[50].strip() == "... and 4950 more bad row(s)"
    assert "5000 bad row(s), nothing imported (the first 50 listed above)" in lines[51]


@pytest.mark.parametrize("separator, name", [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_or_tab_files_get_a_separator_hint(factory, tmp_path, separator, name):
    text = separator.join(["subject", "instrument", "total"]) + "\n" + separator.join(["A", "PHQ-8", "3"]) + "\n"
    with pytest.raises(DataFileError, match=f"looks {name}-separated: save the file with commas"):
        import_labels(factory, write(tmp_path, "semi.csv", text))


def test_unknown_columns_are_warned_about(db_url, factory, tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "w.csv", "subject,instrument,total,Totl,notes\nA,PHQ-8,3,4,x\n")
    assert import_labels(factory, path).warnings == ["unknown column(s) ignored: 'Totl', 'notes'"]
    code, output = _import_cli(db_url, path, monkeypatch, capsys)
    assert code == 0 and "warning: unknown column(s) ignored: 'Totl', 'notes'" in output


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("subject,instrument,total\n", "no label rows"),
    ("subject,instrument,total,total\nA,PHQ-8,3,3\n", "column 'total' appears more than once"),
    ("subject,instrument,total\nA,PHQ-8,3,extra\n", "line 2: 4 fields, the header has 3"),
    ("subject,instrument,total,administered_at\nA,PHQ-8,3,2999-01-01\n", "line 2: administered_at 2999-01-01 is in"),
    ("subject,instrument,total\nA,PHQ-8,nan\n", "line 2: total 'nan' is not a whole number"),
])
def test_malformed_label_files(factory, tmp_path, text, message):
    with pytest.raises(DataFileError, match=message.replace("(", r"\(")):
        import_labels(factory, write(tmp_path, "m.csv", text))
    assert count_labels(factory) == 0


def test_unreadable_label_files(factory, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("subject,instrument,total\nJosé,PHQ-8,3\n".encode("latin-1"))
    with pytest.raises(DataFileError, match="not UTF-8 text"):
        import_labels(factory, latin)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"subject,instrument,total\n\x00\x00,PHQ-8,3\n")
    with pytest.raises(DataFileError, match="NUL bytes"):
        import_labels(factory, binary)
    with pytest.raises(DataFileError, match="cannot read"):
        import_labels(factory, tmp_path)


# ------------------------------------- 9.11: every view and export shows the label training would use
def _views_database(factory) -> dict[str, int]:
    """U: one undated subject-level label (DAIC-WOZ style) and two sessions; D: a label dated 1 June and
    sessions on 5 June (inside the window) and 1 September (outside); L: a label linked to its session."""
    from fervideo.store import PhqPrediction

    ids = {}
    with factory.begin() as db:
        head = PhqHead(name="h", sha256="h" * 64, instrument="PHQ-8", feature_source="video",
                       classifier_name="vit-tiny-test", classifier_sha256="a" * 64, n_subjects=10, n_sessions=20,
                       metrics={})
        db.add(head)
        u, d, linked = _subject(db, "U"), _subject(db, "D"), _subject(db, "L")
        ids["u1"], ids["u2"] = _dated_session(db, u, DAY).id, _dated_session(db, u, None).id
        ids["d_near"] = _dated_session(db, d, DAY + dt.timedelta(days=4)).id
        ids["d_far"] = _dated_session(db, d, DAY + dt.timedelta(days=92)).id
        ids["l"] = _dated_session(db, linked, DAY).id
        db.add_all([PhqLabel(subject_id=u.id, instrument="PHQ-8", total=11),
                    PhqLabel(subject_id=d.id, instrument="PHQ-9", total=8, administered_at=DAY, items=NINE_ITEMS),
                    PhqLabel(subject_id=linked.id, session_id=ids["l"], instrument="PHQ-8", total=15)])
        db.flush()
        for session_id in ids.values():
            db.add(PhqPrediction(session_id=session_id, head_id=head.id, estimate=9.0, lower=5.0, upper=13.0,
                                 coverage=0.9, band="mild"))
        ids["head"] = head.id
        ids["subject_u"], ids["subject_d"] = u.id, d.id
    return ids


EXPECTED_RECORDED = {"u1": 11, "u2": 11, "d_near": 8, "d_far": None, "l": 15}


def test_recorded_labels_follow_the_training_rule(factory):
    ids = _views_database(factory)
    with factory() as db:
        found = recorded_labels(db, [ids[key] for key in EXPECTED_RECORDED])
        as_phq8 = recorded_labels(db, [ids["d_near"]], instrument="PHQ-8")
    assert {key: found[ids[key]].total if ids[key] in found else None for key in EXPECTED_RECORDED} \
        == EXPECTED_RECORDED
    assert found[ids["d_near"]].instrument == "PHQ-9" and as_phq8[ids["d_near"]].total == 6  # item 9 dropped


def test_cohort_export_carries_subject_level_labels(factory):
    from fervideo.export.cohort import cohort_table

    ids = _views_database(factory)
    table = cohort_table(factory).set_index("session_id")
    for key, total in EXPECTED_RECORDED.items():
        value = table.loc[ids[key], "phq_recorded_total"]
        assert pd.isna(value) if total is None else (not pd.isna(value) and value == total), key
    assert table.loc[ids["d_near"], "phq_recorded_instrument"] == "PHQ-9"


def test_session_summary_names_the_matched_label(factory):
    from fervideo.export.summary import session_summary

    ids = _views_database(factory)
    assert [r["total"] for r in session_summary(factory, ids["u2"])["phq_recorded"]] == [11]
    assert session_summary(factory, ids["d_far"])["phq_recorded"] == []


def test_dashboard_subject_page_and_cohort_use_the_same_rule(db_url, factory):
    from apps.dashboard import data

    ids = _views_database(factory)
    history = data.subject_history(db_url, ids["subject_u"], ("t", 1))
    assert list(history["sessions"].set_index("session_id").loc[[ids["u1"], ids["u2"]], "recorded_total"]) == [11, 11]
    assert len(history["recorded"]) == 2  # the undated label, plotted at each session it belongs to
    dated = data.subject_history(db_url, ids["subject_d"], ("t", 2))
    totals = dated["sessions"].set_index("session_id")["recorded_total"]
    assert totals[ids["d_near"]] == 8 and totals.isna()[ids["d_far"]]
    assert list(dated["recorded"]["recorded_at"]) == [DAY]  # a dated label once, at its own date
    cohort = data.cohort(db_url, ids["head"], ("t", 3)).set_index("session_id")["recorded"]
    assert cohort.to_dict() == {ids["u1"]: 11, ids["u2"]: 11, ids["d_near"]: 6, ids["l"]: 15}  # PHQ-8 head
    assert [r["total"] for r in data.session_labels(db_url, ids["u1"])] == [11]
    with factory.begin() as db:  # a head trained with a 100-day window is compared with its own labels
        db.get(PhqHead, ids["head"]).config = {"training": {"label_window_days": 100}}
    assert data.cohort(db_url, ids["head"], ("t", 4)).set_index("session_id")["recorded"][ids["d_far"]] == 6
