"""The previous release's `state.json` converted into the folder of parts, without a broker: the
old file as the old WindowState wrote it (the previous release's own code), read back by this
release's WindowState with nothing lost (generation, watermark, offsets applied, windows announced
and open, counts, a revision pending); the old file kept renamed, a crash before the rename
finished at the next start, and a file that cannot be converted refused naming it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coordinator.kinds.stream import REPO_ROOT
from coordinator.streamstate import WindowState
from coordinator.streamupgrade import LegacyStateError, upgrade
from tests.stream.legacy import legacy_windows
from tests.stream.streams import DAY

P0, P1 = "clicks:0", "clicks:1"
H = [f"2024-06-01T{h:02d}" for h in range(4)]


def old_state(tmp_path: Path, revise_within_s: float | None = 7200.0) -> tuple[Path, dict]:
    """A run folder's state.json as the previous release's worker left it: hours 00 and 01 closed
    and announced, hour 02 open on both partitions, one late click for hour 00 (a revision
    pending when revisions are on), one refused message, what it saved as a dict."""
    old = legacy_windows(tmp_path / "legacy")
    path = tmp_path / "run" / "state.json"
    path.parent.mkdir()
    state = old.WindowState(path, 0.0, revise_within_s)
    offsets = {P0: 0, P1: 0}

    def click(source: str, minute: int, user: str) -> str:
        outcome = state.apply(source, offsets[source], DAY + minute * 60, user)
        offsets[source] += 1
        return outcome

    for minute in (5, 15, 65, 75, 125):
        click(P0, minute, "u1")
        click(P1, minute + 1, "u2")
    state.apply(P0, offsets[P0], None, "")  # refused
    offsets[P0] += 1
    state.advance([P1])  # p1 behind at 02:06: hours 00 and 01 close
    for window in state.closable():
        state.close(window)
    assert click(P1, 30, "u3") == "late"
    state.save()
    return path, json.loads(path.read_text())


def test_the_old_file_becomes_the_folder_of_parts_with_nothing_lost(tmp_path: Path):
    path, saved = old_state(tmp_path)
    folder = path.parent / "state"
    assert upgrade(path, folder, 0.0)
    assert not path.exists() and json.loads((path.parent / "state.json.migrated").read_text()) == saved

    state = WindowState(folder, 0.0, 7200.0)
    with state.locked():
        state.exchange()  # every part read, as a worker's first sync does
    assert state.generation == saved["generation"]  # the same consumer group: its offsets resume
    assert state.watermark == saved["watermark"] == DAY + 126 * 60
    assert state.announced == {H[0], H[1]} and state.versions == {H[0]: 1, H[1]: 1}
    assert state.closable() == [] and state.open_windows() == [H[2]]
    assert state.contents(H[2]) == {"u1": 1, "u2": 1}
    assert state.counts() == {"events": 10, "late": 1, "rejected": 1, "replayed": 0}
    # the late click's revision, pending in the old file, is announced at the first flush
    assert state.revisions() == [H[0]]
    assert state.revised_contents(H[0]) == {"u1": 2, "u2": 2, "u3": 1}

    state.claim([P0, P1])
    assert {s: p.applied for s, p in state.parts.items()} == {P0: 5, P1: 5}
    assert state.apply(P1, 5, DAY + 130 * 60, "u2") == "replayed"  # the old worker applied it
    assert state.apply(P1, 6, DAY + 10 * 60, "u2") == "late"  # hour 00 is announced
    assert state.apply(P0, 6, DAY + 131 * 60, "u1") == "events"
    assert state.revise(H[0]) == 2 and state.revisions() == []
    state.exchange()
    assert state.contents(H[2]) == {"u1": 2, "u2": 1}


def test_without_revisions_the_old_counts_and_windows_carry_over(tmp_path: Path):
    path, saved = old_state(tmp_path, revise_within_s=None)
    folder = path.parent / "state"
    assert saved["closed"] == {} and upgrade(path, folder, 0.0)
    state = WindowState(folder, 0.0)
    with state.locked():
        state.exchange()
    assert state.revisions() == [] and state.announced == {H[0], H[1]}
    assert state.contents(H[2]) == {"u1": 1, "u2": 1} and state.counts()["late"] == 1


def test_a_conversion_cut_short_is_finished_at_the_next_start(tmp_path: Path):
    path, saved = old_state(tmp_path)
    folder = path.parent / "state"
    assert upgrade(path, folder, 0.0)
    converted = (folder / "job.json").read_text()
    (path.parent / "state.json.migrated").rename(path)  # as if the worker died before step 3
    assert not upgrade(path, folder, 0.0)
    assert not path.exists() and (path.parent / "state.json.migrated").exists()
    assert (folder / "job.json").read_text() == converted

    # a crash before job.json (parts written, or some of them): converted again, the same
    (path.parent / "state.json.migrated").rename(path)
    (folder / "job.json").unlink()
    (folder / "parts" / "clicks.1.json").unlink()
    assert upgrade(path, folder, 0.0) and (folder / "job.json").read_text() == converted
    assert sorted(p.name for p in (folder / "parts").iterdir()) == ["clicks.0.json", "clicks.1.json"]

    # an old file of another generation beside a state in use: left alone, the state used
    path.write_text(json.dumps({**saved, "generation": "another"}))
    assert not upgrade(path, folder, 0.0)
    assert path.exists() and (folder / "job.json").read_text() == converted


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"applied": {"clicks:0": 3', "is not JSON"),
        ("[1, 2]", "is not a JSON object but list"),
        ('{"applied": {"clicks:0": "3"}}', "its 'applied' is not what the previous release wrote"),
        ('{"announced": ["yesterday"]}', "its 'announced' is not what the previous release wrote"),
        ('{"windows": {"2024-06-01T00": {"u1": 2}}}', "holds windows or counts but no partition's offset"),
    ],
)
def test_a_file_that_cannot_be_converted_is_refused_naming_it(tmp_path: Path, text: str, reason: str):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(LegacyStateError) as refused:
        upgrade(path, tmp_path / "state", 0.0)
    assert str(refused.value).startswith(f"{path}: {reason}")
    assert path.read_text() == text and not (tmp_path / "state" / "job.json").exists()


def test_the_worker_refuses_to_start_on_it_saying_why(tmp_path: Path, stream_python: Path):
    """In the worker's own interpreter: one line naming the file and what it does (it stops), exit
    78 (EX_CONFIG), nothing written in the state folder, before any broker is asked."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{\x00")
    config = run / "config.json"
    config.write_text(
        json.dumps(
            {
                "run_dir": str(run),
                "job": "clicks_hourly",
                "dataset": "stream.clicks",
                "topic": "clicks",
                "lateness_s": 0,
                "topics_dir": str(REPO_ROOT / "topics"),
            }
        )
    )
    done = subprocess.run(
        [str(stream_python), "-m", "coordinator.streamjob", str(config)],
        capture_output=True,
        text=True,
        cwd=run,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{run / 'state.json'} (the previous release's stream state) is not JSON")
    assert "the worker does not start" in line and "move it aside to start afresh" in line
    assert not (run / "state" / "job.json").exists() and (run / "state.json").exists()
