"""Pictures of skeleton clips and of a run's curves (matplotlib only, no display needed)."""
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from utils.io import write_path_atomic  # noqa: E402

# a normalised 3D clip has z up and x along the shoulders (docs/data.md); seen from the front
VIEW_3D = dict(elev=10, azim=-75)


def save_figure(fig, path, **kwargs):
    """``fig`` written to ``path`` atomically (a temporary file, then a rename), then closed."""
    write_path_atomic(path, lambda tmp: fig.savefig(tmp, **kwargs))
    plt.close(fig)


class _Skeletons:
    """Draws clips (C, T, V, M) of one layout in 2D or 3D axes with fixed limits."""

    def __init__(self, layout, clips):
        self.edges = layout.edges
        self.dims = clips[0].shape[0]
        points = np.concatenate([c.transpose(1, 2, 3, 0).reshape(-1, self.dims) for c in clips])
        points = points[np.abs(points).sum(1) > 0]
        if not len(points):
            points = np.zeros((1, self.dims))
        low, high = np.percentile(points, 1, axis=0), np.percentile(points, 99, axis=0)
        middle, half = (low + high) / 2, max((high - low).max() / 2 * 1.2, 1e-6)
        self.limits = [(m - half, m + half) for m in middle]

    def axes(self, fig, position, title):
        if self.dims == 3:
            ax = fig.add_subplot(*position, projection='3d')
            ax.view_init(**VIEW_3D)
            ax.set_xlim(*self.limits[0]), ax.set_ylim(*self.limits[1]), ax.set_zlim(*self.limits[2])
            ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
        else:
            ax = fig.add_subplot(*position)
            ax.set_xlim(*self.limits[0]), ax.set_ylim(*self.limits[1])
            ax.set_aspect('equal')
            ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=9)
        return ax

    def draw(self, ax, clip, t):
        """Frame ``t`` of ``clip`` (C, T, V, M): bones as lines, joints as dots, one colour a person."""
        for artist in list(ax.lines) + list(ax.collections):
            artist.remove()
        for person in range(clip.shape[3]):
            pose = clip[:, t, :, person]
            if not pose.any():
                continue
            colour = f'C{person}'
            for a, b in self.edges:
                ax.plot(*[pose[d, [a, b]] for d in range(self.dims)], color=colour, lw=1.5)
            ax.scatter(*pose[:self.dims], color=colour, s=6)


def save_clip_pictures(layout, panels, gif_path, png_path, columns=8, fps=15):
    """``panels``: {title: clip (C, T, V, M) numpy}. Writes an animation of all panels side by
    side (unless ``gif_path`` is ``None``) and a strip of ``columns`` evenly spaced frames, one
    row a panel."""
    clips = list(panels.values())
    skeletons = [_Skeletons(layout, [clip]) for clip in clips]  # each panel at its own scale
    if gif_path is not None:
        fig = plt.figure(figsize=(3.2 * len(panels), 3.4))
        axes = [s.axes(fig, (1, len(panels), i + 1), title) for i, (s, title) in enumerate(zip(skeletons, panels))]
        length = max(c.shape[1] for c in clips)

        def update(i):
            for ax, clip, s in zip(axes, clips, skeletons):
                s.draw(ax, clip, min(i * clip.shape[1] // length, clip.shape[1] - 1))
            return []
        animation = FuncAnimation(fig, update, frames=length, blit=False)
        write_path_atomic(gif_path, lambda tmp: animation.save(tmp, writer=PillowWriter(fps=fps), dpi=72))
        plt.close(fig)

    fig = plt.figure(figsize=(1.9 * columns, 2.0 * len(panels)))
    for row, ((title, clip), s) in enumerate(zip(panels.items(), skeletons)):
        for col, t in enumerate(np.linspace(0, clip.shape[1] - 1, columns).round().astype(int)):
            label = f'{title}\nframe {t}' if col == 0 else f'frame {t}'
            s.draw(s.axes(fig, (len(panels), columns, row * columns + col + 1), label), clip, t)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=90)


CURVE_PANELS = (('contrastive top-1 (%)', ('acc_',)), ('kNN top-1 (%) on the val part', ('knn',)),
                ('learning rate', ('lr',)))
TIMINGS = ('samples_per_s', 'minutes')  # a log's keys that are not curves


def _panel_keys(keys, prefixes):
    return [k for k in keys if any(k == p or (p.endswith('_') or p == 'knn') and k.startswith(p) for p in prefixes)]


def save_curves(log_path, png_path):
    """The epoch curves of a pretraining run's ``log.txt`` (JSON lines) in one picture."""
    records = []
    with open(log_path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    raise ValueError(f'{log_path}, line {lineno}: not a JSON line of a pretraining log') from None
    if not records or any('epoch' not in r for r in records):
        raise ValueError(f'{log_path}: expected the JSON lines of a pretraining log (each with an "epoch")')
    keys = sorted({k for r in records for k in r if k != 'epoch' and k not in TIMINGS})
    panels = [(title, _panel_keys(keys, prefixes)) for title, prefixes in CURVE_PANELS]
    losses = [k for k in keys if not any(k in shown for _, shown in panels)]  # each method's own
    panels = [(title, shown) for title, shown in [('losses', losses)] + panels if shown]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, shown) in zip(axes[0], panels):
        for key in shown:
            points = [(r['epoch'], r[key]) for r in records if key in r]
            ax.plot(*zip(*points), marker='.' if key.startswith('knn') else None, label=key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('epoch')
        if title == 'learning rate':
            ax.set_yscale('log')
        else:
            ax.legend(fontsize=7)
    fig.suptitle(os.path.abspath(log_path), fontsize=8)
    fig.tight_layout()
    save_figure(fig, png_path, dpi=110)


def save_timeline(path, bands, frames, class_name, title, truth=None):
    """A timeline: one band per person (``bands``: {person: [(start, end, label, score)]}), each
    segment coloured by its class and named where it is wide enough; ``truth`` (the same list)
    drawn as a band of its own above them."""
    rows = ([('truth', truth)] if truth is not None else []) + [(f'person {p}', s) for p, s in bands.items()]
    labels = sorted({segment[2] for _, segments in rows for segment in segments})
    colours = {label: plt.get_cmap('tab20')(i % 20) for i, label in enumerate(labels)}
    fig, ax = plt.subplots(figsize=(min(24, 6 + frames / 150), 0.8 + 0.55 * max(len(rows), 1)))
    for row, (_, segments) in enumerate(reversed(rows)):
        for start, end, label, _ in segments:
            ax.broken_barh([(start, end - start)], (row + 0.1, 0.8), color=colours[label])
            if (end - start) / max(frames, 1) > 0.04:
                ax.text((start + end) / 2, row + 0.5, class_name(label), ha='center', va='center', fontsize=7,
                        clip_on=True)
    ax.set_yticks([row + 0.5 for row in range(len(rows))], [name for name, _ in reversed(rows)])
    ax.set_xlim(0, frames)
    ax.set_ylim(0, max(len(rows), 1))
    ax.set_xlabel('frame')
    ax.set_title(title, fontsize=9)
    handles = [Patch(color=colours[label], label=class_name(label)) for label in labels]
    if handles:
        ax.legend(handles=handles, fontsize=7, loc='upper left', bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
