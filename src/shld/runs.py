"""Run folders: every run is a self-describing directory, and this module is its contract.

Layout::

    RUN_DIR/
      config.json      resolved configuration, identity (study, params hash, seed, format), versions
      metrics.csv      one row per record, keyed by its first column (step), flushed as the run goes
      summary.json     final numbers (written at the end)
      checkpoint.npz   state needed to resume, carrying the same identity as config.json (optional)
      figures/*.png
      .shld.lock       the run's exclusive lock (filelock); .shld.lock.pid names its holder

The contract (``docs/runs.md``), implemented here once:

* **Nothing is deleted that this call did not create.** :func:`open_run` is entered only after the
  parameters are validated; a fresh run that fails with a parameter error before it holds any work
  removes only what it created (its files, its member sub-folders, the folders it made when they are
  empty); once it holds work (a finished member, a checkpoint) it keeps everything, so it can be
  resumed; ``out`` may not be ``""``, ``"."`` or a folder that holds the working directory.
* **Identity.** ``config.json`` and every checkpoint carry :func:`make_identity` (study name, hash of the
  resolved parameters, seed, format version); a resume refuses any difference, naming the field.
* **One writer per folder.** :func:`open_run` holds an exclusive :class:`filelock.FileLock` for the whole
  run; a second run on the folder fails at once with :class:`RunFolderBusy` (naming the holder's pid).
* **Crash safety.** Every file is written atomically (:func:`atomic_write`: a per-process temporary
  name in the same folder, fsync, ``os.replace``); metrics rows are keyed by step, and
  :meth:`MetricsWriter.truncate_after` drops torn, duplicated and post-checkpoint rows.
* **Readable failures.** A corrupt file raises :class:`CorruptFileError`, one line naming the file.

A report can be rebuilt from the folder alone.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: version of the run-folder layout and identity; a resume refuses a folder of another format
FORMAT_VERSION = 1
LOCK_NAME = ".shld.lock"
PID_NAME = ".shld.lock.pid"
#: files the contract keeps beside a run's own (they do not make a folder "non-empty")
SIDE_FILES = frozenset({LOCK_NAME, PID_NAME})
IDENTITY_FIELDS = ("format", "study", "seed", "params_hash")
#: the folder of a run's finished sweep members (``members/KEY.json``, :mod:`shld.experiments.study`)
MEMBERS_DIR = "members"
#: the names of checkpoint files, in a run folder or in a member's sub-folder
CHECKPOINT_NAMES = ("checkpoint.npz", "checkpoint.pt")
_IDENTITY_KEY = "__identity__"


class RunFolderError(Exception):
    """A run folder cannot be used as asked; the message is one line naming the folder or file."""


class RunFolderBusy(RunFolderError):
    """Another process holds the run folder's lock."""


class CorruptFileError(RunFolderError, ValueError):
    """A file of a run folder exists but cannot be read (the message names it and what is wrong)."""


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not np.isfinite(x):
        return str(x)
    return x


