"""Small hosts: the container's memory limit, PLINT_MEMORY_GB, and the batch size preset for large images."""
from __future__ import annotations

import pytest

from plint_app.config import AppConfig
from plint_core import finetune
from plint_core.device import memory_limit
from plint_core.errors import PlintError
from plint_core.finetune import FinetuneConfig, preset_batch_size


def test_memory_limit_from_cgroup_v2_and_v1(tmp_path):
    assert memory_limit(tmp_path) is None, "no cgroup files: unknown"
    (tmp_path / "memory.max").write_text("max\n")
    assert memory_limit(tmp_path) is None
    (tmp_path / "memory.max").write_text("2899102924\n")
    assert memory_limit(tmp_path) == 2_899_102_924
    (tmp_path / "memory.max").unlink()
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    assert memory_limit(tmp_path) is None, "v1's 'unlimited'"
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("3000000000")
    assert memory_limit(tmp_path) == 3_000_000_000


def test_large_images_on_a_small_cpu_host_get_batch_16():
    big, small = (3, 224, 224), (1, 28, 28)
    assert preset_batch_size(big, 2_700_000_000) == 16
    assert preset_batch_size(big, 8_000_000_000) == FinetuneConfig.batch_size == 32
    assert preset_batch_size(big, None) == 32, "no known limit"
    assert preset_batch_size(big, 2_700_000_000, "cuda") == 32, "activations live on the GPU"
    assert preset_batch_size(small, 2_700_000_000) == 32


def test_plint_memory_gb(monkeypatch):
    assert AppConfig.from_env({"PLINT_MEMORY_GB": "2.7"}).memory_bytes == 2_700_000_000
    monkeypatch.setattr("plint_app.config.memory_limit", lambda: 5_000_000_000)
    assert AppConfig.from_env({}).memory_bytes == 5_000_000_000, "unset: the container's limit"
    for bad in ("0", "-1", "lots", "inf", "nan"):
        with pytest.raises(PlintError, match=f"PLINT_MEMORY_GB='{bad}' is not an amount of memory"):
            AppConfig.from_env({"PLINT_MEMORY_GB": bad})


def test_the_fine_tune_page_presets_the_batch_and_says_why(app_environment, monkeypatch):
    from app_helpers import APP
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PLINT_MEMORY_GB", "2.7")
    monkeypatch.setattr(finetune, "LARGE_INPUT_VALUES", 64)  # the digits' 1×8×8 images count as large here
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/finetune.py").run()
    assert not at.exception
    assert at.number_input(key="w_batch").value == 16
    assert any("Preset to 16 instead of 32: this server may use 2.7 GB" in c.value for c in at.caption)
    monkeypatch.setattr(finetune, "LARGE_INPUT_VALUES", 65)  # now they are not
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("pages/finetune.py").run()
    assert at.number_input(key="w_batch").value == 32
    assert not any("Preset to" in c.value for c in at.caption)


pytest_plugins = ("app_fixtures",)
