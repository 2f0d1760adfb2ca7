"""A fine-tune running beside the app's script: one background thread per job, a stop request, live history.

Streamlit reruns a page's script on every widget event, so a training loop inside the script cannot be stopped
cleanly (a click interrupts the script wherever it is). A :class:`FinetuneJob` runs
:func:`crystalframer.train.finetune.finetune` — the library's one Trainer — in a thread; the page only reads
``history``/``result`` and a Stop button calls :meth:`FinetuneJob.stop`, which the Trainer polls after every step
(``stop_requested``), so the model selected so far (the starting weights included) is kept. No Streamlit here.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

__all__ = ["FinetuneJob", "warm_up"]

_warm: threading.Thread | None = None


def warm_up() -> threading.Thread:
    """Import ``torch._dynamo`` in a background thread, once per process. PyTorch's optimisers import it lazily
    when the first one is built, which took 1.8 s of a 2.3 s fine-tune of 12 structures (cProfile); the
    Fine-tune page calls this when it opens, so the import is done before the user presses Start."""
    global _warm
    if _warm is None:
        import importlib

        _warm = threading.Thread(target=lambda: importlib.import_module("torch._dynamo"),
                                 name="crystalframer-warm-up", daemon=True)
        _warm.start()
    return _warm


class FinetuneJob:
    """Run ``finetune(*args, **kwargs)`` in a daemon thread. ``status``: running | done | stopped | failed."""

    def __init__(self, run: Callable[..., Any], *args: Any, **kwargs: Any):
        self.history: list[dict[str, float]] = []
        self.meta: dict[str, Any] = {}  # what the page wants to keep with the result (data set name, split, unit)
        self.result: Any = None
        self.error: BaseException | None = None
        self.epochs = int(kwargs.get("epochs", 0))
        self.started = time.time()
        self.finished: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        user_callback = kwargs.pop("callback", None)

        def on_epoch(epoch: int, train_loss: float, val_mae: float) -> None:
            with self._lock:
                self.history.append({"epoch": epoch, "train_loss": train_loss, "val_mae": val_mae,
                                     "elapsed_s": round(time.time() - self.started, 2)})
            if user_callback is not None:
                user_callback(epoch, train_loss, val_mae)

        def target() -> None:
            try:
                self.result = run(*args, callback=on_epoch, stop_requested=self._stop.is_set, **kwargs)
            except BaseException as exc:  # reported on the page, never raised in another thread's face
                self.error = exc
            finally:
                self.finished = time.time()

        self._thread = threading.Thread(target=target, name="crystalframer-finetune", daemon=True)
        self._thread.start()

    # ----- state the page reads ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def status(self) -> str:
        if self.running:
            return "stopping" if self._stop.is_set() else "running"
        if self.error is not None:
            return "failed"
        return "stopped" if self.result is not None and self.result.info.get("stopped_early") else "done"

    def snapshot(self) -> list[dict[str, float]]:
        with self._lock:
            return [dict(h) for h in self.history]

    def stop(self) -> None:
        """Ask the trainer to stop after its current step (clean: the best model so far is selected and kept)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the thread ends (tests, scripts); True when it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