def environment() -> dict:
    """Versions and machine facts recorded with every run."""
    import numpy
    import scipy

    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }
    try:
        from importlib.metadata import version

        env["shld"] = version("shld")
    except Exception:
        env["shld"] = "unknown"
    if "torch" in sys.modules:
        env["torch"] = sys.modules["torch"].__version__
    return env


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and call."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path | str, write: Callable[[Any], None], *, binary: bool = False) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file in the same folder (a name
    unique to this process), which is flushed, fsynced and renamed over ``path``. A kill at any
    moment leaves the old file or the new one, never half a file; the temporary is removed on error."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def write_text(path: Path | str, text: str) -> Path:
    """Write a text file atomically (:func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(text))


def write_json(path: Path | str, obj: Any) -> Path:
    """Write JSON atomically (:func:`atomic_write`), so a kill never leaves half a file."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def _why(exc: BaseException) -> str:
    msg = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def read_json(path: Path | str) -> Any:
    """Read a JSON file; a file that is not valid JSON raises :class:`CorruptFileError` naming it
    (a missing file raises ``FileNotFoundError``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptFileError(f"{path}: cannot be read ({_why(exc)})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        what = ("is empty" if not text.strip()
                else f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        raise CorruptFileError(f"{path}: {what}") from None


def read_config(folder: Path | str) -> dict:
    """The ``config.json`` of a run folder, checked to be an object with a ``config`` dict."""
    path = Path(folder) / "config.json"
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise CorruptFileError(f'{path}: has no "config" object (not the config of a shld run folder)')
    return doc


def params_hash(params: dict) -> str:
    """A short hash of the resolved parameters (the seed excluded: it is an identity field of its own)."""
    body = {k: v for k, v in params.items() if k != "seed"}
    text = json.dumps(_jsonable(body), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_identity(study: str, params: dict) -> dict:
    """The identity every config and checkpoint of a run carries: format version, study name, seed
    and a hash of the resolved parameters."""
    seed = params.get("seed")
    return {"format": FORMAT_VERSION, "study": study, "seed": None if seed is None else int(seed),
            "params_hash": params_hash(params)}


def check_identity(expected: dict, found: Any, where: str) -> None:
    """Raise :class:`RunFolderError` naming the first identity field in which ``found`` (read from
    ``where``) differs from ``expected``."""
    if not isinstance(found, dict):
        raise RunFolderError(f"{where} carries no run identity (written by an older shld, or not by shld), "
                             "so it cannot be resumed; start a fresh run with another --out")
    for key in IDENTITY_FIELDS:
        if found.get(key) != expected.get(key):
            what = {"format": "format version", "study": "study", "seed": "seed",
                    "params_hash": "parameters hash"}[key]
            raise RunFolderError(f"{where} belongs to another run: its {what} (`{key}`) is "
                                 f"{found.get(key)!r}, this run's is {expected.get(key)!r}")


def check_out(out: Path | str | None, what: str = "out") -> Path:
    """Validate a run-folder path: not empty, not ``.``, not the working directory or a folder that
    holds it (a run folder there could never be cleaned up safely), not an existing file."""
    if out is None or not str(out).strip():
        raise RunFolderError(f"`{what}` must name a run folder, got {out!r}")
    path = Path(out)
    try:
        resolved, cwd = path.resolve(), Path.cwd().resolve()
    except OSError as exc:
        raise RunFolderError(f"`{what}` {str(path)!r} cannot be resolved ({_why(exc)})") from None
    if resolved == cwd or resolved in cwd.parents:
        raise RunFolderError(f"`{what}` must be a folder of its own, not the working directory or one that "
                             f"holds it, got {str(out)!r}")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"`{what}` {str(path)!r} exists and is not a folder")
    return path


def _entries(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir() if p.name not in SIDE_FILES)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _lock_holder(path: Path) -> str:
    try:
        pid = (path / PID_NAME).read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "a process whose pid is not recorded"


@contextlib.contextmanager
def lock_folder(path: Path | str) -> Iterator[None]:
    """Hold the folder's exclusive lock (``.shld.lock``, :mod:`filelock`) inside the ``with`` block and
    write this process's pid beside it (``.shld.lock.pid``). Raises :class:`RunFolderBusy` at once
    when another process holds it."""
    from filelock import FileLock, Timeout

    path = Path(path)
    lock = FileLock(str(path / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusy(f"run folder {str(path)!r} is in use by another shld process ({_lock_holder(path)}); "
                            "wait for it to finish, or stop it, then try again") from None
    except OSError as exc:
        raise RunFolderError(f"run folder {str(path)!r} cannot be locked ({_why(exc)})") from None
    try:
        write_text(path / PID_NAME, f"{os.getpid()}\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            if (path / PID_NAME).read_text().strip() == str(os.getpid()):
                (path / PID_NAME).unlink()
        lock.release()


def _valid_rows(path: Path, key: str) -> tuple[list[str] | None, list[dict]]:
    """The header and the well-formed rows of a metrics CSV, keyed by ``key``: a torn row (a kill in
    mid-write), a row whose key is not a number and a repeated key (a row written twice) are dropped;
    the first row of each key is kept."""
    try:
        fh = path.open(newline="")
    except FileNotFoundError:
        return None, []
    with fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames
        rows, seen = [], set()
        for r in reader:
            if None in r or any(v is None for v in r.values()):
                continue
            try:
                k = float(r[key])
            except (KeyError, TypeError, ValueError):
                continue
            if k in seen:
                continue
            seen.add(k)
            rows.append(r)
    return (list(fields) if fields else None), rows


def count_rows(path: Path | str, key: str = "step", upto: float | None = None) -> int:
    """Number of well-formed rows (distinct ``key``) of a metrics CSV, those with ``key <= upto`` if
    given; 0 for a missing, empty or header-only file."""
    _, rows = _valid_rows(Path(path), key)
    return len(rows) if upto is None else sum(float(r[key]) <= upto for r in rows)


class MetricsWriter:
    """Append rows to a CSV, flushing each one; reopening continues an existing file.

    Rows are keyed by their first column (``step`` or ``epoch``). ``truncate_after`` (a value of
    that key) drops, when a run resumes, rows written after the last checkpoint together with any torn
    or repeated row, rewriting the file atomically, so resumed and uninterrupted runs agree.
    """

    def __init__(self, path: Path | str, fieldnames: list[str] | None = None):
        self.path = Path(path)
        self.fieldnames = list(fieldnames) if fieldnames else None
        self._fh = None
        self._writer = None

    def truncate_after(self, key: str, last_value: float) -> int:
        """Keep the well-formed rows with ``key <= last_value`` (one per key); returns how many."""
        fields, rows = _valid_rows(self.path, key)
        if fields is None:
            return 0
        keep = [r for r in rows if float(r[key]) <= last_value]

        def write(fh):
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)

        atomic_write(self.path, write)
        return len(keep)

    def write(self, row: dict) -> None:
        if self._writer is None:
            exists = self.path.exists() and self.path.stat().st_size > 0
            if self.fieldnames is None:
                if exists:
                    with self.path.open(newline="") as fh:
                        self.fieldnames = next(csv.reader(fh))
                else:
                    self.fieldnames = list(row)
            self._fh = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._fh, fieldnames=self.fieldnames,
                                          extrasaction="ignore")
            if not exists:
                self._writer.writeheader()
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def read_metrics(path: Path | str) -> dict[str, np.ndarray]:
    """Read a metrics CSV into columns (numeric where possible); torn rows are left out."""
    with Path(path).open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if None not in r and None not in r.values()]
    if not rows:
        return {}
    cols = {}
    for key in rows[0]:
        vals = [r[key] for r in rows]
        try:
            cols[key] = np.array([float(v) for v in vals])
        except ValueError:
            cols[key] = np.array(vals, dtype=object)
    return cols


class RunFolder:
    """A run directory. :func:`open_run` starts or resumes one under the contract (lock, identity);
    ``RunFolder.create(path, config)`` makes a plain sub-folder (a sweep member's) inside a run that is
    already locked; ``RunFolder(path)`` opens an existing one (e.g. to report).

    ``identity`` (set by :func:`open_run`) is written into every checkpoint and checked on loading one.
    The files this object writes are tracked, so a failed fresh run can remove exactly those.
    """

    def __init__(self, path: Path | str, *, identity: dict | None = None):
        self.path = Path(path)
        self.identity = identity
        self._created: list[Path] = []
        self._trees: set[Path] = set()

    def _track(self, path: Path, *, tree: bool = False) -> Path:
        """Record that this run is about to create ``path`` (nothing is recorded when it exists already).
        With ``tree``, ``path`` is a folder whose whole contents are this run's (a member's sub-folder,
        figures/), removed with it when a failed fresh run is undone; other folders go only when empty."""
        if not path.exists() and path not in self._created:
            self._created.append(path)
            if tree:
                self._trees.add(path)
        return path

    @classmethod
    def create(cls, out: Path | str, config: dict, *, exist_ok: bool = False,
               identity: dict | None = None) -> RunFolder:
        path = check_out(out)
        if _entries(path) and not exist_ok:
            raise FileExistsError(
                f"`out` folder {str(path)!r} exists and is not empty; pass --resume to continue "
                "it or choose another --out")
        (path / "figures").mkdir(parents=True, exist_ok=True)
        run = cls(path, identity=identity)
        if not (path / "config.json").exists():
            run._write_config(config)
        elif identity is not None:      # continuing a member folder: it must be this member's
            check_identity(identity, read_config(path).get("identity"), str(path / "config.json"))
        return run

    def _write_config(self, config: dict) -> None:
        doc = {"config": config}
        if self.identity is not None:
            doc = {"identity": self.identity, **doc}
        doc.update({"environment": environment(),
                    "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "argv": sys.argv})
        write_json(self._track(self.path / "config.json"), doc)

    @property
    def config(self) -> dict:
        return read_config(self.path)["config"]

    @property
    def figures(self) -> Path:
        d = self.path / "figures"
        self._track(d, tree=True)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def metrics(self, name: str = "metrics.csv", fieldnames=None) -> MetricsWriter:
        return MetricsWriter(self._track(self.path / name), fieldnames)

    def read_metrics(self, name: str = "metrics.csv") -> dict[str, np.ndarray]:
        return read_metrics(self.path / name)

    def write_summary(self, summary: dict) -> None:
        write_json(self._track(self.path / "summary.json"), summary)

    @property
    def summary(self) -> dict | None:
        p = self.path / "summary.json"
        return read_json(p) if p.exists() else None

    def save_checkpoint(self, **arrays) -> None:
        """Atomically save arrays (and JSON-able scalars via 0-d arrays) to checkpoint.npz, with the
        run's identity."""
        if self.identity is not None:
            arrays[_IDENTITY_KEY] = np.array(json.dumps(self.identity))
        atomic_write(self._track(self.path / "checkpoint.npz"), lambda fh: np.savez(fh, **arrays), binary=True)

    def load_checkpoint(self) -> dict[str, np.ndarray] | None:
        """The checkpoint's arrays (``None`` if there is none). A checkpoint that cannot be read, or
        whose identity differs from this run's, raises :class:`RunFolderError` naming the file."""
        p = self.path / "checkpoint.npz"
        if not p.exists():
            return None
        try:
            with open(p, "rb") as fh:
                head = fh.read(4)
            if not head:
                raise ValueError("the file is empty")
            if head != b"PK\x03\x04":
                raise ValueError("the file is not an .npz archive")
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            why = "it holds Python objects, not arrays" if "allow_pickle" in str(exc) else (
                str(exc) if str(exc).startswith("the file is") else _why(exc))
            raise CorruptFileError(f"{p}: not a readable checkpoint ({why}); remove it to restart the run "
                                   "from the beginning") from None
        raw = arrays.pop(_IDENTITY_KEY, None)
        if self.identity is not None:
            try:
                found = json.loads(str(raw)) if raw is not None else None
            except json.JSONDecodeError:
                found = None
            check_identity(self.identity, found, str(p))
        return arrays

    def _remove_created(self) -> None:
        """Remove the files and folders this object created: a folder tracked as a tree with everything
        in it, any other folder only when empty."""
        for p in reversed(self._created):
            with contextlib.suppress(OSError):
                if p.is_dir() and not p.is_symlink():
                    if p in self._trees:
                        shutil.rmtree(p)
                    else:
                        p.rmdir()
                elif p.exists() or p.is_symlink():
                    p.unlink()


