"""Frozen-encoder features of a whole data split (the features kNN and export use)."""
import torch
from torch.utils.data import DataLoader

from feeder.modalities import MODALITIES
from models.encoder import StreamEncoder

# ``--stream all+raw``: the prepared coordinates in each modality, one stream each, beside the
# learned ones (docs/protocols.md, "The coordinates as a stream")
RAW_PREFIX = 'raw_'
RAW_STREAMS = tuple(RAW_PREFIX + m for m in MODALITIES)


def raw_modality(stream):
    """The modality of a raw stream (``raw_motion`` -> ``motion``), ``None`` for a learned one."""
    return stream[len(RAW_PREFIX):] if stream in RAW_STREAMS else None


@torch.no_grad()
def extract_features(encoders, dataset, device, batch_size=256, workers=4):
    """{stream: (N, D) features before ``fc``} and the (N,) labels; ``encoders``: {stream:
    :class:`models.encoder.StreamEncoder`}, put in eval mode."""
    # its own generator: reading the clips must not draw from the global RNG (a pretraining run's
    # kNN monitor would otherwise change the run's later draws)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == 'cuda', generator=torch.Generator())
    feats = {s: [] for s in encoders}
    labels = []
    for encoder in encoders.values():
        encoder.eval().to(device)
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        for stream, encoder in encoders.items():
            feats[stream].append(encoder.features(x))
        labels.append(y)
    return {s: torch.cat(f) for s, f in feats.items()}, torch.cat(labels).to(device)


class StreamFeatures(StreamEncoder):
    """One stream's frozen features as a module (of a :class:`models.encoder.StreamEncoder`):
    clips (N, C, T, V, M), prepared as kNN sees them (the centre 95% resized to the encoder's
    frames), to (N, D) features before ``fc``."""

    def __init__(self, stream):
        super().__init__(stream.encoder.eval(), stream.modality, stream.layout, stream.coordinates, stream.adapt)

    @torch.no_grad()
    def forward(self, clips):
        return self.features(clips)


class RawFeatures(torch.nn.Module):
    """``--checkpoint raw``: no encoder, the prepared clip itself as the feature. A clip (N, C, T,
    V, M), as any encoder would receive it (the test-time crop resized to the recipe's frames,
    its stream's modality), flattened to (N, C * T * V * M): what the preparation alone gives, for
    telling whether pretraining learned more (docs/protocols.md)."""

    def __init__(self, channels, frames, joints, persons):
        super().__init__()
        self.feature_dim = channels * frames * joints * persons

    def features(self, x):
        return x.flatten(1)


def raw_stream(info, frames, stream, adapt=None):
    """The raw coordinates of ``info``'s clips (a :class:`feeder.info.DatasetInfo`) as the raw
    ``stream`` (one of :data:`RAW_STREAMS`): its modality, flattened (``adapt``: clips of another
    dataset made its clips first)."""
    return StreamEncoder(RawFeatures(len(info.channels), frames, info.layout.num_joints, info.persons),
                         raw_modality(stream), info.layout, info.coordinates, adapt)
