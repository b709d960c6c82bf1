"""Shared fixtures: seeding, a tiny labeled set, and the location of the real data."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from metalearner.tasks import LabeledSet

# pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored in the commands a
# test starts: the tests that press Ctrl-C on a command need it handled as in a terminal.
signal.signal(signal.SIGINT, signal.default_int_handler)
# Two workers share CI's two cores: one thread each, or OpenMP threads spinning against each
# other slow a test many-fold.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Decoded-data caches go to a folder of this test session, never the user's ~/.cache.
    os.environ["METALEARNER_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A decoded-data cache of this test's own, so that a test sees its loader decode."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("METALEARNER_CACHE", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _deterministic() -> None:
    # Tests must not depend on the global RNG; seeding it anyway keeps any slip reproducible.
    torch.manual_seed(1234)


@pytest.fixture
def tiny_images() -> LabeledSet:
    """12 classes x 6 images of 1x8x8 uint8, each class a distinct constant-plus-noise pattern."""
    g = torch.Generator().manual_seed(0)
    classes, per_class = 12, 6
    y = torch.arange(classes).repeat_interleave(per_class)
    base = torch.randint(0, 256, (classes, 1, 8, 8), generator=g)
    noise = torch.randint(-10, 10, (classes * per_class, 1, 8, 8), generator=g)
    x = (base[y] + noise).clamp(0, 255).to(torch.uint8)
    names = tuple(f"class{i:02d}" for i in range(classes))
    return LabeledSet(x, y, names, name="tiny")


def shared_data_dir() -> Path | None:
    """METALEARNER_DATA, else ../shared/data beside the checkout, else None."""
    env = os.environ.get("METALEARNER_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    return next((p for p in candidates if p.is_dir()), None)


@pytest.fixture
def data_dir() -> Path:
    """The real data root; skips where it is absent, fails in CI (METALEARNER_REQUIRE_DATA=1)."""
    found = shared_data_dir()
    if found is None:
        if os.environ.get("METALEARNER_REQUIRE_DATA") == "1":
            pytest.fail(
                "METALEARNER_REQUIRE_DATA=1 but no data at METALEARNER_DATA or ../shared/data"
            )
        pytest.skip("real data not found (set METALEARNER_DATA)")
    return found
