"""`flowforce train` under interruption and bad input (run by ctest).

A run killed with SIGKILL at random moments and rerun with the same command must end with the same
model as an uninterrupted run, leave no partial or temporary file, refuse the checkpoint of another
run, and fail cleanly when no epoch gives a finite validation loss. Environment: see cli_helpers.py.
"""
import glob
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import time
import zipfile

import h5py
import pytest

from cli_helpers import BIN, assert_one_line_error, run

# A tiny training: 72 training frames in batches of 16, five epochs, one thread (bit-reproducible).
EPOCHS = 5


def train_args(data, folder, *extra):
    return ["train", "--data", data, "--epochs", EPOCHS, "--batch", 16, "--threads", 1, "--kld-val-samples", 0,
            "--out", os.path.join(folder, "model.flow"), "--json", os.path.join(folder, "report.json"), *extra]


def assert_files_complete(folder):
    """Every file a killed run left is whole: models and JSON parse, the checkpoint archive is intact."""
    for path in glob.glob(os.path.join(folder, "*")):
        if ".tmp." in os.path.basename(path):
            continue  # a killed writer's temporary: the next run removes it
        with open(path, "rb") as f:
            data = f.read()
        if path.endswith(".flow"):  # safetensors layout: header length, JSON header, tensor bytes
            (n,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8:8 + n])
            end = max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
            assert len(data) == 8 + n + end, path
        elif path.endswith(".json"):
            json.loads(data)
        elif path.endswith(".state"):
            with zipfile.ZipFile(path) as z:
                assert z.testzip() is None, path


