"""The HTML report lists the project's flags on images, with thumbnails of their images."""
from __future__ import annotations

import re
import shutil

from plint_core.cli import main
from plint_core.data.loading import load_data
from plint_core.flags import FlagBook, stored_flags
from plint_core.models.sources import load_model
from plint_core.report.html import render_report

pytest_plugins = ("app_fixtures",)  # stored_run: class 3 moved on the digits, in the app tests' run store


def test_the_report_lists_the_flags_with_their_thumbnails(app_runs, stored_run, tmp_path, capsys):
    runs = tmp_path / "runs"  # a copy: the flags written here stay out of the other tests' store
    shutil.copytree(app_runs, runs, ignore=shutil.ignore_patterns("flags"))
    out = tmp_path / "report.html"
    assert main(["runs", "report", stored_run.run_id, "--out", str(out), "--runs-dir", str(runs)]) == 0
    assert "Flags on images" not in out.read_text(encoding="utf-8")  # no flags: no section

    data, demo = load_data("digits"), load_model("demo")
    book = FlagBook(runs, data, demo.fingerprint)
    ones = data.train.ids[data.train.labels == 1][:30]
    book.add(ones, "label_wrong", who="Ana <script>", suggested=7, note="look like sevens & fours")
    book.add([int(data.train.ids[0])], "ambiguous", who="Ben")
    assert stored_flags(runs, stored_run.result["data_fingerprint"], stored_run.result["model_fingerprint"]) \
        == book.flags()
    assert main(["runs", "report", stored_run.run_id, "--out", str(out), "--runs-dir", str(runs)]) == 0
    assert "2 flags on images" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert "<h2>Flags on images (2)</h2>" in text
    assert "<b>Flag 1</b>: label wrong → 7 · 30 images · Ana &lt;script&gt;" in text  # escaped
    assert "look like sevens &amp; fours" in text and "<b>Flag 2</b>: ambiguous · 1 image · Ben" in text
    assert text.count('<img alt="images of flag 1" src="data:image/png;base64,') == 1
    assert text.count('<img alt="images of flag 2" src="data:image/png;base64,') == 1
    assert "24 of the flag's 30 images" in text  # the thumbnails: at most 24 per flag
    assert re.search(r"· \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)

    # without the data: the flags listed, no thumbnails
    bare = render_report(stored_run.result, stored_run.test_embedding, flags=book.flags())
    assert "<h2>Flags on images (2)</h2>" in bare and 'alt="images of flag' not in bare
    assert "No thumbnails: the data set was not available" in bare
