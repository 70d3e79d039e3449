"""Train / test data loaders of clips, and the test loader of whole videos for the streaming evaluation
(`VideoInferenceLoader`, TEST.POSETRACK.VIDEO_MODE "stream").

The test loader is detectron2's (explicit dataset/mapper/sampler, which both v0.6 and main accept; no
`batch_size`: one clip per batch, and detectron2's trivial batch collator returns the list of mapped
dicts). The train loader is assembled from detectron2's dataset pieces (`DatasetFromList`, `MapDataset`,
`ToIterableDataset`, `AspectRatioGroupedDataset`, the same in v0.6 and main) so that it can move clips
out of the worker processes cheaply (`build_pavenet_train_loader`)."""

import itertools
import logging
import math
import operator
import pickle

import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.common import (
    AspectRatioGroupedDataset,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
)
from detectron2.data.samplers import InferenceSampler, TrainingSampler
from detectron2.utils import comm

from .dataset_mapper import PoseTrackClipDatasetMapper
from .datasets.posetrack import load_posetrack_video_dicts
from .samplers import select_test_frames, shard_range

logger = logging.getLogger(__name__)

__all__ = [
    "build_pavenet_train_loader",
    "build_pavenet_test_loader",
    "build_pavenet_video_test_loader",
    "VideoInferenceLoader",
    "get_train_clip_dicts",
    "get_test_clip_dicts",
]


def _has_visible_person(d: dict) -> bool:
    return any(
        any(v > 0 for v in a["keypoints"][2::3])
        for a in d.get("annotations", [])
        if not a.get("iscrowd", 0)
    )


def get_train_clip_dicts(dataset_names) -> list:
    """Key-frame items of every TRAIN set: labelled frames with at least one visible joint (mmdet's
    filter_empty_gt). All sets must share one keypoint layout (a 17-joint COCO and a 15-joint PoseTrack
    set cannot train one head)."""
    if isinstance(dataset_names, str):
        dataset_names = [dataset_names]
    if not dataset_names:
        raise ValueError("DATASETS.TRAIN is empty")
    layouts = {tuple(MetadataCatalog.get(n).get("keypoint_names", ())) for n in dataset_names}
    if len(layouts) > 1:
        raise ValueError(
            f"DATASETS.TRAIN {list(dataset_names)} mix keypoint layouts; train them in separate stages"
        )
    dicts = list(itertools.chain.from_iterable(DatasetCatalog.get(n) for n in dataset_names))
    n0 = len(dicts)
    dicts = [d for d in dicts if d.get("is_labeled", True) and _has_visible_person(d)]
    logger.info(
        f"Training clips from {list(dataset_names)}: {len(dicts)} key frames ({n0 - len(dicts)} without people removed)"
    )
    if not dicts:
        raise ValueError(f"no labelled frame with people in {list(dataset_names)}")
    return dicts


def get_test_clip_dicts(dataset_name: str, test_frames: str = "labeled") -> list:
    meta = MetadataCatalog.get(dataset_name)
    labeled = DatasetCatalog.get(dataset_name)  # also generates the synthetic set on first use
    all_fn = None
    if meta.get("dataset_type", "") == "posetrack":
        all_fn = lambda: load_posetrack_video_dicts(meta.annotations, meta.image_root, frames="all")  # noqa: E731
    if (
        test_frames == "all" and all_fn is None
    ):  # COCO pseudo-clips: every image is its own labelled "video"
        dicts = labeled
    else:
        dicts = select_test_frames(labeled, test_frames, all_fn)
    if not dicts:
        raise ValueError(
            f"test set {dataset_name!r} has no frame to evaluate "
            f"(INPUT.PAVENET.TEST_FRAMES {test_frames!r}); check its annotation files"
        )
    return dicts


class _PickledClipMapper:
    """Runs the clip mapper in a data-loader worker and pickles its output into one bytes object.

    A mapped clip holds six tensors (the frames and five annotation fields). PyTorch hands a tensor from a
    worker to the main process through shared memory whose file descriptor the main process fetches over a
    socket from the worker, one round trip per tensor, answered only when the busy worker gets the CPU. On
    the 2-core demo that cost ~30 ms per 4-clip batch; one pickled clip (~0.4 ms to pickle, ~0.6 ms to
    unpickle at 256x192) goes through the worker's result pipe instead. "width"/"height" stay readable for
    `AspectRatioGroupedDataset`.
    """

    def __init__(self, mapper):
        self.mapper = mapper

    def __call__(self, dataset_dict):
        clip = self.mapper(dataset_dict)
        if clip is None:  # MapDataset then draws another item
            return None
        return {
            "width": clip["width"],
            "height": clip["height"],
            "pickled_clip": pickle.dumps(clip, protocol=pickle.HIGHEST_PROTOCOL),
        }


