import pytest
import torch

# The suite's tensors are tiny: on a 2-core machine, one thread avoids oversubscription
# (small convolutions ran orders of magnitude slower with several threads).
torch.set_num_threads(1)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=CUDA)])
def device(request) -> str:
    """A test that takes ``device`` runs on the CPU and, where one is present, on a CUDA GPU."""
    return request.param


@pytest.fixture
def float64_default():
    """float64 as the default dtype for the test (for comparisons with double-precision references),
    restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
