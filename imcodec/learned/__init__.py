"""Learned tools on a sparse-convolution engine (needs PyTorch).

sparse.py      SparseTensor, kernel offsets, engine (backend) and device selection
backend_torch.py / backend_minkowski.py   the two engines, one weight layout
functional.py  ops that dispatch on the tensor's engine; layers.py modules owning the weights
models.py      PU-Dense-style upsampling network; train.py its training loop
upsample.py    chunked inference; zoo.py weights files (shipped ones in weights/)

Importing this package does not import torch; its submodules do.
"""
