"""Finding, verifying and loading model weight files.

Resolution order for a registered weight file (e.g. ``"taef2/taef2_encoder.pth"``):

1. an explicit path given by the caller (a file, or a folder laid out like the registry);
2. the folder named by the ``SFUMATO_MODELS_DIR`` environment variable;
3. the ``models_dir`` of the user's config file (:func:`user_config_path`, written by ``sfumato config set
   models_dir PATH``), so the variable need not be set on every call;
4. the user cache (``$SFUMATO_CACHE_DIR`` or ``~/.cache/sfumato/models``), filled on demand by a
   download from a pinned URL (a fixed commit) whose SHA-256 is checked before the file is kept;
5. otherwise a :class:`ModelNotFoundError` naming the file and where to put it.

Weights are only ever read with ``safetensors`` or ``torch.load(weights_only=True)``, and every file's
SHA-256 is checked against the registry before it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ENV_MODELS_DIR = "SFUMATO_MODELS_DIR"
ENV_CACHE_DIR = "SFUMATO_CACHE_DIR"
ENV_ALLOW_DOWNLOAD = "SFUMATO_ALLOW_DOWNLOAD"
ENV_CONFIG_FILE = "SFUMATO_CONFIG"

#: The settings the user config file holds (``sfumato config``), each a folder, with what it is for.
CONFIG_KEYS: dict[str, str] = {
    "models_dir": "folder with the model weights (like SFUMATO_MODELS_DIR, which wins when set)",
    "corpus_dir": "folder with reference paintings (art128/ or art/<artist>/) for the style judge "
                  "(like SFUMATO_CORPUS_DIR, which wins when set)",
}


class ModelNotFoundError(FileNotFoundError):
    """A weight file could not be found anywhere; the message says where to put it."""


class ChecksumError(ValueError):
    """A weight file's SHA-256 does not match the registry."""


@dataclass(frozen=True)
class WeightFile:
    """One registered weight file: relative name, expected SHA-256 and a pinned source URL."""

    name: str
    sha256: str
    url: str
    licence: str


_TAESD = "https://raw.githubusercontent.com/madebyollin/taesd/5cccb12dc72074a4be35680c3b108548a7c69978/"
_PSIM = "https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/082bb24f84c091ea94de2867d34c4544f68e0963/lpips/weights/v0.1/"
_CORAL = "https://raw.githubusercontent.com/google-coral/test_data/104342d2d3480b3e66203073dac24f4e2dbb4c41/"
_L2TF = "https://github.com/Image-X-Institute/lpips_torch2tf/raw/4b7afc647981a5cc9176c2083b27e353b5794a32/"

