"""Safe unpacking of uploaded zips, and the per-session upload folder."""
from __future__ import annotations

import io
import os
import stat
import time
import zipfile

import pytest
from own_data import files_under, write_image_folder, zip_folder

from plint_core.data.loading import load_data
from plint_core.errors import PlintError
from plint_core.safe_zip import ZipLimits, extract_zip
from plint_core.workspace import Workspace, safe_name, sweep_stale


def _zip(path, entries: dict[str, bytes], *, link: str | None = None, encrypted: bool = False):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name == link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, blob)
    if encrypted:  # zipfile cannot write encrypted entries: set the flag bit in the central directory
        blob = bytearray(path.read_bytes())
        at = blob.index(b"PK\x01\x02")
        blob[at + 8] |= 0x1
        path.write_bytes(bytes(blob))
    return path


def test_a_good_zip_unpacks_without_macos_metadata(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"d/x.png": b"1", "d/sub/y.png": b"22", "__MACOSX/d/._x.png": b"junk"})
    out = extract_zip(archive, tmp_path / "out")
    assert files_under(out) == ["d", "d/sub", "d/sub/y.png", "d/x.png"]
    assert (out / "d" / "sub" / "y.png").read_bytes() == b"22"


@pytest.mark.parametrize("entries, message", [
    ({"ok.png": b"1", "../evil.png": b"x"}, "points outside the folder"),
    ({"d/../../evil.png": b"x"}, "points outside the folder"),
    ({"..\\evil.png": b"x"}, "points outside the folder"),
    ({"/tmp/evil.png": b"x"}, "absolute path"),
    ({"C:/evil.png": b"x"}, "absolute path"),
    ({"a.png": b"1", "./a.png": b"2"}, "twice"),
    ({"a": b"1", "a/b.png": b"2"}, "both as a file and as a folder"),
])
def test_entries_that_escape_or_clash_are_refused_and_nothing_is_written(tmp_path, entries, message):
    archive = _zip(tmp_path / "bad.zip", entries)
    with pytest.raises(PlintError, match=message):
        extract_zip(archive, tmp_path / "out")
    assert files_under(tmp_path) == ["bad.zip"]


def test_links_and_encrypted_entries_are_refused(tmp_path):
    with pytest.raises(PlintError, match="symbolic link 'd/link'"):
        linked = _zip(tmp_path / "l.zip", {"d/x.png": b"1", "d/link": b"/etc/passwd"}, link="d/link")
        extract_zip(linked, tmp_path / "o")
    with pytest.raises(PlintError, match="encrypted"):
        extract_zip(_zip(tmp_path / "e.zip", {"x.png": b"1"}, encrypted=True), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_limits_on_count_size_and_ratio(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(5)})
    with pytest.raises(PlintError, match="more than 4 files"):
        extract_zip(many, tmp_path / "o", ZipLimits(max_files=4))
    big = _zip(tmp_path / "big.zip", {"a.bin": os.urandom(3000), "b.bin": os.urandom(3000)})
    with pytest.raises(PlintError, match="unpacks to more than"):
        extract_zip(big, tmp_path / "o", ZipLimits(max_total_bytes=5000))
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(8 << 20)})
    with pytest.raises(PlintError, match="zip bomb"):
        extract_zip(bomb, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_not_a_zip_and_truncated_zips(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"hello")
    with pytest.raises(PlintError, match="not a valid zip"):
        extract_zip(tmp_path / "x.zip", tmp_path / "o")
    good = _zip(tmp_path / "g.zip", {f"d/{i}.png": os.urandom(2000) for i in range(3)})
    (tmp_path / "cut.zip").write_bytes(good.read_bytes()[:3000])
    with pytest.raises(PlintError, match="not a valid zip"):
        extract_zip(tmp_path / "cut.zip", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_an_image_zip_with_a_dotdot_entry_is_refused_by_load_data(tmp_path):
    root = write_image_folder(tmp_path / "fruit", n_per_class=4)
    png = (root / "apple" / "000.png").read_bytes()
    archive = zip_folder(root, tmp_path / "fruit.zip", extra={"../escape.png": png})
    with pytest.raises(PlintError, match=r"'\.\./escape\.png', which points outside"):
        load_data(archive)
    assert not (tmp_path.parent / "escape.png").exists() and not (tmp_path / "escape.png").exists()


def test_upload_names_are_cleaned_and_never_overwrite(tmp_path):
    with Workspace(tmp_path / "sessions") as ws:
        first = ws.save_upload("../../evil.pt", b"one")
        second = ws.save_upload("evil.pt", io.BytesIO(b"two"))
        assert first.parent == ws.root and second.parent == ws.root
        assert (first.name, second.name) == ("evil.pt", "evil-1.pt")
        assert (first.read_bytes(), second.read_bytes()) == (b"one", b"two")
        assert safe_name("C:\\Users\\me\\.bashrc") == "bashrc" and safe_name("..") == "upload"
        assert safe_name("my scan (1).PNG") == "my_scan_1_.PNG"
        other = Workspace(tmp_path / "sessions")
        assert other.root != ws.root and other.save_upload("evil.pt", b"three").read_bytes() == b"three"
        assert first.read_bytes() == b"one"
        other.close()
    assert not ws.root.exists() and not other.root.exists() and ws.closed


def test_uploads_over_the_limit_leave_nothing(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(PlintError, match=r"upload 'big.npz' is 2\.0 MiB, more than the 1 MiB limit"):
        ws.save_upload("big.npz", bytes(2 << 20), max_bytes=1 << 20)
    with pytest.raises(PlintError, match="'big.npz' is larger than the 1 MiB limit"):
        ws.save_upload("big.npz", io.BytesIO(bytes(3 << 20)), max_bytes=1 << 20)
    assert files_under(ws.root) == [".plint-workspace"]
    ws.close()
    with pytest.raises(PlintError, match="reload the page"):
        ws.save_upload("late.npz", b"x")


def test_workspace_unpacks_zips_inside_itself_and_sweeps_only_stale_ones(tmp_path):
    ws = Workspace(tmp_path)
    folder = ws.extract_zip(_zip(tmp_path / "a.zip", {"x.png": b"1"}))
    assert folder.parent == ws.root and (folder / "x.png").is_file()
    old = Workspace(tmp_path)
    stale = time.time() - 2 * 24 * 3600
    os.utime(old.root, (stale, stale))
    (tmp_path / "session-not-ours").mkdir()
    os.utime(tmp_path / "session-not-ours", (stale, stale))
    assert sweep_stale(tmp_path) == 1
    assert not old.root.exists() and ws.root.exists() and (tmp_path / "session-not-ours").exists()
    ws.close()
