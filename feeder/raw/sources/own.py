"""Own pose data (``--dataset custom --annotations PATH --layout NAME|L.json``): any format of
:mod:`feeder.raw.custom`, any layout, 2D or 3D, prepared by :func:`feeder.raw.pose.custom_clip`
(docs/data.md, "Your own data")."""
import os

from feeder.info import DatasetInfo
from feeder.layouts import get_layout
from feeder.raw.custom import FORMATS, CustomDataError, list_clips, load_clip
from feeder.raw.pose import clip_axes, custom_clip
from feeder.raw.readers import DataFormatError
from feeder.raw.sources.base import Clip, Listing, PrepareError, Sample, Source, Task, pose_record


def read_pose(task, prep):
    """A clip of own pose data (``task.clip``, a :class:`feeder.raw.custom.CustomClip`), read
    from its file where it has one; a file's own label must agree with the listing's."""
    keypoint, score, own = load_clip(task.clip, task.source, prep)
    listed = task.samples[0].label
    if own is not None and listed >= 0 and own != listed:
        raise DataFormatError(task.path, None, f'label_index {own}, but the label file says {listed}')
    return [Clip(*custom_clip(keypoint, score, prep), own if listed < 0 else None)]


def survey_clip(job):
    """A 3D clip's own (up, across) directions, for the dataset's turn (worker side); ``None``
    where it has none."""
    task, prep = job
    try:
        keypoint, score, _ = load_clip(task.clip, task.source, prep)
    except (DataFormatError, CustomDataError, OSError):  # reported when the clip is prepared
        return None
    up, across = clip_axes(keypoint, score, prep)
    return None if up is None else (up, across)


def list_custom(args):
    """Tasks of own pose data, and its description (layout, persons, channels, benchmarks, classes)."""
    if not args.annotations or not args.layout:
        raise PrepareError('--dataset custom needs --annotations PATH and --layout NAME|LAYOUT.json')
    try:
        layout = get_layout(args.layout)
        data = list_clips(args.annotations, layout, args.format, args.channels, args.skip_bad)
    except ValueError as e:
        raise PrepareError(str(e)) from None
    if data.joints != layout.num_joints:
        raise PrepareError(f'--layout {args.layout} has {layout.num_joints} joints, but the clips of '
                           f'{args.annotations} have {data.joints}')
    if args.image_size and data.format not in ('openpose', 'kinetics-json'):
        raise PrepareError(f'--image-size applies to the JSON formats; {args.annotations} is {data.format}')
    name = args.name or os.path.splitext(os.path.basename(os.path.normpath(args.annotations)))[0]
    extra = {'format': data.format}
    if args.image_size:
        extra['image_size'] = list(args.image_size)
    info = DatasetInfo(name, layout, data.persons, tuple(data.benchmarks), data.num_classes, data.channels,
                       kind='custom', class_names=data.class_names, source=os.path.abspath(args.annotations),
                       preparation=pose_record(args.fill_missing, args.align if data.channels == 'xyz' else 'none',
                                               **extra))
    tasks = [Task(data.format, clip.path or clip.name, [Sample(clip.name, clip.label, clip.parts)], clip)
             for clip in data.clips]
    return Listing(info, tasks, data.left_out, args.annotations, [(b, 'train') for b in info.benchmarks])


DATASETS = {'custom': list_custom}
READERS = {fmt: Source(read_pose, resample=True, normalised=True) for fmt in FORMATS}
