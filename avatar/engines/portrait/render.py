"""Per-frame rendering: warp the mouth/jaw, paint the inner mouth, close the lids, sway the head.

All work happens on small boxes of a cached base frame (see :mod:`.rig`), which is what
makes 512x512 at hundreds of frames/s on one core possible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .rig import EyeRig, MouthRig, Rig


@dataclass
class FaceState:
    """What one frame shows. open: jaw 0..1; spread: -1 rounded .. 1 wide; blink: 0 open .. 1 shut;
    head: roll (radians), dx, dy (pixels), scale (1 = rest)."""

    open: float = 0.0
    spread: float = 0.0
    blink: float = 0.0
    roll: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


class Renderer:
    """Renders FaceStates for one rig; owns a scratch frame, so one renderer per session."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.work = rig.base.copy()  # base + mouth/eyes, before the head sway
        self._dirty: list[tuple[slice, slice]] = []

    def render(self, st: FaceState) -> np.ndarray:
        """Return a new RGB uint8 frame for ``st``."""
        rig, work = self.rig, self.work
        for sl in self._dirty:  # undo last frame's regions only
            work[sl] = rig.base[sl]
        self._dirty.clear()
        if st.open > 1e-3 or abs(st.spread) > 1e-3:
            m = rig.mouth
            work[m.box.sl] = self._mouth(m, st.open, st.spread)
            self._dirty.append(m.box.sl)
        if st.blink > 1e-3:
            for eye in rig.eyes:
                work[eye.box.sl] = self._eye(eye, st.blink)
                self._dirty.append(eye.box.sl)
        if abs(st.roll) < 1e-5 and abs(st.dx) < 1e-3 and abs(st.dy) < 1e-3 and abs(st.scale - 1) < 1e-5:
            return work.copy()
        out = work.copy()
        h = rig.head
        # Backward map of a similarity transform about the neck pivot, weighted so only the head moves.
        c, s = float(np.cos(st.roll) / st.scale), float(np.sin(st.roll) / st.scale)
        xc = h.Xc - float(st.dx)
        yc = h.Yc - float(st.dy)
        map_x = h.X + h.weight * (c * xc + s * yc - h.Xc)
        map_y = h.Y + h.weight * (-s * xc + c * yc - h.Yc)
        out[h.box.sl] = cv2.remap(work, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    def _mouth(self, m: MouthRig, open_: float, spread: float) -> np.ndarray:
        J = open_ * m.j_max
        U = 0.16 * J + 0.05 * m.mouth_w * max(spread, 0.0) * min(open_ * 3, 1.0)
        Wk = 0.13 * spread if spread > 0 else 0.22 * spread
        # Horizontal: lips pull out to the corners (spread) or in (rounded).
        uc = m.Uc * (1 - Wk * m.h_spread)  # source u for each output pixel
        un = uc / m.hw
        ui = uc / m.hw_in
        q = np.clip(1 - ui * ui, 0, 1)
        g_lip = q ** 0.85
        g_up = np.sqrt(q)
        g_jaw = np.clip(1 - un * un * 0.25, 0, 1)
        gd = g_lip + (g_jaw - g_lip) * m.t_low
        dv = np.where(m.lower > 0, -J * gd * m.f_down, U * g_up * m.f_up)
        du = uc - m.Uc
        e1, e2 = m.e1, m.e2
        map_x = m.X + du * e1[0] + dv * e2[0]
        map_y = m.Y + du * e1[1] + dv * e2[1]
        warped = cv2.remap(self.rig.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        s_top = -U * g_up
        s_bot = J * g_lip
        S = m.S
        gap = np.minimum(S - s_top, s_bot - S)
        mask = np.clip(gap, 0, 1)
        if not mask.any():
            return warped
        return self._inner(m, warped, mask, S, s_top, s_bot, ui, open_, m.H0)

    def _inner(self, m: MouthRig, warped: np.ndarray, mask: np.ndarray, S: np.ndarray, s_top: np.ndarray,
               s_bot: np.ndarray, un: np.ndarray, open_: float, h0: np.ndarray) -> np.ndarray:
        """Paint the mouth interior (dark cavity, tongue, lower and upper teeth) inside ``mask``."""
        col = m.colors
        ys, xs = np.nonzero(mask > 0)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sub = (slice(y0, y1), slice(x0, x1))
        S, s_top, s_bot, un, mk, h0 = S[sub], s_top[sub], s_bot[sub], un[sub], mask[sub], h0[sub]
        au = np.abs(un)
        gap = np.maximum(s_bot - s_top, 1e-3)
        depth = (S - s_top) / gap  # 0 under the upper lip .. 1 on the lower lip
        # Cavity: dark lip colour, darkest in the middle and deep in the throat.
        cav = col["lip"] * np.array([0.42, 0.30, 0.30], np.float32)
        shade = (0.45 + 0.55 * au)[..., None] * (0.7 + 0.3 * np.abs(depth - 0.45)[..., None] * 2)
        img = cav * shade
        # Tongue: a soft hump on the floor of the mouth.
        tongue_top = s_bot - gap * (0.32 - 0.2 * au) - 0.015 * m.mouth_w
        t_m = np.clip(S - tongue_top, 0, 1) * np.clip((0.75 - au) / 0.25, 0, 1) * min(open_ * 2.5, 1.0)
        tongue = col["lip"] * np.array([0.78, 0.5, 0.5], np.float32) * (
            0.55 + 0.45 * np.clip((S - tongue_top) / (0.2 * gap + 1), 0, 1))[..., None]
        img = img + t_m[..., None] * (tongue - img)
        teeth = col["teeth"]
        # Upper teeth hang from the upper lip; darker toward the corners and just under the lip.
        # (less of them where the portrait already shows teeth between its lips).
        ut_h = np.maximum(0.15 * m.mouth_w * np.clip((0.92 - au) / 0.3, 0, 1) - 1.5 * h0, 0)
        ut_m = np.clip(s_top + ut_h - S + 0.5, 0, 1)
        under_lip = np.clip((S - s_top) / (0.03 * m.mouth_w + 0.5), 0, 1)
        # Faint gaps between incisors so the row reads as teeth, not a white bar.
        phase = (au % 0.26) / 0.26
        gaps = 1 - 0.12 * np.exp(-((np.minimum(phase, 1 - phase) * 0.26 / 0.02) ** 2))
        ut_col = teeth * ((0.97 - 0.45 * un * un) * (0.7 + 0.3 * under_lip) * gaps)[..., None]
        img = img + ut_m[..., None] * (ut_col - img)
        out = warped.copy()
        w = warped[sub].astype(np.float32)
        out[sub] = np.clip(w + mk[..., None] * (img - w), 0, 255).astype(np.uint8)
        return out

    def _eye(self, e: EyeRig, b: float) -> np.ndarray:
        # Lid edges at blink b: upper falls to YC, lower rises to YC.
        ye = e.YU + b * (e.YC - e.YU)
        yle = e.YL - b * (e.YL - e.YC)
        V = e.V
        above = V < ye
        below = V > yle
        src_above = e.YB + (V - e.YB) * (e.YU - e.YB) / np.maximum(ye - e.YB, 1e-3)
        src_below = e.YF - (e.YF - V) * (e.YF - e.YL) / np.maximum(e.YF - yle, 1e-3)
        src = np.where(above, np.maximum(src_above, e.YB - 50), np.where(below, src_below, V))
        src = np.where((V < e.YB) | (V > e.YF), V, src)
        dv = (src - V) * e.side
        map_x = e.X + dv * e.e2[0]
        map_y = e.Y + dv * e.e2[1]
        out = cv2.remap(self.rig.base, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if b < 0.5:
            return out
        # Where the lids meet, the two stretched skins touch at a hard seam; soften it a little.
        seam = np.clip(1.0 - np.abs(V - 0.5 * (ye + yle)) / 2.5, 0, 1) * (e.side * (2 * b - 1))
        soft = cv2.GaussianBlur(out, (1, 5), 0)
        return (out + seam[..., None] * (soft.astype(np.float32) - out)).astype(np.uint8)
