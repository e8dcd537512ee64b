"""Where the judges' reference data is, without being told: the style judge runs by default whenever a
reference corpus can be found.

:func:`find_corpus_dir` looks, in order, at the folder given (``--corpus-dir``), ``$SFUMATO_CORPUS_DIR``,
the user config's ``corpus_dir`` (``sfumato config set corpus_dir FOLDER``) and a ``corpus`` folder beside
the models folder in use (``--models-dir``, ``$SFUMATO_MODELS_DIR`` or the config's ``models_dir``: a
models folder shipped with its reference paintings, as ``shared/models`` and ``shared/corpus``). A corpus
counts only when it holds ``art128/`` or ``art/<artist>/`` folders. Nothing here assumes any particular
folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_CORPUS_DIR", "find_corpus_dir", "is_corpus"]

ENV_CORPUS_DIR = "SFUMATO_CORPUS_DIR"  # the same name as sfumato.judges.style.ENV_CORPUS_DIR (kept light here)


def is_corpus(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds reference paintings a style judge can use (``art128/`` or ``art/<artist>/``)."""
    root = Path(folder).expanduser()
    if (root / "art128").is_dir():
        return True
    art = root / "art"
    try:
        return art.is_dir() and any(p.is_dir() for p in art.iterdir())
    except OSError:
        return False


def find_corpus_dir(explicit: str | os.PathLike[str] | None = None, *,
                    models_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The reference corpus for the style judge (see the module doc), or ``None`` when none is found.
    A folder given explicitly or by the variable is returned as given (the judge then says what is wrong
    with it); the config's and the models folder's neighbour only when they hold a corpus."""
    from sfumato.models import configured_dir, models_dir_in_use

    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_CORPUS_DIR)
    if env:
        return Path(env).expanduser()
    conf = configured_dir("corpus_dir")
    if conf is not None and is_corpus(conf):
        return conf
    models = models_dir_in_use(models_dir)
    if models is not None:
        beside = models.parent / "corpus"
        if is_corpus(beside):
            return beside
    return None
