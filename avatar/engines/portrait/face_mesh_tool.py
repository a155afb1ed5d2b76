"""Face landmarks for one image, run inside the separate face venv (see scripts/setup_face.sh).

Usage: ``python face_mesh_tool.py IN.png OUT.json``

This file is executed as a standalone script by :mod:`avatar.engines.portrait.prepare`
in a venv that has mediapipe (protobuf<5); it must not import the ``avatar`` package,
whose venv has protobuf>=5. It writes ``{"width", "height", "faces": [[[x, y, z], ...478]],
"boxes": [[x0, y0, x1, y1, score], ...]}`` in pixel coordinates.
"""

import json
import sys
import types

# mediapipe's drawing helpers import matplotlib at import time; the face mesh never plots.
_mpl = types.ModuleType("matplotlib")
_mpl.pyplot = types.ModuleType("matplotlib.pyplot")
sys.modules.setdefault("matplotlib", _mpl)
sys.modules.setdefault("matplotlib.pyplot", _mpl.pyplot)

import cv2  # noqa: E402
import mediapipe as mp  # noqa: E402


def main(src: str, dst: str) -> int:
    bgr = cv2.imread(src, cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {src}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    faces = []
    with mp.solutions.face_mesh.FaceMesh(
        static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
    ) as mesh:
        res = mesh.process(rgb)
        for lm in res.multi_face_landmarks or []:
            faces.append([[p.x * w, p.y * h, p.z * w] for p in lm.landmark])
    # The full-range detector also counts faces the mesh's short-range detector misses
    # (a second, smaller face in a group photo), so "several faces" is caught reliably.
    boxes = []
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.6) as det:
        res = det.process(rgb)
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            boxes.append([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h, d.score[0]])
    if not faces and len(boxes) == 1:
        # The mesh's own detector is short-range (face filling much of the frame); for a
        # portrait with a lot of background, retry on a crop around the detected face.
        x0, y0, x1, y1, _ = boxes[0]
        side = 2.2 * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        l, t = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))  # noqa: E741 - left, top, right, bottom
        r, b = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        with mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        ) as mesh:
            res = mesh.process(rgb[t:b, l:r].copy())
            cw, ch = r - l, b - t
            for lm in res.multi_face_landmarks or []:
                faces.append([[p.x * cw + l, p.y * ch + t, p.z * cw] for p in lm.landmark])
    with open(dst, "w") as f:
        json.dump({"width": w, "height": h, "faces": faces, "boxes": boxes}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
