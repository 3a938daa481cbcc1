"""Test selection: markers by what a test needs, so the fast unit tests run in seconds.

``pytest -m "not slow"`` runs the pure unit tests; ``-m app``, ``-m snapshot``,
``-m distributed``, ``-m ssh`` and ``-m gpu`` pick the rest. Files are marked
here, in one place, from what their tests start (a real run, the app, torchrun,
sshd); a single test can add a marker of its own. ``gpu`` tests skip cleanly
without CUDA.
"""

from __future__ import annotations

import pytest

MARKERS = {
    "slow": "starts real training runs, child processes or the app (seconds each)",
    "app": "drives the Textual app with Pilot",
    "snapshot": "compares the app's screen with a stored SVG snapshot",
    "distributed": "launches ranks under torchrun",
    "ssh": "talks to a real sshd on 127.0.0.1",
    "gpu": "needs a CUDA GPU (skipped without one)",
}

# test file (module name) -> the markers all of its tests carry
FILE_MARKERS = {
    "test_app_cli": ("slow", "app"),
    "test_app_gpu_panel": ("app",),
    "test_app_screen_keys": ("app",),
    "test_compare_screen": ("app",),
    "test_setup_preview": ("app",),
    "test_app_live": ("slow", "app"),
    "test_app_pilot": ("slow", "app"),
    "test_app_sources": ("app",),
    "test_ladder_screen": ("slow", "app"),
    "test_snapshots": ("slow", "app", "snapshot"),
    "test_ddp": ("slow", "distributed"),
    "test_remote_ssh": ("slow", "ssh"),
    "test_remote_quoting": ("slow",),
    "test_run": ("slow",),
    "test_profile_cli": ("slow",),
    "test_ladder": ("slow",),
    "test_search": ("slow",),
    "test_flop_count": ("slow",),
    "test_cpu_probe": ("slow",),
    "test_detect": ("slow",),
    "test_gpus_cli": ("slow",),
}


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda: bool | None = None
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        for name in FILE_MARKERS.get(module, ()):
            item.add_marker(getattr(pytest.mark, name))
        if item.get_closest_marker("gpu") is not None:
            if cuda is None:
                cuda = _cuda_available()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)"))
