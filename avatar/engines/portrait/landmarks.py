"""Indices into mediapipe's 478-point face mesh that the rig uses (named, so code reads as anatomy)."""

import numpy as np

# Face oval, clockwise from the forehead.
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                      377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
FOREHEAD, CHIN, NOSE_TIP, SUBNASALE = 10, 152, 1, 2
FACE_LEFT, FACE_RIGHT = 234, 454  # image left / right cheek edge
MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # outer lip corners
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 0, 17
INNER_UPPER_MID, INNER_LOWER_MID = 13, 14

LIPS_OUTER = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146])
LIPS_INNER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95])
INNER_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])
INNER_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])

# Eyes: (outer/inner corners, upper lid, lower lid), each lid listed corner to corner.
EYE_A = (33, 133, np.array([33, 246, 161, 160, 159, 158, 157, 173, 133]),
         np.array([33, 7, 163, 144, 145, 153, 154, 155, 133]))
EYE_B = (362, 263, np.array([362, 398, 384, 385, 386, 387, 388, 466, 263]),
         np.array([362, 382, 381, 380, 374, 373, 390, 249, 263]))
EYES = (EYE_A, EYE_B)

CHEEK_A = np.array([117, 118, 101, 36, 205, 187, 123])
CHEEK_B = np.array([346, 347, 330, 266, 425, 411, 352])
