"""The promises of the team image pins the tests build, audit and verify against."""

# torch 2.7.1 on CUDA 12.6 with its released torchvision and torchaudio.
CUDA_126 = {
    "python": "3.11",
    "torch": "2.7.1",
    "torchvision": "0.22.1",
    "torchaudio": "2.7.1",
    "cuda": "12.6",
    "cudnn": "9.5.1.17",
}
# The CPU flavour the test bed's images carry (no GPU here to run CUDA).
CPU = {"python": "3.11", "torch": "2.13.0+cpu", "cuda": "none", "cudnn": "none"}