REGISTRY: dict[str, WeightFile] = {
    w.name: w
    for w in [
        WeightFile("taef2/taef2_encoder.pth",
                   "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
                   _TAESD + "taef2_encoder.pth", "MIT"),
        WeightFile("taef2/taef2_decoder.pth",
                   "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
                   _TAESD + "taef2_decoder.pth", "MIT"),
        WeightFile("taesana/taesana_encoder.pth",
                   "858f4e4cc293f88efaf58107f4154b960b9ced0cb5d9c050dad11f926b618c1f",
                   _TAESD + "taesana_encoder.pth", "MIT"),
        WeightFile("lpips/alex.pth",
                   "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
                   _PSIM + "alex.pth", "BSD-2-Clause"),
        WeightFile("lpips/squeeze.pth",
                   "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
                   _PSIM + "squeeze.pth", "BSD-2-Clause"),
        WeightFile("lpips/alexnet_features.safetensors",
                   "9f97fd313f4da83dbe6bbfbe6effca1241de9edfcd7c53386261ed9697286dd9",
                   _L2TF + "alexnet_features.safetensors", "BSD-2-Clause"),
        WeightFile("lpips/squeezenet1_1_features.safetensors",
                   "29dd9af42ad48cb39a767454d382a2232dbc1625a1de3f00fca4868ee65dfc4b",
                   _L2TF + "squeezenet1_1_features.safetensors", "BSD-2-Clause"),
        WeightFile("mobilenet_v2/mobilenet_v2_1.0_224_quant.tflite",
                   "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
                   _CORAL + "mobilenet_v2_1.0_224_quant.tflite", "Apache-2.0"),
        WeightFile("mobilenet_v2/tf2_mobilenet_v2_1.0_224_ptq.tflite",
                   "5d3137241276e79c86d14a74fe43581398ae0e815191d3dba45495b810840e8c",
                   _CORAL + "tf2_mobilenet_v2_1.0_224_ptq.tflite", "Apache-2.0"),
        WeightFile("mobilenet_v2/imagenet_labels.txt",
                   "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
                   _CORAL + "imagenet_labels.txt", "Apache-2.0"),
    ]
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """The user cache for downloaded weights."""
    base = os.environ.get(ENV_CACHE_DIR)
    if base:
        return Path(base).expanduser()
    return Path.home() / ".cache" / "sfumato" / "models"


def user_config_path() -> Path:
    """The user config file: ``$SFUMATO_CONFIG``, else ``$XDG_CONFIG_HOME/sfumato/config.json``, else
    ``~/.config/sfumato/config.json``."""
    explicit = os.environ.get(ENV_CONFIG_FILE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME")
    root = Path(base).expanduser() if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "sfumato" / "config.json"


def load_user_config() -> dict[str, str]:
    """The settings of the user config file (``{}`` when there is none); ``ValueError`` (one line) when it
    cannot be read or is not a JSON object."""
    p = user_config_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not valid JSON"
        raise ValueError(f"cannot read the config file {p} ({why}); fix it, or remove it and run "
                         "'sfumato config set models_dir PATH' again") from None
    if not isinstance(data, dict):
        raise ValueError(f"the config file {p} is not a JSON object; remove it and run 'sfumato config set' again")
    return {str(k): str(v) for k, v in data.items() if isinstance(v, (str, int, float))}


def save_user_config(settings: dict[str, str]) -> Path:
    """Write the user config file atomically (a temp file beside it, then renamed); returns its path."""
    p = user_config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".config-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(settings, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def configured_dir(key: str) -> Path | None:
    """A folder setting of the user config file (``models_dir``, ``corpus_dir``), or ``None``. A config
    file that cannot be read counts as none here (``sfumato config`` says what is wrong with it)."""
    try:
        value = load_user_config().get(key)
    except ValueError:
        return None
    return Path(value).expanduser() if value else None


def models_dir_in_use(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The models folder a lookup reads first: ``explicit``, else ``$SFUMATO_MODELS_DIR``, else the config
    file's ``models_dir`` (``None`` when none is set)."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        return p if p.is_dir() else p.parent
    env = os.environ.get(ENV_MODELS_DIR)
    return Path(env).expanduser() if env else configured_dir("models_dir")


def _candidates(name: str, explicit: str | os.PathLike[str] | None) -> list[Path]:
    out: list[Path] = []
    if explicit is not None:
        p = Path(explicit).expanduser()
        out.append(p / name if p.is_dir() else p)
    env = os.environ.get(ENV_MODELS_DIR)
    if env:
        out.append(Path(env).expanduser() / name)
    conf = configured_dir("models_dir")
    if conf is not None and not env:
        out.append(conf / name)
    out.append(cache_dir() / name)
    return out


def _download(w: WeightFile, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(w.url, timeout=60) as r:  # noqa: S310
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = sha256_file(tmp)
        if got != w.sha256:
            raise ChecksumError(
                f"download of {w.name} from {w.url} has SHA-256 {got}, expected {w.sha256}; not kept"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve(name: str, *, path: str | os.PathLike[str] | None = None, download: bool | None = None) -> Path:
    """Return the local path of registered weight file ``name``, verified by SHA-256.

    ``path`` may be the file itself or a models folder. Downloads into the user cache happen only when
    ``download`` is true (default: the ``SFUMATO_ALLOW_DOWNLOAD`` environment variable is ``1``).
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown weight file {name!r}; known: {', '.join(sorted(REGISTRY))}")
    w = REGISTRY[name]
    if path is not None and not Path(path).expanduser().exists():
        raise ModelNotFoundError(f"model weights not found: the models folder {path} does not exist; "
                                 "give an existing file or models folder")
    tried = _candidates(name, path)
    for p in tried:
        if p.is_file():
            verify(p, w.sha256)
            return p
    if download is None:
        download = os.environ.get(ENV_ALLOW_DOWNLOAD, "0") == "1"
    dest = cache_dir() / name
    if download:
        _download(w, dest)
        return dest
    raise ModelNotFoundError(
        f"model weights not found: {name} (looked in: {', '.join(str(t) for t in tried)}). "
        f"Run 'sfumato config set models_dir FOLDER' (or set {ENV_MODELS_DIR}) with a folder containing {name}, "
        f"or set {ENV_ALLOW_DOWNLOAD}=1 to fetch it from {w.url} (SHA-256 {w.sha256[:12]}...)."
    )


def verify(path: str | os.PathLike[str], expected_sha256: str | None) -> str:
    """Check a file's SHA-256; returns it. ``expected_sha256=None`` only computes it."""
    got = sha256_file(path)
    if expected_sha256 is None or got == expected_sha256:
        return got
    raise ChecksumError(f"{path} has SHA-256 {got} but {expected_sha256} was expected: the file is corrupt or "
                        "a different version; replace it with the published file")


def load_state_dict(path: str | os.PathLike[str], *, sha256: str | None) -> dict:
    """Load a state dict safely (safetensors or ``torch.load(weights_only=True)``) after a SHA check
    (``sha256=None`` only when the caller has just verified the file)."""
    import torch

    if sha256 is not None:
        verify(path, sha256)
    p = str(path)
    if p.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(p, device="cpu")
    return torch.load(p, map_location="cpu", weights_only=True)


def load_registered(name: str, *, path: str | os.PathLike[str] | None = None) -> tuple[dict, str]:
    """Resolve and load registered weights; returns ``(state_dict, sha256)``."""
    p = resolve(name, path=path)  # verified by SHA-256 here
    return load_state_dict(p, sha256=None), REGISTRY[name].sha256
