"""Flags on images: what a review says about training images, kept with the project in the run store.

A :class:`Flag` marks some training samples (by sample id) as

- ``label_wrong``, with the class they should have (``suggested``);
- ``ambiguous``;
- ``note``, with free text;

and records who said so (the name they gave) and when (UTC, ISO 8601). Any flag may carry a note.

A :class:`FlagBook` holds one project's flags: a JSON file of the run store, ``flags/<key>.json``, whose key
names the content of the project's data and model (:func:`book_key`, their fingerprints, as the store keys
latents and embeddings), so every session and every restart of the same data and model finds the same book, and
another project never sees it. Each change reads the file, changes it and writes it back atomically
(:func:`plint_core.atomic.write_json_atomic`) under a lock file (``filelock``), so a killed write leaves the old
book whole and two sessions flagging at once both keep their flags.

Bad input (a flag on no images, an unknown kind or class, no name) raises
:class:`~plint_core.errors.PlintError` and changes nothing.

Examples
--------
>>> book = FlagBook(RunStore("runs"), data, bundle.fingerprint)          # doctest: +SKIP
>>> flag = book.add([12, 40], "label_wrong", who="Ana", suggested="7")  # doctest: +SKIP
>>> book.table()                                                         # doctest: +SKIP
   id file_name given_label suggested_label        kind note  who                       when
0  12                     1               7  label_wrong       Ana  2026-12-04T18:20:01+00:00
"""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import numpy as np

from .atomic import write_json_atomic
from .data.dataset import Dataset, Split
from .data.images import FileImages
from .errors import PlintError
from .store import RunStore, make_key

if TYPE_CHECKING:
    import pandas as pd

    from .baselines import Baseline

KINDS = {"label_wrong": "label wrong", "ambiguous": "ambiguous", "note": "note"}
"""The kinds of flag, with their names in words."""
DROP_KINDS = ("label_wrong", "ambiguous")
"""The flags whose images a run without the flagged images leaves out (a note may say an image is fine)."""
CSV_COLUMNS = ("id", "file_name", "given_label", "suggested_label", "kind", "note", "who", "when")
"""The columns of :meth:`FlagBook.table` and its CSV: one row per flagged image and flag."""
MAX_NAME = 100
MAX_NOTE = 2000
FORMAT = 1
_UNSET = object()


@dataclass(frozen=True)
class Flag:
    """One flag on training images.

    Parameters
    ----------
    flag_id: str
        The flag's own id (12 hex digits), for editing and deleting it.
    ids: tuple of int
        The training samples' ids (sorted, unique; the ``id`` of :class:`~plint_core.data.dataset.Split`).
    kind: str
        ``label_wrong``, ``ambiguous`` or ``note`` (:data:`KINDS`).
    suggested: int or None
        With ``label_wrong``, the index of the class the images should have; ``None`` otherwise.
    note: str
        Free text (required with ``note``, optional with the others).
    who: str
        The name the flagging user gave.
    when: str
        When the flag was made, UTC, ISO 8601 (``2026-12-04T18:20:01+00:00``).
    edited: str or None
        When it was last edited (UTC, ISO 8601); ``None`` if never.
    """

    flag_id: str
    ids: tuple[int, ...]
    kind: str
    suggested: int | None
    note: str
    who: str
    when: str
    edited: str | None = None

    def to_dict(self) -> dict:
        return asdict(self) | {"ids": list(self.ids)}

    @classmethod
    def from_dict(cls, d: dict) -> "Flag":
        return cls(str(d["flag_id"]), tuple(int(i) for i in d["ids"]), str(d["kind"]),
                   None if d.get("suggested") is None else int(d["suggested"]), str(d.get("note", "")),
                   str(d["who"]), str(d["when"]), d.get("edited"))

    def describe(self, class_names: Sequence[str]) -> str:
        """``label wrong → 7 · 3 images · Ana``: for lists and labels."""
        what = KINDS.get(self.kind, self.kind)
        if self.kind == "label_wrong" and self.suggested is not None:
            what += f" → {class_names[self.suggested]}"
        n = len(self.ids)
        text = f"{what} · {n} image{'s' if n != 1 else ''} · {self.who}"
        return text + (f" · {self.note[:40]}{'…' if len(self.note) > 40 else ''}" if self.note else "")


