"""ST-GCN (Yan et al., AAAI 2018) at the reduced width used by CrosSCLR/AimCLR-style peers
(docs/method.md, "The ST-GCN encoder"), on any layout of ``feeder.layouts``."""
import numpy as np
import torch
from torch import nn

from models.encoder import Encoder, projection_head


def hop_distance(num_nodes, edges, max_hop=1):
    adjacency = np.zeros((num_nodes, num_nodes))
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1
    dist = np.full((num_nodes, num_nodes), np.inf)
    reach = [np.linalg.matrix_power(adjacency, d) > 0 for d in range(max_hop + 1)]
    for d in range(max_hop, -1, -1):
        dist[reach[d]] = d
    return dist


def spatial_partition(layout, max_hop=1):
    """The "spatial" strategy: (3, V, V) root / centripetal / centrifugal adjacency, column-
    normalised, exactly as ST-GCN's ``Graph`` builds it (distances to the centre are computed
    with the same ``max_hop``, as in the original code)."""
    v = layout.num_joints
    dist = hop_distance(v, layout.edges, max_hop)
    adjacency = (dist <= max_hop).astype(np.float64)
    degree = adjacency.sum(0)
    norm = adjacency @ np.diag(np.where(degree > 0, 1.0 / np.maximum(degree, 1e-12), 0))
    center = layout.graph_center
    parts = []
    for hop in range(max_hop + 1):
        root, close, further = (np.zeros((v, v)) for _ in range(3))
        for i in range(v):
            for j in range(v):
                if dist[j, i] != hop:
                    continue
                if dist[j, center] == dist[i, center]:
                    root[j, i] = norm[j, i]
                elif dist[j, center] > dist[i, center]:
                    close[j, i] = norm[j, i]
                else:
                    further[j, i] = norm[j, i]
        parts += [root] if hop == 0 else [root + close, further]
    return torch.tensor(np.stack(parts), dtype=torch.float32)


class GraphConv(nn.Module):
    def __init__(self, in_channels, out_channels, kernels):
        super().__init__()
        self.kernels = kernels
        self.conv = nn.Conv2d(in_channels, out_channels * kernels, kernel_size=1)

    def forward(self, x, adjacency):
        n, _, t, v = x.shape
        x = self.conv(x).view(n, self.kernels, -1, t, v)
        return torch.einsum('nkctv,kvw->nctw', x, adjacency).contiguous()


class Dropout(nn.Dropout):
    """``nn.Dropout`` (the same distribution: each entry kept with probability 1 - p and scaled by
    1 / (1 - p)), its mask drawn on the CPU as uniform numbers below 1 - p, several times faster
    there than PyTorch's Bernoulli draws."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.is_cuda:
            return super().forward(x)
        keep = 1 - self.p
        return x * (torch.rand_like(x) < keep).to(x.dtype).mul_(1 / keep)


class STGCNBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernels, stride=1, dropout=0.0, residual=True, temporal_kernel=9):
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, kernels)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), (stride, 1), ((temporal_kernel - 1) // 2, 0)),
            nn.BatchNorm2d(out_channels), Dropout(dropout, inplace=True))
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, (stride, 1)), nn.BatchNorm2d(out_channels))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, adjacency):
        res = 0 if self.residual is None else self.residual(x)
        return self.relu(self.tcn(self.gcn(x, adjacency)) + res)


class STGCNEncoder(Encoder):
    """Input BatchNorm over (V * C) with persons folded into the batch, ten ST-GCN blocks
    (16, 16, 16, 16, 32/2, 32, 32, 64/2, 64, 256 channels at ``base_channels=16``), learnable
    edge importance, global average pooling over (T, V), mean over persons, then ``fc``."""


    # as CrosSCLR and AimCLR train it on NTU-60
    RECIPE = dict(frames=50, lr=0.1, batch_size=128, epochs=300, schedule=[250], queue_size=32768)

    @classmethod
    def build(cls, settings, layout, persons, channels, dim, mlp):
        return cls(layout, in_channels=channels, dim=dim, mlp=mlp)

    def __init__(self, layout, in_channels=3, base_channels=16, out_channels=256, dim=128, mlp=True,
                 dropout=0.5, temporal_kernel=9):
        super().__init__()
        self.register_buffer('A', spatial_partition(layout))
        kernels, v = self.A.shape[0], self.A.shape[1]
        self.data_bn = nn.BatchNorm1d(in_channels * v)
        c = base_channels
        plan = [(in_channels, c, 1), (c, c, 1), (c, c, 1), (c, c, 1), (c, 2 * c, 2), (2 * c, 2 * c, 1),
                (2 * c, 2 * c, 1), (2 * c, 4 * c, 2), (4 * c, 4 * c, 1), (4 * c, out_channels, 1)]
        self.blocks = nn.ModuleList(
            STGCNBlock(i, o, kernels, s, dropout=0.0 if k == 0 else dropout, residual=k > 0,
                       temporal_kernel=temporal_kernel)
            for k, (i, o, s) in enumerate(plan))
        self.edge_importance = nn.ParameterList(nn.Parameter(torch.ones_like(self.A)) for _ in self.blocks)
        self.feature_dim = out_channels
        self.fc = projection_head(out_channels, dim, mlp)

    def released_name(self, name):
        # the published Model (CrosSCLR's and AimCLR's net/st_gcn.py) calls its blocks st_gcn_networks
        return 'st_gcn_networks.' + name[len('blocks.'):] if name.startswith('blocks.') else name

    def feature_map(self, x):
        """The last block's map (N * M, ``feature_dim``, T', V) of clips ``x`` (N, C, T, V, M), and M."""
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n * m, v, c, t).permute(0, 2, 3, 1).contiguous()
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.A * importance)
        return x, m

    def pool(self, feature_map, persons):
        """The clip features (N, ``feature_dim``) of a :meth:`feature_map`."""
        return feature_map.mean(dim=(2, 3)).view(-1, persons, feature_map.shape[1]).mean(dim=1)

    def features(self, x):
        return self.pool(*self.feature_map(x))
