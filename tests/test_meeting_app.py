"""Meetings in the app (AppTest): present, follow, a follower's own click, reload, stop following, end, bad links."""
from __future__ import annotations

import json

import numpy as np
import pytest
from app_helpers import APP, browser_points, plotly_selection
from streamlit.testing.v1 import AppTest
from test_app_pages import TIMEOUT, session_data, start, texts, train_xy

from plint_core.data import load_data

pytest_plugins = ("app_fixtures",)  # app_runs, app_environment, stored_run


@pytest.fixture(scope="module")
def digits_data():
    return load_data("digits")


def param(at: AppTest, name: str) -> str | None:
    value = at.query_params.get(name)
    return value[0] if isinstance(value, list) else value


def sidebar_texts(at: AppTest) -> list[str]:
    return texts(at.sidebar.markdown) + texts(at.sidebar.caption) + texts(at.sidebar.code)


def presenting(page: str | None = None) -> tuple[AppTest, str, str]:
    at = start()
    at.button(key="w_meeting_start").click().run()
    assert not at.exception, at.exception
    meeting_id, key = param(at, "meeting"), param(at, "presenter_key")
    assert meeting_id and key
    if page:
        at.switch_page(page).run()
    return at, meeting_id, key


def opened(meeting_id: str, key: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["meeting"] = meeting_id
    if key:
        at.query_params["presenter_key"] = key
    at.run()
    assert not at.exception, at.exception
    return at


def stored(app_environment, meeting_id: str) -> dict:
    return json.loads((app_environment / "meetings" / f"{meeting_id}.json").read_text())


def select(at: AppTest, ids, xy, labels) -> AppTest:
    at.session_state[session_data(at).chart_key] = plotly_selection(browser_points(ids, xy[ids], labels[ids]))
    return at.run()


def test_a_follower_sees_the_presenters_page_selection_and_move_and_cannot_change_them(app_environment, digits_data):
    presenter, meeting_id, key = presenting("pages/embedding.py")
    assert any(f"?meeting={meeting_id}" in t for t in sidebar_texts(presenter)), "the meeting link"
    assert any("Presenting meeting" in t for t in sidebar_texts(presenter))
    xy, labels = train_xy(presenter, app_environment), digits_data.train.labels
    select(presenter, np.array([5, 17, 42]), xy, labels)
    presenter.number_input(key="w_dx").set_value(1.5).run()
    presenter.segmented_control(key="w_color_by").set_value("correct").run()
    state = stored(app_environment, meeting_id)["state"]
    assert state["page"] == "embedding" and state["selection"]["ids"] == [5, 17, 42]
    assert state["widgets"]["w_dx"] == 1.5 and state["widgets"]["w_color_by"] == "correct"

    follower = opened(meeting_id)  # the meeting link: ?meeting=ID, opened on Model & data
    assert [t.value for t in follower.title] == ["Embedding & interventions"]  # the presenter's page
    assert "**Selection: 3 training points**" in texts(follower.markdown)
    assert follower.number_input(key="w_dx").value == 1.5
    assert follower.segmented_control(key="w_color_by").value == "correct"
    assert any("Following meeting" in t for t in sidebar_texts(follower))
    assert not param(follower, "presenter_key")

    # the follower's own selection and dx: undone on its next run, and the meeting is unchanged
    version = stored(app_environment, meeting_id)["version"]
    select(follower, np.array([1, 2, 3, 4, 6, 7]), xy, labels)
    follower.number_input(key="w_dx").set_value(-2.0).run()
    assert "**Selection: 3 training points**" in texts(follower.markdown)
    assert follower.number_input(key="w_dx").value == 1.5
    assert stored(app_environment, meeting_id)["version"] == version
    assert session_data(presenter).editor.selection.ids.tolist() == [5, 17, 42]

    # the presenter commits the move: the follower shows it on its next run (the poll's rerun)
    presenter.button[[b.label for b in presenter.button].index("Commit move")].click().run()
    follower.run()
    assert len(session_data(follower).editor.spec.moves) == 1
    assert session_data(follower).editor.spec.to_dict() == session_data(presenter).editor.spec.to_dict()
    assert "**Selection: 0 training points**" in texts(follower.markdown)


def test_a_followers_compare_page_shows_the_presenters_run_and_pick(app_environment, stored_run):
    presenter, meeting_id, _ = presenting()
    session_data(presenter).current_run_id = stored_run.run_id
    presenter.switch_page("pages/compare.py").run()
    steps = [c["step"] for c in stored_run.result["path"]["pli"]]
    own = stored_run.result["selection"]["pli"]["step"]
    other = next(s for s in steps if s != own)
    presenter.select_slider(key=f"w_pick_{stored_run.run_id}").set_value(other).run()
    assert not presenter.exception

    follower = opened(meeting_id)
    assert [t.value for t in follower.title] == ["Compare"]
    assert session_data(follower).current_run_id == stored_run.run_id
    assert follower.select_slider(key=f"w_pick_{stored_run.run_id}").value == other


def test_presenting_survives_a_reload_and_stop_following_keeps_a_private_copy(app_environment, digits_data):
    presenter, meeting_id, key = presenting("pages/embedding.py")
    xy, labels = train_xy(presenter, app_environment), digits_data.train.labels
    select(presenter, np.array([8, 9]), xy, labels)
    follower = opened(meeting_id)
    assert "**Selection: 2 training points**" in texts(follower.markdown)

    # the presenter reloads: a new session on the same address goes on presenting, with its view back
    version = stored(app_environment, meeting_id)["version"]
    reloaded = opened(meeting_id, key)
    assert [t.value for t in reloaded.title] == ["Embedding & interventions"]
    assert "**Selection: 2 training points**" in texts(reloaded.markdown)
    assert any("Presenting meeting" in t for t in sidebar_texts(reloaded))
    assert stored(app_environment, meeting_id)["version"] == version  # the same view: nothing new published

    # stop following: the follower's view becomes its own; the presenter's next change does not reach it
    follower.button(key="w_meeting_leave").click().run()
    assert any("You stopped following" in t for t in texts(follower.info))
    assert param(follower, "meeting") is None
    select(reloaded, np.array([10, 11, 12, 13]), xy, labels)
    follower.run()
    assert "**Selection: 2 training points**" in texts(follower.markdown)
    select(follower, np.array([20]), xy, labels)  # and its own selection now holds
    assert "**Selection: 1 training points**" in texts(follower.markdown)
    assert session_data(reloaded).editor.selection.ids.tolist() == [10, 11, 12, 13]


def test_an_ended_meeting_and_bad_links_give_one_message_and_change_nothing(app_environment, digits_data):
    presenter, meeting_id, key = presenting("pages/embedding.py")
    xy, labels = train_xy(presenter, app_environment), digits_data.train.labels
    select(presenter, np.array([5, 6]), xy, labels)
    follower = opened(meeting_id)
    presenter.button(key="w_meeting_end").click().run()
    assert any(f"Meeting {meeting_id} ended" in t for t in texts(presenter.info))
    assert param(presenter, "meeting") is None and param(presenter, "presenter_key") is None
    follower.run()
    assert [w.value for w in follower.warning] == [
        f"Meeting {meeting_id} has ended: its presenter ended it. Ask for a new meeting link, or go on exploring on "
        "your own."]
    assert "**Selection: 2 training points**" in texts(follower.markdown)  # the last view, now its own
    follower.run()
    assert not follower.warning and not follower.error  # said once

    late = opened(meeting_id)  # the link after the end
    assert len(late.error) == 1 and "has ended" in late.error[0].value
    assert [t.value for t in late.title] == ["Model & data"] and param(late, "meeting") is None

    for bad, message in (("zzzzzzzzzz", "There is no meeting zzzzzzzzzz: check the meeting link"),
                         ("not-an-id", "'not-an-id' is not a meeting id")):
        at = opened(bad)
        assert len(at.error) == 1 and at.error[0].value.startswith(message), texts(at.error)
        assert [t.value for t in at.title] == ["Model & data"]
        assert not any("Following" in t for t in sidebar_texts(at))
    assert not (app_environment / "meetings" / "zzzzzzzzzz.json").exists()

    forged = opened(meeting_id, "not-the-key")  # a wrong presenter key only follows (and here: has ended)
    assert "has ended" in forged.error[0].value


def test_a_follower_sees_the_image_the_presenter_found_and_its_neighbours(app_environment):
    presenter, meeting_id, _ = presenting("pages/embedding.py")
    presenter.text_input(key="w_neighbour_query").input("17").run()
    assert not presenter.exception and not presenter.error
    follower = opened(meeting_id)
    assert follower.text_input(key="w_neighbour_query").value == "17"
    assert follower.session_state["plint_neighbour_focus"] == presenter.session_state["plint_neighbour_focus"]
    panel = [t for t in texts(follower.markdown) + texts(follower.caption) if "Image id 17" in t]
    assert panel, "the neighbour panel of image 17"
