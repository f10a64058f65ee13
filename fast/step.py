"""The training step replayed as one CUDA graph, and batches prepared one step ahead on a second
CUDA stream (docs/fast-path.md). Both do what :func:`engine.train_step` and
:func:`engine.device_views` do."""
import torch

from engine import device_views, to_views, train_step


class GraphedStep:
    """:func:`engine.train_step` captured once as a CUDA graph and replayed on every later batch.

    A step launches many small kernels (the grouped GRU's frame-by-frame recurrence a few
    thousand; an ST-GCN method's step hundreds, at the published width of 16 to 256 channels), and
    replaying them as one graph removes the launch gaps between them. The first ``warmup`` steps run
    eagerly (lazy initialisation such as momentum buffers, cuBLAS handles and Triton compilation
    must not happen during capture); the graph is captured again whenever the learning rate
    changes, because the optimizer reads it as a Python number, and whenever the method's
    :meth:`models.method.Method.step_state` does (a method starting to mine neighbours). A
    replay returns the same output tensors every time: read them before the next call.
    """

    def __init__(self, model, optimizer, scaler, amp=False, amp_dtype=torch.bfloat16, warmup=3):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.amp, self.amp_dtype = amp, amp_dtype
        self.warmup, self.warmed = warmup, 0
        self.graph = self.static = self.key = None

    def _run(self, views):
        # the autocast weight cache must stay off during capture (its casts would be replayed stale)
        return train_step(self.model, self.optimizer, self.scaler, views, self.amp, self.amp_dtype,
                          autocast_cache=False)

    def __call__(self, views):
        if self.warmed < self.warmup:
            self.warmed += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self._run(views)
            torch.cuda.current_stream().wait_stream(side)
            return out
        key = ([group['lr'] for group in self.optimizer.param_groups], self.model.step_state())
        if self.graph is None or key != self.key or [v.shape for v in views] != [v.shape for v in self.static[0]]:
            self._capture(views, key)
        for static, view in zip(self.static[0], views):
            static.copy_(view)
        self.graph.replay()
        return self.static[1]

    def _capture(self, views, key):
        self.graph = self.static = None
        torch.cuda.synchronize()
        views = tuple(view.clone() for view in views)
        graph = torch.cuda.CUDAGraph()
        # thread-local capture: the data loader's pin-memory thread keeps calling CUDA meanwhile
        with torch.cuda.graph(graph, capture_error_mode='thread_local'):
            out = self._run(views)
        self.graph, self.static, self.key = graph, (views, out), key


def prefetch_views(loader, device, augment=None):
    """:func:`engine.device_views` with each batch copied and augmented one step ahead on a second
    CUDA stream, so that work runs beside the previous training step instead of queueing in
    front of the next one. Random draws happen in the same order as there."""
    if device.type != 'cuda':
        yield from device_views(loader, device, augment)
        return
    stream = torch.cuda.Stream(device)
    ready = None
    for batch in loader:
        with torch.cuda.stream(stream):
            upcoming = to_views(batch, device, augment)
        if ready is not None:
            yield ready
        torch.cuda.current_stream(device).wait_stream(stream)
        for view in upcoming:  # made on the side stream, used on the main one
            view.record_stream(torch.cuda.current_stream(device))
        ready = upcoming
    if ready is not None:
        yield ready

