"""Shared pytest fixtures."""

import os
import shutil

# The tests run tiny models: one thread each is fastest, and keeps parallel subprocesses (two training processes,
# a Hub server, the Space) from fighting over the 2 cores a CI machine or a free Space has.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def olah_hub(tmp_path_factory):
    """An olah server (tests/olah_hub.py) on 127.0.0.1 serving the git repos under ``mirror_dir/models`` as Hub models.

    Push with ``ddpm_hub.hub.push_to_mirror(folder, olah_hub.mirror_dir, "org/name")``, then load in a subprocess:
    ``run_python(code, hub_env(olah_hub.endpoint, tmp_path / "hf_home"))`` with an explicit ``revision=`` in ``code``.
    """
    pytest.importorskip("olah", reason="olah is not installed (pip install -e .[test])")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    from olah_hub import OlahHub

    hub = OlahHub(tmp_path_factory.mktemp("olah_hub"))
    hub.start()
    yield hub
    hub.stop()