def holds_work(path: Path | str) -> bool:
    """Whether run folder ``path`` holds computed work that a resume would reuse: a finished member's
    result (``members/*.json``) or a checkpoint, in the folder or in a member's sub-folder."""
    path = Path(path)
    if any((path / MEMBERS_DIR).glob("*.json")):
        return True
    return any(next(path.rglob(name), None) is not None for name in CHECKPOINT_NAMES)


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and missing parents; return the folders made (outermost first)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    made = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_dirs(made)
            raise RunFolderError(f"`out` folder {str(path)!r} cannot be created ({_why(exc)})") from None
        made.append(d)
    if not os.access(path, os.W_OK | os.X_OK):
        _remove_dirs(made)
        raise RunFolderError(f"`out` folder {str(path)!r} is not writable")
    return made


def _remove_dirs(made: list[Path]) -> None:
    for d in reversed(made):
        with contextlib.suppress(OSError):
            d.rmdir()


def _probe_writable(path: Path) -> None:
    """Create and remove a file in ``path``: ``os.access`` does not see read-only mounts or ACLs."""
    probe = _tmp_name(path / "probe")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise RunFolderError(f"`out` folder {str(path)!r} is not writable ({_why(exc)})") from None


@contextlib.contextmanager
def open_run(out: Path | str, study: str, params: dict, *, resume: bool = False) -> Iterator[RunFolder]:
    """Start (or with ``resume`` continue) the run of ``study`` with the resolved ``params`` in
    folder ``out``, holding its lock for the whole ``with`` block.

    Call it only after ``params`` are validated. Fresh: ``out`` must be missing or empty; it is made,
    locked, and ``config.json`` written with the run's identity. Resume: ``out`` must hold a
    ``config.json`` whose identity equals this run's (else :class:`RunFolderError` names the field); a
    missing or empty ``out`` starts fresh; a non-empty one without ``config.json`` is refused.
    If the block raises ``ValueError``/``TypeError`` in a fresh run that holds no work yet
    (:func:`holds_work`: no finished member, no checkpoint), what this run created is removed: the files
    tracked by ``run`` (its own, the driver's member results and tables), the member sub-folders and
    figures/ it made with their contents, and the folders it made when empty; nothing else. Once it
    holds work, everything is kept, ``config.json`` included, so that ``resume`` continues it.
    """
    path = check_out(out)
    identity = make_identity(study, params)
    lock_existed = (path / LOCK_NAME).exists()
    made = _make_dirs(path)
    _probe_writable(path)
    run = RunFolder(path, identity=identity)
    undo = True        # until the run starts, undo what this call made (its folders, its lock file)
    try:
        with lock_folder(path):
            if not lock_existed:
                run._created.append(path / LOCK_NAME)
            config_path = path / "config.json"
            fresh = not (resume and config_path.exists())
            if fresh:
                entries = _entries(path)
                if entries and resume:
                    raise RunFolderError(
                        f"`out` folder {str(path)!r} has no config.json, so it is not a run that can be resumed "
                        f"(it holds {', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''}); "
                        "choose another --out")
                if entries:
                    raise RunFolderError(
                        f"`out` folder {str(path)!r} exists and is not empty; pass --resume to continue it or "
                        "choose another --out")
                try:
                    run._write_config({"experiment": study, **params})
                except OSError as exc:
                    raise RunFolderError(f"`out` folder {str(path)!r}: config.json cannot be written "
                                         f"({_why(exc)})") from None
            else:
                doc = read_config(path)
                check_identity(identity, doc.get("identity"), str(config_path))
                stored = {k: v for k, v in doc["config"].items() if k != "experiment"}
                if params_hash(stored) != doc["identity"].get("params_hash"):
                    raise CorruptFileError(f"{config_path}: its parameters do not match its own params_hash "
                                           "(edited by hand?), so it cannot be resumed")
            run.figures  # noqa: B018 - make (and track) figures/
            undo = False
            try:
                yield run
            except (ValueError, TypeError):
                # a parameter error found late: a fresh run that has computed nothing yet leaves nothing of
                # its own behind; once it has (a finished member, a checkpoint), everything stays, config.json
                # included, so that `--resume` can continue it
                undo = fresh and not holds_work(path)
                raise
    except BaseException:
        if undo:
            run._remove_created()
            _remove_dirs(made)
        raise