class _UnpickledBatches(torchdata.IterableDataset):
    """Batches of `_PickledClipMapper` outputs -> batches of the mapped clips (in the main process)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        for batch in self.batches:
            yield [pickle.loads(item["pickled_clip"]) for item in batch]


class _Batched(torchdata.IterableDataset):
    """Consecutive items in lists of `batch_size` (the loader without aspect-ratio grouping)."""

    def __init__(self, items, batch_size: int):
        self.items, self.batch_size = items, batch_size

    def __iter__(self):
        it = iter(self.items)
        while True:
            batch = list(itertools.islice(it, self.batch_size))
            if len(batch) < self.batch_size:
                return
            yield batch


def build_pavenet_train_loader(cfg, mapper=None, dataset=None):
    """Infinite loader of lists of `cfg.SOLVER.IMS_PER_BATCH // world_size` mapped clips per rank.

    As detectron2's `build_detection_train_loader` (the same sampler, worker seeding, retry of unusable
    items and aspect-ratio grouping, hence the same clips in the same order; without grouping and with
    several workers, detectron2 fills each batch in one worker, we take the workers' clips in turn), except
    that with DATALOADER.NUM_WORKERS > 0 each clip leaves its worker as one pickled object
    (`_PickledClipMapper`) and the workers keep two batches in flight (PyTorch's default of two items per
    worker is half of the demo's 4-clip batch, so the training step waited for the rest).
    """
    names = list(cfg.DATASETS.TRAIN)
    if dataset is None:
        dataset = get_train_clip_dicts(names)
    if mapper is None:
        mapper = PoseTrackClipDatasetMapper(cfg, is_train=True, dataset_name=names[0])
    world_size = comm.get_world_size()
    total = cfg.SOLVER.IMS_PER_BATCH
    if total <= 0 or total % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total}) must be a positive multiple of the number of "
            f"processes ({world_size})"
        )
    batch_size = total // world_size
    num_workers = cfg.DATALOADER.NUM_WORKERS
    # One seed shared by all ranks (cfg.SEED, else detectron2 draws one and broadcasts it).
    sampler = TrainingSampler(len(dataset), shuffle=True, seed=cfg.SEED if cfg.SEED >= 0 else None)
    clips = MapDataset(
        DatasetFromList(dataset, copy=False), _PickledClipMapper(mapper) if num_workers else mapper
    )
    loader = torchdata.DataLoader(
        ToIterableDataset(clips, sampler),
        num_workers=num_workers,
        collate_fn=operator.itemgetter(0),  # one mapped clip per item; batches are formed below
        worker_init_fn=worker_init_reset_seed,
        prefetch_factor=max(2, math.ceil(2 * batch_size / num_workers)) if num_workers else None,
    )
    if cfg.DATALOADER.ASPECT_RATIO_GROUPING:
        batches = AspectRatioGroupedDataset(loader, batch_size)
    else:
        batches = _Batched(loader, batch_size)
    return _UnpickledBatches(batches) if num_workers else batches


def build_pavenet_test_loader(cfg, dataset_name: str, mapper=None):
    """One clip per batch, every selected frame (INPUT.PAVENET.TEST_FRAMES) once, in video order,
    contiguous shards across ranks."""
    dataset = get_test_clip_dicts(dataset_name, cfg.INPUT.PAVENET.TEST_FRAMES)
    if mapper is None:
        mapper = PoseTrackClipDatasetMapper(cfg, is_train=False, dataset_name=dataset_name)
    return build_detection_test_loader(
        dataset=dataset,
        mapper=mapper,
        sampler=InferenceSampler(len(dataset)),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )


class VideoInferenceLoader:
    """Test frames grouped by video: each batch is the list of one video's frame dicts (the ones
    INPUT.PAVENET.TEST_FRAMES selects, in frame order); whole videos are split into contiguous shards
    across ranks, so a video's frames (and its tracks) stay in one process.

    Nothing is read here: the dicts carry `video_file_names` and `frame_index`, and the video inference
    model (`pavenet.evaluation.video_inference`) reads only the frames the clips need, once each."""

    def __init__(self, dataset: list, rank: int = None, world_size: int = None):
        videos = {}
        for d in dataset:
            videos.setdefault(d.get("video_id"), []).append(d)
        for vid, frames in videos.items():
            frames.sort(key=lambda d: d["frame_index"])
            if any(
                f["video_file_names"] is not frames[0]["video_file_names"]
                and list(f["video_file_names"]) != list(frames[0]["video_file_names"])
                for f in frames
            ):
                raise ValueError(f"video {vid!r}: its frame dicts disagree on 'video_file_names'")
        videos = list(videos.values())
        rank = comm.get_rank() if rank is None else rank
        world_size = comm.get_world_size() if world_size is None else world_size
        self._videos = [videos[i] for i in shard_range(len(videos), rank, world_size)]

    def __len__(self):
        return len(self._videos)

    def __iter__(self):
        yield from self._videos


def build_pavenet_video_test_loader(cfg, dataset_name: str) -> VideoInferenceLoader:
    """The loader of TEST.POSETRACK.VIDEO_MODE "stream": one video per batch, the same frames as
    `build_pavenet_test_loader` selects."""
    return VideoInferenceLoader(get_test_clip_dicts(dataset_name, cfg.INPUT.PAVENET.TEST_FRAMES))
