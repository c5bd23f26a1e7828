import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
# The suite checks the CPU backend (the reference) unless a test names a device; graphs
# and tensors would otherwise default to the best device present (CUDA on a GPU machine).
os.environ.setdefault("METALNN_DEVICE", "cpu")
