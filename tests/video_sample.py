"""Videos of a real person made offline: matplotlib's sample photograph of Grace Hopper (it ships inside
the matplotlib package) moved, scaled and tilted over frames on a grey canvas, with stretches
without her. Each frame's transform is known, so where the estimator must find a landmark follows
from where it finds it in any one frame."""
import importlib.util

import numpy as np

SIZE = (320, 240)  # (W, H)
BACKGROUND = 90


def estimator_installed():
    """Whether requirements-video.txt is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ('cv2', 'mediapipe'))


def photo():
    """The photograph, BGR uint8 (600, 512, 3)."""
    import cv2
    import matplotlib.cbook as cbook
    return cv2.imread(cbook.get_sample_data('grace_hopper.jpg', asfileobj=False))


def transforms(frames, shift=1.5, scale=(0.3, 0.0015), tilt=0.0, absent=()):
    """Per frame the 2x3 affine map from the photograph to the frame (``None`` where she is absent):
    scaled by ``scale[0] + scale[1] * t``, turned by ``tilt`` degrees (one angle, or one a frame),
    moved ``shift`` pixels a frame to the right."""
    maps, tilts = [], np.broadcast_to(tilt, (frames,))
    for t in range(frames):
        if any(start <= t < end for start, end in absent):
            maps.append(None)
            continue
        s, angle = scale[0] + scale[1] * t, np.deg2rad(tilts[t])
        rotation = s * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        maps.append(np.hstack([rotation, [[60 + shift * t], [30]]]))
    return maps


def write_video(path, maps, fps=30, size=SIZE):
    """An MJPG AVI (a codec every OpenCV build writes) of the photograph under ``maps``, frames of
    ``size`` (W, H)."""
    import cv2
    image = photo()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, size)
    for affine in maps:
        frame = np.full((size[1], size[0], 3), BACKGROUND, np.uint8)
        if affine is not None:
            frame = cv2.warpAffine(image, affine, size, dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
        writer.write(frame)
    writer.release()
    return path


def fit_point(points, maps):
    """The photograph's point p that best explains ``points`` (T, 2) under ``maps`` (least squares),
    and each frame's distance (pixels) from where p lands."""
    rows = [(affine, xy) for affine, xy in zip(maps, points) if affine is not None]
    a = np.concatenate([affine[:, :2] for affine, _ in rows])
    b = np.concatenate([xy - affine[:, 2] for affine, xy in rows])
    p = np.linalg.lstsq(a, b, rcond=None)[0]
    return p, np.array([np.linalg.norm(affine[:, :2] @ p + affine[:, 2] - xy) for affine, xy in rows])