def book_key(data_fingerprint: str, model_fingerprint: str) -> str:
    """The key of a project's flag book: its data's and its model's content fingerprints."""
    return make_key({"kind": "flags", "data": data_fingerprint, "model": model_fingerprint})


def stored_flags(store: RunStore | str | Path, data_fingerprint: str | None, model_fingerprint: str | None
                 ) -> list[Flag]:
    """The flags of the project with these fingerprints in ``store``, oldest first, read without the data (for a
    run's report, from the fingerprints its ``result.json`` records); ``[]`` where there are none, the
    fingerprints are not known, or the book cannot be read."""
    if not data_fingerprint or not model_fingerprint:
        return []
    store = store if isinstance(store, RunStore) else RunStore(store)
    path = store.root / "flags" / f"{book_key(data_fingerprint, model_fingerprint)}.json"
    try:
        return [Flag.from_dict(d) for d in json.loads(path.read_text(encoding="utf-8"))["flags"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_names(split: Split) -> np.ndarray | None:
    """Each sample's file name (its path below the data folder, as the checks show it), row-aligned with
    ``split``; ``None`` for data without files (an ``.npz``, the digits)."""
    images = split.images
    if not isinstance(images, FileImages):
        return None
    return np.asarray(images.shown, dtype=object)[images.source_rows()]


class FlagBook:
    """The flags of one project (its data and model), stored in ``store``.

    Parameters
    ----------
    store: RunStore, str or Path
        The run store (or its root folder) the book lives in, ``flags/<key>.json``.
    data: Dataset
        The project's data: flags name its training samples; the CSV shows their labels and file names.
    model_fingerprint: str
        The project's model's fingerprint (:attr:`plint_core.models.spec.ModelBundle.fingerprint`).

    Every method reads the file afresh, so a book made later on the same store (another session, a restarted
    server, the command line) sees the same flags.
    """

    def __init__(self, store: RunStore | str | Path, data: Dataset, model_fingerprint: str):
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.data = data
        self.data_fingerprint = data.fingerprint()
        self.model_fingerprint = model_fingerprint
        self.key = book_key(self.data_fingerprint, model_fingerprint)

    @property
    def path(self) -> Path:
        return self.store.root / "flags" / f"{self.key}.json"

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.data.class_names)

    # --- reading -----------------------------------------------------------
    def flags(self) -> list[Flag]:
        """Every flag, oldest first."""
        return [Flag.from_dict(d) for d in self._read()["flags"]]

    def __len__(self) -> int:
        return len(self.flags())

    def get(self, flag_id: str) -> Flag:
        """The flag ``flag_id``; a :class:`PlintError` if there is none."""
        for flag in self.flags():
            if flag.flag_id == flag_id:
                return flag
        raise PlintError(f"there is no flag {flag_id!r} (it may have been deleted in another session): "
                         "reload the list of flags")

    def flagged_ids(self, kinds: Iterable[str] | None = None) -> np.ndarray:
        """The sorted unique ids of the training samples with a flag (of ``kinds``; default: any)."""
        kinds = set(KINDS if kinds is None else kinds)
        ids = [i for f in self.flags() if f.kind in kinds for i in f.ids]
        return np.unique(np.asarray(ids, dtype=np.int64))

    def suggested_labels(self) -> dict[int, int]:
        """``{sample id: suggested class}`` from the ``label_wrong`` flags; where several name one image, the
        latest flag's suggestion counts."""
        out: dict[int, int] = {}
        for flag in self.flags():
            if flag.kind == "label_wrong" and flag.suggested is not None:
                out.update({i: flag.suggested for i in flag.ids})
        return dict(sorted(out.items()))

    def baseline(self, kind: str, kinds: Iterable[str] = DROP_KINDS) -> "Baseline":
        """The fine-tuning baseline that follows these flags (:mod:`plint_core.baselines`): ``relabel`` (the
        suggested labels, :meth:`suggested_labels`) or ``drop_flagged`` (without the images flagged as one of
        ``kinds``; default: label wrong or ambiguous, not the notes). Its key holds the flags' effect, so a changed
        book that changes the training is a new run. A :class:`PlintError` without such flags."""
        from .baselines import FLAG_KINDS, Baseline

        if kind not in FLAG_KINDS:
            raise PlintError(f"a baseline of the flags is {' or '.join(FLAG_KINDS)}, not {kind!r}")
        if kind == "relabel":
            return Baseline("relabel", relabel=tuple(self.suggested_labels().items()))
        return Baseline("drop_flagged", drop=tuple(int(i) for i in self.flagged_ids(kinds)))

    def table(self) -> "pd.DataFrame":
        """One row per flag and flagged image, in the order the flags were made: :data:`CSV_COLUMNS`.

        ``given_label`` and ``suggested_label`` are class names; ``file_name`` is empty for data without files.
        """
        import pandas as pd

        train = self.data.train
        names = file_names(train)
        classes = np.asarray(self.class_names, dtype=object)
        rows = []
        for flag in self.flags():
            at = _rows_of(train.ids, np.asarray(flag.ids, dtype=np.int64))
            for i, r in zip(flag.ids, at):
                rows.append({"id": int(i), "file_name": "" if names is None else str(names[r]),
                             "given_label": classes[train.labels[r]],
                             "suggested_label": "" if flag.suggested is None else classes[flag.suggested],
                             "kind": flag.kind, "note": flag.note, "who": flag.who, "when": flag.when})
        return pd.DataFrame(rows, columns=list(CSV_COLUMNS))

    def to_csv(self) -> bytes:
        """:meth:`table` as CSV (UTF-8), for a download."""
        return self.table().to_csv(index=False).encode("utf-8")

    # --- changing ----------------------------------------------------------
    def add(self, ids: Sequence[int] | np.ndarray, kind: str, who: str, *, suggested: int | str | None = None,
            note: str = "", when: str | None = None) -> Flag:
        """Flag the training samples ``ids`` and store the flag; returns it.

        ``suggested`` (``label_wrong`` only) is a class index or name. Raises :class:`PlintError`, storing
        nothing, for no ids, ids that are not training samples, an unknown kind, a missing or unknown
        suggested class, a ``note`` without text or an empty name.
        """
        ids = self._check_ids(ids)
        kind, suggested, note, who = self._check_fields(kind, suggested, note, who, ids)
        flag = Flag(uuid.uuid4().hex[:12], ids, kind, suggested, note, who, when or utc_now())
        with self._locked() as book:
            book["flags"].append(flag.to_dict())
            self._write(book)
        return flag

    def edit(self, flag_id: str, *, kind: str | None = None, suggested: int | str | None | object = _UNSET,
             note: str | None = None) -> Flag:
        """Change the kind, the suggested class or the note of flag ``flag_id`` (what is not given stays; a kind
        other than ``label_wrong`` drops the suggestion); returns the changed flag. Checked as :meth:`add`."""
        with self._locked() as book:
            at = [k for k, d in enumerate(book["flags"]) if d["flag_id"] == flag_id]
            if not at:
                raise PlintError(f"there is no flag {flag_id!r} (it may have been deleted in another session): "
                                 "reload the list of flags")
            old = Flag.from_dict(book["flags"][at[0]])
            kind = old.kind if kind is None else kind
            suggested = (old.suggested if kind == "label_wrong" else None) if suggested is _UNSET else suggested
            note = old.note if note is None else note
            kind, suggested, note, who = self._check_fields(kind, suggested, note, old.who, old.ids)
            new = replace(old, kind=kind, suggested=suggested, note=note, edited=utc_now())
            book["flags"][at[0]] = new.to_dict()
            self._write(book)
        return new

    def delete(self, flag_id: str) -> Flag:
        """Remove flag ``flag_id``; returns it."""
        with self._locked() as book:
            keep = [d for d in book["flags"] if d["flag_id"] != flag_id]
            if len(keep) == len(book["flags"]):
                raise PlintError(f"there is no flag {flag_id!r} (it may have been deleted in another session): "
                                 "reload the list of flags")
            gone = next(Flag.from_dict(d) for d in book["flags"] if d["flag_id"] == flag_id)
            book["flags"] = keep
            self._write(book)
        return gone

    # --- checks ------------------------------------------------------------
    def _check_ids(self, ids: Sequence[int] | np.ndarray) -> tuple[int, ...]:
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel()) if len(ids) else np.zeros(0, np.int64)
        if not ids.size:
            raise PlintError("no images are selected: select images on the map (a box, a lasso, a class or one "
                             "point; on the command line --ids) before flagging them")
        unknown = ids[~np.isin(ids, self.data.train.ids)]
        if unknown.size:
            raise PlintError(f"sample id {int(unknown[0])} is not a training image of {self.data.name!r}: flag "
                             "training images (the ids the map shows)")
        return tuple(int(i) for i in ids)

    def _check_fields(self, kind: str, suggested, note: str, who: str, ids: tuple[int, ...]
                      ) -> tuple[str, int | None, str, str]:
        if kind not in KINDS:
            raise PlintError(f"flag kind {kind!r} is unknown: use one of {', '.join(KINDS)}")
        who = " ".join(str(who or "").split())
        if not who:
            raise PlintError("give your name before flagging: each flag records who made it")
        if len(who) > MAX_NAME:
            raise PlintError(f"the name is {len(who)} characters long: give at most {MAX_NAME}")
        note = str(note or "").strip()
        if len(note) > MAX_NOTE:
            raise PlintError(f"the note is {len(note)} characters long: keep it to {MAX_NOTE}")
        if kind == "note" and not note:
            raise PlintError("a note flag needs its text: write the note, or choose another kind")
        if kind != "label_wrong":
            return kind, None, note, who
        if suggested is None or (isinstance(suggested, str) and not suggested.strip()):
            raise PlintError("a 'label wrong' flag needs the class the images should have: choose the suggested "
                             "class")
        index = self._class_index(suggested)
        given = self.data.train.labels[_rows_of(self.data.train.ids, np.asarray(ids, dtype=np.int64))]
        if np.all(given == index):
            raise PlintError(f"every flagged image is already labelled {self.class_names[index]!r}: suggest "
                             "another class, or flag them as ambiguous")
        return kind, index, note, who

    def _class_index(self, suggested: int | str) -> int:
        names = self.class_names
        if isinstance(suggested, str):
            text = suggested.strip()
            if text in names:
                return names.index(text)
            if text.isdigit() and int(text) < len(names):
                return int(text)
            raise PlintError(f"suggested class {suggested!r} does not exist: the classes are {', '.join(names)}")
        if isinstance(suggested, (int, np.integer)) and not isinstance(suggested, bool) \
                and 0 <= int(suggested) < len(names):
            return int(suggested)
        raise PlintError(f"suggested class {suggested!r} does not exist: give a class index 0..{len(names) - 1} "
                         f"or a name ({', '.join(names)})")

    # --- the file ----------------------------------------------------------
    def _empty(self) -> dict:
        return {"format": FORMAT, "data": self.data.name, "data_fingerprint": self.data_fingerprint,
                "model_fingerprint": self.model_fingerprint, "classes": list(self.class_names), "flags": []}

    def _read(self) -> dict:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return self._empty()
        try:
            book = json.loads(text)
            if not isinstance(book.get("flags"), list):
                raise ValueError("no list of flags")
            for d in book["flags"]:
                Flag.from_dict(d)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise PlintError(f"the flag book {str(self.path)!r} cannot be read ({exc}): it was changed by hand; "
                             "restore it or move it away to start a new one") from exc
        return book

    def _write(self, book: dict) -> None:
        write_json_atomic(self.path, book)

    @contextmanager
    def _locked(self) -> Iterator[dict]:
        """The book as stored, read while holding its lock file (the lock is held until the block ends)."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path.with_name(f".{self.path.name}.lock")), timeout=30):
            yield self._read()


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row numbers of sample ids ``wanted`` in ``ids`` (all present)."""
    ids = np.asarray(ids)
    if len(ids) and np.array_equal(ids, np.arange(len(ids))):
        return wanted.astype(np.int64)
    order = np.argsort(ids)
    return order[np.searchsorted(ids[order], wanted)]
