"""The render rig: a cached base frame plus precomputed warp geometry for mouth, eyes and head.

Built once per (avatar, output size) and shared read-only by every call of the worker.
Per frame, :class:`Renderer` touches only small regions: the mouth/jaw box (warp +
inner mouth), two eye boxes (lid warp) and the head box (a sub-pixel sway), all with
``cv2.remap`` on maps that are a cheap linear combination of fields computed here.

Coordinates: ``e1`` runs along the eye line, ``e2`` down the face, so a tilted head
still opens its jaw "down its own face". Local coordinates (u, v) are measured along
e1/e2 from a region's origin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..base import EngineError
from . import landmarks as L


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


@dataclass
class Box:
    """A region of the frame: rows y0:y1, columns x0:x1, with pixel grids of absolute coordinates."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def around(cls, pts: np.ndarray, w: int, h: int, pad: float = 0.0) -> Box:
        x0, y0 = np.floor(pts.min(0) - pad).astype(int)
        x1, y1 = np.ceil(pts.max(0) + pad).astype(int)
        return cls(max(0, x0), max(0, y0), min(w, x1), min(h, y1))

    @property
    def sl(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        xs = np.arange(self.x0, self.x1, dtype=np.float32)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)
        return np.meshgrid(xs, ys)


class MouthRig:
    """Fields of the mouth/jaw region. Parameters per frame: open (0..1), spread (-1 round .. 1 wide)."""

    def __init__(self, lm: np.ndarray, e1: np.ndarray, e2: np.ndarray, w: int, h: int, colors: dict):
        p = lm[:, :2]
        self.e1, self.e2 = e1, e2
        corner_a, corner_b = p[L.MOUTH_LEFT], p[L.MOUTH_RIGHT]
        origin = (p[L.INNER_UPPER_MID] + p[L.INNER_LOWER_MID]) / 2
        self.origin = origin

        def local(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d = q - origin
            return d @ e1, d @ e2

        ua, _ = local(corner_a)
        ub, _ = local(corner_b)
        self.hw = hw = float(abs(ub - ua) / 2)
        if hw < 4:
            raise EngineError("the avatar's mouth is too small at this output size; use a closer portrait")
        uc = float((ua + ub) / 2)
        # The opening itself ends at the inner lip corners (in a smile they sit well inside the outer ones).
        ia, _ = local(p[L.INNER_UPPER[0]])
        ib, _ = local(p[L.INNER_UPPER[-1]])
        self.hw_in = max(float(abs(ib - ia) / 2), 0.5 * hw)
        # Mouth line v = ym(u): midway between the inner lip contours, flat beyond the corners.
        uu, vu = local(p[L.INNER_UPPER])
        ul, vl = local(p[L.INNER_LOWER])
        knots = np.linspace(min(uu.min(), ul.min()), max(uu.max(), ul.max()), 41)
        o1, o2 = np.argsort(uu), np.argsort(ul)
        # The jaw splits the face along the LOWER inner lip: whatever the portrait shows between
        # the lips (a smile's teeth) stays with the upper jaw, and new interior opens below it.
        yu_knots = np.interp(knots, uu[o1], vu[o1])
        ym_knots = np.interp(knots, ul[o2], vl[o2])
        h0_knots = np.maximum(ym_knots - yu_knots, 0)
        _, v_chin = local(p[L.CHIN])
        _, v_nose = local(p[L.SUBNASALE])
        _, v_lip_bottom = local(p[L.LOWER_LIP_BOTTOM])
        _, v_lip_top = local(p[L.UPPER_LIP_TOP])
        self.mouth_w = 2 * hw
        self.j_max = 0.32 * self.mouth_w  # jaw drop at full "aa", in pixels
        self.lip_t = max(float(v_lip_bottom), 2.0)
        self.chin_s = max(float(v_chin), self.lip_t + 2)
        self.fade = 0.6 * self.chin_s
        self.nose_s = max(float(-v_nose), 3.0)
        self.upper_lip_t = max(float(-v_lip_top), 2.0)

        # Region: the whole lower face from below the nose to the neck, corner to corner and beyond.
        su = 2.3 * hw
        corners_local = np.array([[uc - su, -self.nose_s], [uc + su, -self.nose_s],
                                  [uc - su, self.chin_s + self.fade + self.j_max],
                                  [uc + su, self.chin_s + self.fade + self.j_max]])
        pts = origin + corners_local[:, :1] * e1 + corners_local[:, 1:] * e2
        self.box = Box.around(pts, w, h, pad=2)
        X, Y = self.box.grid()
        dx, dy = X - origin[0], Y - origin[1]
        U = dx * e1[0] + dy * e1[1]
        V = dx * e2[0] + dy * e2[1]
        self.X, self.Y = X, Y
        self.Uc = (U - uc).astype(np.float32)
        self.S = (V - np.interp(U, knots, ym_knots)).astype(np.float32)
        self.H0 = np.interp(U, knots, h0_knots, left=0, right=0).astype(np.float32)
        S = self.S
        # Fixed profiles (depend only on where a pixel is, not on the frame's parameters).
        self.t_low = np.clip(S / self.lip_t, 0, 1).astype(np.float32)
        self.f_down = (1 - _smoothstep(self.chin_s, self.chin_s + self.fade, S)).astype(np.float32)
        self.f_up = (1 - _smoothstep(0.0, self.nose_s, -S)).astype(np.float32)
        self.lower = (S > 0).astype(np.float32)
        # Horizontal spread/round acts on the lips and fades out over the cheeks.
        lip_band = np.exp(-((S / (1.6 * max(self.lip_t, self.upper_lip_t))) ** 2))
        self.h_spread = (np.clip(1 - (self.Uc / (2.2 * hw)) ** 2, 0, 1) ** 2 * lip_band).astype(np.float32)
        self.colors = {k: np.asarray(v, np.float32) for k, v in colors.items()}


class EyeRig:
    """Fields of one eye box for the blink (upper lid slides down, lower lid up a little)."""

    def __init__(self, lm: np.ndarray, eye: tuple, e1: np.ndarray, e2: np.ndarray, w: int, h: int):
        p = lm[:, :2]
        ca, cb, upper, lower = eye
        origin = (p[ca] + p[cb]) / 2

        def local(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            d = q - origin
            return d @ e1, d @ e2

        uu, vu = local(p[upper])
        ul, vl = local(p[lower])
        width = float(abs(uu[-1] - uu[0]))
        opening = float(np.max(np.interp(uu, np.sort(ul), vl[np.argsort(ul)]) - vu))
        self.opening = max(opening, 1.0)
        eye_h = max(opening, 0.18 * width)
        pad_u, above, below = 0.25 * width, 1.3 * eye_h + 0.15 * width, 0.7 * eye_h
        corners = np.array([[uu.min() - pad_u, vu.min() - above], [uu.max() + pad_u, vu.min() - above],
                            [uu.min() - pad_u, vl.max() + below], [uu.max() + pad_u, vl.max() + below]])
        pts = origin + corners[:, :1] * e1 + corners[:, 1:] * e2
        self.box = Box.around(pts, w, h, pad=1)
        X, Y = self.box.grid()
        dx, dy = X - origin[0], Y - origin[1]
        U = dx * e1[0] + dy * e1[1]
        self.V = (dx * e2[0] + dy * e2[1]).astype(np.float32)
        self.X, self.Y = X, Y
        o1, o2 = np.argsort(uu), np.argsort(ul)
        YU = np.interp(U, uu[o1], vu[o1]).astype(np.float32)
        YL = np.interp(U, ul[o2], vl[o2]).astype(np.float32)
        YL = np.maximum(YL, YU)
        # Outside the corners the lids meet, so nothing moves there; fade sideways as well.
        side = np.clip(1 - (np.maximum(np.abs(U - (uu.min() + uu.max()) / 2) - width / 2, 0) / pad_u), 0, 1)
        self.YU, self.YL = YU, YL
        self.YC = (YU + 0.78 * (YL - YU)).astype(np.float32)  # where the lids meet when closed
        self.YB = (YU - above * 0.95).astype(np.float32)  # brow side: skin above stretches
        self.YF = (YL + below * 0.95).astype(np.float32)  # cheek side
        self.side = side.astype(np.float32)
        self.e2 = e2


class HeadRig:
    """The head box and its weight field: 1 on the head, fading to 0 on the background and body."""

    def __init__(self, lm: np.ndarray, e1: np.ndarray, e2: np.ndarray, w: int, h: int):
        p = lm[:, :2]
        top, chin = p[L.FOREHEAD], p[L.CHIN]
        face_h = float(np.linalg.norm(chin - top))
        face_w = float(np.linalg.norm(p[L.FACE_RIGHT] - p[L.FACE_LEFT]))
        center = (top + chin) / 2 - 0.12 * face_h * e2  # hair sits above the mesh's forehead point
        self.pivot = chin + 0.35 * face_h * e2  # the neck: heads turn about it
        rx, ry = 0.85 * face_w + 0.1 * face_h, 0.78 * face_h
        corners = np.array([[-rx, -ry], [rx, -ry], [-rx, ry], [rx, ry]]) * 1.25
        pts = center + corners[:, :1] * e1 + corners[:, 1:] * e2
        self.box = Box.around(pts, w, h, pad=2)
        X, Y = self.box.grid()
        dx, dy = X - center[0], Y - center[1]
        a = (dx * e1[0] + dy * e1[1]) / rx
        b = (dx * e2[0] + dy * e2[1]) / ry
        r = np.sqrt(a * a + b * b)
        self.weight = (1 - _smoothstep(0.8, 1.22, r)).astype(np.float32)
        self.X, self.Y = X, Y
        self.Xc = (X - self.pivot[0]).astype(np.float32)
        self.Yc = (Y - self.pivot[1]).astype(np.float32)
        self.face_h = face_h


class Rig:
    """Everything a session needs to render one avatar at one output size."""

    def __init__(self, avatar_dir: Path, width: int, height: int, face_scale: float):
        avatar_dir = Path(avatar_dir)
        try:
            meta = json.loads((avatar_dir / "meta.json").read_text())
            lm = np.load(avatar_dir / "landmarks.npy").astype(np.float32)
            bgr = cv2.imread(str(avatar_dir / "portrait.png"), cv2.IMREAD_COLOR)
        except (OSError, ValueError) as exc:
            raise EngineError(f"the avatar folder {avatar_dir} is not a prepared portrait avatar ({exc})") from None
        if bgr is None or lm.shape != (478, 3):
            raise EngineError(f"the avatar folder {avatar_dir} is incomplete; prepare the avatar again")
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self.meta = meta
        self.base, self.lm = self._crop(img, lm, width, height, face_scale)
        self.width, self.height = width, height
        p = self.lm[:, :2]
        eye_a = p[L.EYE_A[2]].mean(0)
        eye_b = p[L.EYE_B[2]].mean(0)
        e1 = eye_b - eye_a
        e1 = (e1 / np.linalg.norm(e1)).astype(np.float32)
        if e1[0] < 0:
            e1 = -e1
        e2 = np.array([-e1[1], e1[0]], np.float32)
        if e2 @ (p[L.CHIN] - p[L.FOREHEAD]) < 0:
            e2 = -e2
        self.e1, self.e2 = e1, e2
        colors = {k: meta.get(k + "_rgb", d) for k, d in
                  (("lip", [150, 80, 80]), ("skin", [200, 160, 140]), ("teeth", [230, 224, 210]))}
        self.mouth = MouthRig(self.lm, e1, e2, width, height, colors)
        self.eyes = [EyeRig(self.lm, eye, e1, e2, width, height) for eye in L.EYES]
        self.head = HeadRig(self.lm, e1, e2, width, height)
        self.base.setflags(write=False)

    @staticmethod
    def _crop(img: np.ndarray, lm: np.ndarray, W: int, H: int, face_scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Cut the output frame around the face: face height = face_scale of the frame, eyes above centre."""
        p = lm[:, :2]
        top, chin = p[L.FOREHEAD], p[L.CHIN]
        face_h = float(np.linalg.norm(chin - top))
        cx = float((p[L.FACE_LEFT, 0] + p[L.FACE_RIGHT, 0]) / 2)
        cy = float((top[1] + chin[1]) / 2)
        ch = face_h / face_scale
        cw = ch * W / H
        ih, iw = img.shape[:2]
        k = min(1.0, ih / ch, iw / cw)  # the picture may be too tight to frame as asked
        ch, cw = ch * k, cw * k
        x0 = float(np.clip(cx - cw / 2, 0, iw - cw))
        y0 = float(np.clip(cy - 0.47 * ch, 0, ih - ch))
        s = W / cw
        M = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        if s < 1:
            x0i, y0i = int(round(x0)), int(round(y0))
            crop = img[y0i:y0i + int(round(ch)), x0i:x0i + int(round(cw))]
            base = cv2.resize(crop, (W, H), interpolation=interp)
            M = np.array([[W / crop.shape[1], 0, -x0i * W / crop.shape[1]],
                          [0, H / crop.shape[0], -y0i * H / crop.shape[0]]], np.float32)
        else:
            base = cv2.warpAffine(img, M, (W, H), flags=interp, borderMode=cv2.BORDER_REPLICATE)
        out = lm.copy()
        out[:, 0] = lm[:, 0] * M[0, 0] + M[0, 2]
        out[:, 1] = lm[:, 1] * M[1, 1] + M[1, 2]
        out[:, 2] = lm[:, 2] * M[0, 0]
        return np.ascontiguousarray(base), out
