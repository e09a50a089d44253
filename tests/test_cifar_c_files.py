"""A CIFAR-C folder may come from anyone: its .npy files are checked from their headers before they are
read, never unpickled, never opened if they are not regular files, and read in bounded batches."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from helpers import MeanColour, fake_cifar_c

from cropmix.evaluate import cifar_c
from cropmix.evaluate.cifar_c import cifar_c_accuracy


class _Payload:
    """Unpickling this creates `path`: proof that a file was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_labels_holding_python_objects_are_refused_and_never_unpickled(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    marker = tmp_path / "unpickled"
    labels = np.empty(20, dtype=object)
    labels[:] = [_Payload(str(marker))] * 20
    np.save(tmp_path / "labels.npy", labels, allow_pickle=True)
    assert pickle.dumps(labels)  # the payload pickles, so only the reader stands between it and running
    with pytest.raises(ValueError, match=r"labels\.npy.*objects"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)
    assert not marker.exists()


def test_a_fifo_is_refused_instead_of_blocking(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    (tmp_path / "fog.npy").unlink()
    os.mkfifo(tmp_path / "fog.npy")
    with pytest.raises(OSError, match=r"fog\.npy is not a regular file"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)


def test_a_header_declaring_a_huge_array_is_refused_unread(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    path = tmp_path / "gaussian_noise.npy"
    with open(path, "wb") as handle:  # a header only: 5 x 10^6 images of 1024 x 1024, 15 TB declared
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (5_000_000, 1024, 1024, 3)}
        )
    with pytest.raises(ValueError, match=r"gaussian_noise\.npy.*over the limit"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((20, 8, 8, 3), np.float32), "must be uint8"),
        (np.zeros((20, 8, 8, 2), np.uint8), "must be uint8"),
        (np.zeros((20, 4, 4, 3), np.uint8), "too small"),
        (np.zeros((15, 8, 8, 3), np.uint8), "must hold 5 \\* 4 images"),
    ],
)
def test_a_malformed_corruption_file_is_named(tmp_path, array, match) -> None:
    fake_cifar_c(tmp_path, 0)
    np.save(tmp_path / "frost.npy", array)
    with pytest.raises(ValueError, match=rf"frost\.npy.*{match}|{match}.*frost\.npy"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)


def test_float_labels_are_refused(tmp_path) -> None:
    fake_cifar_c(tmp_path, 0)
    np.save(tmp_path / "labels.npy", np.zeros(20, np.float64))
    with pytest.raises(ValueError, match=r"labels\.npy must be integers"):
        cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)


def test_large_images_are_scored_in_smaller_batches_with_the_same_result(tmp_path, monkeypatch) -> None:
    fake_cifar_c(tmp_path, 0)
    whole = cifar_c_accuracy(MeanColour(), tmp_path, "cpu", progress=False)
    batches = []
    model = MeanColour()
    model.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    monkeypatch.setattr(cifar_c, "MAX_BATCH_BYTES", 2 * 8 * 8 * 3)  # two images at a time
    assert cifar_c_accuracy(model, tmp_path, "cpu", progress=False) == whole
    assert batches and max(batches) == 2
