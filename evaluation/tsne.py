"""A t-SNE picture of features coloured by class."""
from sklearn.manifold import TSNE

from utils.plots import plt, save_figure  # pyplot without a display


def save_tsne(features, labels, path, title='', seed=0):
    """``features``: {name: (N, D) tensor}; one panel per name."""
    labels = labels.cpu().numpy()
    fig, axes = plt.subplots(1, len(features), figsize=(5 * len(features), 5), squeeze=False)
    for ax, (name, feats) in zip(axes[0], features.items()):
        feats = feats.float().cpu().numpy()
        points = TSNE(n_components=2, init='pca', random_state=seed,
                      perplexity=min(30.0, max(2.0, (len(feats) - 1) / 3))).fit_transform(feats)
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab20', s=6, vmin=0, vmax=max(19, labels.max()))
        ax.set_title(f'{title} {name}'.strip())
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
