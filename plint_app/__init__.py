"""plint's Streamlit dashboard: UI helpers on top of :mod:`plint_core`.

Pure modules (no Streamlit import, unit-testable): :mod:`.config`,
:mod:`.project`, :mod:`.jobs`, :mod:`.editor`, :mod:`.chart_events`,
:mod:`.scatter`, :mod:`.history`, :mod:`.run_versus`, :mod:`.seeds`,
:mod:`.sources` (opening a user's model and data).
Streamlit glue: :mod:`.resources` (shared caches), :mod:`.session` (per-browser
state), :mod:`.ui` (small widgets shared by the pages) and :mod:`.source_panel`
(the Model & data page's Source section), :mod:`.links` (deep links). A run's figures and
tables are :mod:`plint_core.report`'s, shared with the HTML report.
"""
