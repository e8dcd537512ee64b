"""``sfumato config``: show or change the user settings (the models folder, the reference corpus), kept in
a small JSON file in the user config folder (:func:`sfumato.models.user_config_path`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sfumato.commands import one_line_errors

HELP = "Show or change your settings (models folder, reference paintings), so no variable is needed per call."

EPILOG = """examples:
  sfumato config                                # show the settings and where each value comes from
  sfumato config set models_dir ~/sfumato/models
  sfumato config set corpus_dir ~/sfumato/corpus  # reference paintings for the style judge
  sfumato config unset corpus_dir
  sfumato config path                           # where the file is ($SFUMATO_CONFIG overrides it)
  sfumato config prepare                        # train the style judge once now (4-10 s), not on image 1

Setting models_dir or corpus_dir also prepares the style judge when reference paintings are found, so the
first image of the first run does not pay for it.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.models import CONFIG_KEYS

    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", nargs="?", default="show", choices=["show", "set", "unset", "path", "prepare"],
                   help="show (default), set KEY VALUE, unset KEY, path (print the file's location), or "
                        "prepare (train and cache the style judge now)")
    p.add_argument("key", nargs="?", choices=sorted(CONFIG_KEYS), metavar="KEY",
                   help="one of: " + "; ".join(f"{k}: {v}" for k, v in CONFIG_KEYS.items()))
    p.add_argument("value", nargs="?", metavar="VALUE", help="the folder (for set)")


def _show() -> None:
    from sfumato.models import CONFIG_KEYS, ENV_MODELS_DIR, load_user_config, user_config_path
    from sfumato.verification.discovery import ENV_CORPUS_DIR, find_corpus_dir

    path = user_config_path()
    settings = load_user_config()
    print(f"config file: {path}" + ("" if path.exists() else " (not written yet)"))
    env = {"models_dir": ENV_MODELS_DIR, "corpus_dir": ENV_CORPUS_DIR}
    for key in CONFIG_KEYS:
        value, source = settings.get(key), "config file"
        if os.environ.get(env[key]):
            value, source = os.environ[env[key]], f"${env[key]}, which wins over the config file"
        if key == "corpus_dir" and not value:
            found = find_corpus_dir()
            value, source = (str(found), "found beside the models folder") if found else (None, "")
        if value:
            ok = "" if Path(value).expanduser().is_dir() else "  (not a folder!)"
            print(f"{key} = {value}  [{source}]{ok}")
        else:
            print(f"{key}: not set ({CONFIG_KEYS[key]})")


def prepare_judge(*, quiet_missing: bool) -> bool:
    """Train the style judge the verdict uses (or load it from the judge cache) and say how long it took:
    a one-off cost (the art128 judge: about 10 s on 2 cores) moved from the first image of the first run to
    the set-up. Returns whether a judge is ready; a missing corpus or extra is one line (or nothing when
    ``quiet_missing``), never an error."""
    import time

    from sfumato.verification.plain import style_judge_for

    t0 = time.perf_counter()
    try:
        judge, name = style_judge_for(None, None)
    except Exception as e:  # noqa: BLE001  (a broken corpus or missing weights: say so, the setting stands)
        print(f"note: the style judge could not be prepared: {' '.join(str(e).split()) or type(e).__name__}")
        return False
    if judge is None:
        if not quiet_missing:
            print(f"note: {name}")
        return False
    from sfumato.judges.reference import judge_cache_dir

    print(f"{name} ready in {time.perf_counter() - t0:.1f} s (cached in {judge_cache_dir()}; runs start with it)")
    return True


def prepare_styles() -> bool:
    """Paint the built-in target styles and compute their Gram signatures into the style cache
    (:mod:`sfumato.targets.style_cache`): about 3 s on 2 cores that the first cloak or preview of every
    later process no longer pays. Quiet when the LPIPS weights are missing (the cloak says so itself)."""
    import time

    from sfumato.targets.style_cache import style_cache_dir
    from sfumato.targets.style_target import style_signature
    from sfumato.targets.styles import builtin_styles

    t0 = time.perf_counter()
    try:
        for style in builtin_styles():
            style_signature(style, None)
    except Exception:  # noqa: BLE001  (no weights yet: nothing to prepare)
        return False
    print(f"built-in target styles ready in {time.perf_counter() - t0:.1f} s (cached in {style_cache_dir()})")
    return True


def _run(args: argparse.Namespace) -> int:
    from sfumato.models import CONFIG_KEYS, load_user_config, save_user_config, user_config_path

    if args.action == "path":
        print(user_config_path())
        return 0
    if args.action == "prepare":
        if args.key or args.value:
            raise ValueError("'sfumato config prepare' takes no KEY or VALUE")
        prepare_styles()
        return 0 if prepare_judge(quiet_missing=False) else 1
    if args.action == "show":
        if args.key or args.value:
            raise ValueError("'sfumato config show' takes no KEY; use 'sfumato config set KEY VALUE'")
        _show()
        return 0
    if not args.key:
        raise ValueError(f"give a KEY to {args.action}: one of {', '.join(CONFIG_KEYS)}")
    settings = load_user_config()
    if args.action == "unset":
        if args.value:
            raise ValueError("'sfumato config unset KEY' takes no VALUE")
        settings.pop(args.key, None)
        print(f"{args.key} unset in {save_user_config(settings)}")
        return 0
    if not args.value:
        raise ValueError(f"give the folder: sfumato config set {args.key} FOLDER")
    folder = Path(args.value).expanduser().resolve()
    if not folder.is_dir():
        raise NotADirectoryError(f"{args.value} is not a folder; give the folder that holds the "
                                 f"{'model weights' if args.key == 'models_dir' else 'reference paintings'}")
    settings[args.key] = str(folder)
    print(f"{args.key} = {folder}  (saved in {save_user_config(settings)})")
    if args.key == "models_dir" and not (folder / "taef2").is_dir():
        print(f"note: {folder} has no taef2/ folder; the cloak needs taef2/taef2_encoder.pth and "
              "taef2/taef2_decoder.pth there")
    prepare_styles()
    prepare_judge(quiet_missing=True)
    return 0


run = one_line_errors(_run)
