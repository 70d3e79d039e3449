"""PAVE-Net training losses (pavenet_spec.md §8): Hungarian matching per output set, sigmoid focal
classification loss and RLE keypoint loss with deep supervision.

Usage by the model (``PAVENet`` in ``meta_arch.py``)::

    criterion = build_criterion(cfg)                      # or PAVENetCriterion(matcher, K, ...)
    targets = [targets_from_instances(x["instances"].to(device)) for x in batched_inputs]
    # run encoder + pose decoder, then match the LAST pose layer to pick the joint-decoder rows:
    last_idx = criterion.match(outputs["pose_layers"][-1], targets)   # list of (pred_idx, gt_idx)
    # joint-decoder rows = cat over clips b of queries last_idx[b][0] (in that order)
    losses = criterion(outputs, targets, last_idx, enc_flow=head.enc_flow, dec_flow=head.dec_flow,
                       flow=head.flow)

``targets``: list (one per clip, length B) of dicts
    "keypoints":  (N, K, 2) float, GT x/y normalised to [0, 1] by the UNPADDED image size (w, h)
    "visible":    (N, K) float, 1 = labelled/visible joint, 0 = not
    "areas":      (N,) float, object area in pixels of the (transformed) image, for the OKS cost
    "image_size": (h, w) of the unpadded (transformed) image, pixels
    N may be 0. ``targets_from_instances`` builds this from the mapper's ``Instances`` and drops
    persons without any visible joint (spec §6: they are not supervised).

``outputs``: dict
    "enc": {"logits": (B, S, 1), "keypoints": (B, S, K, 2) in [0, 1], "sigma": (B, S, K, 2) in (0, 1),
            "valid": (B, S) bool}   key-frame encoder tokens (spec §4). Only valid tokens are matched;
            keypoints/sigma of invalid tokens may be inf/nan (they are never read). Their logits must be
            finite: as in the official code every token, valid or not, is a focal-loss negative.
    "pose_layers": [{"logits": (B, Q, 1), "keypoints": (B, Q, K, 2), "sigma": (B, Q, K, 2)}, ...]
            one dict per pose-decoder layer, first to last (key-frame outputs, spec §5.2).
    "joint_layers": [{"keypoints": (M, K, 2), "sigma": (M, K, 2)}, ...]
            one dict per joint-decoder layer; rows are the last pose layer's matched queries, clip by
            clip in the order of ``last_layer_indices`` (M = total matched). May be empty/absent.
All keypoints are normalised to the unpadded image, sigma is after the sigmoid.

``forward(outputs, targets, last_layer_indices=None, *, enc_flow, dec_flow, flow)`` returns a dict of
weighted scalar losses (detectron2's SimpleTrainer sums every value; all names contain "loss"):
    loss_cls_enc, loss_kpt_enc                       (official enc_loss_cls / enc_loss_kpt)
    loss_cls_d{i}, loss_kpt_d{i} for i < L-1          (official d{i}.loss_cls / d{i}.loss_kpt)
    loss_cls, loss_kpt                                (last pose layer)
    loss_kpt_refine_d{j} for j < J-1, loss_kpt_refine (official d{j}.loss_kpt_refine / loss_kpt_refine)
``last_layer_indices`` (the output of ``match`` on the last pose layer) is reused for that layer and for
every joint layer; when None it is computed here.
"""
