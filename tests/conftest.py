import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The test crystals are tiny: one intra-op thread is fastest (much faster on a busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
