"""AppTest of the Fine-tune page: bad uploads, a 2-epoch run on a small upload, the checkpoint download, and the
cached model staying untouched."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.io.cif import CifWriter
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from crystalframer import CrystalFramer, ModelConfig, load_model, save_checkpoint
from crystalframer.analysis.perturb import strain
from crystalframer.examples import get_example, list_examples

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 300


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ft_ckpts")
    torch.manual_seed(2)
    model = CrystalFramer(ModelConfig(frame_method="max", target_names=["e_form"], target_units=["eV/atom"]))
    model.calibrate([get_example(n) for n in list_examples()[:6]])
    save_checkpoint(model, folder / "ft-max", info={"untrained": True, "note": "test fixture"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYSTALFRAMER_CHECKPOINTS", str(folder))
        yield folder


def dataset_csv() -> bytes:
    """12 small crystals labelled with their volume per atom (a real, computable property); one NaN label."""
    structures = [get_example(n) for n in list_examples()[:8]]
    structures += [strain(s, 0.04).structure for s in structures[:4]]
    labels = [s.volume / len(s) for s in structures]
    labels[3] = np.nan
    df = pd.DataFrame({"material_id": [f"x{k}" for k in range(len(structures))],
                       "cif": [str(CifWriter(s)) for s in structures], "volume_per_atom": labels,
                       "comment": ["text"] * len(structures)})
    return df.to_csv(index=False).encode()


def wait_for_job(at: AppTest, until=lambda at: False, timeout: float = TIMEOUT) -> None:
    """Rerun the page until the background fine-tune has ended (or ``until`` holds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = at.session_state["cf_ft_job"] if "cf_ft_job" in at.session_state else None
        if job is None or until(at):
            return
        if not job.running:
            at.run()
            return
        time.sleep(0.2)
        at.run()
    raise AssertionError("the fine-tune did not end in time")


def test_finetune_page_bad_uploads(ckpts):
    at = AppTest.from_file(str(ROOT / "app_pages" / "4_Fine-tune.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    cases = [("labels.csv", b"material_id,cif,comment\nx0,\"data_a\",hello\n"),
             ("labels.txt", b"some text"),
             ("labels.csv", pd.DataFrame({"cif": [str(CifWriter(get_example("NaCl (rock salt)")))],
                                          "note": ["no numbers here"]}).to_csv(index=False).encode()),
             ("archive.zip", b"PK\x03\x04 not really a zip")]
    for name, data in cases:
        at.file_uploader(key="ft_upload").set_value((name, data, "application/octet-stream"))
        at.run()
        assert not at.exception, name
        assert at.error, name


def test_finetune_page_trains_downloads_and_keeps_cache(ckpts, monkeypatch):
    stored: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, path_or_data, mimetype, kind, filename=None):
        if isinstance(path_or_data, bytes) and filename:
            stored[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    ref = at.session_state["cf_model_ref"]
    assert ref == "ckpt:ft-max"
    at.switch_page("app_pages/4_Fine-tune.py").run()
    assert not at.exception
    at.file_uploader(key="ft_upload").set_value(("labels.csv", dataset_csv(), "text/csv"))
    at.run()
    assert not at.exception
    assert any("12 structures" in s.value for s in at.success)
    assert at.selectbox(key="ft_target").value == "volume_per_atom"
    assert any("NaN" in w.value for w in at.warning)  # the missing label is reported, the row left out
    # Form widgets send their values with the submit button only (as in the browser).
    at.number_input(key="ft_epochs").set_value(2)
    at.number_input(key="ft_bs").set_value(4)
    at.button(key="ft_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    wait_for_job(at)
    assert not at.error, [e.value for e in at.error]
    result = at.session_state["cf_ft_result"]
    assert [h["epoch"] for h in result.history] == [0, 1, 2]  # epoch 0: before any step
    assert result.info["n_train"] + result.info["n_val"] == 11
    assert result.model.config.target_names == ["volume_per_atom"]
    assert len(at.get("plotly_chart")) >= 2  # curves and parity

    # The downloaded file is a loadable checkpoint in the shipped format.
    assert "model.safetensors" in stored
    path = Path(ckpts) / "downloaded.safetensors"
    path.write_bytes(stored["model.safetensors"])
    downloaded = load_model(path)
    assert downloaded.config.target_names == ["volume_per_atom"]
    assert downloaded.checkpoint_info["info"]["dataset"] == "labels.csv"
    s = get_example("TiO2 (rutile)")
    assert np.allclose(downloaded.predict([s]), result.model.predict([s]), atol=1e-5)

    # The cached model is the checkpoint, untouched by training.
    from crystalframer.app import ui

    cached = ui.get_model(ref)
    on_disk = load_model(Path(ckpts) / "ft-max")
    assert cached.config.target_names == ["e_form"]
    for (k, v), (_, w) in zip(cached.state_dict().items(), on_disk.state_dict().items()):
        assert torch.equal(v.cpu(), w.cpu()), k

    # Use the fine-tuned model across pages.
    at.text_input(key="ft_name").input("my-volume-model").run()
    at.button(key="ft_use").click().run()
    assert not at.exception
    assert at.session_state["cf_model_ref"] == "session:my-volume-model"
    at.switch_page("app_pages/0_Home.py").run()
    assert not at.exception
    assert at.selectbox(key="home_model").value == "session:my-volume-model"
    assert any("volume_per_atom" in m.label for m in at.metric)


def test_finetune_page_settings_form_epoch0_and_stop(ckpts):
    """Settings live in a form (nothing trains until it is submitted); a run shows its epoch-0 validation MAE
    while it trains, and Stop ends it cleanly after the current step with the best model so far kept."""
    at = AppTest.from_file(str(ROOT / "app_pages" / "4_Fine-tune.py"), default_timeout=TIMEOUT).run()
    at.file_uploader(key="ft_upload").set_value(("labels.csv", dataset_csv(), "text/csv")).run()
    assert not at.exception
    assert at.get("form")  # the settings form
    at.number_input(key="ft_epochs").set_value(200)
    at.number_input(key="ft_bs").set_value(2)
    at.run()
    assert "cf_ft_job" not in at.session_state  # changing settings starts nothing
    assert at.number_input(key="ft_epochs").value == 3  # ... and is not applied before the form is submitted
    at.number_input(key="ft_epochs").set_value(200)
    at.number_input(key="ft_bs").set_value(2)
    at.button(key="ft_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = at.session_state["cf_ft_job"]
    assert job.running
    # Wait for epoch 0 (before any step) to be reported, then the first trained epoch.
    wait_for_job(at, until=lambda at: len(at.session_state["cf_ft_job"].snapshot()) >= 2)
    assert job.running, "200 epochs must still be running"
    history = job.snapshot()
    assert history[0]["epoch"] == 0 and np.isnan(history[0]["train_loss"]) and np.isfinite(history[0]["val_mae"])
    assert any("validation MAE before training" in p.proto.text for p in at.get("progress"))
    assert at.button(key="ft_go").disabled  # one run at a time
    at.button(key="ft_stop").click().run()
    assert job.stop_requested
    assert job.wait(120), "Stop did not end the run"
    wait_for_job(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["cf_ft_result"]
    assert result.info["stopped_early"] and 1 <= result.info["epochs_run"] < 200
    assert result.info["dataset"] == "labels.csv"
    assert result.info["metrics"]["val_mae"] <= result.history[0]["val_mae"] + 1e-6  # never worse than the start
    assert any("Stopped on request" in i.value for i in at.info)
    assert "cf_ft_job" not in at.session_state and not at.button(key="ft_go").disabled


def test_warm_up_imports_the_optimiser_machinery_once():
    """The Fine-tune page warms PyTorch's lazy optimiser import (torch._dynamo, 1.8 s on first use) in the
    background, once per process."""
    import sys

    from crystalframer.app.jobs import warm_up

    first = warm_up()
    assert warm_up() is first
    first.join(120)
    assert not first.is_alive() and "torch._dynamo" in sys.modules
