"""Straightforward ports of the published per-file preparation (skeleton-contrast / 2s-AGCN
``ntu_gendata.py`` and ``preprocess.py``), kept loop-for-loop, used as the independent oracle in
tests and as the "before" side of ``benchmarks/prepare_speed.py``."""
import math

import numpy as np
import torch


def read_skeleton_filter(path):
    with open(path, 'r') as f:
        info = {'numFrame': int(f.readline()), 'frameInfo': []}
        for _ in range(info['numFrame']):
            frame = {'numBody': int(f.readline()), 'bodyInfo': []}
            for _ in range(frame['numBody']):
                keys = ['bodyID', 'clipedEdges', 'handLeftConfidence', 'handLeftState',
                        'handRightConfidence', 'handRightState', 'isResticted', 'leanX', 'leanY',
                        'trackingState']
                body = {k: float(v) for k, v in zip(keys, f.readline().split())}
                body['numJoint'] = int(f.readline())
                body['jointInfo'] = []
                for _ in range(body['numJoint']):
                    keys = ['x', 'y', 'z', 'depthX', 'depthY', 'colorX', 'colorY', 'orientationW',
                            'orientationX', 'orientationY', 'orientationZ', 'trackingState']
                    body['jointInfo'].append({k: float(v) for k, v in zip(keys, f.readline().split())})
                frame['bodyInfo'].append(body)
            info['frameInfo'].append(frame)
    return info


def get_nonzero_std(s):  # (T, V, C)
    index = s.sum(-1).sum(-1) != 0
    s = s[index]
    if len(s) != 0:
        return s[:, :, 0].std() + s[:, :, 1].std() + s[:, :, 2].std()
    return 0


def read_xyz(path, max_body=4, num_joint=25, keep=2):
    info = read_skeleton_filter(path)
    data = np.zeros((max_body, info['numFrame'], num_joint, 3))
    for n, f in enumerate(info['frameInfo']):
        for m, b in enumerate(f['bodyInfo']):
            for j, v in enumerate(b['jointInfo']):
                if m < max_body and j < num_joint:
                    data[m, n, j, :] = [v['x'], v['y'], v['z']]
    energy = np.array([get_nonzero_std(x) for x in data])
    index = energy.argsort()[::-1][0:keep]
    return data[index].transpose(3, 1, 2, 0)  # (C, T, V, M)


def rotation_matrix(axis, theta):
    if np.abs(axis).sum() < 1e-6 or np.abs(theta) < 1e-6:
        return np.eye(3)
    axis = np.asarray(axis)
    axis = axis / math.sqrt(np.dot(axis, axis))
    a = math.cos(theta / 2.0)
    b, c, d = -axis * math.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([[aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
                     [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
                     [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc]])


def angle_between(v1, v2):
    if np.abs(v1).sum() < 1e-6 or np.abs(v2).sum() < 1e-6:
        return 0
    v1_u = v1 / np.linalg.norm(v1)
    v2_u = v2 / np.linalg.norm(v2)
    return np.arccos(np.clip(np.dot(v1_u, v2_u), -1.0, 1.0))


def pre_normalization(data, zaxis=(0, 1), xaxis=(8, 4), center=1):
    N, C, T, V, M = data.shape
    s = np.transpose(data, [0, 4, 2, 3, 1])  # N, M, T, V, C
    for i_s, skeleton in enumerate(s):
        for i_p, person in enumerate(skeleton):
            if person.sum() == 0:
                continue
            if person[0].sum() == 0:
                index = (person.sum(-1).sum(-1) != 0)
                tmp = person[index].copy()
                person *= 0
                person[:len(tmp)] = tmp
            for i_f, frame in enumerate(person):
                if frame.sum() == 0:
                    if person[i_f:].sum() == 0:
                        rest = len(person) - i_f
                        num = int(np.ceil(rest / i_f))
                        pad = np.concatenate([person[0:i_f] for _ in range(num)], 0)[:rest]
                        s[i_s, i_p, i_f:] = pad
                        break
    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        main_body_center = skeleton[0][:, center:center + 1, :].copy()
        for i_p, person in enumerate(skeleton):
            if person.sum() == 0:
                continue
            mask = (person.sum(-1) != 0).reshape(T, V, 1)
            s[i_s, i_p] = (s[i_s, i_p] - main_body_center) * mask

    def rotate(i_s, matrix):
        for i_p, person in enumerate(s[i_s]):
            if person.sum() == 0:
                continue
            for i_f, frame in enumerate(person):
                if frame.sum() == 0:
                    continue
                for i_j, joint in enumerate(frame):
                    s[i_s, i_p, i_f, i_j] = np.dot(matrix, joint)

    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        v = skeleton[0, 0, zaxis[1]] - skeleton[0, 0, zaxis[0]]
        rotate(i_s, rotation_matrix(np.cross(v, [0, 0, 1]), angle_between(v, [0, 0, 1])))
    for i_s, skeleton in enumerate(s):
        if skeleton.sum() == 0:
            continue
        v = skeleton[0, 0, xaxis[0]] - skeleton[0, 0, xaxis[1]]
        rotate(i_s, rotation_matrix(np.cross(v, [1, 0, 0]), angle_between(v, [1, 0, 0])))
    return np.transpose(s, [0, 4, 2, 3, 1])


def prepare_file(path, max_frame=300):
    """Published per-file pipeline: (3, 300, 25, 2) float32 and the clip length."""
    data = read_xyz(path)
    out = np.zeros((1, 3, max_frame, 25, 2), dtype=np.float32)
    out[0, :, :data.shape[1]] = data
    return pre_normalization(out)[0], data.shape[1]


def published_gru_features(gru, input_norm, x):
    """The published encoder's feature: a bidirectional ``nn.GRU`` called on one frame at a time,
    carrying its hidden state; the output of the last call (docs/method.md, "The GRU encoder")."""
    n, c, t, v, m = x.shape
    x = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)
    x = input_norm(x.permute(0, 2, 1)).permute(0, 2, 1)
    hidden = None
    for frame in range(t):
        out, hidden = gru(x[:, frame:frame + 1], hidden)
    return out[:, -1]


class FrameByFrameGRUEncoder(torch.nn.Module):
    """The published encoder as the authors run it (frame by frame), for benchmarks."""

    def __init__(self, in_features, hidden_size, num_layers, dim, mlp=True):
        super().__init__()
        from models.gru import projection_head
        self.input_norm = torch.nn.BatchNorm1d(in_features)
        self.gru = torch.nn.GRU(in_features, hidden_size, num_layers, batch_first=True, bidirectional=True)
        self.fc = projection_head(2 * hidden_size, dim, mlp)

    def features(self, x):
        return published_gru_features(self.gru, self.input_norm, x)

    def forward(self, x):
        return self.fc(self.features(x))
