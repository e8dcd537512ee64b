"""The GPU path without a GPU (issue 21, item 3): the device is chosen once at the shell and everything
downstream follows the input tensor's device. Fast tier: tiny random models, no ``../shared``.

* The ``device`` choice is checked at the boundary with one-line, teaching errors: the API keyword
  (:class:`~sfumato.api.DeviceUnavailable` before anything is read or written), ``--device`` on the CLI
  (exit 2, no traceback), ``sfumato serve --device`` and a Ray task given GPUs on a node without CUDA.
* Device-follow audit: :class:`FakeAccelerator` plays a second device on the CPU. Tensors on the
  "accelerator" report ``cpu:0``; host tensors report ``cpu``. A tensor made without ``device=`` (say
  ``torch.zeros(shape)``), one from NumPy (``to_nchw``) not moved with ``.to(x)``, one sent back with
  ``.cpu()`` / ``.to("cpu")``, or a model that was not moved with ``.to(x.device)`` stays on the host, and
  the first operation mixing it with an accelerator tensor raises, as CUDA would. The cloak (default
  preset: Gatys target, trainer views), the cloak with EOT stand-ins and masking, the poison and the
  protection all run end to end under it; a companion test shows the checker catches each kind of bug.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

import sfumato.metrics.lpips as lpm
from sfumato import api, cli
from sfumato.config import Budget, CloakConfig, PoisonConfig, ProtectConfig, Robustness
from sfumato.encoders.tae import tiny_random_tae
from sfumato.io.tensors import to_nchw
from sfumato.protections.device import DEVICE_ENV, DeviceUnavailable, parse_device, resolve_device

ACCEL = torch.device("cpu", 0)  # the fake accelerator: same memory as the host, another device name


# ------------------------------------------------------------------------------------- the fake device
class DeviceMixed(AssertionError):
    """A host tensor met an accelerator tensor (a CUDA run would fail there)."""


_FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.rand, torch.randn, torch.randint,
              torch.arange, torch.linspace, torch.eye, torch.tensor, torch.as_tensor, torch.from_numpy,
              torch.randperm, torch.logspace}
_MOVES = {torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.type_as}
_EXEMPT = {torch.Tensor.copy_, torch.Tensor.__setitem__, torch.Tensor.__getitem__, torch.Tensor.__repr__,
           torch.Tensor.__format__, torch.Tensor.__deepcopy__, torch._has_compatible_shallow_copy_type}


def on_accel(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and bool(getattr(t, "_accel", False))


def _mark(t: torch.Tensor, accel: bool) -> torch.Tensor:
    t._accel = accel  # type: ignore[attr-defined]
    return t


def _is_accel_device(d: Any) -> bool:
    return isinstance(d, torch.device) and d.type == "cpu" and d.index == 0


class FakeAccelerator(TorchFunctionMode):
    """Tracks which tensors live on the fake accelerator (``cpu:0``) and fails where CUDA would."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if func == torch.Tensor.device.__get__:
            return ACCEL if on_accel(args[0]) else torch.device("cpu")
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and on_accel(args[0]):
            raise DeviceMixed("an accelerator tensor went to NumPy without .cpu()")
        if func is torch.Tensor.cuda:
            raise DeviceMixed("the library called .cuda() by itself")
        if func in _FACTORIES:
            out = func(*args, **kwargs)
            dev = kwargs.get("device")
            accel = _is_accel_device(dev) or (isinstance(dev, str) and dev == "cpu:0")
            return _mark(out, accel) if isinstance(out, torch.Tensor) else out
        if func in _MOVES:
            return self._move(func, args, kwargs)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        accel = any(on_accel(t) for t in tensors)
        if accel and func not in _EXEMPT and name != "__set__":  # (setting .data / .grad is a copy)
            host = [tuple(t.shape) for t in tensors if not on_accel(t) and t.ndim > 0]
            if host:
                raise DeviceMixed(f"{name}: host tensor(s) {host} mixed with accelerator tensors")
        out = func(*args, **kwargs)
        if func not in _EXEMPT or func is torch.Tensor.__getitem__:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    _mark(t, accel)
        return out

    def _move(self, func, args, kwargs):  # noqa: ANN001, ANN202
        src = args[0]
        if func is torch.Tensor.cpu:
            accel = False
        elif func is torch.Tensor.type_as:
            accel = on_accel(args[1])
        else:
            rest = list(args[1:]) + list(kwargs.values())
            other = next((a for a in rest if isinstance(a, torch.Tensor)), None)
            dev = next((a for a in rest if isinstance(a, (torch.device, str))
                        and str(a).split(":")[0] in ("cpu", "cuda", "meta")), None)
            if other is not None:
                accel = on_accel(other)
            elif dev is not None:
                accel = _is_accel_device(dev) if isinstance(dev, torch.device) else dev == "cpu:0"
            else:  # a dtype or memory-format change only: stays where it is
                accel = on_accel(src)
        out = func(*args, **kwargs)
        if out is src and accel != on_accel(src):
            out = src.view_as(src)  # a real move makes a new tensor; never retag the caller's
        return _mark(out, accel)


