"""The verdict store: incremental, resumable after a kill, migrated from the old JSON file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from helpers import make_class_tree

import kerasimg.data.verify as verify
from kerasimg.data.verify import VerdictStore, file_key, verify_images

# Checks files with a commit every 4 verdicts and SIGKILLs itself right after the second commit: the
# kill falls at a known point whatever the checking threads had done by then.
_KILLED_CHECK = """
import os, signal, sys
import kerasimg.data.verify as verify
verify._COMMIT_EVERY, verify._COMMIT_SECONDS = 4, 1e9
put_many, commits = verify.VerdictStore.put_many, []
def dying(self, items):
    put_many(self, items)
    commits.append(len(items))
    if len(commits) == 2:
        print(sum(commits), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
verify.VerdictStore.put_many = dying
verify.verify_images(sys.argv[1:], progress=False)
"""


def _paths(root):
    return sorted(str(p) for p in root.rglob("*.jpg"))


def test_a_killed_check_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASIMG_HOME", str(tmp_path / "home"))
    paths = _paths(make_class_tree(tmp_path / "data", {"a": 10, "b": 10}))
    child = subprocess.run([sys.executable, "-c", _KILLED_CHECK, *paths], capture_output=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    with VerdictStore() as store:
        kept = store.get_many([file_key(p) for p in paths])
    assert len(kept) == int(child.stdout) == 8, "the two batches committed before the kill are kept"
    assert all(v.startswith("ok:") for v in kept.values())

    checked = []
    inspect = verify._inspect
    monkeypatch.setattr(verify, "_inspect", lambda p, m: checked.append(p) or inspect(p, m))
    assert verify_images(paths, progress=False) == {}
    assert sorted(checked) == sorted(p for p in paths if file_key(p) not in kept)
    with VerdictStore() as store:
        assert len(store) == len(paths)


def test_the_old_json_cache_is_imported_once_and_removed(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("KERASIMG_HOME", str(home))
    paths = _paths(make_class_tree(tmp_path / "data", {"a": 2, "b": 1}))
    home.mkdir()
    legacy = home / "verified-files.json"
    # A verdict today's check would never give: proof that it came from the old file.
    legacy.write_text(json.dumps({file_key(paths[0]): "not a readable image (from the old cache)"}))
    assert verify_images(paths, progress=False) == {paths[0]: "not a readable image (from the old cache)"}
    assert not legacy.exists()


def test_lookups_span_several_chunks(tmp_path):
    keys = [f"/x/{i}.jpg|1|{i}" for i in range(2 * verify._LOOKUP_CHUNK + 7)]
    with VerdictStore(tmp_path / "store.sqlite") as store:
        store.put_many((k, f"ok:{i},1") for i, k in enumerate(keys))
        found = store.get_many(keys[::-1] + ["/not/there|1|1"])
    assert len(found) == len(keys) and found[keys[-1]] == f"ok:{len(keys) - 1},1"


def test_a_store_that_cannot_be_opened_forgets_quietly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = VerdictStore(blocker / "store.sqlite")  # its folder is a file
    store.put_many([("k", "ok:1,1")])
    assert store.get_many(["k"]) == {} and len(store) == 0
    assert os.path.isfile(blocker)


def test_a_long_check_piped_to_a_file_prints_its_bar_once_without_escapes(tmp_path, capsys):
    from helpers import assert_quiet, make_class_tree

    from kerasimg.data.verify import verify_images

    root = make_class_tree(tmp_path / "data", {"a": 210}, ext="png")  # above the bar's 200-file threshold
    bad = verify_images([str(p) for p in sorted(root.rglob("*.png"))])
    out = capsys.readouterr().out  # pytest's capture is not a terminal, as a log file is not
    assert bad == {}
    assert_quiet(out)
    assert "Checking 210 image files" in out and out.count("210/210") == 1, out
