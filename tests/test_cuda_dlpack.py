"""DLPack on CUDA (issue 10): zero-copy exchange of GPU memory with PyTorch.

Skipped unless this build has a CUDA device and PyTorch sees a GPU."""

import numpy as np
import pytest

import metalnn as mnn

HAS_CUDA = any(d.type == "cuda" for d in mnn.available_devices())
pytestmark = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device in this build/machine")


def test_torch_cuda_to_metalnn_and_back_share_memory(torch):
    a = torch.arange(-6, 6, dtype=torch.float32, device="cuda").reshape(3, 4)
    t = mnn.from_dlpack(a)
    assert t.device.type == "cuda" and t.shape == (3, 4)
    y = mnn.ops.neuron_forward(t, "relu")                 # a metalnn kernel on torch's memory
    np.testing.assert_array_equal(y.numpy(), np.maximum(np.arange(-6, 6, dtype=np.float32).reshape(3, 4), 0))
    back = torch.from_dlpack(y)                            # waits for metalnn's stream first
    assert back.device.type == "cuda"
    assert torch.equal(back, torch.relu(a))
    a[0, 0] = 100.0
    torch.cuda.synchronize()
    assert t.numpy()[0, 0] == 100.0                        # one memory


def test_metalnn_cuda_tensor_outlives_in_torch(torch):
    t = mnn.Tensor(np.arange(10, dtype=np.float16), device="cuda")
    b = torch.from_dlpack(t)
    del t
    assert b.dtype == torch.float16 and b.cpu().numpy().tolist() == list(range(10))