def _module_to(orig):  # noqa: ANN001, ANN202
    """``nn.Module.to`` that moves the module's tensors to (or off) the fake accelerator."""

    def to(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        out = orig(self, *args, **kwargs)
        other = next((a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)), None)
        if other is not None:
            accel = on_accel(other)
        else:
            dev = torch._C._nn._parse_to(*args, **kwargs)[0]
            if dev is None:
                return out
            accel = _is_accel_device(dev) or str(args[0] if args else kwargs.get("device")) == "cpu:0"
        for t in list(self.parameters()) + list(self.buffers()):
            _mark(t, accel)
        return out

    return to


@pytest.fixture()
def fake_accel(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Fresh tiny models (host tensors, as loaded from disk) and the fake accelerator switched on."""
    from sfumato.encoders import cache

    base = {net: lpm.tiny_random_lpips(net, seed=3) for net in ("alex", "squeeze")}
    monkeypatch.setattr(lpm, "load_lpips", lambda net="alex", *, models_dir=None: copy.deepcopy(base[net]))
    monkeypatch.setitem(cache._ENCODER_CACHE, ("taef2", "None"), tiny_random_tae(seed=1))
    monkeypatch.setattr(nn.Module, "to", _module_to(nn.Module.to))
    import sfumato.targets.style_target as st

    monkeypatch.setattr(st, "GATYS_STEPS", 6)
    monkeypatch.setattr(st, "GATYS_COARSE_STEPS", 3)
    monkeypatch.setattr(st, "_SIG_CACHE", {})
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with FakeAccelerator():
        yield
    torch.set_num_threads(n)


def _art(h: int = 72, w: int = 88, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * 0.3 + 0.5 + 0.2 * yy for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)


def _small(cls: type, **kw: Any) -> Any:
    names = {k: kw.pop(k) for k in ("concept", "target") if k in kw}
    cfg = cls.preset(quality="fast", **names)
    return dataclasses.replace(cfg, budget=Budget(lpips=0.05, linf=16 / 255),
                               effort=dataclasses.replace(cfg.effort, steps=3, resolution=64, view_crop=32,
                                                          calibration_steps=3), **kw)


# ------------------------------------------------------------------------------- the checker catches bugs
def test_the_fake_accelerator_catches_each_kind_of_device_bug(fake_accel: None) -> None:
    x = to_nchw(_art(16, 16)).to(ACCEL)
    assert on_accel(x) and x.device == ACCEL
    assert on_accel(x * 2 + torch.zeros(x.shape, device=x.device))  # the right way works
    with pytest.raises(DeviceMixed, match="host tensor"):
        x + torch.zeros(x.shape)  # created without device=
    with pytest.raises(DeviceMixed, match="host tensor"):
        x - to_nchw(_art(16, 16))  # from NumPy, not moved with .to(x)
    with pytest.raises(DeviceMixed, match="host tensor"):
        x * x.cpu()  # sent back to the host
    with pytest.raises(DeviceMixed, match="host tensor"):
        x * x.to("cpu")
    with pytest.raises(DeviceMixed, match="NumPy"):
        x.numpy()
    enc = tiny_random_tae(seed=2)
    with pytest.raises(DeviceMixed, match="host tensor"):
        enc.encode(x)  # a model that was not moved to its input
    assert on_accel(enc.to(x.device).encode(x))
    lp, y = lpm.tiny_random_lpips("alex", seed=1), to_nchw(_art(32, 32)).to(ACCEL)
    with pytest.raises(ValueError, match="move the module"):  # LPIPS's own device check sees the fake device
        lp(y, y)
    assert on_accel(lpm.measure_lpips(lp, y, y))  # the metric helper moves the model to its inputs


# ------------------------------------------------------------------------ the pipeline follows its input
def _assert_outcome(res: Any, rgb: np.ndarray) -> None:
    assert isinstance(res.image, np.ndarray) and res.image.shape == rgb.shape  # back on the host as pixels
    assert res.scale > 0 and res.achieved["linf"] <= 16 / 255 + 1e-6


def test_cloak_default_preset_runs_on_the_device_of_its_input(fake_accel: None) -> None:
    from sfumato.protections.cloak import cloak_array

    rgb = _art()
    cfg = _small(CloakConfig, target_style="mosaic")
    assert cfg.target_renderer == "gatys" and cfg.effort.views == "trainer"
    _assert_outcome(cloak_array(rgb, cfg, device=ACCEL), rgb)


def test_cloak_with_eot_masking_and_latent_wct_follows_its_input(fake_accel: None) -> None:
    from sfumato.protections.cloak import cloak_array

    rgb = _art(seed=1)
    cfg = _small(CloakConfig, target_style="mosaic", target_renderer="latent-wct",
                 robustness=Robustness(eot="strong", masking=True, perturbation_scale=0.5))
    cfg = dataclasses.replace(cfg, effort=dataclasses.replace(cfg.effort, views="work"))
    _assert_outcome(cloak_array(rgb, cfg, device=ACCEL), rgb)


@pytest.mark.parametrize("choice", ["cheapest", "aligned"])
def test_poison_and_protect_follow_their_input(fake_accel: None, choice: str) -> None:
    from sfumato.protections.poison import poison_array
    from sfumato.protections.protect import protect_array

    rgb, anchors = _art(seed=2), [_art(80, 64, seed=3), _art(64, 96, seed=4)]
    p = _small(PoisonConfig, concept="dog", target="cat", anchor_choice=choice)
    _assert_outcome(poison_array(rgb, p, anchors, device=ACCEL), rgb)
    if choice == "cheapest":
        q = _small(ProtectConfig, concept="dog", target="cat", target_style="mosaic")
        _assert_outcome(protect_array(rgb, q, anchors, device=ACCEL), rgb)


def test_the_file_api_measures_the_saved_file_on_the_device(fake_accel: None, tmp_path: Path) -> None:
    src = tmp_path / "art.png"
    Image.fromarray((_art(seed=5) * 255).round().astype(np.uint8)).save(src)
    before = src.read_bytes()
    cfg = _small(CloakConfig, target_style="mosaic", target_renderer="latent-wct")
    r = api.cloak_file(src, tmp_path / "out", cfg, device=ACCEL, ai_view=True)  # + the AI view on the device
    assert r.output.exists() and r.manifest["within_budget"] and r.manifest["optimisation"]["device"] == "cpu"
    assert sorted(p.name for p in r.extra_outputs) == ["art.ai_view.after.png", "art.ai_view.before.png"]
    assert src.read_bytes() == before


# --------------------------------------------------------------------------------- the boundary checks
def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_device_names_and_availability_are_checked_with_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert parse_device(" CUDA:1 ") == "cuda:1"
    with pytest.raises(ValueError, match=r"unknown device 'gpu': use auto, cpu, cuda or cuda:N"):
        parse_device("gpu")
    assert resolve_device(None) == torch.device("cpu") and resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceUnavailable) as e:
        resolve_device("cuda")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("device cuda: PyTorch sees no CUDA GPU") and "--device cpu" in msg
    monkeypatch.setenv(DEVICE_ENV, "cuda:0")
    with pytest.raises(DeviceUnavailable, match=r"^\$SFUMATO_DEVICE=cuda:0: PyTorch sees no CUDA GPU"):
        resolve_device(None)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(DeviceUnavailable, match=r"device cuda:3: this machine has 1 CUDA GPU\(s\), numbered 0..0"):
        resolve_device("cuda:3")


def test_the_api_refuses_a_missing_gpu_before_reading_or_writing(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    _no_cuda(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(DeviceUnavailable, match="no CUDA GPU"):
        api.cloak_file(tmp_path / "missing.png", out, device="cuda")  # the device is checked before the file
    with pytest.raises(DeviceUnavailable):
        api.cloak(np.zeros((16, 16, 3), np.float32), device="cuda:0")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        api.cloak(np.zeros((16, 16, 3), np.float32), device="tpu")
    assert not out.exists()


@pytest.mark.parametrize(("device", "expect"), [
    ("gpu", "argument --device: unknown device 'gpu': use auto, cpu, cuda or cuda:N"),
    ("cuda", "error: device cuda: PyTorch sees no CUDA GPU here"),
])
def test_cli_device_errors_are_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], device: str, expect: str) -> None:
    _no_cuda(monkeypatch)
    src = tmp_path / "art.png"
    Image.fromarray((_art() * 255).astype(np.uint8)).save(src)
    before = src.read_bytes()
    for cmd in ("cloak", "poison"):
        extra = ["--concept", "dog", "--target", "cat", "--anchors", str(tmp_path)] if cmd == "poison" else []
        code = cli.main([cmd, str(src), "-o", str(tmp_path / "out"), "--device", device, *extra])
        err = capsys.readouterr().err
        assert code == 2, err
        assert expect in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and src.read_bytes() == before


def test_cluster_batches_and_ray_tasks_get_their_device_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from sfumato.cluster.tasks import task_device
    from sfumato.commands.cloak import _cluster_gpus
    from sfumato.commands.serve import device_setting

    _no_cuda(monkeypatch)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    with pytest.raises(DeviceUnavailable) as e:
        task_device(1)
    assert str(e.value).startswith("this Ray task reserved 1 GPU(s) (--task-gpus) but device cuda: PyTorch sees no")
    assert "\n" not in str(e.value)
    assert task_device(0) == "cpu"
    import os

    assert os.environ[DEVICE_ENV] == "cpu"  # every API call of the task computes there
    ns = argparse.Namespace
    assert _cluster_gpus(ns(cluster="auto", device="cuda")) == 1.0
    assert _cluster_gpus(ns(cluster="auto", device=None)) == 0.0 and _cluster_gpus(ns(cluster=None, device="cuda")) == 0
    with pytest.raises(ValueError, match="use --device cuda"):
        _cluster_gpus(ns(cluster="auto", device="cuda:1"))
    with pytest.raises(ValueError, match="--task-gpus 1"):
        device_setting(ns(executor="ray", device="cuda", task_gpus=0.0))
    with pytest.raises(ValueError, match="contradicts --task-gpus"):
        device_setting(ns(executor="ray", device="cpu", task_gpus=1.0))
    with pytest.raises(DeviceUnavailable, match="no CUDA GPU"):
        device_setting(ns(executor="local", device="cuda", task_gpus=0.0))
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert device_setting(ns(executor="local", device="auto", task_gpus=0.0)) == "cpu"


def test_import_sfumato_stays_light() -> None:
    import subprocess

    code = "import sfumato, sfumato.api, sfumato.protections.device, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
