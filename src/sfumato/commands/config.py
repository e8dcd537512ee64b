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
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sfumato.models import CONFIG_KEYS

    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("action", nargs="?", default="show", choices=["show", "set", "unset", "path"],
                   help="show (default), set KEY VALUE, unset KEY, or path (print the file's location)")
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


def _run(args: argparse.Namespace) -> int:
    from sfumato.models import CONFIG_KEYS, load_user_config, save_user_config, user_config_path

    if args.action == "path":
        print(user_config_path())
        return 0
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
    return 0


run = one_line_errors(_run)