def start_and_kill(args, rng, duration, first):
    """Runs flowforce and kills it (SIGKILL) at a random moment: the first time anywhere in the run (start-up
    included), later at a random delay after an epoch's validation (up to half an epoch's time, so that
    the kill lands while the best model and the checkpoint are being written or in the next epoch, never
    after the run has ended). Returns (return code, stderr)."""
    p = subprocess.Popen([BIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if rng is None:
        return p.wait(), p.communicate()[1]
    if first:
        try:
            p.wait(timeout=rng.uniform(0.1, 0.5) * duration)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
        return p.wait(), p.communicate()[1]
    err = ""
    for line in p.stderr:
        err += line
        if "done in" in line:
            time.sleep(rng.uniform(0.0, 0.5 * duration / EPOCHS))
            os.kill(p.pid, signal.SIGKILL)
            break
    return p.wait(), err + p.communicate()[1]


def test_train_killed_and_rerun_ends_as_uninterrupted(work, dataset):
    """Byte-identical models: with one thread training is deterministic, the checkpoint holds the complete
    state after an epoch (float64 weights, Adam moments, progress) and every random draw of an epoch comes
    from a generator seeded by (seed, epoch), so a resumed run recomputes the lost epochs bit for bit."""
    whole = os.path.join(work, "whole")
    os.makedirs(whole)
    start = time.monotonic()
    run(*train_args(dataset, whole))
    duration = time.monotonic() - start

    folder = os.path.join(work, "killed")
    os.makedirs(folder)
    seed = int(os.environ.get("FLOWFORCE_TEST_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    kills = 0
    for attempt in range(20):
        rc, err = start_and_kill(train_args(dataset, folder), rng if kills < 3 else None, duration, kills == 0)
        if rc == -signal.SIGKILL:
            kills += 1
            assert_files_complete(folder)
            continue
        assert rc == 0, err
        break
    else:
        pytest.fail("training did not finish after 20 attempts")
    assert kills >= 2, f"only {kills} run(s) killed (FLOWFORCE_TEST_SEED={seed})"

    assert open(os.path.join(folder, "model.flow"), "rb").read() == open(os.path.join(whole, "model.flow"), "rb").read()
    reports = [json.load(open(os.path.join(d, "report.json"))) for d in (whole, folder)]
    assert reports[0]["history"] == reports[1]["history"]
    assert [h["epoch"] for h in reports[1]["history"]] == list(range(1, EPOCHS + 1))
    assert glob.glob(os.path.join(folder, "*.tmp*")) == []
    # a temporary that a killed writer left (its process is gone) goes; the same command once more finds
    # the finished checkpoint and changes nothing
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = os.path.join(folder, f"model.flow.ckpt.state.tmp.{gone.pid}")
    open(stale, "wb").write(b"half a checkpoint")
    p = run(*train_args(dataset, folder))
    assert "resumed from" in p.stderr and f"after epoch {EPOCHS}" in p.stderr
    assert not os.path.exists(stale)
    assert open(os.path.join(folder, "model.flow"), "rb").read() == open(os.path.join(whole, "model.flow"), "rb").read()


def test_train_refuses_checkpoint_of_another_run(work, dataset):
    folder = os.path.join(work, "other")
    os.makedirs(folder)
    args = train_args(dataset, folder)
    args[args.index("--epochs") + 1] = 1
    run(*args)
    line = assert_one_line_error(run(*args, "--seed", 2, check=False), "train")
    assert "another run" in line and "seed" in line, line
    # the same frames with one coordinate changed are other data
    other = os.path.join(folder, "other.h5")
    shutil.copy(dataset, other)
    with h5py.File(other, "r+") as f:
        f["particles/all/position/value"][0, 0, 0] += 0.001
    line = assert_one_line_error(run(*[other if a == dataset else a for a in args], check=False), "train")
    assert "another run" in line and "data" in line, line
    line = assert_one_line_error(run(*args, "--lr", 1e-3, check=False), "train")
    assert "lr" in line, line
    # --restart discards the checkpoint; --resume insists on one
    p = run(*args, "--seed", 2, "--restart")
    assert "resumed" not in p.stderr
    assert_one_line_error(run(*args, "--checkpoint", os.path.join(folder, "none"), "--resume", check=False), "train")


def test_train_without_finite_validation_loss_fails(work, dataset):
    """Frames with every atom at the origin have no density (zero bond lengths): no epoch can give a finite
    validation loss, so no model may be written."""
    folder = os.path.join(work, "nan")
    os.makedirs(folder)
    collapsed = os.path.join(folder, "collapsed.h5")
    shutil.copy(dataset, collapsed)
    with h5py.File(collapsed, "r+") as f:
        f["particles/all/position/value"][...] = 0.0
    args = train_args(collapsed, folder)
    args[args.index("--epochs") + 1] = 1
    p = run(*args, check=False)
    line = assert_one_line_error(p, "train")
    assert "finite validation loss" in line, line
    assert "trained model:" not in p.stdout
    assert not os.path.exists(os.path.join(folder, "model.flow"))
    assert not os.path.exists(os.path.join(folder, "report.json"))


def test_train_libtorch_error_is_one_line(work, dataset):
    """A damaged checkpoint archive: LibTorch's error (with a C++ backtrace) reaches the user as one line."""
    folder = os.path.join(work, "damaged")
    os.makedirs(folder)
    args = train_args(dataset, folder)
    with open(os.path.join(folder, "model.flow.ckpt.state"), "wb") as f:
        f.write(b"PK\x03\x04 not a zip archive" * 10)
    line = assert_one_line_error(run(*args, check=False), "train")
    assert "damaged" in line, line


def test_train_roughness_penalty(work, dataset):
    """--w-rough: the fourth difference of -log p along thermal steps is measured on validation frames every
    epoch, counts in the validation loss, belongs to the run's identity, and training with it weighted lowers it.
    A large learning rate makes the tiny training rough (~0.4 nats^2 after five epochs); weight 100 keeps it ~25x lower."""
    rough = {}
    for w in (1e-6, 100):
        folder = os.path.join(work, f"rough-{w}")
        os.makedirs(folder)
        run(*train_args(dataset, folder, "--w-rough", w, "--rough-batch", 8, "--lr", 5e-3))
        report = json.load(open(os.path.join(folder, "report.json")))
        assert report["weights"]["rough"] == w
        history = report["history"]
        assert len(history) == EPOCHS and all(h["val_roughness_nats2"] >= 0 for h in history)
        rough[w] = history[-1]["val_roughness_nats2"]
    assert rough[100] < 0.2 * rough[1e-6], rough
    # another weight is another run: its checkpoint is not continued
    args = train_args(dataset, os.path.join(work, "rough-100"), "--w-rough", 50, "--rough-batch", 8, "--lr", 5e-3)
    line = assert_one_line_error(run(*args, check=False), "train")
    assert "another run" in line and "w_rough" in line, line
    # so is another length of the penalty's thermal steps
    args = train_args(dataset, os.path.join(work, "rough-100"), "--w-rough", 100, "--rough-batch", 8, "--lr", 5e-3,
                      "--rough-step-fs", 2)
    line = assert_one_line_error(run(*args, check=False), "train")
    assert "another run" in line and "rough_step_fs" in line, line
    for bad in (["--w-rough", -1], ["--w-rough", 1, "--rough-step-fs", 0], ["--w-rough", 1, "--rough-batch", 0]):
        line = assert_one_line_error(run(*train_args(dataset, work, *bad), check=False), "train")
        assert "rough" in line, line


def test_train_roughness_on_flow_samples(work, dataset):
    """--rough-samples: the penalty also takes its base points from the flow's own samples (where MD with the flow
    goes); validation measures it on flow samples besides data frames, and the validation loss weighs the two
    halves equally; the count belongs to the run's identity; a negative count is a one-line error."""
    folder = os.path.join(work, "rough-samples")
    os.makedirs(folder)
    run(*train_args(dataset, folder, "--w-rough", 2, "--rough-batch", 8, "--rough-samples", 16))
    report = json.load(open(os.path.join(folder, "report.json")))
    history = report["history"]
    assert len(history) == EPOCHS
    for h in history:
        assert h["val_roughness_flow_samples_nats2"] > 0 and h["val_roughness_nats2"] > 0, h
    losses = [h["val_nll_nats"] + 2 * 0.5 * (h["val_roughness_nats2"] + h["val_roughness_flow_samples_nats2"]) for h in history]
    assert report["best_validation_loss"] == pytest.approx(losses[report["best_epoch"] - 1], rel=1e-9, abs=1e-9)
    assert report["best_validation_loss"] == pytest.approx(min(losses), rel=1e-9, abs=1e-9)
    args = train_args(dataset, folder, "--w-rough", 2, "--rough-batch", 8, "--rough-samples", 32)
    line = assert_one_line_error(run(*args, check=False), "train")
    assert "another run" in line and "rough_samples" in line, line
    line = assert_one_line_error(run(*train_args(dataset, work, "--w-rough", 1, "--rough-samples", -1), check=False), "train")
    assert "--rough-samples" in line, line
