"""Whole-number settings from the environment: one reader, one message for every ``PLINT_*`` count."""
from __future__ import annotations

import pytest

from plint_core.env_settings import env_count
from plint_core.errors import PlintError


def test_unset_or_blank_gives_the_default_and_a_number_is_read():
    assert env_count("PLINT_X", minimum=1, what="workers", default=4, env={}) == 4
    assert env_count("PLINT_X", minimum=1, what="workers", default=4, env={"PLINT_X": "  "}) == 4
    assert env_count("PLINT_X", minimum=1, what="workers", env={}) is None
    assert env_count("PLINT_X", minimum=1, what="workers", env={"PLINT_X": " 7 "}) == 7
    assert env_count("PLINT_X", minimum=0, what="workers", env={"PLINT_X": "0"}) == 0


@pytest.mark.parametrize("minimum, text, rule", [
    (1, "0", "give a whole number of 1 or more"), (1, "two", "give a whole number of 1 or more"),
    (1, "1.5", "give a whole number of 1 or more"), (0, "-1", "give 0 or a positive whole number"),
    (0, "lots", "give 0 or a positive whole number")])
def test_a_malformed_value_names_the_variable_the_value_and_the_rule(minimum, text, rule):
    with pytest.raises(PlintError) as info:
        env_count("PLINT_X", minimum=minimum, what="widgets", env={"PLINT_X": text}, hint="0 = off")
    assert str(info.value) == f"PLINT_X={text!r} is not a number of widgets: {rule} (0 = off)"


def test_the_os_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("PLINT_X", "3")
    assert env_count("PLINT_X", minimum=1, what="widgets") == 3


@pytest.mark.parametrize("name, reader", [
    ("PLINT_WORKERS", "plint_core.runs.local:default_slots"),
    ("PLINT_RAY_CPUS", "plint_core.runs.select:ray_settings"),
    ("PLINT_MAP_MAX_POINTS", "plint_app.config:AppConfig.from_env"),
    ("PLINT_TORCH_THREADS", "plint_app.config:AppConfig.from_env"),
    ("PLINT_SCALE_POINTS", "plint_app.config:AppConfig.from_env")])
def test_every_count_setting_gives_the_same_message(monkeypatch, name, reader):
    import importlib

    module, attr = reader.split(":")
    target = importlib.import_module(module)
    for part in attr.split("."):
        target = getattr(target, part)
    monkeypatch.setenv(name, "-5")
    with pytest.raises(PlintError, match=rf"^{name}='-5' is not a number of [a-zA-Z ]+: give "):
        target()
