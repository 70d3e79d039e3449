"""Overlays label each person with its track id (and score), in the track's colour."""

import numpy as np
import torch
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer

from pavenet.utils.visualization import TrackVisualizer, demo_metadata, track_color, track_labels


def _people(track_ids):
    inst = Instances((64, 96))
    k = len(track_ids)
    kpts = torch.zeros(k, 15, 3)
    kpts[..., 0] = torch.linspace(10, 40, 15) + 40 * torch.arange(k)[:, None]
    kpts[..., 1] = torch.linspace(8, 56, 15)
    kpts[..., 2] = 0.9
    inst.pred_keypoints = kpts
    inst.scores = torch.tensor([0.9, 0.8][:k])
    inst.pred_track_ids = torch.tensor(track_ids)
    return inst


def test_each_person_is_labelled_with_its_track_id(monkeypatch):
    seen = []
    draw = Visualizer.overlay_instances

    def spy(self, **kwargs):
        seen.append(kwargs)
        return draw(self, **kwargs)

    monkeypatch.setattr(Visualizer, "overlay_instances", spy)
    frame = np.full((64, 96, 3), 40, np.uint8)
    out = TrackVisualizer(demo_metadata()).draw(frame, _people([3, 47]))
    assert seen[0]["labels"] == ["id 3 90%", "id 47 80%"]
    assert seen[0]["assigned_colors"] == [track_color(3), track_color(47)]
    assert out.shape == frame.shape and (out != frame).any()
    # another id, another label: the drawing changes
    assert (TrackVisualizer(demo_metadata()).draw(frame, _people([5, 47])) != out).any()


def test_labels_without_track_ids_are_scores_only_and_scale_enlarges():
    inst = _people([1])
    inst.remove("pred_track_ids")
    assert track_labels(inst) == ["90%"]
    frame = np.zeros((64, 96, 3), np.uint8)
    assert TrackVisualizer(demo_metadata(), scale=2.0).draw(frame, _people([1])).shape == (
        128,
        192,
        3,
    )
    assert TrackVisualizer(demo_metadata(), scale=2.0).draw(frame, None).shape == (128, 192, 3)
